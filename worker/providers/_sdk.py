"""The shape both SDK-backed kinds share: one configured provider, opened and listed alike.

A kind (`openai`, `anthropic`) says how to make its SDK client, how to turn
a request into the API's JSON body, which endpoint to post it to and how to
read its error messages; everything else (lending clients, error mapping,
opening the raw stream, listing models) is here once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

import httpx2
import orjson

from spool.provider_config import ProviderConfig
from worker.providers import _sse
from worker.providers.base import ProviderError

# Servers that need no key still get one: both SDKs refuse to start without.
PLACEHOLDER_KEY = "spool-no-key"
CONNECT_TIMEOUT_S = 10.0
# The SDK's read timeout is only a backstop: the resilience layer's gevent timeouts fire first.
READ_TIMEOUT_MARGIN_S = 30.0
MODELS_TIMEOUT_S = 5.0
# A lent client serves one stream at a time, so its pool keeps the one connection.
# No total cap: a cap could only make a stream queue with its first-token clock running.
LENT_CLIENT_LIMITS = httpx2.Limits(max_connections=None, max_keepalive_connections=1)
# A client left on the shelf this long is closed: its connection expired long ago
# (httpx keeps one 5 s), and a peak's extra clients should not hold sockets for ever.
SHELF_IDLE_S = 30.0


class ClientShelf:
    """The SDK clients of one configuration, each lent to one stream at a time.

    Why not one client with a big pool: httpcore re-checks every idle
    connection of a pool on each request and each response end (a socket
    poll apiece, and gevent's `poll` is Python), so a pool kept at the
    worker's concurrency cost O(streams) polls per generation — measured at
    300 streams, more than half the worker's CPU. The SDKs' default pool
    keeps 100 idle connections, which bounds that but makes a busier worker
    open fresh connections (TCP, TLS, a resolver call through gevent's
    thread pool) for most generations. A shelf of one-connection clients
    reuses a warm connection per stream at O(1): the most recently returned
    client first, so the fewest connections stay warm. Clients are made on
    demand (about 2 ms each, sharing one TLS context), so the shelf grows
    to the process's peak concurrency for the configuration, no further.
    """

    def __init__(self, make: Callable[[httpx2.Client], Any],
                 http_client_class: type[httpx2.Client], idle_s: float = SHELF_IDLE_S) -> None:
        self._make = make  # an SDK client over the given HTTP client
        self._http_client_class = http_client_class
        self._idle_s = idle_s
        self._idle: deque[tuple[Any, float]] = deque()  # (client, given back at), oldest first
        self._tls = httpx2.create_ssl_context()  # what each client would load for itself
        self.made = 0

    def take(self) -> Any:
        """The most recently returned client, or a new one."""
        if self._idle:
            return self._idle.pop()[0]
        self.made += 1
        return self._make(self._http_client_class(verify=self._tls, limits=LENT_CLIENT_LIMITS))

    def give_back(self, client: Any) -> None:
        """Return a client whose response is closed (its connection idle, or gone);
        close the oldest one on the shelf if it has been unused for `idle_s`."""
        now = time.monotonic()
        self._idle.append((client, now))
        oldest, since = self._idle[0]
        if len(self._idle) > 1 and now - since > self._idle_s:
            self._idle.popleft()
            oldest.close()

    @property
    def idle(self) -> int:
        """Clients on the shelf now."""
        return len(self._idle)


# One shelf per kind, key, base URL and read timeout, shared by every adapter
# with that configuration in the process.
_shelves: dict[tuple[Any, ...], ClientShelf] = {}


class SDKProvider:
    """A configured provider over an official SDK. Subclasses fill in the class variables."""

    kind: ClassVar[str]
    stream_class: ClassVar[type[_sse.SSEStream]]
    sdk_error_class: ClassVar[type[Exception]]  # the SDK's base exception
    status_error_class: ClassVar[type[Exception]]  # the SDK's HTTP-status exception
    http_client_class: ClassVar[type[httpx2.Client]]  # the SDK's DefaultHttpxClient

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.default_model = config.model
        self.config = config
        self._shelf = self._shared_shelf(config)

    # -- what a kind provides

    def make_client(self, config: ProviderConfig, timeout: httpx2.Timeout,
                    http_client: httpx2.Client) -> Any:
        """A new SDK client for `config` over `http_client` (SDK retries off:
        `resilient` owns the policy)."""
        raise NotImplementedError

    def send(self, client: Any, body: bytes) -> httpx2.Response:
        """POST the JSON `body` to the streaming endpoint with SDK `client`; the raw
        response, its body unread (SDK status errors raised as the SDK raises them)."""
        raise NotImplementedError

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        """The API's JSON body for a request (plain JSON-able data)."""
        raise NotImplementedError

    def status_message(self, exc: Any) -> str:
        """The human message of an SDK status error."""
        return str(getattr(exc, "message", exc))

    # -- shared

    def _shared_shelf(self, config: ProviderConfig) -> ClientShelf:
        tuning = config.tuning
        read_s = max(tuning.first_token_timeout_s, tuning.idle_timeout_s) + READ_TIMEOUT_MARGIN_S
        key = (self.kind, config.api_key, config.base_url, read_s)
        shelf = _shelves.get(key)
        if shelf is None:
            timeout = httpx2.Timeout(read_s, connect=CONNECT_TIMEOUT_S)
            shelf = ClientShelf(lambda http: self.make_client(config, timeout, http),
                                self.http_client_class)
            # The first client costs ~50 ms (the SDK's lazy imports): pay it at start,
            # not in a generation's first-token window.
            shelf.give_back(shelf.take())
            _shelves[key] = shelf
        return shelf

    def sdk_error(self, exc: Exception) -> ProviderError:
        """Map an SDK exception raised before the stream started."""
        if isinstance(exc, self.status_error_class):
            status_exc: Any = exc
            return _sse.status_error(self.name, status_exc.status_code, self.status_message(exc),
                                     status_exc.response.headers)
        return _sse.transport_error(self.name, exc)

    def open(self, request: dict[str, Any]) -> _sse.SSEStream:
        """Send the request; the returned stream is positioned before the first event.

        The body is serialised here and posted with the SDK's own request call
        (auth, base URL, headers, timeouts, status errors), not its typed
        `create`: that walks every message through the SDK's TypedDict
        transform, a tenth of the worker's CPU per generation when profiled,
        to produce the JSON we already have. The client is lent to the
        stream, which gives it back once its response is closed.
        """
        body = orjson.dumps(self.params(request))
        client = self._shelf.take()
        try:
            response = self.send(client, body)
        except self.sdk_error_class as exc:
            self._shelf.give_back(client)  # the SDK read and closed the error response
            raise self.sdk_error(exc) from exc
        except (httpx2.HTTPError, OSError) as exc:
            self._shelf.give_back(client)
            raise _sse.transport_error(self.name, exc) from exc
        except BaseException:
            # A timeout or kill mid-send: the connection may be half-used, so this
            # client (and its pool) is dropped rather than lent again.
            client.close()
            raise
        if not isinstance(response, httpx2.Response):  # an SDK that changed what it returns
            raise TypeError(f"{self.kind} SDK returned {type(response).__name__}, not a response")
        stream = self.stream_class(response, release=lambda: self._shelf.give_back(client))
        stream.vendor = self.name  # transport errors name the provider, not the wire format
        return stream

    def models(self) -> list[str]:
        """Model ids from the server's `GET …/models`; the default model alone if that fails."""
        client = self._shelf.take()
        try:
            raw = client.models.with_raw_response.list(timeout=MODELS_TIMEOUT_S)
            listed = _sse.loads(raw.http_response.read()).get("data") or []
            ids = [m["id"] for m in listed if isinstance(m, dict) and m.get("id")]
        except (self.sdk_error_class, ProviderError, httpx2.HTTPError, OSError):
            return [self.default_model]
        finally:
            self._shelf.give_back(client)
        return ids or [self.default_model]
