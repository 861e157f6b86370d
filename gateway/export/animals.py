"""Which animal wore which collar, and when: the deployments file.

Movebank separates the tag (the collar) from the individual (the snow leopard) and links them by
deployments. The station only knows collars, so the person exporting may give a deployments file,
a CSV with Movebank's own reference-data column names, one row per collar fitting::

    tag-id,animal-id,deploy-on-date,deploy-off-date,animal-sex,animal-nickname,animal-life-stage,deployment-comments
    collar-7,PU-F03,2026-03-02,,f,Dolma,adult,"collared at Hoton valley"
    collar-9,PU-M01,2025-11-10T06:30:00Z,2026-09-01,m,,adult,drop-off

``tag-id`` and ``animal-id`` are required; dates are ISO 8601 (UTC when no offset is given; an empty
``deploy-off-date`` means still on the animal); ``animal-taxon`` defaults to *Panthera uncia*. A collar
refitted to another animal has one row per fitting. A fix is the deployed animal's when
``deploy-on-date <= time < deploy-off-date``; a fix of a collar with fittings but outside all of
them (on the bench, after a drop-off) has no individual. A collar missing from the file (or no file)
is its own individual: ``individual-local-identifier`` = the collar id.
"""

from __future__ import annotations

import csv
import itertools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gateway.export.filters import ExportError, collar_track, parse_time

TAXON = "Panthera uncia"

REQUIRED = ("tag-id", "animal-id")
OPTIONAL = (
    "deploy-on-date",
    "deploy-off-date",
    "animal-taxon",
    "animal-sex",
    "animal-nickname",
    "animal-life-stage",
    "deployment-comments",
)


@dataclass(frozen=True)
class Deployment:
    """One collar on one animal (Movebank reference data); times in UNIX seconds, None = open."""

    tag: str
    animal: str
    on: float | None = None
    off: float | None = None
    taxon: str = TAXON
    sex: str = ""
    nickname: str = ""
    life_stage: str = ""
    comments: str = ""

    def covers(self, time: float) -> bool:
        return (self.on is None or time >= self.on) and (self.off is None or time < self.off)


class AnimalRegistry:
    """The deployments, by collar. An empty registry makes every collar its own individual."""

    def __init__(self, deployments: list[Deployment] | tuple[Deployment, ...] = ()) -> None:
        self._by_tag: dict[str, list[Deployment]] = defaultdict(list)
        for item in deployments:
            self._by_tag[item.tag].append(item)
        for tag, items in self._by_tag.items():
            items.sort(key=lambda d: (d.on if d.on is not None else float("-inf"), d.animal))
            for earlier, later in itertools.pairwise(items):
                if earlier.off is None or (later.on is not None and later.on < earlier.off):
                    raise ExportError(
                        f"deployments of {tag} overlap ({earlier.animal} and {later.animal}): give the "
                        "first one a deploy-off-date before the next deploy-on-date"
                    )

    @classmethod
    def load(cls, path: str | Path) -> AnimalRegistry:
        """Read a deployments CSV (see the module notes); errors name the file, line and column."""
        path = Path(path)
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
                header = rows[0].keys() if rows else []
        except OSError as exc:
            raise ExportError(f"cannot read the deployments file {path} ({exc.strerror or exc})") from exc
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise ExportError(
                f"{path}: unknown column {unknown[0]!r}; the columns are {', '.join(REQUIRED + OPTIONAL)}"
            )
        items = []
        for line, row in enumerate(rows, start=2):
            for column in REQUIRED:
                if not (row.get(column) or "").strip():
                    raise ExportError(f"{path} line {line}: {column} is empty")
            items.append(
                Deployment(
                    tag=collar_track(row["tag-id"]),
                    animal=row["animal-id"].strip(),
                    on=_time(path, line, "deploy-on-date", row.get("deploy-on-date")),
                    off=_time(path, line, "deploy-off-date", row.get("deploy-off-date")),
                    taxon=(row.get("animal-taxon") or "").strip() or TAXON,
                    sex=(row.get("animal-sex") or "").strip(),
                    nickname=(row.get("animal-nickname") or "").strip(),
                    life_stage=(row.get("animal-life-stage") or "").strip(),
                    comments=(row.get("deployment-comments") or "").strip(),
                )
            )
        try:
            return cls(items)
        except ExportError as exc:
            raise ExportError(f"{path}: {exc}") from None

    def knows(self, track: str) -> bool:
        return track in self._by_tag

    def tracks(self) -> list[str]:
        return sorted(self._by_tag)

    def individual(self, track: str, time: float) -> str:
        """Whose fix this is: the deployed animal, the collar itself (no fittings known) or ``""``."""
        items = self._by_tag.get(track)
        if not items:
            return track
        for item in items:
            if item.covers(time):
                return item.animal
        return ""

    def deployments(self, track: str) -> list[Deployment]:
        """The fittings of `track`, or one open deployment on the collar itself if none is known."""
        return list(self._by_tag.get(track) or [Deployment(tag=track, animal=track)])


def _time(path: Path, line: int, column: str, text: str | None) -> float | None:
    if not text or not text.strip():
        return None
    try:
        return parse_time(text)
    except ExportError as exc:
        raise ExportError(f"{path} line {line}, {column}: {exc}") from None
