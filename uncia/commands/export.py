"""`uncia export`: the station record as files researchers load (Movebank, Camtrap DP, GeoJSON).

    uncia export movebank   -c /etc/uncia/gateway.toml --out exports/ --since 2026-01-01
    uncia export camtrap-dp --record station.sqlite3 --out package/ --unit cam-03 --copy-images
    uncia export geojson    -c gateway.toml --out site.geojson --collar 7 --collar 9 --points

The record is read-only here (a running gateway keeps writing it). The same record and arguments
give the same bytes. Exit codes: 0 written; 1 the record cannot be read, nothing matched, or a
file cannot be written; 2 a bad argument (date, range, deployments file); 3 a bad config file.
What each file holds: docs/exports.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edge.config import ConfigError, load_config
from gateway.export import (
    AnimalRegistry,
    ExportError,
    ExportFilter,
    NothingToExport,
    export_camtrap,
    export_geojson,
    export_movebank,
    parse_time,
)
from gateway.export.movebank import MAX_SPEED_MPS
from gateway.station.record import RecordError, RecordReader
from uncia.argtypes import positive_float
from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE

FORMATS = ("movebank", "camtrap-dp", "geojson")


def time_arg(text: str) -> float:
    try:
        return parse_time(text)
    except ExportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "export",
        help="write the station record as Movebank CSV, a Camtrap DP package or GeoJSON",
        description="Export collar fixes and camera captures from the station record. "
        "See docs/exports.md for what each file holds and how to load it.",
    )
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    common = argparse.ArgumentParser(add_help=False)
    source = common.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--config", type=Path, help="the gateway's TOML (its [station] record is read)")
    source.add_argument("--record", type=Path, metavar="FILE", help="a station record file (SQLite)")
    common.add_argument(
        "--since", type=time_arg, metavar="ISO", help="from this UTC time on (2026-11-25[T12:00Z])"
    )
    common.add_argument("--until", type=time_arg, metavar="ISO", help="up to, not including, this UTC time")
    common.add_argument(
        "--collar",
        action="append",
        default=[],
        metavar="X",
        help="only this collar (7 or collar-7); repeatable",
    )
    common.add_argument(
        "--unit", action="append", default=[], metavar="U", help="only this camera unit; repeatable"
    )

    animals = argparse.ArgumentParser(add_help=False)
    animals.add_argument(
        "--animals",
        type=Path,
        metavar="FILE",
        help="deployments CSV: which animal wore which collar (docs/exports.md)",
    )
    animals.add_argument(
        "--max-speed",
        type=positive_float,
        default=MAX_SPEED_MPS,
        metavar="M/S",
        help=f"fixes implying a faster move are flagged as outliers ({MAX_SPEED_MPS:g})",
    )

    movebank = formats.add_parser(
        "movebank",
        parents=[common, animals],
        help="location CSV + reference-data CSV for a Movebank study",
        description="Write movebank-locations.csv and movebank-reference-data.csv into --out DIR.",
    )
    movebank.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the two CSV files"
    )
    movebank.set_defaults(func=run)

    camtrap = formats.add_parser(
        "camtrap-dp",
        parents=[common],
        help="a Camtrap DP 1.0.2 package of the camera units' captures",
        description="Write deployments.csv, media.csv, observations.csv and datapackage.json into --out DIR.",
    )
    camtrap.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the package")
    camtrap.add_argument(
        "--created",
        type=time_arg,
        metavar="ISO",
        help="the package's 'created' time (default: its newest event)",
    )
    camtrap.add_argument("--title", default="Snow leopard camera traps (uncia network)", help="project title")
    camtrap.add_argument(
        "--contributor",
        action="append",
        default=[],
        metavar="NAME",
        help="a contact person or organisation; repeatable",
    )
    camtrap.add_argument(
        "--copy-images",
        action="store_true",
        help="copy the full images the station holds into media/ of the package",
    )
    camtrap.set_defaults(func=run)

    geojson = formats.add_parser(
        "geojson",
        parents=[common, animals],
        help="collar tracks and camera sites for a GIS",
        description="Write one GeoJSON FeatureCollection (RFC 7946) to --out FILE.",
    )
    geojson.add_argument("--out", type=Path, required=True, metavar="FILE", help="the .geojson file to write")
    geojson.add_argument(
        "--points", action="store_true", help="add every fix as a point, not only the tracks"
    )
    geojson.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    name = f"uncia export {args.format}"
    try:
        filters = ExportFilter(
            since=args.since, until=args.until, collars=tuple(args.collar), units=tuple(args.unit)
        )
        animals = AnimalRegistry.load(args.animals) if getattr(args, "animals", None) else None
    except ExportError as exc:
        return _fail(name, str(exc), EXIT_USAGE)
    try:
        record = _record_path(args)
    except ConfigError as exc:
        return _fail(name, str(exc), EXIT_CONFIG)
    try:
        with RecordReader(record) as reader:
            summary, warnings = _export(args, reader, filters, animals)
    except NothingToExport as exc:
        return _fail(name, str(exc), EXIT_FAILURE)
    except (RecordError, ExportError) as exc:
        return _fail(name, str(exc), EXIT_FAILURE)
    for warning in warnings:
        print(f"{name}: warning: {warning}", file=sys.stderr)
    print(summary)
    return EXIT_OK


def _record_path(args: argparse.Namespace) -> Path:
    if args.record is not None:
        return args.record
    config = load_config(args.config)
    if config.station is None:
        raise ConfigError(
            "station",
            None,
            f"a [station] section naming the record (or use --record FILE instead of -c {args.config})",
        )
    return Path(config.station.record)


def _export(
    args: argparse.Namespace, reader: RecordReader, filters: ExportFilter, animals: AnimalRegistry | None
) -> tuple[str, list[str]]:
    if args.format == "movebank":
        with _progress("fixes", filters.count_fixes(reader)) as advance:
            mb = export_movebank(
                reader, args.out, filters=filters, animals=animals, max_speed=args.max_speed, progress=advance
            )
        return (
            f"{mb.fixes:,} fixes of {len(mb.tags)} collar(s), {mb.outliers:,} flagged as outliers"
            + (f", {mb.duplicates:,} duplicate receptions dropped" if mb.duplicates else "")
            + f": {mb.locations}, {mb.reference}",
            [],
        )
    if args.format == "camtrap-dp":
        with _progress("captures", filters.count_captures(reader)) as advance:
            ct = export_camtrap(
                reader,
                args.out,
                filters=filters,
                created=args.created,
                title=args.title,
                contributors=[{"title": c, "role": "contact"} for c in args.contributor] or None,
                copy_images=args.copy_images,
                progress=advance,
            )
        warnings = list(ct.skipped)
        if args.copy_images and ct.images_not_at_station:
            warnings.append(
                f"{ct.images_not_at_station:,} image(s) are not at the station (only on the units' cards): "
                "media.csv lists them; put them under media/<unit>/ to complete the package"
            )
        copied = f", {ct.images_copied:,} images copied" if args.copy_images else ""
        return (
            f"Camtrap DP {ct.deployments} deployment(s), {ct.media:,} media, {ct.observations:,} events"
            f"{copied}: {ct.folder}",
            warnings,
        )
    with _progress("fixes", filters.count_fixes(reader)) as advance:
        gj = export_geojson(
            reader,
            args.out,
            filters=filters,
            animals=animals,
            points=args.points,
            max_speed=args.max_speed,
            progress=advance,
        )
    return f"{gj.tracks} track(s) from {gj.fixes:,} fixes, {gj.cameras} camera site(s): {gj.path}", gj.skipped


@contextlib.contextmanager
def _progress(what: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when it is a terminal and the export is long enough to wait for."""
    if not sys.stderr.isatty() or total < 2000:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(f"exporting {what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _fail(name: str, message: str, code: int) -> int:
    print(f"{name}: {message}", file=sys.stderr)
    return code
