"""udev rules: stable device names for a unit's GPS receivers and LoRa modems.

A USB serial adapter becomes /dev/ttyUSB0 or /dev/ttyACM1 depending on the socket and the order
of plugging; the unit config names /dev/uncia-gps0 and /dev/uncia-lora0 instead, and these rules
make the links from the adapter's USB vendor/product id (and serial number, when two identical
adapters share a unit). ``ID_MM_DEVICE_IGNORE`` tells ModemManager to leave them alone: left to
itself it probes every new serial port with AT commands for a minute, which garbles a GPS stream and
can reconfigure a LoRa modem. The file sorts before ModemManager's own rules (77-mm-*, 80-mm-*).

Find the ids with ``lsusb`` or ``udevadm info -a -n /dev/ttyUSB0``.
"""

from __future__ import annotations

from gateway.provision.inventory import Unit, UsbSerial

RULES_FILE = "/etc/udev/rules.d/70-uncia.rules"


def rule(device: UsbSerial) -> str:
    # Values were checked by the inventory (hex ids, a plain serial number): none can close a quote.
    match = [
        'SUBSYSTEM=="tty"',
        f'ATTRS{{idVendor}}=="{device.vendor}"',
        f'ATTRS{{idProduct}}=="{device.product}"',
    ]
    if device.serial_number:
        match.append(f'ATTRS{{serial}}=="{device.serial_number}"')
    actions = [
        f'SYMLINK+="uncia-{device.name}"',
        'GROUP="dialout"',
        'MODE="0660"',
        'ENV{ID_MM_DEVICE_IGNORE}="1"',
    ]
    return ", ".join(match + actions)


def render_udev_rules(unit: Unit) -> str:
    devices = [*unit.gps, *(m.usb for m in unit.lora)]
    lines = [
        f"# uncia unit {unit.id}: stable names for its serial devices (written by `uncia provision`).",
        "# ModemManager must not probe these ports (ID_MM_DEVICE_IGNORE).",
    ]
    for device in devices:
        lines += [f"# {device.kind} {device.index}: {device.link}", rule(device)]
    if not devices:
        lines.append("# (no USB serial devices in the inventory for this unit)")
    return "\n".join(lines) + "\n"
