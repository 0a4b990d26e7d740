"""Minimal asyncio HTTP/1.1 plumbing shared by the floor server and the pacing provider.

Just enough HTTP for loopback benchmarking: one request per connection,
JSON bodies with Content-Length, chunked streaming responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

Handler = Callable[[str, str, dict[str, Any]], AsyncIterator[bytes]]
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


def split_tokens(text: str, chunk_chars: int) -> list[str]:
    """`text` cut into pieces of `chunk_chars` code points."""
    size = max(1, chunk_chars)
    return [text[i:i + size] for i in range(0, len(text), size)]


async def paced(tokens: list[str], ttft_ms: float, tps: float,
                start_at: float | None = None) -> AsyncIterator[tuple[int, str]]:
    """Yield `(index, token)` on an absolute schedule: first after TTFT, then 1/tps apart.

    An absolute schedule (not sleep-per-token) keeps the pace exact however
    late one wake-up was, so the floor is the ideal every system is held to.
    """
    origin = time.time() if start_at is None else start_at
    first = origin + ttft_ms / 1000
    for index, token in enumerate(tokens):
        due = first + (index / tps if tps > 0 else 0)
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield index, token


def chunk(payload: bytes) -> bytes:
    """One chunk of chunked transfer encoding."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, Any]]:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    length = 0
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return method, path, (orjson.loads(body) if body else {})


def serve_forever(handler: Handler, host: str, port: int, port_file: str | None) -> None:
    """Run `handler` for every request until killed; write the bound port to `port_file`."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, body = await _read_request(reader)
            async for data in handler(method, path, body):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to clean up
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def main() -> None:
        server = await asyncio.start_server(on_connection, host, port, backlog=4096)
        bound = server.sockets[0].getsockname()[1]
        if port_file:
            Path(port_file).write_text(str(bound))
        async with server:
            await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
