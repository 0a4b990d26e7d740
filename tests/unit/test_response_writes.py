"""A response leaves in as few sends as its bytes allow.

On loopback every send wakes the client and costs the server a trip through
the TCP stack: a small answer is one send (head and body together), and a
finished stream's opening (retry line and first page) is one write.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from spool.events import LogEntry
from webapp import sse
from webapp.httpworker import TimedSocket
from webapp.relay.stream import relay

HEAD = b"HTTP/1.1 202 ACCEPTED\r\nContent-Length: 2\r\n\r\n"


class RecordingSocket:
    """The socket under TimedSocket: records what each send carried."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))

    def send(self, data: bytes) -> int:
        self.sends.append(bytes(data))
        return len(data)

    def sendfile(self, _file: Any, offset: int = 0, count: int | None = None) -> int:
        self.sends.append(b"<file>")
        return 0


def timed() -> tuple[TimedSocket, RecordingSocket]:
    raw = RecordingSocket()
    return TimedSocket(raw, 5.0, 5.0), raw  # type: ignore[arg-type]


def test_a_held_head_leaves_with_the_first_body_bytes() -> None:
    sock, raw = timed()
    sock.hold_next_head()
    sock.sendall(HEAD)
    assert raw.sends == []
    sock.sendall(b"{}")
    sock.sendall(b"more")
    assert raw.sends == [HEAD + b"{}", b"more"]


def test_a_head_without_body_goes_on_flush() -> None:
    sock, raw = timed()
    sock.hold_next_head()
    sock.sendall(HEAD)
    sock.flush()
    sock.flush()
    assert raw.sends == [HEAD]


@pytest.mark.parametrize("write", ["send", "sendfile"])
def test_other_writes_never_overtake_a_held_head(write: str) -> None:
    sock, raw = timed()
    sock.hold_next_head()
    sock.sendall(HEAD)
    getattr(sock, write)(b"x")
    assert raw.sends[0] == HEAD
    assert len(raw.sends) == 2


def test_only_a_response_head_is_held_and_only_when_asked() -> None:
    sock, raw = timed()
    sock.sendall(HEAD)  # not armed: straight out
    sock.hold_next_head()
    sock.sendall(b"body bytes")  # armed, but not a head: nothing to wait for
    sock.sendall(HEAD)  # the first write disarmed it
    assert raw.sends == [HEAD, b"body bytes", HEAD]


def test_a_dropped_head_is_never_sent() -> None:
    sock, raw = timed()
    sock.hold_next_head()
    sock.sendall(HEAD)
    sock.drop_held()
    sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")  # gunicorn's error answer
    assert raw.sends == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]


def services(retry_ms: int = 1500) -> Any:
    return SimpleNamespace(settings=SimpleNamespace(sse_retry_ms=retry_ms))


def test_a_finished_streams_opening_is_one_write() -> None:
    page = [LogEntry(1, "start", "{}"), LogEntry(2, "delta", '{"text":"hi"}'),
            LogEntry(3, "done", '{"finish_reason":"stop"}')]
    writes = list(relay(services(), "gen_x", 0, None, ended=True, first_page=page))
    assert len(writes) == 1
    assert writes[0].startswith(sse.retry(1500) + b"id: 1\nevent: start\n")
    assert writes[0].endswith(b'data: {"finish_reason":"stop"}\n\n')
