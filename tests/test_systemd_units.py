"""The systemd units and the journald drop-in in deploy/: systemd's own checker, then our rules.

`systemd-analyze verify` exits 0 for unknown keys and unparsable values (it only warns), so every
line it prints counts as a failure here unless it is on the short list of known-harmless ones
below. The units are checked as temporary copies whose ExecStart points at a binary that exists on
this machine (the real one, /opt/uncia/venv/bin/uncia, exists only on a provisioned unit).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import CameraSettings
from uncia.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
UNITS = {
    "gateway": REPO / "deploy/systemd/uncia-gateway.service",
    "camera": REPO / "deploy/systemd/uncia-camera.service",
}
JOURNALD = REPO / "deploy/journald/uncia.conf"
AGENT = "/opt/uncia/venv/bin/uncia"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")

# What `systemd-analyze verify` may print without it being our fault:
HARMLESS = (
    # pinctrl ships only with Raspberry Pi OS; the camera unit's ExecStopPost is `-`-prefixed anyway.
    re.compile(r"Command /usr/bin/pinctrl is not executable"),
)


def _harmless(line: str, unit_name: str) -> bool:
    # Warnings about the host's own units (loaded as our dependencies, e.g. network-online.target)
    # say nothing about ours.
    return unit_name not in line or any(p.search(line) for p in HARMLESS)


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; repeated keys (DeviceAllow=) kept."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def values(entries: list[tuple[str, str, str]], key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in entries if s == section and k == key]


def one(entries: list[tuple[str, str, str]], key: str, section: str = "Service") -> str:
    found = values(entries, key, section)
    assert len(found) == 1, f"[{section}] {key}= should be set exactly once, found {found}"
    return found[0]


def seconds(value: str) -> float:
    """A systemd time span: "60", "60s", "1min", "5m", "1min 30s"."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def verify(unit_file: Path, tmp_path: Path) -> list[str]:
    """`systemd-analyze verify` on a copy with a runnable ExecStart; the lines that are problems."""
    copy = tmp_path / unit_file.name
    text = unit_file.read_text()
    assert AGENT in text
    copy.write_text(text.replace(AGENT, sys.executable))
    result = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    problems = [line for line in lines if not _harmless(line, unit_file.name)]
    if result.returncode != 0 and not problems:
        problems = [f"exit code {result.returncode}: {lines}"]
    return problems


@needs_analyze
@pytest.mark.parametrize("role", UNITS)
def test_systemd_analyze_verify_is_clean(role: str, tmp_path: Path) -> None:
    assert verify(UNITS[role], tmp_path) == []


@needs_analyze
def test_verify_check_catches_what_systemd_only_warns_about(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key and a bad value are caught."""
    broken = tmp_path / "src" / "uncia-gateway.service"
    broken.parent.mkdir()
    text = UNITS["gateway"].read_text().replace("ProtectHome=true", "ProtectHome=true\nProtectHomes=true")
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    problems = verify(broken, tmp_path)
    assert any("ProtectHomes" in p for p in problems)
    assert any("stricter" in p for p in problems)


@needs_analyze
@pytest.mark.parametrize("role", UNITS)
def test_exposure_stays_low(role: str, tmp_path: Path) -> None:
    """systemd's own score of the sandbox (0 = locked down, 10 = none): keep it at "OK" (<= 3)."""
    help_text = subprocess.run([ANALYZE, "security", "--help"], capture_output=True, text=True).stdout
    if "--offline" not in help_text:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    copy = tmp_path / UNITS[role].name
    copy.write_text(UNITS[role].read_text().replace(AGENT, sys.executable))
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--threshold=30", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, f"exposure above 3.0: {last}"


@pytest.mark.parametrize("role", UNITS)
def test_notify_watchdog_restart_and_start_limit(role: str) -> None:
    unit = parse_unit(UNITS[role].read_text())
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    watchdog = seconds(one(unit, "WatchdogSec"))
    assert 10 <= watchdog <= 300, "pinged at half of it; too short restarts a unit stalled by its SD card"
    assert one(unit, "Restart") == "on-failure"
    assert seconds(one(unit, "RestartSec")) >= 1
    # Never permanently failed: no start limit at all.
    assert one(unit, "StartLimitIntervalSec", "Unit") == "0"
    assert not values(unit, "StartLimitBurst", "Unit") and not values(unit, "StartLimitAction", "Unit")
    assert seconds(one(unit, "TimeoutStopSec")) > 10  # the relay's 5 s drain plus the workers' joins


@pytest.mark.parametrize("role", UNITS)
def test_dedicated_user_with_only_its_device_groups(role: str) -> None:
    unit = parse_unit(UNITS[role].read_text())
    assert one(unit, "User") == "uncia" and one(unit, "Group") == "uncia"
    groups = set(one(unit, "SupplementaryGroups").split())
    allowed = {"gateway": {"dialout", "gpio"}, "camera": {"dialout", "gpio", "video"}}[role]
    assert groups <= allowed and "dialout" in groups
    assert one(unit, "CapabilityBoundingSet") == ""
    assert one(unit, "NoNewPrivileges") == "true"
    # Each of these would cut the agent off from its own devices or clock check (see the comments).
    for key in ("PrivateUsers", "PrivateDevices", "ProtectClock", "DynamicUser"):
        assert values(unit, key) in ([], ["false"]), f"{key}= breaks device access here"


@pytest.mark.parametrize("role", UNITS)
def test_file_system_hardening(role: str) -> None:
    unit = parse_unit(UNITS[role].read_text())
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "ProtectKernelTunables": "true",
        "ProtectKernelModules": "true",
        "ProtectKernelLogs": "true",
        "ProtectControlGroups": "true",
        "RestrictNamespaces": "true",
        "RestrictSUIDSGID": "true",
        "LockPersonality": "true",
        "StateDirectory": "uncia",
        "WorkingDirectory": "/var/lib/uncia",  # lgpio's notification pipe goes in the cwd
    }
    for key, value in expected.items():
        assert one(unit, key) == value, key
    assert "/var/lib/uncia" in one(unit, "ReadWritePaths").split()
    # Every default data path of the config lives where the agent may write.
    assert CameraSettings(lat=0.0, lon=0.0).image_dir.startswith("/var/lib/uncia/")


@pytest.mark.parametrize("role", UNITS)
def test_sockets_and_system_calls(role: str) -> None:
    unit = parse_unit(UNITS[role].read_text())
    families = set(one(unit, "RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    filters = " ".join(values(unit, "SystemCallFilter")).split()
    # edge/clock.py reads the sync state with adjtimex(2), which @system-service leaves out.
    assert "@system-service" in filters and "adjtimex" in filters
    assert one(unit, "SystemCallErrorNumber") == "EPERM"  # a refused call fails, it does not kill


def test_gateway_device_allow_list_covers_serial_and_gpio() -> None:
    unit = parse_unit(UNITS["gateway"].read_text())
    assert one(unit, "DevicePolicy") == "closed"
    allowed = {v.split()[0] for v in values(unit, "DeviceAllow")}
    assert {"char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-ttyS", "char-gpiochip"} <= allowed
    assert all(v.split()[1:] == ["rw"] for v in values(unit, "DeviceAllow"))


@pytest.mark.parametrize("role", UNITS)
def test_exec_start_is_a_valid_uncia_command_line(role: str) -> None:
    unit = parse_unit(UNITS[role].read_text())
    argv = one(unit, "ExecStart").split()
    assert argv[0] == AGENT
    args = build_parser().parse_args(argv[1:])
    assert args.command == role and str(args.config) == f"/etc/uncia/{role}.toml"


def test_camera_lamp_pin_driven_low_after_any_exit() -> None:
    unit = parse_unit(UNITS["camera"].read_text())
    (post,) = values(unit, "ExecStopPost")
    default_pin = CameraSettings(lat=0.0, lon=0.0).illuminator_pin
    assert post == f"-/usr/bin/pinctrl set {default_pin} op dl"


JOURNALD_KEYS = {
    "Storage", "Compress", "Seal", "SplitMode", "SyncIntervalSec", "RateLimitIntervalSec",
    "RateLimitBurst", "SystemMaxUse", "SystemKeepFree", "SystemMaxFileSize", "SystemMaxFiles",
    "RuntimeMaxUse", "RuntimeKeepFree", "RuntimeMaxFileSize", "RuntimeMaxFiles", "MaxRetentionSec",
    "MaxFileSec", "ForwardToSyslog", "ForwardToKMsg", "ForwardToConsole", "ForwardToWall",
    "MaxLevelStore", "MaxLevelSyslog", "MaxLevelKMsg", "MaxLevelConsole", "MaxLevelWall",
    "ReadKMsg", "Audit", "TTYPath", "LineMax",
}  # fmt: skip


def megabytes(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"K": 1 / 1024, "M": 1, "G": 1024, "": 1 / 1024 / 1024}[unit]


def test_journald_drop_in_suits_an_sd_card() -> None:
    entries = parse_unit(JOURNALD.read_text())
    assert {s for s, _, _ in entries} == {"Journal"}
    keys = [k for _, k, _ in entries]
    assert set(keys) <= JOURNALD_KEYS, f"unknown journald keys: {set(keys) - JOURNALD_KEYS}"
    assert len(keys) == len(set(keys)), "a key set twice"
    conf = {k: v for _, k, v in entries}
    assert conf["Storage"] in ("persistent", "volatile")
    assert megabytes(conf["SystemMaxUse"]) <= 128 and megabytes(conf["RuntimeMaxUse"]) <= 32
    assert megabytes(conf["SystemMaxFileSize"]) * 4 <= megabytes(conf["SystemMaxUse"])  # rotates whole files
    assert conf["Compress"] == "yes" and conf["ForwardToSyslog"] == "no"
    assert 0 < int(conf["RateLimitBurst"]) <= 10_000 and seconds(conf["RateLimitIntervalSec"]) > 0
    assert conf["MaxLevelStore"] in ("info", "notice", "warning")
