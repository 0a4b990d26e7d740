"""Raw SSE parsing and error mapping shared by the SDK-backed providers."""

from __future__ import annotations

import email.utils
import time

import pytest

from worker.providers._sse import iter_events, retry_after_s, status_error, transport_error

STREAM = (
    b"event: message_start\ndata: {\"a\": 1}\n\n"
    b": a comment line\n\n"
    b"data: {\"text\": \"h\\u00e9llo \xf0\x9f\x8e\x89\"}\n\n"
    b"event: multi\ndata: line one\ndata: line two\nid: 7\nretry: 10\n\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    (b"message_start", b'{"a": 1}'),
    (b"", b'{"text": "h\\u00e9llo \xf0\x9f\x8e\x89"}'),
    (b"multi", b"line one\nline two"),
    (b"", b"no-space"),
    (b"", b"[DONE]"),
]


def test_whole_stream() -> None:
    assert list(iter_events([STREAM])) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert list(iter_events(chunks)) == EXPECTED


def test_crlf_line_endings_split_anywhere() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    for cut in range(len(crlf)):
        assert list(iter_events([crlf[:cut], crlf[cut:]])) == EXPECTED


def test_unterminated_last_event_is_dropped() -> None:
    cut = b'data: {"a": 1}\n\ndata: {"trunc'
    assert list(iter_events([cut])) == [(b"", b'{"a": 1}')]
    # a complete line without the blank line that dispatches it is not an event either
    assert list(iter_events([b'data: {"a": 1}\n'])) == []


def test_event_name_does_not_leak_into_the_next_event() -> None:
    raw = b"event: ping\ndata: {}\n\ndata: x\n\n"
    assert list(iter_events([raw])) == [(b"ping", b"{}"), (b"", b"x")]


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_s({"retry-after": future}) or 0) <= 31
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None
    assert retry_after_s(None) is None


@pytest.mark.parametrize(
    ("status", "api_type", "retryable"),
    [
        (400, "invalid_request", False),
        (401, "provider_error", False),
        (403, "provider_error", False),
        (404, "invalid_request", False),
        (429, "rate_limited", True),
        (500, "provider_error", True),
        (503, "provider_error", True),
        (529, "provider_error", True),
        (418, "provider_error", False),
    ],
)
def test_status_mapping(status: int, api_type: str, retryable: bool) -> None:
    error = status_error("openai", status, "boom", {"retry-after": "3"})
    assert (error.type, error.retryable, error.status) == (api_type, retryable, status)
    assert "openai" in error.message and str(status) in error.message and "boom" in error.message
    if status == 429:
        assert error.retry_after_s == 3.0


def test_transport_errors_are_retryable() -> None:
    import httpx2

    timeout = transport_error("anthropic", httpx2.ReadTimeout("slow"))
    assert (timeout.type, timeout.retryable) == ("timeout", True)
    dropped = transport_error("anthropic", httpx2.RemoteProtocolError("peer closed"))
    assert (dropped.type, dropped.retryable) == ("provider_error", True)
    assert "peer closed" in dropped.message


def test_one_event_per_read_gives_the_same_events() -> None:
    """A live stream's usual read is one whole event: each alone, the same events."""
    events = [e + b"\n\n" for e in STREAM.split(b"\n\n") if e]
    assert list(iter_events(events)) == EXPECTED


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b"event: ping\n", b"data: {}\n\n"], [(b"ping", b"{}")]),  # the name came first
    ([b"data: a\n", b"data: b\n\n"], [(b"", b"a\nb")]),  # so did a first data line
    ([b"data: a\n\ndata: b\n\n"], [(b"", b"a"), (b"", b"b")]),  # two events in one read
    ([b"data: x\r\n\r\n"], [(b"", b"x")]),
    ([b"data:  two spaces\n\n"], [(b"", b" two spaces")]),  # only one space is stripped
    ([b"data: cut", b" here\n\n"], [(b"", b"cut here")]),
    ([b"data: a", b"data: b\n\n"], [(b"", b"adata: b")]),  # a line was still open
    ([b"data: x\nd", b"ata: y\n\n"], [(b"", b"x\ny")]),  # one newline, not at the end
])
def test_reads_that_are_not_one_whole_event(chunks: list[bytes],
                                            expected: list[tuple[bytes, bytes]]) -> None:
    assert list(iter_events(chunks)) == expected
