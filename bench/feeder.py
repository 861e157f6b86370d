"""Benchmark helper process: plays a GPS receiver on a pseudo-terminal, as fast as the reader reads.

Runs in its own process so its CPU is not counted against the relay under test. Protocol on stdio:
prints ``ready <path>`` once the pty exists, waits for a line ``go`` on stdin (sent once the relay has
opened the port, because opening a serial port flushes its input buffer), writes the whole stream with
nothing dropped, prints ``done`` and exits.
"""

from __future__ import annotations

import os
import select
import sys

from simulators.pty_port import PtyPort


def feed(stream: bytes, port: PtyPort) -> None:
    fd = port.fileno()
    view = memoryview(stream)
    while view:
        select.select([], [fd], [])
        try:
            sent = os.write(fd, view[:65536])
        except BlockingIOError:
            continue
        view = view[sent:]


def main() -> int:
    stream_file, link = sys.argv[1], sys.argv[2]
    with open(stream_file, "rb") as fh:
        stream = fh.read()
    with PtyPort(link) as port:
        print(f"ready {port.path}", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        feed(stream, port)
        print("done", flush=True)
        # Keep the device present until the reader has drained the kernel buffer.
        sys.stdin.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
