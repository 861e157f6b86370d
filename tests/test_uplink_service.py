"""The gateway's uplinks together: from the [uplink] section to data at the EarthRanger stand-in and a
digest through the emulated RockBLOCK, each uplink in its own thread."""

from __future__ import annotations

import os
import time

from gateway.station.record import FixRow, StationRecord
from gateway.uplink.digest import decode_digest
from gateway.uplink.service import Uplinks
from gateway.uplink.settings import parse_uplink
from simulators.earthranger import EarthRangerServer
from simulators.iridium import IridiumEmulator


def wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_both_uplinks_run_from_the_config_section(tmp_path):
    token = tmp_path / "er.token"
    token.write_text("tok-8c1d\n")
    os.chmod(token, 0o600)
    record = StationRecord(tmp_path / "station.sqlite3")
    now = time.time()
    for c in range(3):
        record.add_fix(
            FixRow(
                f"m{c}",
                f"collar-{c}",
                "gw-01",
                f"collar-{c}",
                None,
                now - 60,
                38.9,
                106.0 + c / 100,
                received=now,
            )
        )
    record.commit()
    with EarthRangerServer(token="tok-8c1d") as server, IridiumEmulator() as modem:
        settings = parse_uplink(
            {
                "state": str(tmp_path / "uplink.sqlite3"),
                "earthranger": {"url": server.url, "token_file": str(token), "provider_key": "uncia-test"},
                "iridium": {"port": modem.path},
            }
        )
        uplinks = Uplinks(settings, record.path)
        uplinks.start()
        try:
            assert server.wait_for(lambda s: len(s.observations) == 3, timeout=15)
            assert wait_until(lambda: len(modem.delivered) == 1)
        finally:
            uplinks.stop()
        digest = decode_digest(modem.delivered[0].data)
        assert [f.subject for f in digest.fixes] == ["collar-0", "collar-1", "collar-2"]
        status = uplinks.status()
        assert status["earthranger"]["items_done"] == 3 and not status["earthranger"]["running"]
        assert status["iridium"]["messages_today"] == 1 and status["iridium"]["credits_used_today"] >= 1
        uplinks.close()
    record.close()
