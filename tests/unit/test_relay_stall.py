"""A reader that stops reading holds one write, not a log page, and loses nothing.

On a direct socket the relay sends each write without blocking; when the
kernel takes only part of one it keeps that write's rest, lets go of the
page, waits until the rest is out, then reads the log again after the last
event sent (`webapp.relay.writes`). Here the socket takes what a seeded
schedule allows, so parks happen at every kind of place (a write's middle,
its start, a page's last write, the terminal's), and the client's bytes
must still be every event once, in order.
"""

from __future__ import annotations

import random
import re
import socket
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gevent
import pytest

from spool.events import LogEntry
from webapp.relay import writes
from webapp.relay.follow import Quiet, follow_batches
from webapp.relay.stream import relay
from webapp.relay.subscription import Direct, Subscription, live

EVENTS = 3000


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "STALL_GRACE_S", 0.002)


@pytest.fixture
def full_fd() -> Iterator[int]:
    """A socket whose send buffer is full: never writable while the test runs."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        while True:
            ours.send(b"x" * 65536)
    except BlockingIOError:
        pass
    yield ours.fileno()
    ours.close()
    theirs.close()


class Page(list):  # type: ignore[type-arg]
    """A list that can be weakly referenced."""


class Log:
    """The readers' event log over a fixed list; remembers every page it handed out."""

    def __init__(self, entries: list[LogEntry]) -> None:
        self.entries = entries
        self.pages: list[weakref.ref[Page]] = []
        self.reads: list[tuple[int, int]] = []

    def read_after(self, gen_id: str, after: int, limit: int) -> list[LogEntry]:
        self.reads.append((after, limit))
        page = Page([e for e in self.entries if e.seq > after][:limit])
        self.pages.append(weakref.ref(page))
        return page


class StallingSocket:
    """A non-blocking socket whose kernel takes what a seeded schedule allows."""

    def __init__(self, seed: int, log: Log, fd: int) -> None:
        self.fd = fd
        self.rng = random.Random(seed)
        self.log = log
        self.wire = bytearray()  # every byte the client will read, in order
        self.parks = 0

    def fileno(self) -> int:
        return self.fd

    def send(self, data: bytes) -> int:
        roll = self.rng.random()
        if roll < 0.1:
            raise BlockingIOError
        taken = len(data) if roll < 0.7 else self.rng.randrange(0, len(data))
        self.wire += data[:taken]
        return taken

    def sendall_waiting(self, data: bytes) -> None:
        """The greenlet's cooperative sendall: it waits for the client, holding no page."""
        self.parks += 1
        assert len(data) <= 8192 + 16  # one write's rest, chunk framing included
        assert all(page() is None for page in self.log.pages)
        self.wire += data


def entries() -> list[LogEntry]:
    made = [LogEntry(1, "status", '{"status":"in_progress"}')]
    made += [LogEntry(seq, "delta", '{"text":"%s"}' % (f"w{seq} " * (1 + seq % 7)))
             for seq in range(2, EVENTS)]
    return [*made, LogEntry(EVENTS, "done", '{"finish_reason":"stop"}')]


def dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end], 16)
        out += data[end + 2:end + 2 + size]
        assert data[end + 2 + size:end + 4 + size] == b"\r\n"
        pos = end + 4 + size
    return bytes(out)


def run(seed: int, fd: int) -> tuple[bytes, StallingSocket, Log]:
    log = Log(entries())
    sock = StallingSocket(seed, log, fd)
    svc: Any = SimpleNamespace(settings=SimpleNamespace(sse_retry_ms=1000), reader_log=log)
    through_wsgi = b"".join(relay(svc, "gen_x", 0, None, ended=True,
                                  direct=Direct(sock, sock.sendall_waiting)))
    return through_wsgi + dechunk(bytes(sock.wire)), sock, log


@pytest.mark.parametrize("seed", range(6))
def test_a_stalling_client_gets_every_event_once_in_order(seed: int, full_fd: int) -> None:
    body, sock, log = run(seed, full_fd)
    ids = [int(m) for m in re.findall(rb"^id: (\d+)$", body, re.M)]
    assert ids == list(range(1, EVENTS + 1))
    expected = "".join(f"w{seq} " * (1 + seq % 7) for seq in range(2, EVENTS))
    assert "".join(re.findall(r'^data: \{"text":"([^"]*)"\}$', body.decode(), re.M)) == expected
    assert body.endswith(b'data: {"finish_reason":"stop"}\n\n')
    assert sock.parks > 3  # the schedule did stall it, more than once
    # After a stall the log is read again from the last event sent, a small page first.
    assert len(log.reads) > sock.parks and min(limit for _, limit in log.reads) <= 32


def test_a_client_gone_mid_send_ends_the_stream_quietly() -> None:
    log = Log(entries())

    class Gone:
        def send(self, data: bytes) -> int:
            raise ConnectionResetError

    svc: Any = SimpleNamespace(settings=SimpleNamespace(sse_retry_ms=1000), reader_log=log)
    stream = relay(svc, "gen_x", 0, None, ended=True, direct=Direct(Gone(), print))
    assert next(stream).startswith(b"retry: 1000")  # headers and the first page through WSGI
    assert list(stream) == []


class HalfSocket:
    """The reader's socket as the hub sees it: takes part of the first write, then nothing."""

    def __init__(self, fd: int) -> None:
        self.wire = bytearray()
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def send(self, data: bytes) -> int:
        if self.wire:
            raise BlockingIOError
        self.wire += data[:10]
        return 10


class OneChannelHub:
    def __init__(self) -> None:
        self.subs: list[Subscription] = []

    def subscribe(self, channel: str) -> Subscription:
        self.subs.append(Subscription(channel))
        return self.subs[-1]

    def unsubscribe(self, sub: Subscription) -> None:
        self.subs.remove(sub)


def test_a_reader_waiting_on_a_full_socket_is_offered_nothing(full_fd: int) -> None:
    # The hub began a direct write the client's socket did not take whole; the
    # reader's greenlet sends the rest, and meanwhile the hub must not queue
    # (up to READER_QUEUE_BYTES per stalled reader) what the log already holds.
    log = Log([LogEntry(1, "status", '{"status":"in_progress"}')])
    hub, sock = OneChannelHub(), HalfSocket(full_fd)
    queued_while_waiting: list[int] = []

    def sendall_waiting(data: bytes) -> None:
        for seq in range(3, 40):  # the answer goes on while the client is stuck
            log.entries.append(LogEntry(seq, "delta", f'{{"text":"{seq} "}}'))
            hub.subs[0].offer(live(b'%d delta {"text":"%d "}' % (seq, seq)), 100)
        queued_while_waiting.append(hub.subs[0].queue.held)
        sock.wire += data

    svc: Any = SimpleNamespace(
        hub=hub, keys=SimpleNamespace(channel=lambda gen_id: "ch"), reader_log=log,
        settings=SimpleNamespace(ping_interval_s=5.0, sse_retry_ms=1000))
    runs = follow_batches(svc, "gen_x", 0, Direct(sock, sendall_waiting))
    yielded = [entry.seq for entry in next(runs)]
    reader = gevent.spawn(lambda: [item for run in runs if not isinstance(run, Quiet)
                                   for item in run])
    gevent.sleep(0.01)  # the reader caught up and handed its socket to the hub
    assert hub.subs[0].direct is sock
    log.entries.append(LogEntry(2, "delta", '{"text":"2 "}'))
    hub.subs[0].offer(live(b'2 delta {"text":"2 "}'), 100)  # 10 bytes of it go out
    gevent.sleep(0.01)
    log.entries.append(LogEntry(40, "done", '{"finish_reason":"stop"}'))
    hub.subs[0].offer(live(b'40 done {"finish_reason":"stop"}'), 100)
    rest = reader.get(timeout=5)
    assert queued_while_waiting == [0]
    assert yielded + [entry.seq for entry in rest] == [1, *range(3, 41)]
    assert b"id: 2\n" in bytes(sock.wire) and b'data: {"text":"2 "}' in bytes(sock.wire)


def test_a_client_that_drains_within_the_grace_costs_no_log_read() -> None:
    # Slower than the writes, but reading: the relay waits, holding its write,
    # instead of re-reading the log through the readers' pool.
    log = Log(entries())
    ours, theirs = socket.socketpair()

    class SlowReader:
        def __init__(self) -> None:
            self.wire = bytearray()
            self.calls = 0

        def fileno(self) -> int:
            return ours.fileno()  # writable: the client has read meanwhile

        def send(self, data: bytes) -> int:
            self.calls += 1
            if self.calls % 3 == 1:
                raise BlockingIOError
            taken = max(1, len(data) // 2)
            self.wire += data[:taken]
            return taken

    sock = SlowReader()

    def never(data: bytes) -> None:
        raise AssertionError("parked although the client was reading")

    svc: Any = SimpleNamespace(settings=SimpleNamespace(sse_retry_ms=1000), reader_log=log)
    try:
        body = b"".join(relay(svc, "gen_x", 0, None, ended=True, direct=Direct(sock, never)))
    finally:
        ours.close()
        theirs.close()
    body += dechunk(bytes(sock.wire))
    assert [int(m) for m in re.findall(rb"^id: (\d+)$", body, re.M)] == list(range(1, EVENTS + 1))
    assert all(limit > 32 for _, limit in log.reads)  # pages only, no catch-up reads
