"""The MQTT topic scheme: ``uncia/<site>/<unit>/<entity>/<event|state|command>/<type>``.

Modelled on ChirpStack (``application/<id>/device/<eui>/event/up``) and zigbee2mqtt
(``<base>/bridge/state``): the device first, then what kind of traffic (an *event* that happened, a
*state* that is true now, a *command* asking for something), then its type. A station technician
can read a topic aloud: "Helan, gateway 1, GPS 0, event, fix".

- ``<entity>`` is a source on the unit (``gps0``, a serial name from the config) or ``unit`` for the
  unit itself.
- ``event`` topics carry a stream (every fix, every raw sentence); never retained.
- ``state`` topics carry the latest truth (availability, health); retained, so a subscriber that
  connects later sees it at once.
- ``command`` topics are requests to the unit; the reply goes to ``<command topic>/response``.

docs/topics.md lists every topic with payload, QoS and retain flag.
"""

from __future__ import annotations

import re
from typing import NamedTuple

PREFIX = "uncia"
EVENT, STATE, COMMAND = "event", "state", "command"
KINDS = (EVENT, STATE, COMMAND)
UNIT_ENTITY = "unit"

# Same alphabet as config names: a segment must never contain MQTT wildcards or separators.
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class TopicError(ValueError):
    """A topic segment or a whole topic does not follow the uncia scheme."""


def _check(what: str, value: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise TopicError(
            f"{what} {value!r} cannot be used in an MQTT topic: use lowercase letters, digits, '-' or '_'"
        )
    return value


class TopicParts(NamedTuple):
    """A topic taken apart: ``uncia/helan/gw-01/gps0/event/fix`` → site, unit, entity, kind, type."""

    site: str
    unit: str
    entity: str
    kind: str
    type: str
    response: bool = False


class Topics:
    """All topics of one unit, e.g. ``Topics("helan", "gw-01").fix("gps0")``.

    Publishers call the per-topic methods; subscribers (the gateway, tests) use the wildcard helpers
    and `parse`.
    """

    __slots__ = ("base", "site", "unit")

    def __init__(self, site: str, unit: str) -> None:
        self.site = _check("site", site)
        self.unit = _check("unit id", unit)
        self.base = f"{PREFIX}/{site}/{unit}"

    def __repr__(self) -> str:
        return f"Topics({self.site!r}, {self.unit!r})"

    # -- generic builders -------------------------------------------------------------------------
    def event(self, entity: str, type_: str) -> str:
        return f"{self.base}/{_check('entity', entity)}/{EVENT}/{_check('event type', type_)}"

    def state(self, entity: str, type_: str) -> str:
        return f"{self.base}/{_check('entity', entity)}/{STATE}/{_check('state type', type_)}"

    # -- the topics in use ------------------------------------------------------------------------
    def fix(self, source: str) -> str:
        """One merged position fix from `source` (JSON envelope, type ``fix``)."""
        return self.event(source, "fix")

    def raw(self, source: str) -> str:
        """Raw NMEA sentences from `source`, for diagnosis (JSON envelope, type ``raw``)."""
        return self.event(source, "raw")

    def availability(self) -> str:
        """Retained ``online`` / ``offline`` (the broker publishes ``offline`` as our last will)."""
        return self.state(UNIT_ENTITY, "availability")

    def health(self) -> str:
        """Retained periodic health report of the unit (JSON envelope, type ``health``)."""
        return self.state(UNIT_ENTITY, "health")

    def command(self, name: str) -> str:
        """A request to the unit, e.g. ``command/restart``."""
        return f"{self.base}/{UNIT_ENTITY}/{COMMAND}/{_check('command', name)}"

    def command_response(self, name: str) -> str:
        return self.command(name) + "/response"

    # -- subscriptions ----------------------------------------------------------------------------
    def all(self) -> str:
        """Everything this unit publishes or receives."""
        return f"{self.base}/#"

    def all_fixes(self) -> str:
        """Fixes from every source of this unit."""
        return f"{self.base}/+/{EVENT}/fix"

    def all_commands(self) -> str:
        """Commands addressed to this unit (what the unit subscribes to); excludes responses."""
        return f"{self.base}/{UNIT_ENTITY}/{COMMAND}/+"

    @staticmethod
    def site_wildcard(site: str, entity: str = "+", kind: str = "+", type_: str = "+") -> str:
        """A filter over every unit of a site, e.g. ``site_wildcard("helan", kind="event", type_="fix")``."""
        site = site if site == "+" else _check("site", site)
        return f"{PREFIX}/{site}/+/{entity}/{kind}/{type_}"

    @staticmethod
    def parse(topic: str) -> TopicParts:
        """Take an uncia topic apart; `TopicError` names what is wrong with a foreign topic."""
        parts = topic.split("/")
        response = len(parts) == 7 and parts[6] == "response"
        if response:
            parts = parts[:6]
        if len(parts) != 6 or parts[0] != PREFIX:
            raise TopicError(
                f"topic {topic!r} is not of the form {PREFIX}/<site>/<unit>/<entity>/<kind>/<type>"
            )
        _, site, unit, entity, kind, type_ = parts
        if kind not in KINDS:
            raise TopicError(f"topic {topic!r}: '{kind}' is not one of {', '.join(KINDS)}")
        for what, value in (("site", site), ("unit id", unit), ("entity", entity), ("type", type_)):
            _check(what, value)
        if response and kind != COMMAND:
            raise TopicError(f"topic {topic!r}: only command topics have a /response")
        return TopicParts(site, unit, entity, kind, type_, response)
