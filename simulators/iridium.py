"""A RockBLOCK-class Iridium 9602/9603 on a real pseudo-terminal, and the sky and gateway behind it.

`IridiumEmulator` answers the SBD AT commands the way the modem does (ISU AT Command Reference,
RockBLOCK command pages): echo on after power-up until ``ATE0``, ``READY`` then a binary upload with
its checksum for ``AT+SBDWB``, ``+SBDIX: <MO status>, <MOMSN>, <MT status>, <MTMSN>, <MT length>,
<MT queued>`` after a session, the length-prefixed binary answer of ``AT+SBDRB``. Behind it stands
the Iridium side: what reached the gateway (`delivered`, with its MOMSN), messages HQ queued for
the station (`queue_mt`), and what RockBLOCK would bill (`credits_billed`: one credit per started
50 bytes of every message sent or received).

Faults on demand: `block_sky` (the next N sessions fail with MO status 32, or 18, ...),
`fail_sessions` (a given sequence of MO statuses), `hang` (answers nothing), `power_cycle` (echo
back on, buffers empty), `garble_next_upload` (a byte changes on the wire: checksum answer 2).

One thread, one `select` on the pty and a wake-up pipe; nothing polls.
"""

from __future__ import annotations

import math
import os
import random
import select
import threading
import time
from collections import deque
from dataclasses import dataclass

from simulators.pty_port import PtyPort

SBD_MAX_MO = 340


@dataclass(frozen=True)
class Delivered:
    """An MO message as the Iridium gateway (the RockBLOCK account) received it."""

    momsn: int
    data: bytes
    at: float


class IridiumEmulator:
    """The emulated modem; ``path`` is what the station opens (``[uplink.iridium] port``)."""

    def __init__(
        self,
        port: PtyPort | None = None,
        *,
        session_time: tuple[float, float] = (0.002, 0.01),
        upload_timeout: float = 60.0,
        imei: str = "300434063839690",
        rng: random.Random | None = None,
    ) -> None:
        self.port = port if port is not None else PtyPort()
        self._own_port = port is None
        self.session_time = session_time
        self.upload_timeout = upload_timeout
        self.imei = imei
        self.rng = rng or random.Random(9602)
        self.delivered: list[Delivered] = []
        self.received_mt: list[bytes] = []  # MT messages the station read out
        self.commands: list[str] = []
        self.sessions = 0
        self.credits_billed = 0
        self._mt_waiting: deque[bytes] = deque()
        self._fail: deque[int] = deque()
        self._lock = threading.Lock()
        self._hung = False
        self._garble = False
        self._power_on_state()
        self._inbuf = bytearray()
        self._upload: tuple[int, float] | None = None  # (bytes expected incl. checksum, deadline)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="iridium-emulator", daemon=True)
        self._thread.start()

    def _power_on_state(self) -> None:
        self.echo = True
        self.flow_control = 3
        self.ring_alerts = 1
        self.mo_buffer = b""
        self.mt_buffer = b""
        self.momsn = getattr(self, "momsn", 0)  # kept in non-volatile memory
        self.mtmsn = getattr(self, "mtmsn", 0)

    @property
    def path(self) -> str:
        return self.port.path

    # -- the Iridium side and faults ----------------------------------------------------------
    def queue_mt(self, data: bytes) -> None:
        """HQ sends the station a message (it waits at the gateway for the next session)."""
        with self._lock:
            self._mt_waiting.append(bytes(data))

    def block_sky(self, sessions: int, status: int = 32) -> None:
        """The next `sessions` sessions fail with `status` (32 no network service, 18 RF drop, ...)."""
        self.fail_sessions(*([status] * sessions))

    def fail_sessions(self, *statuses: int) -> None:
        with self._lock:
            self._fail.extend(statuses)

    def clear_sky(self) -> None:
        """Forget the session failures still queued: the next session goes through."""
        with self._lock:
            self._fail.clear()

    def hang(self, hung: bool = True) -> None:
        self._hung = hung

    def garble_next_upload(self) -> None:
        self._garble = True

    def power_cycle(self) -> None:
        with self._lock:
            self._power_on_state()
            self._upload = None
            self._inbuf.clear()

    def close(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"\0")
        self._thread.join(2.0)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._own_port:
            self.port.close()

    def __enter__(self) -> IridiumEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the modem ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = None
            if self._upload is not None:
                timeout = max(0.0, self._upload[1] - time.monotonic())
            fd = self.port.fileno()
            ready, _, _ = select.select([self._wake_r] + ([fd] if fd >= 0 else []), [], [], timeout)
            if self._stop.is_set():
                return
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if fd >= 0 and fd in ready:
                data = self.port.read(0.0)
                if data and not self._hung:
                    with self._lock:
                        self._inbuf += data
            with self._lock:
                self._process()

    def _send(self, data: bytes) -> None:
        self.port.write(data)

    def _reply(self, *lines: bytes) -> None:
        self._send(b"".join(b"\r\n" + line + b"\r\n" for line in lines))

    def _process(self) -> None:
        while True:
            if self._upload is not None:
                expected, deadline = self._upload
                if len(self._inbuf) >= expected:
                    self._upload = None
                    self._finish_upload(bytes(self._inbuf[:expected]))
                    del self._inbuf[:expected]
                    continue
                if time.monotonic() >= deadline:
                    self._upload = None
                    self._inbuf.clear()
                    self._send(b"1\r\n")  # write timeout: the one answer with no OK after it
                return
            end = self._inbuf.find(b"\r")
            if end < 0:
                return
            line = bytes(self._inbuf[:end]).replace(b"\n", b"").strip()
            del self._inbuf[: end + 1]
            if self.echo:
                self._send(line + b"\r")
            if line:
                self._command(line.decode("ascii", "replace"))

    def _finish_upload(self, blob: bytes) -> None:
        data, check = blob[:-2], blob[-2:]
        if self._garble:
            self._garble = False
            data = bytes([data[0] ^ 0x20]) + data[1:]
        if (sum(data) & 0xFFFF).to_bytes(2, "big") != check:
            self._send(b"2\r\n\r\nOK\r\n")
            return
        self.mo_buffer = data
        self._send(b"0\r\n\r\nOK\r\n")

    def _command(self, text: str) -> None:
        self.commands.append(text)
        cmd = text.upper()
        if not cmd.startswith("AT"):
            return  # not a command line: the modem ignores it
        body = cmd[2:]
        if body == "":
            self._reply(b"OK")
        elif body in ("E0", "E1", "E"):
            self.echo = body == "E1"
            self._reply(b"OK")
        elif body in ("&K0", "&K3"):
            self.flow_control = int(body[2])
            self._reply(b"OK")
        elif body in ("+SBDMTA=0", "+SBDMTA=1"):
            self.ring_alerts = int(body[-1])
            self._reply(b"OK")
        elif body in ("+SBDD0", "+SBDD1", "+SBDD2"):
            if body[-1] in "02":
                self.mo_buffer = b""
            if body[-1] in "12":
                self.mt_buffer = b""
            self._reply(b"0", b"OK")
        elif body == "+CGSN":
            self._reply(self.imei.encode(), b"OK")
        elif body == "+CSQ":
            self._reply(f"+CSQ:{0 if self._fail else 4}".encode(), b"OK")
        elif body.startswith("+SBDWB="):
            self._start_upload(body[7:])
        elif body in ("+SBDIX", "+SBDIXA"):
            self._session()
        elif body == "+SBDRB":
            data = self.mt_buffer
            self._send(
                len(data).to_bytes(2, "big") + data + (sum(data) & 0xFFFF).to_bytes(2, "big") + b"\r\nOK\r\n"
            )
        else:
            self._reply(b"ERROR")

    def _start_upload(self, arg: str) -> None:
        try:
            size = int(arg)
        except ValueError:
            self._reply(b"ERROR")
            return
        if not 1 <= size <= SBD_MAX_MO:
            self._send(b"3\r\n\r\nOK\r\n")
            return
        self._upload = (size + 2, time.monotonic() + self.upload_timeout)
        self._send(b"READY\r\n")

    def _session(self) -> None:
        # A real session takes 10-60 s; the modem reads nothing meanwhile, so sleeping here is faithful.
        self._lock.release()
        try:
            self._stop.wait(self.rng.uniform(*self.session_time))
        finally:
            self._lock.acquire()
        self.sessions += 1
        if self._fail:
            status = self._fail.popleft()
            self._reply(
                f"+SBDIX: {status}, {self.momsn}, 2, {self.mtmsn}, 0, {len(self._mt_waiting)}".encode(), b"OK"
            )
            return
        momsn = self.momsn
        if self.mo_buffer:
            self.delivered.append(Delivered(momsn, self.mo_buffer, time.time()))
            self.credits_billed += max(1, math.ceil(len(self.mo_buffer) / 50))
        elif not self._mt_waiting:
            self.credits_billed += 1  # RockBLOCK bills a mailbox check too
        self.momsn = (self.momsn + 1) % 65536
        mt_status, mt_len = 0, 0
        if self._mt_waiting:
            self.mt_buffer = self._mt_waiting.popleft()
            self.mtmsn = (self.mtmsn + 1) % 65536
            self.credits_billed += max(1, math.ceil(len(self.mt_buffer) / 50))
            self.received_mt.append(self.mt_buffer)
            mt_status, mt_len = 1, len(self.mt_buffer)
        self._reply(
            f"+SBDIX: 0, {momsn}, {mt_status}, {self.mtmsn}, {mt_len}, {len(self._mt_waiting)}".encode(),
            b"OK",
        )
