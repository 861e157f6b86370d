"""The modem's hardware reset line, pulsed from a GPIO pin through gpiozero.

A LoRa module whose firmware has locked up answers nothing on its serial port, so no AT command can
reset it. Wire its reset input (REYAX RYLR: pin NRST; RAK3172: RST) to a GPIO pin and give the pin in
the config (`[[lora]] reset_pin = 22`, BCM numbering): the driver pulses it when the modem stops
answering. Both modules reset on a LOW pulse, so the default is active-low with the line idle high.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gpiozero import DigitalOutputDevice
from gpiozero.pins import Factory


class GpioResetLine:
    """Callable: each call holds the modem's reset pin active for `pulse_s` seconds, then releases it."""

    def __init__(
        self,
        pin: int,
        *,
        active_low: bool = True,
        pulse_s: float = 0.02,
        pin_factory: Factory | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pulse_s = pulse_s
        self._sleep = sleep
        # initial_value=False: not resetting. With active_high=False the idle level is high.
        self.device = DigitalOutputDevice(
            pin, active_high=not active_low, initial_value=False, pin_factory=pin_factory
        )
        self.pulses = 0

    def __call__(self) -> None:
        self.device.on()
        try:
            self._sleep(self.pulse_s)
        finally:
            self.device.off()
        self.pulses += 1

    def close(self) -> None:
        self.device.close()
