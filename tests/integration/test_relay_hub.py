"""The relay's hub under stress: lost pub/sub messages, a full reader queue, a Redis restart.

These tests play the worker themselves (no worker process): they append to
the generation's log directly, so each fault happens at a known point.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis
import requests

from spool.keys import Keys
from spool.log import EventLog, Retention
from tests.conftest import Api, StackFactory
from tests.harness import RedisServer, Stack, wait_until
from tests.sseclient import Event, Parser
from webapp.services import REDIS_POOL_SIZE, RELAY_POOL_SIZE, RQ_POOL_SIZE

RETENTION = Retention(live_s=3600, final_s=3600, tombstone_s=7200)
EVENT_TIMEOUT_S = 30.0


class _Unheard(Keys):
    """Keys whose channel nobody subscribes to: an append through it is a lost message."""

    def channel(self, gen_id: str) -> str:
        return super().channel(gen_id) + ":nobody"


def event_logs(stack: Stack) -> tuple[EventLog, EventLog]:
    """(published log, unpublished log) writers for the stack's namespace."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    return (EventLog(client, Keys(stack.namespace), RETENTION),
            EventLog(client, _Unheard(stack.namespace), RETENTION))


class LiveReader:
    """Reads one SSE response in a thread, handing events over as they arrive."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.resp = requests.get(url, headers=headers or {}, stream=True, timeout=60)
        self.status = self.resp.status_code
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        parser = Parser()
        try:
            for chunk in self.resp.iter_content(chunk_size=None):
                for event in parser.feed(chunk):
                    self.events.put(event)
        except requests.RequestException:
            pass
        self.events.put(None)  # the response ended

    def next(self) -> Event | None:
        return self.events.get(timeout=EVENT_TIMEOUT_S)

    def until_end(self) -> list[Event]:
        out = []
        while (event := self.next()) is not None:
            out.append(event)
        return out


def texts(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")


@pytest.fixture
def quiet_stack(make_stack: StackFactory) -> Stack:
    # No worker: the test is the worker. A long ping interval means the
    # ping-time safety re-read cannot mask a relay that missed something.
    return make_stack(workers=0, env={"SPOOL_PING_INTERVAL_S": "120"})


def test_gap_in_pubsub_rereads_the_log(quiet_stack: Stack) -> None:
    api = Api(quiet_stack)
    published, unheard = event_logs(quiet_stack)
    created = api.create("unused")
    gen_id = created["id"]
    reader = LiveReader(api.url(created["stream_url"]))
    first = reader.next()
    assert first is not None and first.id == 1 and first.event == "status"
    assert published.append(gen_id, "delta", {"text": "a"}) == 2
    got = reader.next()
    assert got is not None and got.id == 2  # live from the hub
    assert unheard.append(gen_id, "delta", {"text": "b"}) == 3  # lost in transit
    assert published.append(gen_id, "delta", {"text": "c"}) == 4  # reveals the hole
    assert published.append(gen_id, "done", {"finish_reason": "stop"}) == 5
    rest = reader.until_end()
    events = [first, got, *rest]
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert texts(events) == "abc"


def _web_rss(stack: Stack) -> int:
    root = psutil.Process(stack.webs[0].proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def _raw_stream(port: int, path: str) -> socket.socket:
    """An SSE request on a socket with a tiny receive buffer (HTTP/1.0: no chunking)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _read_head(sock: socket.socket, parser: Parser) -> list[Event]:
    """Read the status line and headers (200 expected); parse whatever body came along."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    return parser.feed(body)


def _drain(sock: socket.socket, parser: Parser, until_id: int | None = None) -> Iterator[Event]:
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for event in parser.feed(data):
            yield event
            if until_id is not None and event.id == until_id:
                return


def test_full_queue_catches_up_from_the_log(quiet_stack: Stack) -> None:
    """A reader that stops reading is neither buffered in the web process nor lost."""
    api = Api(quiet_stack)
    published, _ = event_logs(quiet_stack)
    created = api.create("unused")
    gen_id = created["id"]
    sock = _raw_stream(quiet_stack.webs[0].port or 0, created["stream_url"])
    parser = Parser()
    events = _read_head(sock, parser)
    if not events:
        events = list(_drain(sock, parser, until_id=1))
    assert events[0].id == 1
    before = _web_rss(quiet_stack)
    # 3,000 deltas of 8 KB (24 MB) while the reader reads nothing: far more
    # than the reader's bounded queue and the sockets' buffers can hold.
    piece = "x" * 8191
    expected = []
    client = published.client
    for batch in range(30):
        pipe = client.pipeline(transaction=False)
        for i in range(100):
            text = piece + chr(ord("A") + (batch * 100 + i) % 26)
            expected.append(text)
            published.queue_append(pipe, gen_id, "delta", {"text": text})
        pipe.execute()
    published.append(gen_id, "done", {"finish_reason": "stop"})
    time.sleep(1.0)  # let the hub hand everything over (or drop it)
    grown = _web_rss(quiet_stack) - before
    events.extend(_drain(sock, parser))
    sock.close()
    assert [e.id for e in events] == list(range(1, 3003))
    assert events[-1].event == "done"
    assert texts(events) == "".join(expected)
    # Buffering the backlog in the web process would cost the whole 24 MB
    # (three times over as live events). Bounded in bytes (a reader's queue
    # 256 KB, a hub batch 1 MB, a page 256 KB) it grew 0.6-2.0 MB in 8 runs;
    # bounded in items only, 2.9-67 MB (tests/unit/test_relay_bounds.py).
    assert grown < 6 * 1024 * 1024, f"web RSS grew {grown / 1e6:.1f} MB"


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A private Redis that keeps its data across a restart (append-only file)."""
    server = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    yield server
    server.stop()


def _read_resuming(api: Api, created: dict[str, Any], seen: list[Event],
                   responses: list[list[Event]], done: threading.Event) -> None:
    """Like EventSource: on a dropped response, reconnect with Last-Event-ID."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": str(seen[-1].id)} if seen else {}
        try:
            reader = LiveReader(api.url(created["stream_url"]), headers)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        if reader.status != 200:
            reader.resp.close()
            time.sleep(0.2)  # 503 while Redis is down
            continue
        got: list[Event] = []
        responses.append(got)
        try:
            while (event := reader.next()) is not None:
                got.append(event)
                seen.append(event)
        except queue.Empty:
            reader.resp.close()
        if seen and seen[-1].event in ("done", "error", "cancelled"):
            done.set()
            return
        time.sleep(0.2)


def test_redis_restart_readers_resume(durable_redis: RedisServer) -> None:
    stack = Stack(durable_redis.url, {"SPOOL_PING_INTERVAL_S": "120"})
    try:
        stack.start_web()
        api = Api(stack)
        published, _ = event_logs(stack)
        created = api.create("unused")
        gen_id = created["id"]
        seen: list[Event] = []
        responses: list[list[Event]] = []
        done = threading.Event()
        thread = threading.Thread(target=_read_resuming,
                                  args=(api, created, seen, responses, done), daemon=True)
        thread.start()
        wait_until(lambda: seen, what="first event")
        published.append(gen_id, "delta", {"text": "before "})
        wait_until(lambda: len(seen) >= 2, what="live delta before the restart")
        durable_redis.restart(down_s=1.0)
        # The reader is back (its claim re-published to the restarted Redis) before
        # anything new is written, so what follows must arrive live via the hub.
        wait_until(lambda: api.generation(gen_id)["readers"] == 1, what="reader back")
        published.client.connection_pool.disconnect()
        published.append(gen_id, "delta", {"text": "after"})
        published.append(gen_id, "done", {"finish_reason": "stop"})
        assert done.wait(EVENT_TIMEOUT_S), "reader never saw the terminal event"
        thread.join(5)
    finally:
        stack.close()
    assert [e.id for e in seen] == list(range(1, len(seen) + 1))
    assert texts(seen) == "before after"
    assert len(responses) >= 2, "the restart should have ended the first response"
    # No response ever ends with an invented terminal event: only the last has one.
    for got in responses[:-1]:
        assert all(e.event not in ("done", "error", "cancelled") for e in got)
    assert [e.event for e in seen].count("done") == 1


def _redis_connections(stack: Stack) -> int:
    """Established TCP connections from the web process (and its workers) to Redis."""
    port = int(stack.redis_url.rsplit(":", 1)[1].split("/")[0])
    root = psutil.Process(stack.webs[0].proc.pid)
    return sum(1 for proc in [root, *root.children(recursive=True)]
               for conn in proc.net_connections(kind="tcp")
               if conn.raddr and conn.raddr.port == port and conn.status == "ESTABLISHED")


# The web's bound whatever the number of readers: the hub's subscriber, the
# API's pool, the readers' own pool (so a POST never waits behind them), RQ.
WEB_REDIS_CONNECTIONS = 1 + REDIS_POOL_SIZE + RELAY_POOL_SIZE + RQ_POOL_SIZE


def test_redis_connections_stay_constant_as_readers_grow(quiet_stack: Stack) -> None:
    """flask-sse holds one Redis connection per browser; the hub holds one per process."""
    api = Api(quiet_stack)
    published, _ = event_logs(quiet_stack)
    created = api.create("unused")
    port = quiet_stack.webs[0].port or 0
    readers: list[tuple[socket.socket, Parser, list[Event]]] = []
    socks: list[socket.socket] = []
    try:
        # All 200 requests first, so the web process serves them concurrently.
        socks.extend(_raw_stream(port, created["stream_url"]) for _ in range(200))
        for sock in socks:
            parser = Parser()
            events = _read_head(sock, parser)
            if not events:
                events = list(_drain(sock, parser, until_id=1))
            readers.append((sock, parser, events))
        # Every reader is registered with the hub and has read its backlog.
        assert all(events and events[-1].id == 1 for _, _, events in readers)
        assert _redis_connections(quiet_stack) <= WEB_REDIS_CONNECTIONS < len(socks)
        published.append(created["id"], "delta", {"text": "to all"})
        published.append(created["id"], "done", {"finish_reason": "stop"})
        for sock, parser, events in readers:
            events.extend(_drain(sock, parser))
            assert [e.id for e in events] == [1, 2, 3]
            assert texts(events) == "to all"
        assert _redis_connections(quiet_stack) <= WEB_REDIS_CONNECTIONS < len(socks)
    finally:
        for sock in socks:
            sock.close()
