"""The station broker's access list: who may read and write which topics (Mosquitto ``acl_file``).

The rules (docs/topics.md, docs/provisioning.md):

- a unit U writes only under ``uncia/<site>/U/#`` and reads only its commands
  ``uncia/<site>/U/unit/command/+`` (a paired camera also reads its partner's pair triggers);
- the gateway (station hub) reads the whole site and the bridge's link state
  (``$SYS/broker/connection/#``), writes under its own topics, the units' command topics and the
  coarsened public feed ``uncia-shared/<site>/#``;
- staff read the whole site (exact positions) and write only the hub's request topics;
- dashboards read only the coarsened feed: exact collar positions are what a poacher wants.

Every identity gets its own ``user`` block, and no ``pattern`` lines are written: Mosquitto applies a
pattern to *every* authenticated user, so ``pattern write uncia/<site>/%u/#`` would also let a staff
or dashboard identity publish under ``uncia/<site>/<its name>/`` and pose as a unit the hub would
register. Explicit blocks grant nothing that is not listed. Anything not granted is denied.
"""

from __future__ import annotations

from gateway.provision.inventory import Inventory, Unit

SHARED_PREFIX = "uncia-shared"


def unit_rules(site: str, unit: Unit, gateway: str) -> list[str]:
    """The ``topic`` lines of one unit."""
    own = f"uncia/{site}/{unit.id}"
    if unit.id == gateway:
        return [
            f"topic read uncia/{site}/#",
            f"topic write {own}/#",
            f"topic write uncia/{site}/+/unit/command/+",
            f"topic write {SHARED_PREFIX}/{site}/#",
            # the bridge's link state (docs/bridge.md), shown to staff by the hub
            "topic read $SYS/broker/connection/#",
        ]
    rules = [f"topic write {own}/#", f"topic read {own}/unit/command/+"]
    if unit.pair_with:
        rules.append(f"topic read uncia/{site}/{unit.pair_with}/+/event/pair_trigger")
    return rules


def staff_rules(site: str, gateway: str) -> list[str]:
    return [f"topic read uncia/{site}/#", f"topic write uncia/{site}/{gateway}/station/command/+"]


def dashboard_rules(site: str) -> list[str]:
    return [f"topic read {SHARED_PREFIX}/{site}/#"]


def render_acl(inventory: Inventory) -> str:
    site, gateway = inventory.site.name, inventory.gateway.id
    out = [
        f"# Mosquitto ACL of site {site}: written by `uncia provision` from the site inventory.",
        "# Do not edit: provision again. One block per identity; anything not listed is denied.",
        "# No `pattern` lines: a pattern applies to every user, staff and dashboards included.",
    ]
    blocks: list[tuple[str, str, list[str]]] = []
    blocks += [(u.id, f"{u.role} unit", unit_rules(site, u, gateway)) for u in inventory.units]
    blocks += [(s, "staff: exact positions", staff_rules(site, gateway)) for s in inventory.staff]
    blocks += [(d, "dashboard: coarsened feed only", dashboard_rules(site)) for d in inventory.dashboards]
    for name, what, rules in blocks:
        out += ["", f"# {name} ({what})", f"user {name}", *rules]
    return "\n".join(out) + "\n"
