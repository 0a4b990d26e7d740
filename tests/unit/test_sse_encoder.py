"""The SSE encoder, byte for byte."""

from __future__ import annotations

import pytest

from webapp import sse


def test_retry_line() -> None:
    assert sse.retry(1000) == b"retry: 1000\n\n"


def test_event_with_id_and_name() -> None:
    assert sse.event('{"text":"hi"}', event_id=7, name="delta") == (
        b'id: 7\nevent: delta\ndata: {"text":"hi"}\n\n'
    )


def test_event_without_id_or_name() -> None:
    assert sse.event("x") == b"data: x\n\n"


def test_multiline_data_becomes_several_data_lines() -> None:
    assert sse.event("a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_empty_data_is_one_empty_data_line() -> None:
    assert sse.event("") == b"data: \n\n"


def test_unicode_is_utf8() -> None:
    assert sse.event("é🙂", event_id=1) == "id: 1\ndata: é🙂\n\n".encode()


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_line_breaks_in_id_or_name_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        sse.event("x", event_id=bad)
    with pytest.raises(ValueError):
        sse.event("x", name=bad)


def test_comment_and_ping() -> None:
    assert sse.comment("ping") == b": ping\n\n"
    assert sse.comment("a\nb") == b": a\n: b\n\n"
    assert sse.comment("ping") == sse.PING


def test_entry_frame_matches_event() -> None:
    frame = sse.entry_frame(b"12", b"delta", b'{"text":"\\n"}')
    assert frame == b'id: 12\nevent: delta\ndata: {"text":"\\n"}\n\n'
    assert frame == sse.event('{"text":"\\n"}', event_id=12, name="delta")


def test_http_chunk_is_hex_length_crlf_data_crlf() -> None:
    assert sse.http_chunk(b"id: 1\n\n") == b"7\r\nid: 1\n\n\r\n"
    assert sse.http_chunk(b"x" * 300) == b"12C\r\n" + b"x" * 300 + b"\r\n"
