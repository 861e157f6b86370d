"""Cutting a receiver's byte stream into candidate NMEA sentences.

Hand-written rather than pyserial's ``threaded.LineReader``: that reader buffers without bound
until it sees a newline (a receiver stuck in binary mode, or a wrong baud rate, would grow it
forever) and it cannot resynchronise on ``$`` in the middle of a line. Here memory is bounded by
``max_line`` and the output depends only on the bytes, never on how a port happened to chunk them.
"""

from __future__ import annotations

import re
from collections import Counter

_CR, _LF = 0x0D, 0x0A
# Where a candidate can end: a line break, or the '*' that opens the two checksum characters.
_LINE_END_OR_STAR = re.compile(rb"[\r\n*]")
_ANY_MARK = re.compile(rb"[$\r\n*]")


class LineFramer:
    """Cuts the bytes from a GPS serial line into candidate sentences.

    A candidate starts at ``$`` and ends at the two checksum characters after ``*``, at CR or LF,
    or at the end of the stream. Everything outside a candidate (binary frames of u-blox/SiRF
    protocols, line noise from a wrong baud rate, the tail of a sentence the unit started
    listening in the middle of) is skipped and counted in ``dropped["noise_bytes"]``; CR and LF
    between sentences are not noise. A ``$`` always starts a new candidate: a candidate cut off
    by one is counted as ``truncated_line``. A candidate longer than ``max_line`` bytes (NMEA
    allows 82; the default leaves room for long proprietary sentences) is dropped as
    ``overlong_line`` and what follows it up to the next ``$`` is noise, so at most ``max_line``
    bytes are ever held between calls, whatever arrives.

    Candidates are only *candidates*: checksum, talker and fields are checked by
    `edge.nmea.parse_sentence`.
    """

    def __init__(self, max_line: int = 200) -> None:
        if max_line < 4:
            raise ValueError(f"max_line must be at least 4 bytes ('$' + '*hh'), got {max_line}")
        self.max_line = max_line
        self.dropped: Counter[str] = Counter()
        # The unfinished candidate at the end of the last chunk (starts with '$', <= max_line).
        self._carry = b""
        # A whole sentence: exactly what the rules above accept, found in one regex pass.
        self._whole = re.compile(rb"\$[^$\r\n*]{0,%d}\*[^$\r\n]{2}" % (max_line - 4))

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished candidate (never more than ``max_line``)."""
        return len(self._carry)

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes from the line; return the candidates they complete, in order."""
        if self._carry:
            # Small reads (a slow port returns a few bytes at a time) mostly just extend the
            # unfinished candidate; skip the full scan for those.
            if (
                len(self._carry) + len(data) <= self.max_line
                and _ANY_MARK.search(data) is None
                and self._carry.find(b"*") < 0
            ):
                self._carry += data
                return []
            data = self._carry + data
            self._carry = b""
        out: list[bytes] = []
        pos = 0
        # Every '$' starts a fresh candidate whatever came before, so each complete sentence the
        # regex finds is emitted as is; the slower rules only look at what lies between them.
        for m in self._whole.finditer(data):
            start = m.start()
            if start > pos and data[pos:start] != b"\r\n":
                self._between(data, pos, start, out, cut=True)
            out.append(m.group())
            pos = m.end()
        n = len(data)
        if pos < n:
            # Usually the tail is just the start of the next sentence: keep it for next time.
            last = data.rfind(b"$", pos)
            if last >= 0 and n - last <= self.max_line and not _LINE_END_OR_STAR.search(data, last):
                if last > pos and data[pos:last] != b"\r\n":
                    self._between(data, pos, last, out, cut=True)
                self._carry = data[last:]
            else:
                self._between(data, pos, n, out, cut=False)
        return out

    def flush(self) -> list[bytes]:
        """End of stream: the end counts as a line end, so a last line without CR/LF is kept."""
        out = [self._carry] if self._carry else []
        self._carry = b""
        return out

    def _between(self, data: bytes, a: int, b: int, out: list[bytes], cut: bool) -> None:
        """``data[a:b]`` holds no whole sentence; ``b`` is the next one's '$' (``cut``) or the end."""
        j = data.find(b"$", a, b)
        if j < 0:
            j = b
        self._noise(data, a, j)
        while j < b:
            k = data.find(b"$", j + 1, b)
            if k < 0:
                self._candidate(data, j, b, out, cut)
                return
            self._candidate(data, j, k, out, True)
            j = k

    def _candidate(self, data: bytes, s: int, e: int, out: list[bytes], cut: bool) -> None:
        """``data[s:e]`` starts with '$' and holds no other; ``cut``: a '$' follows at ``e``."""
        end = -1  # end of the candidate's text, if it ends before e
        m = _LINE_END_OR_STAR.search(data, s, e)
        if m is not None:
            end = m.start()
            if data[end] == 0x2A:  # '*': two checksum characters follow, unless a line break
                end += 1
                stop = min(end + 2, e)
                while end < stop and data[end] != _CR and data[end] != _LF:
                    end += 1
                if end == e and end - m.start() < 3:
                    end = -1  # the segment ran out inside the checksum
        max_line = self.max_line
        if (e if end < 0 else end) - s > max_line:
            self.dropped["overlong_line"] += 1
            self._noise(data, s + max_line, e)
        elif end >= 0:
            out.append(data[s:end])
            self._noise(data, end, e)
        elif cut:
            self.dropped["truncated_line"] += 1
        else:
            self._carry = data[s:e]

    def _noise(self, data: bytes, a: int, b: int) -> None:
        if b > a:
            n = b - a - data.count(b"\r", a, b) - data.count(b"\n", a, b)
            if n:
                self.dropped["noise_bytes"] += n
