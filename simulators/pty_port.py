"""A pseudo-terminal pair standing in for a USB serial device.

The agent opens the slave side with pyserial exactly as it would open ``/dev/ttyUSB0``; the simulator
writes the device's bytes into the master side. Like udev on a unit, a `PtyPort` can keep a stable
symlink (``/dev/gps0`` style) pointing at the current slave, so a device that vanishes (USB unplugged)
and comes back under a new pty name is found again at the same path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import tty
from pathlib import Path


class PtyPort:
    """One simulated serial device: write its output with `write`, read what the host sent with `read`.

    Writes never block: a real UART keeps transmitting whether or not anybody listens, so bytes that
    do not fit the kernel's pty buffer are dropped and counted in `dropped_bytes`.
    """

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        self.link = Path(link) if link is not None else None
        self.dropped_bytes = 0
        self._master = -1
        self._slave = -1
        self.slave_name = ""
        self._open()

    @property
    def path(self) -> str:
        """What the agent should open: the stable link if there is one, else the slave's name."""
        return str(self.link) if self.link is not None else self.slave_name

    @property
    def present(self) -> bool:
        return self._master >= 0

    def _open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        if self.link is not None:
            # Replace atomically so an agent never sees a missing link while we re-point it.
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_name)
            tmp.replace(self.link)

    def write(self, data: bytes) -> int:
        """Send device output; returns how many bytes the host side could take (rest dropped)."""
        if self._master < 0:
            self.dropped_bytes += len(data)
            return 0
        try:
            sent = os.write(self._master, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EAGAIN):
                raise
            sent = 0
        self.dropped_bytes += len(data) - sent
        return sent

    def read(self, timeout: float = 0.0, size: int = 4096) -> bytes:
        """What the host wrote to the device (AT commands, say); b"" if nothing within `timeout`."""
        if self._master < 0:
            return b""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._master, size)
        except (BlockingIOError, OSError):
            return b""

    def fileno(self) -> int:
        return self._master

    def vanish(self) -> None:
        """Unplug: the host's open port starts failing, and the device path disappears."""
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def reappear(self) -> None:
        """Plug back in: a new pty, and the stable link (if any) points at it."""
        if self._master < 0:
            self._open()

    def close(self) -> None:
        self.vanish()

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
