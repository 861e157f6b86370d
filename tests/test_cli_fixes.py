"""`uncia fixes`: recordings, real pseudo-terminals, limits, summary and errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import tty
from collections.abc import Iterator
from functools import reduce
from operator import xor
from pathlib import Path

import pytest

from edge.decoder import FixDecoder
from uncia.cli import main

GPSD = Path(__file__).parent / "data" / "gpsd"
ROOT = Path(__file__).parent.parent


def nmea(body: str) -> bytes:
    return f"${body}*{reduce(xor, body.encode(), 0):02X}\r\n".encode()


def epoch(second: int, quality: int = 1, hdop: str = "0.9") -> bytes:
    t = f"1200{second % 60:02d}.00"
    return (
        nmea(f"GNGGA,{t},3850.1234,N,10555.4321,E,{quality},09,{hdop},2501.3,M,-30.1,M,,")
        + nmea(f"GNRMC,{t},A,3850.1234,N,10555.4321,E,0.12,231.0,251126,,,A")
        + nmea("GNGSA,A,3,01,03,07,08,11,,,,,,,,1.4,0.9,1.1")
        + nmea("GPGSV,1,1,02,01,40,083,46,03,17,308,41")
    )


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_recording_prints_every_fix_as_json_and_a_summary(capsys):
    log = GPSD / "ch-4711.log"
    decoder = FixDecoder()
    expected = decoder.feed(log.read_bytes()) + decoder.flush()
    assert main(["fixes", str(log)]) == 0
    out, err = capsys.readouterr()
    assert lines(out) == [fix.to_dict() for fix in expected]
    assert lines(out)[0]["time"] == "2009-12-05T13:56:51.997Z"
    assert f"{len(expected)} fixes printed, {decoder.sentences_ok} sentences accepted" in err
    assert "no_fix" in err  # the receiver loses its fix at the end of the recording
    assert "ignored (no fix in them, not errors): GBS 1, GSV 12, PORZD 14" in err


def test_count_and_quality_filters(tmp_path, capsys):
    path = tmp_path / "track.nmea"
    path.write_bytes(b"".join(epoch(s, quality=1 + s % 2) for s in range(10)))
    assert main(["fixes", str(path), "--count", "3"]) == 0
    assert [fix["time"][17:19] for fix in lines(capsys.readouterr().out)] == ["00", "01", "02"]
    assert main(["fixes", str(path), "--min-quality", "2"]) == 0
    out, err = capsys.readouterr()
    assert {fix["quality"] for fix in lines(out)} == {2}
    assert "below_min_quality" in err
    path.write_bytes(b"".join(epoch(s, hdop="3.5" if s % 2 else "0.9") for s in range(10)))
    assert main(["fixes", str(path), "--max-hdop", "2"]) == 0
    out, err = capsys.readouterr()
    assert len(lines(out)) == 5
    assert "hdop_too_high" in err


def test_messy_input_is_summarised_with_reasons(tmp_path, capsys):
    path = tmp_path / "messy.nmea"
    # UBX header, one epoch, one with its GSV cut short, a sentence with a wrong checksum
    path.write_bytes(b"\xb5\x62\x01\x07" + epoch(0) + epoch(1)[:-20] + nmea("GPGGA,x")[:-5] + b"*00\r\n")
    assert main(["fixes", str(path)]) == 0
    out, err = capsys.readouterr()
    assert len(lines(out)) == 2
    assert "noise_bytes" in err
    assert "truncated_line" in err
    assert "bad_checksum" in err and "cable" in err  # the meaning, for the technician


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("/nonexistent/gps.nmea", "No such file or directory"),
        ("/tmp", "is a directory"),
        ("nosuch://x", "unusable port setting"),
    ],
)
def test_an_unreadable_source_is_one_clear_line_and_a_failure(source, words, capsys):
    assert main(["fixes", source]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert words in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A real pseudo-terminal: the test writes NMEA to the master, the command opens the slave."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing: a serial line
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def keep_writing(master: int, stop: threading.Event, pause: float = 0.02) -> threading.Thread:
    """Write epochs to the pty until stopped (the command flushes what came before it opened)."""

    def write() -> None:
        second = 0
        while not stop.is_set():
            try:
                os.write(master, epoch(second))
            except OSError:
                return
            second += 1
            stop.wait(pause)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_serial_port_until_count(pty, capsys):
    master, path = pty
    stop = threading.Event()
    writer = keep_writing(master, stop)
    try:
        assert main(["fixes", path, "--count", "3", "--baud", "38400"]) == 0
    finally:
        stop.set()
        writer.join()
    out, err = capsys.readouterr()
    fixes = lines(out)
    assert len(fixes) == 3
    assert all(fix["lat"] == pytest.approx(38 + 50.1234 / 60) for fix in fixes)
    assert "3 fixes printed" in err


def test_a_serial_port_for_a_duration(pty, capsys):
    _, path = pty  # a receiver that says nothing
    assert main(["fixes", path, "--duration", "0.3"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "0 fixes printed, 0 sentences accepted" in err


def test_ctrl_c_stops_cleanly_with_a_summary(pty):
    master, path = pty
    stop = threading.Event()
    writer = keep_writing(master, stop, pause=0.05)
    command = subprocess.Popen(
        [sys.executable, "-m", "uncia", "fixes", path],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert command.stdout is not None
        first = json.loads(command.stdout.readline())  # it is live and decoding
        assert first["talker"] == "GN"
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=30)
    finally:
        stop.set()
        writer.join()
        if command.poll() is None:
            command.kill()
    assert command.returncode == 0
    assert all(json.loads(line)["talker"] == "GN" for line in out.splitlines())
    assert "fixes printed" in err
    assert "Traceback" not in err
