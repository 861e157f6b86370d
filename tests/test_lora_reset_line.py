"""The modem reset line: a low pulse on a GPIO pin (gpiozero MockFactory), idle high otherwise."""

from __future__ import annotations

from gpiozero.pins.mock import MockFactory

from edge.lora.reset_line import GpioResetLine


def test_a_pulse_goes_low_then_back_high():
    factory = MockFactory()
    line = GpioResetLine(22, pin_factory=factory, sleep=lambda s: None)
    pin = factory.pin(22)
    assert pin.state is True  # idle high: the modem runs
    pin.clear_states()
    line()
    pin.assert_states([True, False, True])
    assert line.pulses == 1
    line.close()


def test_active_high_wiring():
    factory = MockFactory()
    line = GpioResetLine(5, active_low=False, pin_factory=factory, sleep=lambda s: None)
    pin = factory.pin(5)
    assert pin.state is False
    pin.clear_states()
    line()
    pin.assert_states([False, True, False])
