"""UTF-16 offset arithmetic (JavaScript string.length semantics)."""

from __future__ import annotations

import pytest

from spool.utf16 import split_utf16, utf16_len


@pytest.mark.parametrize(("text", "units"), [
    ("", 0), ("abc", 3), ("é", 1), ("e\u0301", 2), ("世界", 2), ("🙂", 2), ("a🙂b", 4),
    ("👩‍👩‍👧", 8),
])
def test_length_matches_utf16_encoding(text: str, units: int) -> None:
    assert utf16_len(text) == units == len(text.encode("utf-16-le")) // 2


def test_split_on_boundaries() -> None:
    text = "a🙂b世"
    assert split_utf16(text, 0) == ("", text)
    assert split_utf16(text, 1) == ("a", "🙂b世")
    assert split_utf16(text, 3) == ("a🙂", "b世")
    assert split_utf16(text, 5) == (text, "")


def test_split_inside_a_surrogate_pair_starts_tail_at_the_whole_character() -> None:
    assert split_utf16("a🙂b", 2) == ("a", "🙂b")


@pytest.mark.parametrize("units", [-1, 6])
def test_split_out_of_range(units: int) -> None:
    with pytest.raises(ValueError):
        split_utf16("a🙂b世", units)


def test_every_split_reassembles() -> None:
    text = "x🙂 é 世界\n👍🏽!"
    for units in range(utf16_len(text) + 1):
        head, tail = split_utf16(text, units)
        assert head + tail == text
        assert utf16_len(head) in (units, units - 1)
