"""From raw receiver bytes to fixes: framing, sentence checks and epoch merging in one object.

Everything that turns NMEA into fixes goes through `FixDecoder` - the gateway, ``uncia fixes`` and
the relay benchmark - so what a technician sees on the bench is what the field unit does.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import date

from edge.epoch import EpochMerger
from edge.fix import Fix
from edge.framing import LineFramer
from edge.nmea import Ignored, Sentence, parse_sentence

log = logging.getLogger(__name__)

# What each drop counter means, in words for the person at the receiver.
DROP_REASONS = {
    "noise_bytes": "bytes outside any sentence (binary protocol frames, noise, wrong baud rate?)",
    "truncated_line": "sentences cut short by the start of the next one (bytes lost on the line)",
    "overlong_line": "lines too long to be NMEA (two sentences run together, or noise)",
    "no_checksum": "sentences without a *hh checksum (enable checksums on the receiver)",
    "bad_checksum": "sentences corrupted on the way (cable, connector, grounding, baud rate)",
    "not_ascii": "lines containing binary bytes (noise, or wrong baud rate)",
    "unknown_talker": "sentences from a talker that is not a GNSS receiver",
    "parse_error": "sentences with a valid checksum but malformed fields",
    "no_fix": "sentences saying the receiver has no position fix (yet)",
    "below_min_quality": "fixes below the required fix quality",
    "hdop_too_high": "fixes with HDOP above the configured limit",
    "no_date": "fixes whose date is unknown (no RMC/ZDA seen, no date hint)",
    "no_time": "positions or GSA/VTG sentences that could not be placed in time",
}


class FixDecoder:
    """Bytes from a GPS receiver or collar in, position fixes out.

    Feed it whatever the serial port delivers, in any chunking; it returns each `Fix` as soon as
    the receiver's epoch is complete and keeps count of everything it could not use: ``dropped``
    (by reason, see `DROP_REASONS`), ``ignored`` (well-formed sentences that carry no fix, by
    type: GSV, TXT, PUBX...) and ``sentences_ok`` (checked fix sentences used). ``min_quality``,
    ``max_hdop`` and ``date_hint`` are those of `edge.epoch.EpochMerger`; ``max_line`` that of
    `edge.framing.LineFramer`. Call `flush` at end of stream or when the receiver goes quiet.
    """

    def __init__(
        self,
        *,
        min_quality: int = 1,
        max_hdop: float | None = None,
        date_hint: Callable[[], date] | None = None,
        max_line: int = 200,
    ) -> None:
        self.framer = LineFramer(max_line)
        self.merger = EpochMerger(min_quality=min_quality, max_hdop=max_hdop, date_hint=date_hint)
        self.ignored: Counter[str] = Counter()
        self.sentences_ok = 0
        self._rejected: Counter[str] = Counter()

    @property
    def dropped(self) -> Counter[str]:
        """Everything dropped so far, by reason: framing, sentence checks and the merger."""
        total = Counter(self.framer.dropped)
        total.update(self._rejected)
        total.update(self.merger.dropped)
        return total

    def feed(self, data: bytes) -> list[Fix]:
        """Take the next bytes from the receiver; return the fixes they complete."""
        return self._lines(self.framer.feed(data))

    def flush(self) -> list[Fix]:
        """End of stream or a quiet receiver: finish the last line and the last epoch."""
        out = self._lines(self.framer.flush())
        out.extend(self.merger.flush())
        return out

    def idle(self) -> list[Fix]:
        """The receiver went quiet (its burst is over): emit the epoch in progress now.

        Saves waiting for the next epoch to begin when the cycle has not been learned yet. A line
        still arriving stays pending; `flush` is for the end of the stream.
        """
        return self.merger.flush()

    def _lines(self, lines: list[bytes]) -> list[Fix]:
        out: list[Fix] = []
        merge = self.merger.feed
        for line in lines:
            result = parse_sentence(line)
            if type(result) is Sentence:
                self.sentences_ok += 1
                fixes = merge(result)
                if fixes:
                    out.extend(fixes)
            elif type(result) is Ignored:
                self.ignored[result.sentence_type] += 1
            else:
                self._rejected[result.reason] += 1  # type: ignore[union-attr]
                log.debug("dropped %s: %s", result.reason, result.detail)  # type: ignore[union-attr]
        return out
