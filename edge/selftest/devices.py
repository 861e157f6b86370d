"""Self-test checks of a unit's devices: GPS receivers, LoRa modems, camera pins and the camera.

Each check opens the device the way the agent does (same port, same driver, same pin factory),
asks it for the least that proves it works, releases it, and returns one `CheckResult`.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import serial

from edge.config import CameraSettings, LoraSettings, SerialSettings
from edge.framing import LineFramer
from edge.nmea import BAD_CHECKSUM, NO_CHECKSUM, Ignored, Sentence, parse_sentence
from edge.selftest import CheckResult, failed, passed, warned
from edge.serial_source import explain

_ENOUGH_SENTENCES = 5  # with a fix among them, the GPS has shown all it needs to
_STOP_AGENT = "stop the agent first (systemctl stop uncia-gateway or uncia-camera): it holds the port"


# --- GPS ------------------------------------------------------------------------------------------


def gps_name(settings: SerialSettings) -> str:
    return f"gps {settings.name} ({settings.port})"


def check_gps(
    settings: SerialSettings, wait_s: float, *, clock: Callable[[], float] = time.monotonic
) -> CheckResult:
    """NMEA sentences with good checksums within `wait_s` seconds; a fix among them, or a WARN."""
    name = gps_name(settings)
    try:
        port = serial.serial_for_url(settings.port, baudrate=settings.baudrate, exclusive=True, timeout=0.2)
    except (serial.SerialException, OSError, ValueError) as exc:
        reason = explain(exc.__context__ or exc, reading=False)
        return failed(name, f"cannot open the port: {reason}", _STOP_AGENT if "in use" in reason else "")
    framer = LineFramer()
    good: list[Sentence | Ignored] = []
    bad_checksums = other_rejects = received = 0
    started = clock()
    try:
        while clock() - started < wait_s:
            data = port.read(max(1, port.in_waiting))
            received += len(data)
            for line in framer.feed(data):
                verdict = parse_sentence(line)
                if isinstance(verdict, Sentence | Ignored):
                    good.append(verdict)
                elif verdict.reason in (BAD_CHECKSUM, NO_CHECKSUM):
                    bad_checksums += 1
                else:
                    other_rejects += 1
            fixes = [s for s in good if isinstance(s, Sentence) and s.fix_ok]
            if len(good) >= _ENOUGH_SENTENCES and fixes:
                break
    except (serial.SerialException, OSError) as exc:
        return failed(name, f"reading failed: {explain(exc, reading=True)}")
    finally:
        port.close()
    took = clock() - started
    baud = f"{settings.baudrate} baud"
    if not received:
        return failed(
            name,
            f"no data at all in {took:.0f} s",
            "check the receiver's power and cable (TX of the receiver to RX of the Pi)",
        )
    if not good:
        if bad_checksums:
            return failed(
                name,
                f"{bad_checksums} sentence(s) in {took:.0f} s, every one with a bad checksum",
                f"electrical noise or a loose cable; or a baud rate close to the right one ({baud} set)",
            )
        return failed(
            name,
            f"{received} bytes in {took:.0f} s but no NMEA sentence",
            f"wrong baud rate ({baud} set; receivers use 4800, 9600, 38400 or 115200) or the receiver "
            "is in a binary protocol (u-blox UBX): set serial.baudrate or switch it to NMEA",
        )
    talkers = sorted({s.talker for s in good if isinstance(s, Sentence)} or {"?"})
    seen = f"{len(good)} NMEA sentences in {took:.1f} s ({'/'.join(talkers)})"
    if bad_checksums:
        seen += f", {bad_checksums} with bad checksums"
    fixes = [s for s in good if isinstance(s, Sentence) and s.fix_ok]
    if not fixes:
        return warned(
            name,
            f"{seen}, but no fix yet",
            "give the antenna open sky; a cold receiver needs minutes for its first fix",
        )
    best = next((s for s in fixes if s.sats is not None), fixes[0])
    fix = f"fix quality {best.quality}" + (f" with {best.sats} satellites" if best.sats is not None else "")
    if best.hdop is not None:
        fix += f", HDOP {best.hdop:g}"
    return passed(name, f"{seen}, {fix}")


# --- LoRa modems ----------------------------------------------------------------------------------


def lora_name(settings: LoraSettings) -> str:
    return f"lora {settings.name} ({settings.port}, {settings.family})"


def check_lora(
    settings: LoraSettings, modem_factory: Callable[[LoraSettings], Any] | None = None
) -> CheckResult:
    """``AT`` answers OK, and every configured radio setting reads back as written."""
    from edge.lora.ingest import open_modem
    from edge.lora.modem import ModemError, ModemMismatch, ModemTimeout

    name = lora_name(settings)
    modem = None
    try:
        modem = (modem_factory or open_modem)(settings)
        modem.probe()
        applied = modem.configure(settings.radio())
    except ModemMismatch as exc:
        return failed(
            name,
            _without_label(exc, settings),
            "the modem does not keep this setting: check the model suits the band (RYLR498/RYLR406 for "
            "433/470 MHz, RYLR998/RYLR896 for 868/915 MHz) and the [[lora]] values",
        )
    except ModemTimeout as exc:
        return failed(
            name, _without_label(exc, settings), "check TX/RX are crossed, 3.3 V power and lora.baudrate"
        )
    except ModemError as exc:
        message = _without_label(exc, settings)
        return failed(name, message, _STOP_AGENT if "in use" in message else "")
    except OSError as exc:
        return failed(name, f"serial port problem: {exc}")
    finally:
        if modem is not None:
            with contextlib.suppress(Exception):  # a port that died must not hide the verdict
                modem.close()
    firmware = getattr(modem, "firmware", None) or "?"
    radio = settings.radio()
    return passed(
        name,
        f"answers AT (firmware {firmware}); {len(applied)} settings read back as configured: "
        f"{radio.frequency_hz / 1e6:.1f} MHz SF{radio.spreading_factor} {radio.bandwidth_khz} kHz "
        f"CR4/{radio.coding_rate + 4}, {radio.tx_power_dbm} dBm",
    )


def _without_label(exc: Exception, settings: LoraSettings) -> str:
    """The driver's message without its leading "lora0 (/dev/..., RYLR998): " (the line names it)."""
    text = str(exc)
    head, sep, rest = text.partition("): ")
    return rest if sep and head.startswith(f"{settings.name} (") else text


# --- camera unit: pins and camera -------------------------------------------------------------------


def check_pins(cam: CameraSettings, pin_factory: Any = None) -> CheckResult:
    """The PIR, IR lamp and (if wired) light-sensor GPIOs can be claimed; the lamp is held low."""
    from gpiozero import DigitalInputDevice, DigitalOutputDevice
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinFactoryFallback

    name = "camera pins"
    if pin_factory is None and cam.backend == "simulated":
        from gpiozero.pins.mock import MockFactory

        pin_factory = MockFactory()  # as the agent does: a simulated unit runs on mock pins
    claimed: list[Any] = []
    what = f"GPIO{cam.pir_pin} (PIR)"
    try:
        with warnings.catch_warnings():
            # gpiozero warns once per pin library it could not load; the FAIL line below says it all.
            warnings.simplefilter("ignore", PinFactoryFallback)
            pir = DigitalInputDevice(cam.pir_pin, pull_up=False, pin_factory=pin_factory)
            claimed.append(pir)
            what = f"GPIO{cam.illuminator_pin} (IR lamp)"
            claimed.append(
                DigitalOutputDevice(cam.illuminator_pin, initial_value=False, pin_factory=pin_factory)
            )
            if cam.light_sensor_pin >= 0:
                what = f"GPIO{cam.light_sensor_pin} (light sensor)"
                claimed.append(DigitalInputDevice(cam.light_sensor_pin, pin_factory=pin_factory))
            motion = bool(pir.is_active)
    except GPIOPinInUse as exc:
        return failed(name, f"{what} is in use ({exc})", "stop the agent first (systemctl stop uncia-camera)")
    except BadPinFactory as exc:
        return failed(name, f"no GPIO library works here ({exc})", "install python3-lgpio (Raspberry Pi OS)")
    except PermissionError as exc:
        return failed(name, f"{what}: permission denied ({exc})", "add the user to the gpio group")
    except Exception as exc:  # lgpio reports a busy or missing chip with its own error type
        return failed(
            name, f"{what}: cannot claim it ({exc})", "check the pin number in [camera] and /dev/gpiochip*"
        )
    finally:
        for device in reversed(claimed):
            device.close()
    pins = f"PIR GPIO{cam.pir_pin}, IR lamp GPIO{cam.illuminator_pin} (left off)"
    if cam.light_sensor_pin >= 0:
        pins += f", light sensor GPIO{cam.light_sensor_pin}"
    state = "PIR output active now (motion, or still settling after power-up)" if motion else "PIR at rest"
    return passed(name, f"claimed {pins}; {state}")


def make_camera(cam: CameraSettings) -> Any:
    """The camera backend the agent would use for this config (not started)."""
    if cam.backend == "picamera2":
        from edge.camera.picamera import Picamera2Camera

        return Picamera2Camera(
            cam.tuning_file or None,
            lores=(cam.lores_width, cam.lores_height),
            main=(cam.main_width, cam.main_height),
            fps=cam.fps,
        )
    from edge.camera.simulated import SimulatedCamera
    from edge.clock import utc_now

    return SimulatedCamera(
        utc_now,
        random.Random(0),
        lores=(cam.lores_width, cam.lores_height),
        main=(cam.main_width, cam.main_height),
        fps=cam.fps,
    )


def check_camera(
    cam: CameraSettings, camera_factory: Callable[[CameraSettings], Any] | None, wait_s: float
) -> CheckResult:
    """The camera starts and one full-resolution still comes back as a JPEG of the configured size."""
    from PIL import Image, UnidentifiedImageError

    name = f"camera {cam.id} ({cam.backend})"
    outcome: dict[str, Any] = {}

    def capture() -> None:
        camera = None
        try:
            camera = (camera_factory or make_camera)(cam)
            camera.start()
            outcome["frame"] = camera.capture_still()
        except Exception as exc:  # CameraError and whatever the camera stack raises
            outcome["error"] = exc
        finally:
            if camera is not None:
                with contextlib.suppress(Exception):
                    camera.close()

    # In a thread: a wedged camera stack must cost `wait_s`, not the whole self-test.
    worker = threading.Thread(target=capture, name="selftest-camera", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(wait_s)
    if worker.is_alive():
        return failed(
            name,
            f"no picture within {wait_s:.0f} s",
            "reseat the ribbon cable, then `rpicam-hello --list-cameras`; reboot if libcamera hangs",
        )
    if "error" in outcome:
        return failed(name, f"no picture: {outcome['error']}", "stop the agent first if it is running")
    frame = outcome["frame"]
    try:
        with Image.open(io.BytesIO(frame.jpeg)) as img:
            kind, size = img.format, img.size
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return failed(name, f"the still is not a readable image ({exc})", "check the camera stack's version")
    wanted = (cam.main_width, cam.main_height)
    if kind != "JPEG" or size != wanted:
        return failed(
            name,
            f"the still is a {kind} of {size[0]}x{size[1]}, expected a JPEG of {wanted[0]}x{wanted[1]}",
            "check camera.main_width/main_height against the sensor's modes",
        )
    took = time.monotonic() - started
    return passed(name, f"{size[0]}x{size[1]} JPEG of {len(frame.jpeg) / 1000:.0f} kB in {took:.1f} s")
