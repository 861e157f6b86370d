"""`uncia provision`: from the site inventory to each unit's files, credentials and first-boot step."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console

from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

log = logging.getLogger("uncia.provision")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "provision",
        help="make each unit's config, credentials, udev rules, services and first-boot step",
        description=(
            "Read the site inventory, issue the MQTT credentials every unit, staff member and dashboard "
            "lacks (kept in the site state folder), and write each unit's files: into a mounted boot "
            "partition (a folder with cmdline.txt; one unit), into a folder (one sub-folder per unit), "
            "or into a .tar.gz bundle. Secrets are written 0600 and never printed. "
            "See docs/provisioning.md."
        ),
    )
    parser.add_argument(
        "inventory", type=Path, help="the site inventory (see deploy/site-inventory.example.toml)"
    )
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, metavar="DIR", help="a mounted boot partition, or a folder")
    out.add_argument("--bundle", type=Path, metavar="FILE.tar.gz", help="write one archive (mode 0600)")
    parser.add_argument(
        "--unit", action="append", metavar="ID", help="only this unit (repeat for more); default: all"
    )
    parser.add_argument(
        "--reprovision",
        action="append",
        default=[],
        metavar="ID",
        help="new credentials for this unit or person, revoking the old ones (a lost or replaced unit)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="the site state folder (CA, issued credentials); default: <inventory>.state next to it",
    )
    parser.set_defaults(func=run)


def default_state_dir(inventory: Path) -> Path:
    return inventory.with_name(inventory.stem + ".state")


def run(args: argparse.Namespace) -> int:
    from gateway.provision.bundle import BundleError, is_boot_partition, write_folder, write_tar
    from gateway.provision.credentials import CredentialError
    from gateway.provision.inventory import InventoryError, load_inventory
    from gateway.provision.plan import ProvisionError, provision
    from gateway.provision.site_state import SiteState

    err = Console(stderr=True, highlight=False)
    try:
        inventory = load_inventory(args.inventory)
        state = SiteState.open(args.state or default_state_dir(args.inventory), inventory.site.name)
        result = provision(inventory, state, units=args.unit, reprovision=args.reprovision)
    except (InventoryError, ProvisionError, CredentialError) as exc:
        print(f"uncia provision: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    trees = result.trees
    if args.out is not None and is_boot_partition(args.out):
        skipped = [t.name for t in trees if not t.boot]
        trees = [t for t in trees if t.boot]
        if skipped:
            result.notes.append(
                f"not written onto a unit's card: {', '.join(skipped)} (run again with --bundle or --out FOLDER)"
            )
        if len(trees) != 1:
            names = ", ".join(t.name for t in trees)
            print(
                f"uncia provision: {args.out} is a boot partition and takes one unit, but this run makes "
                f"{names}. Credentials changed: first write them all to a folder or bundle "
                f"(--bundle site.tar.gz), then flash each card with --unit ID.",
                file=sys.stderr,
            )
            return EXIT_CONFIG

    # The state goes to disk first: if writing the output fails, the next run makes the same bundles.
    try:
        state.save()
    except OSError as exc:
        print(f"uncia provision: cannot save the site state in {state.dir}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    for name in result.retired:
        log.info("revoked %s: no longer in the inventory", name)
    for name in result.revoked:
        log.info("revoked the old credentials of %s", name)
    for name in result.issued:
        log.info("issued credentials for %s", name)

    try:
        if args.bundle is not None:
            written = [write_tar(args.bundle, trees, console=err)]
        else:
            written = write_folder(args.out, trees, console=err)
    except BundleError as exc:
        print(f"uncia provision: {exc}", file=sys.stderr)
        return EXIT_FAILURE

    print(f"site {inventory.site.name}: state in {state.dir} (keep it safe and backed up)")
    for tree in trees:
        secrets = sum(1 for f in tree.files if f.secret)
        print(f"  {tree.name}: {len(tree.files)} files, {secrets} secret (mode 0600)")
    print("written: " + ", ".join(str(p) for p in written))
    for label, names in (("issued", result.issued), ("revoked", result.revoked), ("retired", result.retired)):
        if names:
            print(f"{label}: {', '.join(names)}")
    for note in result.notes:
        print(f"note: {note}")
    return EXIT_OK
