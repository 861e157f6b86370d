"""Gateway logs: journald lines with priority prefixes, colour on a terminal, ISO times in files, unit filter."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from uncia.logs import UnitFilter, connected_to_journal, output_mode, setup_logging

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, as a real tty would."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def journal_env(path: Path) -> dict[str, str]:
    info = os.stat(path)
    return {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def test_journal_mode_prefixes_each_line_with_its_syslog_priority(tmp_path):
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        setup_logging(verbose=True, stream=stream, environ=journal_env(path))
        log = logging.getLogger("uncia.gateway.lora0")
        log.debug("radio settings sent")
        log.info("heard collar-7", extra={"unit": "gw-01", "rssi": -97.0})
        log.warning("modem did not answer AT, resetting", extra={"port": "/dev/uncia lora0"})
        log.error("cannot open /dev/uncia-lora0")
        log.critical("outbox disk full")
        try:
            raise OSError("boom")
        except OSError:
            log.exception("worker stopped")
    out = lines_of(path.read_text())
    assert out[:5] == [
        "<7>uncia.gateway.lora0: radio settings sent",
        "<6>uncia.gateway.lora0: heard collar-7 unit=gw-01 rssi=-97.0",
        '<4>uncia.gateway.lora0: modem did not answer AT, resetting port="/dev/uncia lora0"',
        "<3>uncia.gateway.lora0: cannot open /dev/uncia-lora0",
        "<2>uncia.gateway.lora0: outbox disk full",
    ]
    # a traceback stays at error priority line by line, so journald does not file it as info
    traceback = out[5:]
    assert traceback[0] == "<3>uncia.gateway.lora0: worker stopped"
    assert all(line.startswith("<3>    ") for line in traceback[1:])
    assert traceback[-1] == "<3>    OSError: boom"
    assert not re.search(r"\d\d:\d\d:\d\d", path.read_text()), "journald adds the time itself"


def test_journal_stream_of_another_file_is_not_the_journal(tmp_path):
    # systemd passes JOURNAL_STREAM on to children whose stderr now goes to a file: compare dev:ino
    other = tmp_path / "journal"
    other.write_text("")
    with (tmp_path / "stderr").open("w") as stream:
        env = journal_env(other)
        assert not connected_to_journal(stream, env)
        assert output_mode(stream, env) == "plain"
        assert output_mode(stream, {"JOURNAL_STREAM": "garbage"}) == "plain"
        assert connected_to_journal(stream, journal_env(tmp_path / "stderr"))
    assert not connected_to_journal(io.StringIO(), env)  # no file descriptor at all


def test_terminal_mode_short_time_colour_and_short_logger_name():
    stream = Terminal()
    setup_logging(stream=stream, environ={"TERM": "xterm-256color"})
    log = logging.getLogger("uncia.gateway.lora0")
    log.debug("hidden unless verbose")
    log.info("heard collar-7", extra={"unit": "gw-01"})
    log.error("modem gone")
    raw = stream.getvalue()
    assert "\x1b[" in raw
    out = lines_of(ANSI.sub("", raw))
    assert len(out) == 2
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} INFO  gateway\.lora0: heard collar-7 unit=gw-01", out[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} ERROR gateway\.lora0: modem gone", out[1])
    assert "\x1b[1;31mERROR" in raw  # the level in red


@pytest.mark.parametrize("environ", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_terminal_mode_without_colour_when_asked(environ):
    stream = Terminal()
    setup_logging(stream=stream, environ=environ)
    logging.getLogger("uncia.relay").warning("broker lost")
    out = stream.getvalue()
    assert "\x1b" not in out
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} WARN  relay: broker lost\n", out)


def test_pipe_mode_iso_time_full_name_no_colour(tmp_path):
    path = tmp_path / "gateway.log"
    with path.open("w") as stream:
        setup_logging(stream=stream, environ={})
        logging.getLogger("uncia.outbox").warning("shedding", extra={"dropped": 12, "note": 'a "b"'})
    out = path.read_text()
    assert "\x1b" not in out
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d WARNING uncia\.outbox: shedding "
        r'dropped=12 note="a \\"b\\""\n',
        out,
    )


def test_setting_up_twice_replaces_the_handler_and_keeps_others():
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    setup_logging(stream=first, environ={})
    setup_logging(stream=second, environ={}, verbose=True)
    logging.getLogger("uncia.test").debug("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
    assert "once" in other.stream.getvalue()
    logging.getLogger().removeHandler(other)


def test_unit_filter_keeps_that_units_lines_and_station_errors():
    stream = io.StringIO()
    setup_logging(stream=stream, environ={}, units=["cam-01"])
    cam = logging.getLogger("uncia.gateway.registry")
    cam.info("status update", extra={"unit": "cam-01"})  # kept: unit extra
    cam.info("status update", extra={"unit": "cam-02"})  # dropped: another unit
    cam.warning("cam-02 offline for 12 min")  # dropped: another unit's warning
    cam.info("cam-01 online again.")  # kept: word in the message
    cam.info("cam-010 online")  # dropped: not the same id
    cam.info("full image requested", extra={"subject": "cam-01"})  # kept: any extra naming it
    logging.getLogger("uncia.lora.cam-01").info("packet")  # kept: logger name part
    logging.getLogger("uncia.relay").info("published uncia/helan/cam-01/unit/state/health")  # kept
    logging.getLogger("uncia.relay").error("broker connection lost")  # kept: station-wide error
    logging.getLogger("uncia.outbox").critical("disk full")  # kept
    out = stream.getvalue()
    assert "unit=cam-02" not in out and "cam-02 offline" not in out and "cam-010" not in out
    kept = [line.split(": ", 1)[1] for line in lines_of(out)]
    assert kept == [
        "status update unit=cam-01",
        "cam-01 online again.",
        "full image requested subject=cam-01",
        "packet",
        "published uncia/helan/cam-01/unit/state/health",
        "broker connection lost",
        "disk full",
    ]


def test_unit_filter_several_units_and_list_extras():
    keep = UnitFilter(["collar-7", "cam-01"])

    def record(msg: str, **extra: object) -> logging.LogRecord:
        rec = logging.LogRecord("uncia.gateway", logging.INFO, __file__, 1, msg, None, None)
        rec.__dict__.update(extra)
        return rec

    assert keep.filter(record("collar-7 heard"))
    assert keep.filter(record("capture", collars=["collar-3", "collar-7"]))
    assert not keep.filter(record("collar-70 heard"))
    assert not keep.filter(record("capture", collars=["collar-3"]))
