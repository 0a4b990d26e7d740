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
"""

from __future__ import annotations

from typing import Any

import redis
from redis._parsers import _HiredisParser
from redis._parsers.hiredis import NOT_ENOUGH_DATA

from spool.connection import readable_now


class ReplyReader:
    """The replies of `conn` (connected, RESP2), in order."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        parser = getattr(conn, "_parser", None)
        fast = (isinstance(parser, _HiredisParser) and getattr(parser, "_reader", None) is not None
                and getattr(parser, "_sock", None) is not None)
        self._parser: Any = parser if fast else None

    def next(self) -> Any:
        """The next reply, waiting for it as long as it takes."""
        parser = self._parser
        if parser is None:
            return self._conn.read_response(timeout=None, disconnect_on_error=False)
        reader = parser._reader
        reply = reader.gets()
        while reply is NOT_ENOUGH_DATA:
            parser.read_from_socket()  # raises ConnectionError once the server closed
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
            parser.read_from_socket()
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
