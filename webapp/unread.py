"""Clients that leave their answer unread get no kept-alive connection.

Measured (tests/integration/test_relay_stalled.py): a client that stops
reading an SSE answer does not block the relay at all on Linux. The
kernel's send buffer grows (tcp_wmem autotuning, up to 4 MB) and took a
whole ~360 KB answer, so the stream ran to its end and gunicorn then kept
the connection alive for the client's next request, which for a stalled
client never comes: a greenlet, its saved stack and the parser state,
~20 KB of the web process per connection for `keepalive` seconds. After a
response whose bytes still mostly sit unsent in the kernel, the worker now
closes the connection instead: the kernel still delivers every byte (a
close keeps queued data and ends it with a FIN), and the client's next
request opens a new connection, as HTTP/1.1 clients must be ready for.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from typing import Any

SIOCOUTQNSD = 0x894B  # Linux: bytes queued on a TCP socket and not yet sent
UNREAD_LIMIT_BYTES = 64 * 1024  # more than this unsent after a response: close after it
_INT = struct.Struct("i")


def _queued(sock: Any, request: int) -> int:
    try:
        packed = fcntl.ioctl(sock.fileno(), request, bytes(_INT.size))
    except OSError:
        return 0  # not a TCP socket on Linux (or gone): nothing to go by
    value: int = _INT.unpack(packed)[0]
    return value


def should_close_unread(sock: Any) -> bool:
    """True when the client left more than UNREAD_LIMIT_BYTES of its answer
    unsent and has sent nothing more (closing on unread input would reset
    the connection and discard what is queued for it)."""
    return (_queued(sock, SIOCOUTQNSD) > UNREAD_LIMIT_BYTES
            and _queued(sock, termios.FIONREAD) == 0)
