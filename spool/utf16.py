"""UTF-16 code unit arithmetic for `?offset=` (JavaScript's `string.length`)."""

from __future__ import annotations

_ASTRAL = 0x10000


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) >= _ASTRAL)


def split_utf16(text: str, units: int) -> tuple[str, str]:
    """Split `text` after `units` UTF-16 code units.

    A cut that would fall inside a surrogate pair moves back to the start of
    that code point, so the tail always begins on a whole character (the
    client re-receives it rather than getting half of it).
    Raises ValueError when `units` is negative or past the end.
    """
    if units < 0:
        raise ValueError("offset must not be negative")
    seen = 0
    for index, ch in enumerate(text):
        width = 2 if ord(ch) >= _ASTRAL else 1
        if seen + width > units:
            return text[:index], text[index:]
        seen += width
    if units > seen:
        raise ValueError("offset is past the end of the text")
    return text, ""
