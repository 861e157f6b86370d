"""`uncia uplink`: status, parked items with the server's words, requeue, Iridium credits — from the
uplinks' real state file, as a technician runs it beside the gateway."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gateway.uplink.state import UplinkState
from uncia.cli import main


def _config(tmp_path: Path) -> Path:
    token = tmp_path / "er.token"
    token.write_text("tok-1\n")
    token.chmod(0o600)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""[unit]
id = "gw-01"
site = "helan"
[station]
record = "{tmp_path / "station.sqlite3"}"
web = false
[uplink]
state = "{tmp_path / "uplink.sqlite3"}"
[uplink.earthranger]
url = "https://reserve.pamdas.org"
token_file = "{token}"
provider_key = "uncia-helan"
[uplink.iridium]
port = "/dev/uncia-iridium"
credits_per_day = 30
"""
    )
    return config


def test_status_parked_requeue_and_credits(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["uplink", "-c", str(config), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["earthranger"]["items_parked"] == 0 and status["iridium"]["credits_per_day"] == 30

    assert main(["uplink", "-c", str(config), "parked"]) == 0
    assert "nothing parked" in capsys.readouterr().out
    # what the uplink does when the server refuses a fix for good
    state = UplinkState(tmp_path / "uplink.sqlite3")
    now = time.time()
    state.enqueue("earthranger", [("fix-1", "observation", now, now, {"lat": 95})], now)
    state.park("earthranger", "fix-1", "HTTP 400: location.lat must be between -90 and 90", now)
    state.close()
    assert main(["uplink", "-c", str(config), "parked"]) == 0
    assert "fix-1: HTTP 400: location.lat must be between -90 and 90" in capsys.readouterr().out
    assert main(["uplink", "-c", str(config), "requeue"]) == 0
    assert "1 parked item(s) queued again" in capsys.readouterr().out
    assert main(["uplink", "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["earthranger"]["items_queued"] == 1
    assert main(["uplink", "-c", str(config), "credits"]) == 0
    assert "credits" in capsys.readouterr().out


def test_a_gateway_without_uplinks_says_so(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text('[unit]\nid = "gw-01"\nsite = "helan"\n')
    assert main(["uplink", "-c", str(config)]) == 3
    assert "no [uplink] section" in capsys.readouterr().err
