"""Replies of one redis-py connection, read straight off its hiredis reader.

The web's pub/sub hub reads one message per token per reader. Through
redis-py each cost its `read_response` (a retry-aware loop, push-type and
error checks) plus a "more waiting?" `can_read` — ~8 µs of CPU a message
against ~3 taking them from the connection's own hiredis reader and filling
it with one `recv` per burst (micro-benchmark: 60 channels, 60,000 messages
in ticks of 60, gevent-patched). The connection stays redis-py's: it
connects, authenticates, sends commands and owns the socket; only the reply
reading is done here. Without hiredis (redis-py's pure-Python parser)
`ReplyReader` falls back to `read_response`/`can_read`.

`exchange` does the same for the worker's pipelines (its event writes and
its job starts and finishes): one packed send, then every reply taken off
the reader (redis-py's `read_response` per reply was ~12 % of the worker's
CPU on a burst of short generations).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis._parsers import _HiredisParser
from redis._parsers.hiredis import NOT_ENOUGH_DATA

from spool.connection import readable_now
from spool.metrics import RECORDER, REDIS_ERRORS


def exchange(conn: Any, packed: bytes, count: int) -> list[Any]:
    """Send `packed` (`count` commands, RESP-encoded) on `conn`; their replies in order.

    What a redis-py pipeline does, less its per-command Python: an error
    reply comes back as its exception, as `execute(raise_on_error=False)`
    would give it. On any failure the connection is disconnected (replies
    left on its socket must not reach its next borrower) and the error raised.
    """
    conn.send_packed_command([packed])
    try:
        if _fast_parser(conn) is None:
            return _read_each(conn, count)
        return _read_off(conn, count)
    except BaseException:
        conn.disconnect()
        raise


def _read_each(conn: Any, count: int) -> list[Any]:
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(conn.read_response(disconnect_on_error=False))
        except redis.ResponseError as error:
            replies.append(error)
    return replies


def _read_off(conn: Any, count: int) -> list[Any]:
    """`count` replies from the hiredis reader, as `read_response` would give them."""
    parser = conn._parser
    gets = parser._reader.gets
    push = getattr(parser, "_hiredis_PushNotificationType", None)  # RESP3 only
    replies: list[Any] = []
    try:
        while len(replies) < count:
            reply = gets()
            if reply is NOT_ENOUGH_DATA:
                _fill(parser)
                continue
            if push is not None and isinstance(reply, push):
                parser.handle_push_response(reply)  # not a reply to these commands
                continue
            # As redis-py's parser: a reply that is (or starts with) a connection
            # error, LOADING say, is raised; error replies are values.
            if isinstance(reply, redis.ConnectionError) or (
                    isinstance(reply, list) and reply
                    and isinstance(reply[0], redis.ConnectionError)):
                raise reply if isinstance(reply, Exception) else reply[0]
            replies.append(reply)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        RECORDER.inc(REDIS_ERRORS, type(exc).__name__)
        raise
    if conn.health_check_interval:
        conn.next_health_check = time.monotonic() + conn.health_check_interval
    return replies


def _fill(parser: Any) -> None:
    """One read from the socket into the reader (the socket's timeout).

    The parser passes a reset (ECONNRESET, as a restarting Redis sends)
    through as it is; redis-py's read_response turns it into its own
    ConnectionError, which is what every caller handles.
    """
    try:
        parser.read_from_socket()  # raises ConnectionError once the server closed
    except OSError as exc:
        raise redis.ConnectionError(f"Error while reading from socket: {exc.args}") from exc


def _fast_parser(conn: Any) -> Any:
    """The connection's hiredis parser, if its replies can be taken off its reader."""
    parser = getattr(conn, "_parser", None)
    if (isinstance(parser, _HiredisParser) and getattr(parser, "_reader", None) is not None
            and getattr(parser, "_sock", None) is not None):
        return parser
    return None


class ReplyReader:
    """The replies of `conn` (connected, RESP2), in order."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._parser: Any = _fast_parser(conn)

    def next(self) -> Any:
        """The next reply, waiting for it as long as it takes."""
        parser = self._parser
        if parser is None:
            return self._conn.read_response(timeout=None, disconnect_on_error=False)
        reader = parser._reader
        reply = reader.gets()
        while reply is NOT_ENOUGH_DATA:
            _fill(parser)
            reply = reader.gets()
        return _checked(reply)

    def next_ready(self) -> Any | None:
        """The next reply if it is already here (received, or waiting in the
        socket), else None; never waits and never yields to the event loop."""
        parser = self._parser
        if parser is None:
            if not self._conn.can_read(timeout=0):
                return None
            return self._conn.read_response(timeout=None, disconnect_on_error=False)
        reader = parser._reader
        reply = reader.gets()
        while reply is NOT_ENOUGH_DATA:
            # One system poll per burst, not per reply: a burst's bytes come in one recv.
            if not _arrived(parser._sock):
                return None  # a partial reply stays in the reader; `next` completes it
            _fill(parser)
            reply = reader.gets()
        return _checked(reply)


def _arrived(sock: Any) -> bool:
    """Whether bytes wait to be read: in the kernel, or (TLS) already decrypted in
    the socket's own buffer, which the kernel's poll does not show."""
    pending = getattr(sock, "pending", None)
    return bool(pending is not None and pending()) or readable_now(sock)


def _checked(reply: Any) -> Any:
    """The reply, or its error raised: hiredis hands error replies back as values,
    which on a pub/sub connection mean the connection cannot be used as intended."""
    if isinstance(reply, redis.RedisError):
        raise reply
    return reply
