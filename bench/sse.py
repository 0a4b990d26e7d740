"""A small, cheap HTTP/1.1 + Server-Sent Events client for the load generator.

Hand-written on asyncio streams: the load client shares two cores with the
servers it measures, so every event must cost it as little as possible.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

READ_SIZE = 65536
TERMINAL_EVENTS = frozenset({b"done", b"error", b"cancelled"})


class HTTPError(Exception):
    """A non-2xx answer or a malformed response."""


@dataclass
class Response:
    """An HTTP response whose body is still on the wire."""

    status: int
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def chunked(self) -> bool:
        """True when the body uses chunked transfer encoding."""
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    async def body(self) -> bytes:
        """Read the whole body (chunked, sized or until EOF) and close."""
        try:
            if self.chunked:
                dechunker = Dechunker()
                parts = []
                while not dechunker.finished:
                    data = await self.reader.read(READ_SIZE)
                    if not data:
                        break
                    parts.append(dechunker.feed(data))
                return b"".join(parts)
            if "content-length" in self.headers:
                return await self.reader.readexactly(int(self.headers["content-length"]))
            return await self.reader.read()
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


async def _connect(host: str, port: int, rcvbuf: int | None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if rcvbuf is None:
        return await asyncio.open_connection(host, port, limit=READ_SIZE)
    # A small receive buffer makes a reader that stops reading push back on
    # the server at once, instead of after megabytes of kernel buffering.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock, limit=READ_SIZE)


async def request(host: str, port: int, method: str, path: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None, rcvbuf: int | None = None) -> Response:
    """Send one request on a fresh connection and read the status line and headers."""
    reader, writer = await _connect(host, port, rcvbuf)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        writer.close()
        raise HTTPError(f"bad response head: {exc!r}") from None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        writer.close()
        raise HTTPError(f"bad status line {status_line!r}")
    parsed = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            parsed[name.strip().lower()] = value.strip()
    return Response(int(parts[1]), parsed, reader, writer)


class Dechunker:
    """Incremental decoder of chunked transfer encoding."""

    def __init__(self) -> None:
        self._buf = b""
        self._remaining = 0  # bytes of the current chunk still to come
        self._skip_crlf = False
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        """Feed raw bytes, get the payload bytes they complete."""
        if self.finished:
            return b""  # only the trailer's CRLF can follow the last chunk
        buf = self._buf + data if self._buf else data
        out = []
        pos = 0
        while pos < len(buf):
            if self._remaining:
                take = min(self._remaining, len(buf) - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._skip_crlf = True
                continue
            if self._skip_crlf:
                if len(buf) - pos < 2:
                    break
                pos += 2
                self._skip_crlf = False
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            size = int(buf[pos:end].split(b";", 1)[0], 16)
            pos = end + 2
            if size == 0:
                self.finished = True
                pos = len(buf)
                break
            self._remaining = size
        self._buf = buf[pos:]
        return b"".join(out)


def parse_events(block_buf: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Split SSE bytes into complete `(event, data)` pairs and the unfinished rest.

    Comment-only blocks (pings) and `retry:` lines are skipped; `id:` is not
    needed by the load client (order is checked through the text itself).
    """
    if b"\r" in block_buf:
        block_buf = block_buf.replace(b"\r\n", b"\n")
    blocks = block_buf.split(b"\n\n")
    rest = blocks.pop()
    return [ev for ev in _events(blocks) if ev is not None], rest


def _events(blocks: list[bytes]) -> Iterator[tuple[bytes, bytes] | None]:
    for block in blocks:
        name = b"message"
        data = None
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:].lstrip(b" ") if len(line) > 5 else b""
                data = value if data is None else data + b"\n" + value
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        yield None if data is None else (name, data)


def delta_text(name: bytes, data: bytes) -> str | None:
    """The text of a delta event (Spool's and the peers' shape), else None."""
    if name != b"delta":
        return None
    text: str = orjson.loads(data)["text"]
    return text


def is_terminal(name: bytes, data: bytes) -> bool:
    """True for a terminal event (Spool's done/error/cancelled, or OpenAI's [DONE])."""
    return name in TERMINAL_EVENTS or data == b"[DONE]"
