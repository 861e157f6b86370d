"""The IR illuminator on gpiozero mock pins: lit only inside `lit()`, off after errors, watchdog,
close, interpreter exit and SIGTERM (the last two in a real child process)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.camera.illuminator import DEFAULT_ILLUMINATOR_PIN, IlluminatorError, IrIlluminator

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def _lamp(**kw: object) -> IrIlluminator:
    return IrIlluminator(pin_factory=MockFactory(), **kw)  # type: ignore[arg-type]


def test_off_at_start_on_only_inside_lit_and_counted() -> None:
    clock = FakeClock()
    with _lamp(clock=clock) as lamp:
        assert lamp.pin.info.name == f"GPIO{DEFAULT_ILLUMINATOR_PIN}"
        assert lamp.pin.function == "output" and lamp.pin.state is False
        with lamp.lit():
            assert lamp.pin.state is True and lamp.is_lit
            clock.t += 0.4
            assert lamp.on_time_s == pytest.approx(0.4)
        assert lamp.pin.state is False
        clock.t += 100  # time off does not count
        with lamp.lit():
            clock.t += 0.6
        assert lamp.activations == 2
        assert lamp.on_time_s == pytest.approx(1.0)
        lamp.pin.assert_states([False, True, False, True, False])


def test_never_on_after_an_exception_inside_lit() -> None:
    with _lamp() as lamp:
        with pytest.raises(RuntimeError, match="camera fell over"), lamp.lit():
            assert lamp.pin.state is True
            raise RuntimeError("camera fell over")
        assert lamp.pin.state is False and not lamp.is_lit


def test_nested_blocks_switch_off_when_the_outermost_ends() -> None:
    with _lamp() as lamp:
        with lamp.lit():
            with lamp.lit():
                pass
            assert lamp.pin.state is True
        assert lamp.pin.state is False
        assert lamp.activations == 1


def test_lit_false_never_touches_the_pin() -> None:
    with _lamp() as lamp:
        with lamp.lit(False):
            assert lamp.pin.state is False
        assert lamp.activations == 0


def test_watchdog_forces_off_a_hung_capture(caplog: pytest.LogCaptureFixture) -> None:
    with _lamp(max_on_s=0.05) as lamp:
        with lamp.lit():
            deadline = time.monotonic() + 5.0
            while lamp.pin.state and time.monotonic() < deadline:
                time.sleep(0.005)  # the capture "hangs" here
            assert lamp.pin.state is False, "the watchdog never switched the lamp off"
        assert lamp.watchdog_trips == 1
        assert "forced off by its watchdog" in caplog.text
        with lamp.lit():  # usable again afterwards
            assert lamp.pin.state is True
        assert lamp.watchdog_trips == 1


def test_close_switches_off_even_inside_lit_and_refuses_to_light_again() -> None:
    lamp = _lamp()
    pin = lamp.pin
    with lamp.lit():
        lamp.close()
        assert pin.state is False
    assert pin.function == "input"  # released: the gate pull-down holds the lamp off
    with pytest.raises(IlluminatorError, match="closed"), lamp.lit():
        pass
    lamp.close()  # twice is harmless


def test_off_inside_lit_switches_off_now() -> None:
    with _lamp() as lamp:
        with lamp.lit():
            lamp.off()
            assert lamp.pin.state is False
        assert lamp.pin.state is False


def test_refuses_a_zero_time_limit() -> None:
    with pytest.raises(ValueError, match="max_on_s"):
        _lamp(max_on_s=0)


# The child records the gate level from an atexit hook registered BEFORE the illuminator, so it runs
# after the illuminator's own hook (atexit is last-in, first-out): what the pin is left at.
_CHILD = textwrap.dedent(
    """
    import atexit, sys, time
    from gpiozero.pins.mock import MockFactory
    from edge.camera.illuminator import IrIlluminator, switch_off_on_sigterm

    factory = MockFactory()
    pin = factory.pin(23)
    atexit.register(lambda: print("gate at exit:", pin.state, flush=True))
    lamp = IrIlluminator(pin_factory=factory, max_on_s=60)
    if sys.argv[1] == "sigterm":
        switch_off_on_sigterm(lamp)
    block = lamp.lit()
    block.__enter__()  # lit and never left, as in a capture that was still running
    print("lit:", pin.state, flush=True)
    if sys.argv[1] == "sigterm":
        time.sleep(30)
    """
)


def _child(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_off_at_interpreter_exit() -> None:
    child = _child("exit")
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.splitlines() == ["lit: True", "gate at exit: False"]


def test_off_on_sigterm() -> None:
    child = _child("sigterm")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "lit: True"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGTERM, err
    assert out.splitlines() == ["gate at exit: False"]
