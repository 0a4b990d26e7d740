"""Server-side coalescing of deltas at word or sentence boundaries (`buffer`)."""

from __future__ import annotations

import re

MAX_HELD_CHARS = 256  # never hold more than this, boundary or not

_WORD_END = re.compile(r"\s")
_SENTENCE_END = re.compile(r"[.!?…。！？\n]")


class Coalescer:
    """Turns provider deltas into client deltas for `buffer` none|word|sentence."""

    def __init__(self, mode: str) -> None:
        self._boundary = {"word": _WORD_END, "sentence": _SENTENCE_END}.get(mode)
        self._held = ""

    def feed(self, text: str) -> str:
        """Add `text`; returns what may be sent now ('' to hold)."""
        if self._boundary is None:
            return text
        self._held += text
        cut = 0
        for match in self._boundary.finditer(self._held):
            cut = match.end()
        if cut == 0 and len(self._held) >= MAX_HELD_CHARS:
            cut = len(self._held)
        ready, self._held = self._held[:cut], self._held[cut:]
        return ready

    def flush(self) -> str:
        """Everything still held (at the end of the stream, or before an error)."""
        held, self._held = self._held, ""
        return held
