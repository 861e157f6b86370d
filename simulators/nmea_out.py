"""NMEA 0183 sentences as a real GNSS receiver would send them for a `TrackPoint`.

Pure functions, no I/O. Output follows NMEA 0183 v4.1 as u-blox and Chinese BDS modules emit it:
RMC/GNS carry the navigational-status field, GSA the system ID, GSV the signal ID. Sentences are
hand-written rather than built with pynmea2 because we need exact control over field widths, empty
fields and talker IDs (pynmea2 is used in the tests to check every sentence we make).

Precision: latitude/longitude go out as ddmm.mmmmm / dddmm.mmmmm (5 decimals of a minute), so a
decoded position is within `LATLON_PRECISION_DEG` (8.4e-8 degrees, about 1 cm) of the track; times
are hhmmss.ss (truncated to 10 ms). `render_epoch` also returns the `Fix` those characters say, so a
test can compare an agent's output against exactly what went onto the wire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from edge.fix import Fix
from simulators.track import TrackPoint

LATLON_DECIMALS = 5
# Half a unit in the last place of the minutes, in degrees.
LATLON_PRECISION_DEG = 0.5 * 10.0**-LATLON_DECIMALS / 60.0 + 1e-12
KNOT_MPS = 1852.0 / 3600.0
# EGM96 geoid undulation is about -30 m over the Helan range; receivers report it in GGA/GNS.
GEOID_SEP_M = -30.0


def checksum(body: str) -> str:
    """The two-hex-digit XOR of every character between ``$`` and ``*``."""
    value = 0
    for byte in body.encode("ascii"):
        value ^= byte
    return f"{value:02X}"


def frame(body: str) -> bytes:
    """``$<body>*<checksum>\\r\\n`` as bytes on the wire."""
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def _ddmm(value: float, width: int) -> str:
    magnitude = abs(value)
    degrees = int(magnitude)
    minutes = round((magnitude - degrees) * 60.0, LATLON_DECIMALS)
    if minutes >= 60.0:  # 59.999996' rounds up to the next whole degree
        degrees, minutes = degrees + 1, 0.0
    return f"{degrees:0{width}d}{minutes:0{3 + LATLON_DECIMALS}.{LATLON_DECIMALS}f}"


def format_lat(lat: float) -> tuple[str, str]:
    """(``ddmm.mmmmm``, ``N``/``S``)."""
    return _ddmm(lat, 2), "N" if lat >= 0 else "S"


def format_lon(lon: float) -> tuple[str, str]:
    """(``dddmm.mmmmm``, ``E``/``W``)."""
    return _ddmm(lon, 3), "E" if lon >= 0 else "W"


def decode_ddmm(text: str, hemisphere: str) -> float:
    """Degrees from ``ddmm.mmmmm``/``dddmm.mmmmm`` and N/S/E/W, computed the way pynmea2 does."""
    head = text.index(".") - 2
    value = float(text[:head]) + float(text[head:]) / 60.0
    return -value if hemisphere in ("S", "W") else value


def wire_time(moment: datetime) -> datetime:
    """`moment` in UTC truncated to the 10 ms an ``hhmmss.ss`` field can carry."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 10_000)


def _hhmmss(moment: datetime) -> str:
    return f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}.{moment.microsecond // 10_000:02d}"


# --- the sky: which satellites a receiver in the Helan range sees ------------------------------------


@dataclass(frozen=True, slots=True)
class System:
    """One GNSS constellation: its NMEA 4.1 system ID, PRN numbers, orbit period and signal ID."""

    name: str
    system_id: int
    prns: tuple[int, ...]
    period_s: float
    signal_id: str


GPS = System("GPS", 1, tuple(range(1, 33)), 43_082.0, "1")
GLONASS = System("GLONASS", 2, tuple(range(65, 89)), 40_544.0, "1")
GALILEO = System("Galileo", 3, tuple(range(1, 31)), 50_680.0, "7")
BEIDOU = System("BeiDou", 4, tuple(range(1, 38)), 46_404.0, "1")
# BeiDou GEO satellites hang still in the sky over China: (prn, elevation, azimuth) from ~106°E.
_BEIDOU_GEO = {1: (49, 183), 2: (22, 235), 3: (53, 168), 4: (34, 129), 5: (21, 248)}
_SKY_BUCKET_S = 30  # the sky changes slowly; recompute it every 30 s of simulated time


@dataclass(frozen=True, slots=True)
class Satellite:
    prn: int
    elevation: int
    azimuth: int
    snr: int
    used: bool


def sky(system: System, moment: datetime) -> tuple[Satellite, ...]:
    """Satellites of `system` above 5° at `moment`, by PRN; deterministic in time, no randomness."""
    return _sky(system, int(moment.timestamp()) // _SKY_BUCKET_S)


@lru_cache(maxsize=256)
def _sky(system: System, bucket: int) -> tuple[Satellite, ...]:
    t = bucket * _SKY_BUCKET_S
    count = len(system.prns)
    out = []
    for i, prn in enumerate(system.prns):
        if system is BEIDOU and prn in _BEIDOU_GEO:
            elevation, azimuth = _BEIDOU_GEO[prn]
        else:
            # Satellites spread over three orbital planes; about 40 % are above the horizon.
            phase = i / count + 0.37 * (i % 3)
            rise = math.sin(2.0 * math.pi * (t / system.period_s + phase)) - 0.2
            if rise <= 0.0:
                continue
            # Linear in the pass's angle, skewed low: like the real sky, most satellites sit low.
            elevation = round(90.0 * (math.asin(rise / 0.8) / (math.pi / 2)) ** 1.4)
            azimuth = round(360.0 * ((i * 0.618034 + t / (2.0 * system.period_s)) % 1.0)) % 360
        if elevation < 5:
            continue
        snr = round(20.0 + 28.0 * math.sqrt(math.sin(math.radians(elevation))))
        out.append(Satellite(prn, elevation, azimuth, snr, used=elevation >= 10 and snr >= 30))
    return tuple(out)


# --- receiver profiles ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """What one receiver type emits each epoch: position sentences with one talker, then per-system
    GSA (and GSV, if `gsv`) with per-system talkers."""

    name: str
    talker: str
    sentences: tuple[str, ...]
    systems: tuple[tuple[str, System], ...]
    gsv: bool
    description: str


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("gp-basic", "GP", ("GGA", "RMC"), (("GP", GPS),), False, "GPS only: GGA, RMC, GSA"),
        Profile(
            "gp-full",
            "GP",
            ("GGA", "RMC", "GLL", "VTG"),
            (("GP", GPS),),
            True,
            "GPS only, older u-blox default set",
        ),
        Profile(
            "gn-multi",
            "GN",
            ("GGA", "RMC", "GNS", "VTG", "ZDA"),
            (("GP", GPS), ("GL", GLONASS), ("GA", GALILEO), ("BD", BEIDOU)),
            True,
            "GPS+GLONASS+Galileo+BeiDou, combined GN position sentences",
        ),
        Profile(
            "bd", "BD", ("GGA", "RMC", "GLL", "VTG", "ZDA"), (("BD", BEIDOU),), True, "BeiDou only, BD talker"
        ),
        Profile(
            "bd-gb",
            "GB",
            ("GGA", "RMC", "GLL", "VTG", "ZDA"),
            (("GB", BEIDOU),),
            True,
            "BeiDou only, NMEA 4.11 GB talker",
        ),
    )
}


def get_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown receiver profile {profile!r}; known profiles: {known}") from None


# --- sentences ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Epoch:
    """The characters shared by several sentences of one epoch, formatted once."""

    time: str
    date: datetime
    lat: str
    ns: str
    lon: str
    ew: str
    alt: str
    knots: str
    kmh: str
    course: str
    sats: str
    hdop: str
    fix: bool


def _epoch_fields(point: TrackPoint, fix: bool, sats: int, hdop: float) -> _Epoch:
    moment = wire_time(point.time)
    lat, ns = format_lat(point.lat)
    lon, ew = format_lon(point.lon)
    course = round(point.course_deg % 360.0, 2) % 360.0
    return _Epoch(
        time=_hhmmss(moment),
        date=moment,
        lat=lat,
        ns=ns,
        lon=lon,
        ew=ew,
        alt=f"{point.alt:.1f}",
        knots=f"{point.speed_mps / KNOT_MPS:.3f}",
        kmh=f"{point.speed_mps * 3.6:.1f}",
        course=f"{course:.2f}",
        sats=f"{min(sats, 99):02d}",
        hdop=f"{hdop:.2f}",
        fix=fix,
    )


def _gga(t: str, e: _Epoch, quality: int) -> str:
    if not e.fix:
        return f"{t}GGA,{e.time},,,,,0,00,99.99,,,,,,"
    where = f"{e.lat},{e.ns},{e.lon},{e.ew}"
    return f"{t}GGA,{e.time},{where},{quality},{e.sats},{e.hdop},{e.alt},M,{GEOID_SEP_M:.1f},M,,"


def _rmc(t: str, e: _Epoch) -> str:
    date = f"{e.date.day:02d}{e.date.month:02d}{e.date.year % 100:02d}"
    if not e.fix:
        return f"{t}RMC,{e.time},V,,,,,,,{date},,,N,V"
    return f"{t}RMC,{e.time},A,{e.lat},{e.ns},{e.lon},{e.ew},{e.knots},{e.course},{date},,,A,V"


def _gll(t: str, e: _Epoch) -> str:
    if not e.fix:
        return f"{t}GLL,,,,,{e.time},V,N"
    return f"{t}GLL,{e.lat},{e.ns},{e.lon},{e.ew},{e.time},A,A"


def _gns(t: str, e: _Epoch, modes: str) -> str:
    if not e.fix:
        return f"{t}GNS,{e.time},,,,,{'N' * len(modes)},00,99.99,,,,,V"
    where = f"{e.lat},{e.ns},{e.lon},{e.ew}"
    return f"{t}GNS,{e.time},{where},{modes},{e.sats},{e.hdop},{e.alt},{GEOID_SEP_M:.1f},,,V"


def _vtg(t: str, e: _Epoch) -> str:
    if not e.fix:
        return f"{t}VTG,,T,,M,,N,,K,N"
    return f"{t}VTG,{e.course},T,,M,{e.knots},N,{e.kmh},K,A"


def _zda(t: str, e: _Epoch) -> str:
    return f"{t}ZDA,{e.time},{e.date:%d},{e.date:%m},{e.date:%Y},00,00"


def _gsa(t: str, system: System, used: list[int], fix: bool, dops: tuple[float, float, float]) -> str:
    ids = [f"{prn:02d}" for prn in used[:12]] + [""] * (12 - min(12, len(used)))
    if not fix:
        return f"{t}GSA,A,1,{',' * 11},99.99,99.99,99.99,{system.system_id}"
    pdop, hdop, vdop = dops
    return f"{t}GSA,A,3,{','.join(ids)},{pdop:.2f},{hdop:.2f},{vdop:.2f},{system.system_id}"


def _gsv(t: str, system: System, sats: tuple[Satellite, ...], fix: bool) -> list[str]:
    if not sats:
        return [f"{t}GSV,1,1,00,{system.signal_id}"]
    total = (len(sats) + 3) // 4
    out = []
    for n in range(total):
        # Without a fix a receiver still lists the sky it expects but hears no signal: SNR empty.
        blocks = [
            f"{s.prn:02d},{s.elevation:02d},{s.azimuth:03d},{f'{s.snr:02d}' if fix else ''}"
            for s in sats[4 * n : 4 * n + 4]
        ]
        out.append(f"{t}GSV,{total},{n + 1},{len(sats):02d},{','.join(blocks)},{system.signal_id}")
    return out


def _position_sentence(name: str, talker: str, e: _Epoch, quality: int, modes: str) -> str:
    if name == "GGA":
        return _gga(talker, e, quality)
    if name == "RMC":
        return _rmc(talker, e)
    if name == "GLL":
        return _gll(talker, e)
    if name == "GNS":
        return _gns(talker, e, modes)
    if name == "VTG":
        return _vtg(talker, e)
    if name == "ZDA":
        return _zda(talker, e)
    raise ValueError(f"sentence type {name!r} is not one this simulator can send")


def _dops(used: int) -> tuple[float, float, float]:
    hdop = round(max(0.5, 0.45 + 5.5 / max(used, 1)), 2)
    return round(hdop * 1.7, 2), hdop, round(hdop * 1.4, 2)


def render_epoch(
    point: TrackPoint, *, profile: str | Profile = "gn-multi", fix: bool = True, quality: int = 1
) -> tuple[list[bytes], Fix | None]:
    """One epoch's sentences for `point`, and the `Fix` they encode (None when `fix` is False).

    The Fix holds the values as a reader decodes them from the characters sent: lat/lon to 5 decimals
    of a minute, altitude to 0.1 m, speed from the RMC knots, time to 10 ms.
    """
    prof = get_profile(profile)
    skies = [(talker, system, sky(system, point.time)) for talker, system in prof.systems]
    used = [[s.prn for s in view if s.used][:12] for _, _, view in skies]
    n_used = sum(len(u) for u in used)
    dops = _dops(n_used)
    e = _epoch_fields(point, fix, n_used, dops[1])
    modes = "".join("A" if u else "N" for u in used)
    bodies = [_position_sentence(name, prof.talker, e, quality, modes) for name in prof.sentences]
    bodies += [_gsa(talker, system, u, fix, dops) for (talker, system, _), u in zip(skies, used, strict=True)]
    if prof.gsv:
        for talker, system, view in skies:
            bodies += _gsv(talker, system, view, fix)
    sentences = [frame(body) for body in bodies]
    if not fix:
        return sentences, None
    truth = Fix(
        time=e.date,
        lat=decode_ddmm(e.lat, e.ns),
        lon=decode_ddmm(e.lon, e.ew),
        quality=quality,
        alt=float(e.alt),
        speed=float(e.knots) * KNOT_MPS,
        course=float(e.course),
        sats=int(e.sats),
        hdop=float(e.hdop),
        mode=3,
        talker=prof.talker,
    )
    return sentences, truth


def epoch_sentences(
    point: TrackPoint, *, profile: str | Profile = "gn-multi", fix: bool = True, quality: int = 1
) -> list[bytes]:
    """The sentences a receiver of type `profile` sends for one epoch at `point` (see `PROFILES`)."""
    return render_epoch(point, profile=profile, fix=fix, quality=quality)[0]
