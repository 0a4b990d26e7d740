"""Reading a provider's streamed HTTP/1.1 response body below httpx.

The SDK sends the request (auth, base URL, headers, status errors); the
body of a long stream is then read here, from the connection's socket,
because httpx's and httpcore's per-chunk layers (seven generators, two
context managers and a settimeout per read) cost about as much as
everything else the worker does per token.

Two further costs per token are cut where it is safe:

- The chunked framing. h11 (httpcore's parser) spends two `next_event`
  calls, a regex and an event object on every chunk. Once h11 has read the
  headers and stands at a chunk boundary with nothing buffered,
  `ChunkDecoder` takes over the framing; the terminal chunk and its
  trailers are handed back to h11, which ends the message itself, so the
  connection goes back to the pool exactly as if h11 had read it all.
- The socket timeout. A gevent socket with a timeout starts and cancels a
  timer on every read that waits. Every read of a stream body already runs
  under a gevent timer of the resilience layer (the first-token deadline,
  the stream's idle watchdog, the drain limit), and the job under its own
  timeout, so the body is read with the socket blocking; httpcore sets the
  timeout again on the connection's next use.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

import h11
import httpx2

RAW_READ_BYTES = 65536  # httpcore's own read size
MAX_CHUNK_HEADER_BYTES = 4096  # a size line (with extensions) longer than this is refused
# A chunk size in hex (at most 20 digits, as h11 allows), then extensions, ignored.
_CHUNK_HEADER = re.compile(rb"[0-9A-Fa-f]{1,20}(?:;[^\r\n]*)?[ \t]*")
_CRLF = b"\r\n"
# h11's reader of chunked bodies: where it stands tells when the framing can be
# taken over. An h11 that moved it reads every body itself.
_CHUNKED_READER: Any = getattr(importlib.import_module("h11._readers"), "ChunkedReader", None)


class ChunkDecoder:
    """HTTP/1.1 chunked transfer coding, decoded incrementally.

    `feed(data)` returns `(payload, rest)`: the chunk data in `data`, and,
    once the terminal (zero-size) chunk begins, every byte from its size
    line on (trailers and end included) for h11 to finish; `rest` is None
    before that. Malformed framing raises `h11.RemoteProtocolError`, as h11 would.
    """

    def __init__(self) -> None:
        self._left = 0  # bytes of the current chunk's data still to come
        self._discard = 0  # bytes of the CRLF after a chunk's data still to come
        self._head = b""  # an incomplete size line

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """Decode `data`; see the class docstring."""
        if not (self._left or self._discard or self._head):
            whole = self._whole_chunk(data)
            if whole is not None:
                return whole, None
        out: list[bytes] = []
        at, end = 0, len(data)
        while at < end:
            if self._left:
                piece = data[at:at + self._left]
                out.append(piece)
                at += len(piece)
                self._left -= len(piece)
                if not self._left:
                    self._discard = 2
            elif self._discard:
                expected = _CRLF[2 - self._discard:]
                got = data[at:at + self._discard]
                if got != expected[:len(got)]:
                    raise h11.RemoteProtocolError(f"malformed chunk footer: {got!r}")
                at += len(got)
                self._discard -= len(got)
            else:
                if self._head:  # a size line split across reads
                    joined = self._head + data[at:at + MAX_CHUNK_HEADER_BYTES]
                    line_end = joined.find(_CRLF)
                    if line_end < 0:
                        self._hold(data[at:])
                        break
                    line, after = joined[:line_end], at + line_end + 2 - len(self._head)
                else:
                    line_end = data.find(_CRLF, at)
                    if line_end < 0:
                        self._hold(data[at:])
                        break
                    line, after = data[at:line_end], line_end + 2
                size = self._size(line)
                if size == 0:  # the terminal chunk: h11 reads the trailers and ends the message
                    rest = self._head + data[at:]
                    self._head = b""
                    return b"".join(out), rest
                self._head = b""
                self._left = size
                at = after
        return b"".join(out), None

    def _whole_chunk(self, data: bytes) -> bytes | None:
        """The data of `data` when it is exactly one non-empty chunk (a live
        stream's usual read: one event, one chunk, one segment), else None."""
        line_end = data.find(_CRLF)
        if line_end <= 0:
            return None
        size = self._size(data[:line_end])
        start = line_end + 2
        end = start + size
        if not size or data[end:] != _CRLF:
            return None
        return data[start:end]

    def _hold(self, partial: bytes) -> None:
        self._head += partial
        if len(self._head) > MAX_CHUNK_HEADER_BYTES:
            raise h11.RemoteProtocolError("chunk size line too long")

    @staticmethod
    def _size(line: bytes) -> int:
        if not _CHUNK_HEADER.fullmatch(line):
            raise h11.RemoteProtocolError(f"illegal chunk header: {line[:40]!r}")
        return int(line.split(b";", 1)[0].rstrip(b" \t"), 16)


def raw_body(response: httpx2.Response) -> Iterator[bytes] | None:
    """The body of a streamed HTTP/1.1 response read from its socket, or None if
    that cannot be done safely (then the caller reads `iter_bytes()`).

    Compressed bodies, HTTP/2 and any shape of httpx's internals this does
    not recognise take httpx's own path.
    """
    if response.headers.get("content-encoding", "identity") != "identity":
        return None
    # httpx2 BoundSyncStream -> ResponseStream -> httpcore2 PoolByteStream
    # -> HTTP/1.1 byte stream -> its connection.
    found: Any = response.stream
    for name in ("_stream", "_httpcore_stream", "_stream", "_connection"):
        found = getattr(found, name, None)
    state = getattr(found, "_h11_state", None)
    sock = getattr(getattr(found, "_network_stream", None), "_sock", None)
    if not isinstance(state, h11.Connection) or not hasattr(sock, "recv"):
        return None
    return read_body(state, sock)


def read_body(state: h11.Connection, sock: Any) -> Iterator[bytes]:
    """The body bytes of the response `state` (an h11 client connection past the
    response head) is reading from `sock`; h11 ends up where it would have."""
    sock.settimeout(None)  # see the module docstring
    while True:
        event = state.next_event()
        if event is h11.NEED_DATA:
            if _at_chunk_boundary(state):
                yield from _chunks(state, sock)  # h11 then reads the terminal chunk
            else:
                state.receive_data(sock.recv(RAW_READ_BYTES))  # b"" at EOF: h11 raises
        elif isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
            return


def _chunks(state: h11.Connection, sock: Any) -> Iterator[bytes]:
    """Chunk data decoded here up to the terminal chunk, which goes back to h11."""
    decoder = ChunkDecoder()
    while True:
        data = sock.recv(RAW_READ_BYTES)
        if not data:
            raise h11.RemoteProtocolError("the provider closed the connection mid-body")
        payload, rest = decoder.feed(data)
        if payload:
            yield payload
        if rest is not None:
            state.receive_data(rest)
            return


def _at_chunk_boundary(state: h11.Connection) -> bool:
    """Whether h11 is reading a chunked body, between chunks, with nothing buffered
    (h11's own state, read where it keeps it; any other shape says no)."""
    try:
        reader: Any = state._reader
        return (type(reader) is _CHUNKED_READER and not reader._bytes_in_chunk
                and not reader._bytes_to_discard and not reader._reading_trailer
                and not len(state._receive_buffer))
    except AttributeError:
        return False
