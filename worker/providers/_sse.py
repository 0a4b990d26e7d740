"""Shared plumbing for SDK-backed providers: raw SSE parsing and error mapping.

Providers keep the SDK's client (auth, base URL, timeouts, exception types)
but read the raw response body (`_rawbody`) and parse events here, because
building the SDK's typed chunk object per token costs far more CPU than the
token is worth.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import h11
import httpx2
import orjson

from worker.providers._rawbody import raw_body
from worker.providers.base import Piece, ProviderError

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
INVALID_REQUEST_STATUSES = frozenset({400, 404, 413, 422})
AUTH_STATUSES = frozenset({401, 403})

Event = tuple[bytes, bytes]  # (event name or b"", data)


def iter_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Split a byte stream into SSE events: `(event name, data)`.

    Lines end in LF or CRLF (what every vendor sends; a lone CR is not
    treated as a line end). Comments are skipped; an event with no data is
    not dispatched; an unterminated event at end of stream is dropped, as the
    SSE spec says (it may be cut mid-JSON).
    """
    buf = b""
    name = b""
    data: list[bytes] = []
    for chunk in chunks:
        # The commonest read of a live stream: one whole `data: …` event whose
        # only newlines are the two that end it (no CR, no other field), with
        # nothing left over from an earlier read.
        if (not buf and not data and not name and chunk[:6] == b"data: "
                and chunk.find(b"\n") == len(chunk) - 2 and chunk[-1:] == b"\n"):
            yield b"", chunk[6:-2]
            continue
        buf = buf + chunk if buf else chunk
        if b"\n" not in chunk:
            continue
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    yield name, data[0] if len(data) == 1 else b"\n".join(data)
                    data = []
                name = b""
                continue
            field, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value
            # comments (empty field), `id` and `retry` mean nothing to a provider stream


def loads(data: bytes) -> Any:
    """Parse one event's JSON, as a provider error if it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError(
            "provider_error", "provider sent a malformed stream event", retryable=True
        ) from None


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The provider's retry hint in seconds (`retry-after-ms`, `retry-after` secs or date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def status_error(
    vendor: str, status: int, message: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """Map an HTTP error status from `vendor` to a ProviderError."""
    hint = retry_after_s(headers)
    text = f"{vendor} answered HTTP {status}: {message}"
    if status == 429:
        return ProviderError("rate_limited", text, retryable=True, status=status,
                             retry_after_s=hint)
    if status in INVALID_REQUEST_STATUSES:
        return ProviderError("invalid_request", text, status=status)
    if status in AUTH_STATUSES:
        return ProviderError("provider_error", f"{text} (check the API key)", status=status)
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return ProviderError("provider_error", text, retryable=retryable, status=status,
                         retry_after_s=hint)


def transport_error(vendor: str, exc: BaseException) -> ProviderError:
    """Map a transport failure (raw httpx2 or the SDK's connection errors)."""
    if isinstance(exc, httpx2.TimeoutException) or "Timeout" in type(exc).__name__:
        return ProviderError("timeout", f"{vendor} timed out ({type(exc).__name__})",
                             retryable=True)
    detail = str(exc) or type(exc).__name__
    return ProviderError("provider_error", f"connection to {vendor} failed: {detail}",
                         retryable=True)


class SSEStream:
    """An open raw SSE response; subclasses turn events into pieces.

    `close()` closes the HTTP response before its body is read to the end,
    which makes the transport drop the connection rather than drain it: that
    is what tells the provider to stop generating (and billing).
    """

    vendor = "provider"

    def __init__(self, response: httpx2.Response,
                 release: Callable[[], None] | None = None) -> None:
        self._response = response
        self._release = release  # called once the response is closed (gives back its client)
        self._closed = False
        self.finished = False
        self._event_iter = self._read_events()

    def _read_events(self) -> Iterator[Event]:
        """The response's SSE events, with transport failures as ProviderError."""
        try:
            chunks = raw_body(self._response)
            yield from iter_events(self._response.iter_bytes() if chunks is None else chunks)
        except ProviderError:
            raise
        except (httpx2.HTTPError, httpx2.StreamError, OSError, h11.ProtocolError) as exc:
            if self._closed:
                return
            raise transport_error(self.vendor, exc) from exc
        finally:
            self._close_response()

    def _close_response(self) -> None:
        self._response.close()
        release, self._release = self._release, None
        if release is not None:
            release()

    def _events(self) -> Iterator[Event]:
        """Events until the stream ends or is closed (shared, so `drain` can continue it)."""
        for event in self._event_iter:
            if self._closed:
                return
            yield event

    def drain(self) -> None:
        """Read to the end of the body after the vendor's end marker.

        A body read to its end lets the transport put the connection back in
        its pool (the next generation skips a TCP and TLS handshake); closing
        it early would drop the connection. Whatever comes after the end
        marker is ignored, failures included: the answer is already complete.
        """
        try:
            for _event in self._events():
                pass
        except ProviderError:
            pass

    def __iter__(self) -> Iterator[Piece]:
        raise NotImplementedError

    def close(self) -> None:
        """Close the upstream connection; safe to call more than once."""
        self._closed = True
        self._close_response()
