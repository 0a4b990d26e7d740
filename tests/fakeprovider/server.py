"""A loopback fake of the OpenAI and Anthropic streaming APIs, with fault injection.

Raw HTTP/1.1 on a gevent StreamServer, not a WSGI stack: the server needs the
socket itself, to notice the moment a client disconnects (a watcher greenlet
peeks at the socket while a stream plays) and to drop a connection with a
TCP reset. Connections are kept alive like the real APIs' (so a client's
connection reuse is visible in the log as `conn`). Streams use chunked
encoding, which is what lets a client tell a clean end (truncation) from a
dropped connection.
"""

from __future__ import annotations

import _socket
import collections
import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import orjson
from gevent.server import StreamServer

from tests.fakeprovider import wire_anthropic, wire_openai
from tests.fakeprovider.http import Request, read_request, response_head
from tests.fakeprovider.scenarios import Defaults, FaultCounter, Scenario, resolve

MAX_RECORDS = 50_000  # a long benchmark must not grow the fake without bound
STALL_MAX_S = 600.0
MODEL_IDS = {"openai": ["gpt-fake-mini", "gpt-fake"], "anthropic": ["claude-fake-haiku"]}
ROUTES = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}
WIRES: dict[str, Any] = {"openai": wire_openai, "anthropic": wire_anthropic}


class _Exchange:
    """One streamed response: the socket, its record, and whether the client left.

    Cheap per token, because a benchmark's fake provider shares the machine
    with the system it measures: the pause before a token is one timer and
    two switches (an `Event.wait` with a timeout built a `Timeout` each
    time), and a chunk goes out with one `send` on the non-blocking socket
    when it fits, as it nearly always does.
    """

    def __init__(self, sock: socket.socket, record: dict[str, Any]) -> None:
        self.sock = sock
        self.record = record
        self.gone = gevent.event.Event()
        self._hub = gevent.get_hub()
        self._paused: Any = None  # the greenlet waiting in `wait_until`
        raw = getattr(sock, "_sock", None)  # the C socket under gevent's
        self._raw = raw if isinstance(raw, _socket.socket) and raw.gettimeout() == 0.0 else None

    def watch(self) -> None:
        """Wait until the client closes (then record when) or sends something."""
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except OSError:
            data = b""
        if data:
            return  # a client that talks is still there; leave its bytes for the next read
        self.record["client_disconnected"] = True
        self.record["disconnected_at"] = time.time()
        self.gone.set()
        self._hub.loop.run_callback(self._resume)  # a paused stream learns it at once

    def send(self, data: bytes) -> bool:
        """Send one HTTP chunk; False once the client is gone."""
        if self.gone.is_set():
            return False
        frame = b"%x\r\n%s\r\n" % (len(data), data)
        try:
            sent = self._raw.send(frame) if self._raw is not None else 0
            if sent < len(frame):
                self.sock.sendall(frame[sent:])
        except BlockingIOError:
            self.sock.sendall(frame)  # nothing went out: wait for room like sendall
        except OSError:
            return False
        return True

    def wait_until(self, due: float) -> bool:
        """Sleep until monotonic time `due`; False if the client left meanwhile."""
        delay = due - time.monotonic()
        if delay > 0 and not self.gone.is_set():
            timer = self._hub.loop.timer(delay)
            self._paused = gevent.getcurrent()
            timer.start(self._resume)
            try:
                self._hub.switch()
            finally:
                self._paused = None
                timer.close()
        return not self.gone.is_set()

    def _resume(self) -> None:
        """In the hub: wake the paused stream (its timer fired, or the client left)."""
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.switch()


class FakeProviderServer:
    """The server: routes, per-request scenarios, and the request log."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **defaults: Any) -> None:
        self.defaults = Defaults(**defaults)
        self.counter = FaultCounter()
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECORDS)
        self._ids = itertools.count(1)
        self._conns = itertools.count(1)
        self._server = StreamServer((host, port), self._handle, backlog=4096)

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        return int(self._server.server_port)

    def start(self) -> int:
        """Bind and start accepting (in the current thread's hub); return the port."""
        self._server.start()
        return self.port

    def serve_forever(self) -> None:
        """Start if needed and block until stopped."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop accepting and close the listener."""
        self._server.stop(timeout=1)

    def reset(self) -> None:
        """Forget recorded requests and fault counters."""
        self.records.clear()
        self.counter.reset()

    def _handle(self, sock: socket.socket, _addr: Any) -> None:
        conn = next(self._conns)
        # As a real provider's server does: each SSE chunk is a small write, and
        # with Nagle's algorithm one waits for the client's (delayed, up to
        # 40 ms) ACK of the one before on a kept-alive connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                request = read_request(sock)
                if request is None or not self._route(sock, request, conn):
                    break
                if request.headers.get("connection", "").lower() == "close":
                    break
        except OSError:
            pass
        finally:
            sock.close()

    def _route(self, sock: socket.socket, request: Request, conn: int) -> bool:
        """Answer one request; False when the connection cannot be used again."""
        if request.path == "/_fake/requests" and request.method == "GET":
            _reply(sock, 200, orjson.dumps(list(self.records)))
        elif request.path == "/_fake/reset" and request.method == "POST":
            self.reset()
            _reply(sock, 200, b'{"ok": true}')
        elif request.path.rstrip("/") == "/v1/models" and request.method == "GET":
            vendor = "anthropic" if "anthropic-version" in request.headers else "openai"
            _reply(sock, 200, WIRES[vendor].models(MODEL_IDS[vendor]))
        elif request.path in ROUTES and request.method == "POST":
            return self._generate(sock, request, ROUTES[request.path], conn)
        else:
            _reply(sock, 404, b'{"error": {"message": "no such route (fake)", "type": "nope"}}')
        return True

    def _generate(self, sock: socket.socket, request: Request, vendor: str, conn: int) -> bool:
        record: dict[str, Any] = {
            "id": next(self._ids), "conn": conn, "path": request.path, "headers": request.headers,
            "body": request.json(), "started_at": time.time(), "finished_at": None,
            "client_disconnected": False, "disconnected_at": None,
        }
        self.records.append(record)
        try:
            body = record["body"] if isinstance(record["body"], dict) else {}
            scenario = resolve(body, self.defaults, self.counter)
            return self._play(sock, vendor, scenario, body, record)
        finally:
            record["finished_at"] = time.time()

    def _play(self, sock: socket.socket, vendor: str, scenario: Scenario,
              body: dict[str, Any], record: dict[str, Any]) -> bool:
        wire = WIRES[vendor]
        status = scenario.status_fault
        if status is not None:
            extra = {}
            if scenario.retry_after_s is not None:
                extra["retry-after"] = _format_seconds(scenario.retry_after_s)
            _reply(sock, status, wire.status_error(status), extra)
            return True
        if not body.get("stream"):
            gevent.sleep(scenario.ttft_ms / 1000)
            done = wire.completion if vendor == "openai" else wire.message
            _reply(sock, 200, done(scenario, body))
            return True
        return _stream(_Exchange(sock, record), wire, scenario, body, vendor)


def _stream(ex: _Exchange, wire: Any, scenario: Scenario, body: dict[str, Any],
            vendor: str) -> bool:
    """Play the scenario's events with pacing; inject its fault at the right token.

    Returns whether the body ended cleanly (so the connection can be reused).
    """
    id_header = "x-request-id" if vendor == "openai" else "request-id"
    ex.sock.sendall(response_head(200, {
        "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
        "transfer-encoding": "chunked", id_header: f"req_fake_{ex.record['id']}"}))
    watcher = gevent.spawn(ex.watch)
    try:
        first_due = time.monotonic() + scenario.ttft_ms / 1000
        if not ex.wait_until(first_due):
            return False
        fault = scenario.fault
        sent = 0
        steps: Iterator[tuple[str, bytes]] = wire.stream_steps(scenario, body)
        for kind, data in steps:
            due = kind == "finish" or (kind == "token" and sent >= scenario.fault_after_tokens)
            if fault and due and fault != "linger":
                return _inject(ex, wire, fault)
            if kind == "token":
                if scenario.tps > 0 and not ex.wait_until(first_due + sent / scenario.tps):
                    return False
                sent += 1
            if not ex.send(data):
                return False
        if fault == "linger":  # a complete answer, but the body never ends
            ex.gone.wait(STALL_MAX_S)
            return False
        ex.sock.sendall(b"0\r\n\r\n")
        return True
    finally:
        # Synchronously: a watcher still waiting on the socket would make the
        # next request's read on this kept-alive connection fail (gevent lets
        # one greenlet at a time wait to read a socket) and drop the connection.
        watcher.kill(block=True)


def _inject(ex: _Exchange, wire: Any, fault: str) -> bool:
    """Play `fault`; True if the body still ended cleanly (in-band error, truncation)."""
    if fault == "inband_error":
        if ex.send(wire.inband_error()):
            ex.sock.sendall(b"0\r\n\r\n")
            return True
    elif fault == "truncate":
        ex.sock.sendall(b"0\r\n\r\n")
        return True
    elif fault == "drop":
        # Cut the connection halfway through a chunk: everything sent so far still reaches
        # the client, and the body is visibly incomplete (not a clean end).
        ex.sock.sendall(b"40\r\ndata: {")
    elif fault == "reset":
        # SO_LINGER 0 makes close() send a TCP reset (unread client data may be lost).
        ex.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif fault == "stall":
        ex.gone.wait(STALL_MAX_S)
    return False


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _reply(sock: socket.socket, status: int, body: bytes,
           extra: dict[str, str] | None = None) -> None:
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    headers.update(extra or {})
    sock.sendall(response_head(status, headers) + body)


def start_server(host: str = "127.0.0.1", port: int = 0,
                 **defaults: Any) -> tuple[FakeProviderServer, int]:
    """Start a server in the current thread's gevent hub; returns (server, port).

    The caller must let the hub run (a gevent-patched process does).
    """
    server = FakeProviderServer(host, port, **defaults)
    return server, server.start()


def serve_in_thread(host: str = "127.0.0.1", port: int = 0,
                    **defaults: Any) -> tuple[FakeProviderServer, int]:
    """Run a server on its own thread (with its own hub), for unpatched processes."""
    ready: list[tuple[FakeProviderServer, int]] = []
    started = threading.Event()

    def run() -> None:
        server = FakeProviderServer(host, port, **defaults)
        ready.append((server, server.start()))
        started.set()
        server.serve_forever()

    threading.Thread(target=run, name="fakeprovider", daemon=True).start()
    started.wait(10)
    return ready[0]
