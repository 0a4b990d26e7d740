"""gunicorn's gevent worker with Spool's HTTP edges: JSON errors and read timeouts.

gunicorn rejects some requests before Flask sees them (URL or headers too
long, a malformed request line, bad framing) and answers with a small HTML
page; API.md promises its JSON error body for every response, so
`handle_error` is replaced here. And gunicorn's gevent worker never times a
read out while a request arrives: a client that sends half a request line, a
TLS ClientHello to the plain-HTTP port, a body shorter than its
Content-Length or a huge chunk size and then nothing would hold a
connection (and a greenlet) forever. Here:

- a request head must be complete `header_timeout_s` after its first byte;
  a fresh connection must start its first request within the same time,
  a kept-alive one its next request within gunicorn's `keepalive`;
- a body must be read completely within `body_timeout_s` of its head;
- a body that breaks its framing (bad chunk size, missing CRLF, ends early)
  or times out is a 400 / 408 JSON answer, and the connection is closed
  (what follows on it cannot be trusted).

A client that left most of its answer unread in the kernel's send buffer
gets its connection closed after the response rather than kept alive
(`webapp.unread`).

And a response's head leaves with its first body bytes: gunicorn writes the
head and each body chunk with separate `sendall`s, and on loopback a send
costs both sides a wake-up and ~10 % of a `POST /v1/generations`' CPU
(py-spy); a small JSON answer is then one send, not two.

Used by `gunicorn.conf.py` (`worker_class`). The limits: docs/security.md.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from http import HTTPStatus
from types import TracebackType
from typing import Any

import gevent
import orjson
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from spool.settings import Settings
from webapp.errors import ApiError
from webapp.heaptrim import HeapTrimmer
from webapp.unread import should_close_unread


class ReadTimeout(TimeoutError):
    """The client did not send its request head or body in time."""


class TimedSocket:
    """A client socket whose reads have a deadline (everything else is the socket's)."""

    def __init__(self, sock: socket.socket, header_timeout_s: float,
                 body_timeout_s: float) -> None:
        self._sock = sock
        self._header_timeout_s = header_timeout_s
        self._body_timeout_s = body_timeout_s
        self._deadline = time.monotonic() + header_timeout_s
        self._in_head = False
        self._head_started = False
        self.heads = 0  # request heads begun on this connection
        self._hold_head = False
        self._held = b""  # a response head waiting for its first body bytes

    def hold_next_head(self) -> None:
        """Keep the next response head until the first body bytes (or `flush`)."""
        self._hold_head = True

    def sendall(self, data: bytes, *args: Any) -> None:
        if self._hold_head and bytes(data[:5]) == b"HTTP/":
            self._hold_head = False
            self._held = bytes(data)
            return
        self._hold_head = False
        if self._held:
            data, self._held = self._held + bytes(data), b""
        self._sock.sendall(data, *args)

    def send(self, data: bytes, *args: Any) -> int:
        self.flush()
        sent: int = self._sock.send(data, *args)
        return sent

    def sendfile(self, *args: Any, **kwargs: Any) -> int:
        self.flush()
        sent: int = self._sock.sendfile(*args, **kwargs)
        return sent

    def drop_held(self) -> None:
        """Forget a held head: its response failed before any body bytes."""
        self._hold_head, self._held = False, b""

    def flush(self) -> None:
        """Send a held response head now (a response without body bytes, a direct write)."""
        self._hold_head = False
        if self._held:
            held, self._held = self._held, b""
            self._sock.sendall(held)

    def begin_head(self, idle_s: float) -> None:
        """A request head may start within `idle_s`, then has header_timeout_s."""
        self._in_head, self._head_started = True, False
        self._deadline = time.monotonic() + idle_s
        self.heads += 1

    def begin_body(self) -> None:
        """The head is in: any body must follow within body_timeout_s."""
        self._in_head = False
        self._deadline = time.monotonic() + self._body_timeout_s

    def recv(self, size: int, *args: Any) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout("request not received in time")
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(size, *args)
        except TimeoutError:
            raise ReadTimeout("request not received in time") from None
        finally:
            self._sock.settimeout(None)  # writes (long SSE streams) stay untimed
        if self._in_head and data and not self._head_started:
            self._head_started = True
            self._deadline = time.monotonic() + self._header_timeout_s
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class HeadPhase:
    """`timeout_ctx()` around gunicorn's read of one request head."""

    def __init__(self, sock: TimedSocket, idle_s: float) -> None:
        self._sock = sock
        self._idle_s = idle_s

    def __enter__(self) -> None:
        self._sock.begin_head(self._idle_s)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if kind is None:
            self._sock.begin_body()
            return False
        # A silent or too slow head: no request, so gunicorn closes the connection.
        return issubclass(kind, ReadTimeout)


class GuardedBody:
    """`wsgi.input` that turns a broken or late body into a 400/408 ApiError.

    Without it a bad chunk size reaches Flask as a gunicorn exception (a 500)
    and a short body waits forever. `failed` tells the worker to close the
    connection after the answer: the rest of the stream has no framing left.
    """

    def __init__(self, req: Any) -> None:
        self._req = req
        self._body = req.body
        self.failed = False

    def _fail(self) -> None:
        self.failed = True
        self._req.must_close = True  # the answer says `Connection: close`, and means it

    def _guard(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._body, method)(*args)
        except ReadTimeout:
            self._fail()
            raise ApiError(408, "request body not received in time") from None
        except http_errors.NoMoreData:
            self._fail()
            raise ApiError(400, "request body ended before its declared length") from None
        except http_errors.ParseException as exc:
            self._fail()
            raise ApiError(400, f"malformed request body framing: {exc}") from None
        except OSError:
            self._fail()
            raise

    def read(self, size: int | None = None) -> bytes:
        return bytes(self._guard("read", size))

    def readline(self, size: int | None = None) -> bytes:
        return bytes(self._guard("readline", size))

    def readlines(self, size: int | None = None) -> list[bytes]:
        return list(self._guard("readlines", size))

    def __iter__(self) -> GuardedBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def gunicorn_reject(exc: BaseException) -> ApiError:
    """The API.md error for something gunicorn refused before the app saw it."""
    if isinstance(exc, ApiError):  # a broken body met while skipping it (GuardedBody)
        return exc
    if isinstance(exc, (http_errors.InvalidResponseHeader,
                        http_errors.InvalidResponseHeaderName)):
        return ApiError(500, "internal error", type="internal_error")  # the app's fault
    if isinstance(exc, http_errors.LimitRequestLine):
        return ApiError(414, f"request line is too long: {exc}", type="too_large")
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return ApiError(431, f"request headers are too large or too many: {exc}",
                        type="too_large")
    if isinstance(exc, http_errors.ExpectationFailed):
        return ApiError(417, f"{exc}", type="invalid_request")
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        # RFC 9112 suggests 501; API.md promises no 5xx for any input.
        return ApiError(400, f"unsupported Transfer-Encoding: {exc}")
    if isinstance(exc, (http_errors.ParseException, http_errors.NoMoreData, ssl.SSLError)):
        return ApiError(400, f"malformed HTTP request: {exc}")
    return ApiError(500, "internal error", type="internal_error")


def error_bytes(error: ApiError) -> bytes:
    """A complete HTTP/1.1 response carrying `error` as API.md's JSON body."""
    body = orjson.dumps({"error": {"type": error.type, "message": error.message,
                                   "param": error.param}})
    reason = HTTPStatus(error.status).phrase
    head = (f"HTTP/1.1 {error.status} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nCache-Control: no-store\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class SpoolGeventWorker(GeventWorker):
    """The `gevent` worker class plus JSON rejects and request read deadlines."""

    def init_process(self) -> None:
        settings = Settings.from_env()
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self._sockets: dict[Any, TimedSocket] = {}
        self._heap = HeapTrimmer()
        super().init_process()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self._heap.opened()
        try:
            self._handle_connection(listener, client, addr)
        finally:
            self._heap.closed()

    def _handle_connection(self, listener: Any, client: Any, addr: Any) -> None:
        if isinstance(client, ssl.SSLSocket):  # gunicorn's own TLS: keep its checks working
            super().handle(listener, client, addr)
            return
        timed = TimedSocket(client, self.header_timeout_s, self.body_timeout_s)
        current = gevent.getcurrent()
        self._sockets[current] = timed
        try:
            super().handle(listener, timed, addr)
        finally:
            self._sockets.pop(current, None)

    def timeout_ctx(self) -> Any:
        timed = self._sockets.get(gevent.getcurrent())
        if timed is None:
            return super().timeout_ctx()
        # A new connection gets header_timeout_s for its first request; a
        # kept-alive one may idle for `keepalive` before the next.
        return HeadPhase(timed, self.header_timeout_s if timed.heads == 0
                         else float(self.cfg.keepalive))

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        guard = None
        if req.body is not None:
            guard = req.body = GuardedBody(req)
        if not isinstance(sock, TimedSocket):
            super().handle_request(listener_name, req, sock, addr)
            return
        sock.hold_next_head()
        try:
            super().handle_request(listener_name, req, sock, addr)
        except StopIteration:  # answered, and the connection closes
            with contextlib.suppress(OSError):  # gunicorn may have shut it already
                sock.flush()
            raise
        except BaseException:
            sock.drop_held()  # no answer went out: gunicorn's handle_error sends one
            raise
        sock.flush()  # a head with no body bytes (204, HEAD) goes now
        if (guard is not None and guard.failed) or should_close_unread(sock):
            raise StopIteration()  # gunicorn closes the connection

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        error = gunicorn_reject(exc)
        if error.status >= 500:
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, error_bytes(error))
        except Exception:
            self.log.debug("Failed to send error message.")
