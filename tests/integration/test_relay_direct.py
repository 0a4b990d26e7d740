"""The hub's direct writes (webapp/relay/subscription.py) under the real gunicorn worker.

A caught-up HTTP/1.1 reader's live events are written by the hub straight to
its socket; an HTTP/1.0 reader (no chunked framing) never is. Either way the
client gets the exact text, ids 1..n and one terminal event.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.harness import Stack, wait_until
from tests.integration.test_ops import scrape, value
from tests.sseclient import Parser

TEXT = "Direct writes keep every guarantee: exact text, ids 1..n, one end. " * 4
LIVE_MOCK = {"tokens_per_second": 100, "ttft_ms": 300}  # the reader is caught up long before


@pytest.fixture(scope="module")
def direct_stack(redis_server: Any) -> Iterator[Stack]:
    stack = Stack(redis_server.url, {"SPOOL_METRICS_FLUSH_S": "0.2"})
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


def direct_count(stack: Stack) -> float:
    return value(scrape(stack.url("/metrics")), "spool_sse_streams_direct_total")


def raw_stream(stack: Stack, path: str, version: str) -> tuple[bytes, list[Any]]:
    """GET `path` over a raw socket; the response head and its SSE events."""
    with socket.create_connection(("127.0.0.1", stack.webs[0].port or 0), timeout=30) as sock:
        sock.sendall(f"GET {path} {version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return head, Parser().feed(body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += body[:size]
        assert body[size:size + 2] == b"\r\n"
        body = body[size + 2:]
    return out


def check(events: list[Any]) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.event for e in events if e.event in ("done", "error", "cancelled")] == ["done"]
    assert events[-1].event == "done"
    assert "".join(e.data["text"] for e in events if e.event == "delta") == TEXT


def test_a_live_http11_reader_is_written_by_the_hub(direct_stack: Stack) -> None:
    api = Api(direct_stack)
    before = direct_count(direct_stack)
    created = api.create(TEXT, mock=LIVE_MOCK)
    head, events = raw_stream(direct_stack, created["stream_url"], "HTTP/1.1")
    assert head.startswith(b"HTTP/1.1 200")
    check(events)
    wait_until(lambda: direct_count(direct_stack) == before + 1, timeout=10,
               what="the direct stream to be counted")
    # The same through a real client library (requests' chunked decoding).
    result = api.stream(api.create(TEXT, mock=LIVE_MOCK))
    check(result.events)


def test_an_http10_reader_is_never_written_directly(direct_stack: Stack) -> None:
    api = Api(direct_stack)
    created = api.create(TEXT, mock=LIVE_MOCK)
    before = direct_count(direct_stack)
    head, events = raw_stream(direct_stack, created["stream_url"], "HTTP/1.0")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in head.lower()
    check(events)
    assert direct_count(direct_stack) == before
