"""Deterministic answer texts for the benchmark, so the client can check exactness."""

from __future__ import annotations

WORDS = (
    "spool", "streams", "tokens", "durably", "while", "the", "browser", "reconnects", "café",
    "naïve", "über", "日本語", "テキスト", "emoji", "🚀", "✨", "ok", "a", "log", "of", "events",
)


def make_text(seed: int, chars: int) -> str:
    """About `chars` code points of mixed ASCII/Unicode text, the same for the same seed."""
    out: list[str] = []
    length = 0
    state = seed * 2654435761 % 4294967296 or 1
    while length < chars:
        # xorshift: cheap, deterministic, no global random state
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        word = WORDS[state % len(WORDS)]
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:chars]
