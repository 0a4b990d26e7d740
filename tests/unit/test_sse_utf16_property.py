"""Property tests: the SSE encoder round-trips through a strict parser, and the
UTF-16 offset arithmetic agrees with JavaScript's `string.length` and slicing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spool.events import encode_entry
from spool.log import dumps
from spool.utf16 import split_utf16, utf16_len
from tests.sseclient import Parser
from webapp import sse

# Every code point Python can hold except lone surrogates (not valid in UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
NAMES = st.sampled_from(["status", "delta", "tool_call", "notice", "done", "error", "cancelled"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def parse(frames: bytes, split_at: int) -> tuple[Parser, list]:  # type: ignore[type-arg]
    """Feed in two pieces (a network read can split anywhere, even inside a character)."""
    parser = Parser()
    events = parser.feed(frames[:split_at]) + parser.feed(frames[split_at:])
    return parser, events


@settings(max_examples=150)
@given(value=JSON_VALUES, seq=st.integers(1, 2**53 - 1), name=NAMES, cut=st.integers(0, 10_000))
def test_event_frames_round_trip(value: object, seq: int, name: str, cut: int) -> None:
    data = dumps({"v": value})
    frame = sse.event(data, event_id=seq, name=name)
    parser, events = parse(frame, cut % (len(frame) + 1))
    assert [(e.id, e.event, e.data) for e in events] == [(seq, name, json.loads(data))]
    assert parser.buffer == b""
    # The relay's hot path frames stored entries without decoding: same bytes.
    entry = encode_entry(seq, name, data).split(" ", 2)
    assert sse.entry_frame(*(part.encode() for part in entry)) == frame


@settings(max_examples=150)
@given(text=TEXT)
def test_multiline_data_comes_back_joined(text: str) -> None:
    """Raw text with CR, LF or CRLF becomes several data lines, joined with LF by clients."""
    frame = sse.event(text, event_id=1, name="message")
    body = frame.decode("utf-8")
    assert body.endswith("\n\n") and "\r" not in body
    lines = [line[len("data: "):] for line in body.split("\n") if line.startswith("data: ")]
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert "\n".join(lines) == expected


@given(value=TEXT)
def test_fields_refuse_line_breaks(value: str) -> None:
    if any(ch in value for ch in "\r\n\x00"):
        with pytest.raises(ValueError):
            sse.event("{}", event_id=value)
        with pytest.raises(ValueError):
            sse.event("{}", name=value)
    else:
        assert sse.event("{}", event_id=value, name=value).count(b"\n") == 4


@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=50))
def test_comments_never_end_the_event_early(text: str) -> None:
    _, events = parse(sse.comment(text) + sse.event('"x"', event_id=1), 0)
    assert [e.data for e in events] == ["x"]


def js_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@settings(max_examples=300)
@given(text=TEXT, data=st.data())
def test_utf16_split_matches_javascript(text: str, data: st.DataObject) -> None:
    total = utf16_len(text)
    assert total == js_length(text)
    units = data.draw(st.integers(0, total))
    head, tail = split_utf16(text, units)
    assert head + tail == text
    head_units = utf16_len(head)
    encoded = text.encode("utf-16-le")
    if head_units == units:
        # Exactly JavaScript's text.slice(units).
        assert tail.encode("utf-16-le") == encoded[2 * units:]
    else:
        # The cut fell inside a surrogate pair: it moves back one unit to the
        # pair's start, and the tail begins with that whole astral character.
        assert head_units == units - 1
        assert ord(tail[0]) >= 0x10000
    assert not tail or not 0xDC00 <= ord(tail[0]) <= 0xDFFF


@given(text=TEXT, beyond=st.integers(1, 2**60))
def test_utf16_offsets_past_the_end_or_negative_are_refused(text: str, beyond: int) -> None:
    with pytest.raises(ValueError):
        split_utf16(text, utf16_len(text) + beyond)
    with pytest.raises(ValueError):
        split_utf16(text, -beyond)


@given(pieces=st.lists(TEXT, max_size=8), data=st.data())
def test_resuming_by_offset_never_loses_or_repeats_text(pieces: list[str],
                                                        data: st.DataObject) -> None:
    """A client that kept `offset` units and resumes gets the rest, exactly once
    (a cut inside a pair re-sends the whole character, which the client drops)."""
    text = "".join(pieces)
    kept_units = data.draw(st.integers(0, utf16_len(text)))
    head, tail = split_utf16(text, kept_units)
    client_had = text.encode("utf-16-le")[: 2 * kept_units]
    overlap = 2 * kept_units - len(head.encode("utf-16-le"))
    assert overlap in (0, 2)
    rebuilt = client_had[: len(client_had) - overlap] + tail.encode("utf-16-le")
    assert rebuilt.decode("utf-16-le") == text
