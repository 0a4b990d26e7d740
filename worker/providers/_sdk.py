"""The shape both SDK-backed kinds share: one configured provider, opened and listed alike.

A kind (`openai`, `anthropic`) says how to make its SDK client, how to turn
a request into the API's JSON body, which endpoint to post it to and how to
read its error messages; everything else (client reuse, pool sizing, error
mapping, opening the raw stream, listing models) is here once.
"""

from __future__ import annotations

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
# Both SDKs' default (httpx Limits(max_keepalive_connections=100)): the floor of our pool.
SDK_KEEPALIVE_CONNECTIONS = 100

# One client (and connection pool) per kind, key, base URL, read timeout and
# pool size, shared by every adapter with that configuration in the process.
_clients: dict[tuple[Any, ...], Any] = {}


def pool_limits(slots: int) -> httpx2.Limits:
    """Connection limits for a process running `slots` generations at once.

    Every slot may hold one stream, so the pool keeps a connection alive per
    slot (the SDKs keep 100, which made most generations of a busier worker
    pay a new TCP — and TLS — handshake, and a resolver call through
    gevent's thread pool). No total cap: the slots already bound how many
    are open, and a cap could only make a generation queue for a connection
    with its first-token clock running.
    """
    return httpx2.Limits(max_connections=None,
                         max_keepalive_connections=max(slots, SDK_KEEPALIVE_CONNECTIONS))


class SDKProvider:
    """A configured provider over an official SDK. Subclasses fill in the class variables."""

    kind: ClassVar[str]
    stream_class: ClassVar[type[_sse.SSEStream]]
    sdk_error_class: ClassVar[type[Exception]]  # the SDK's base exception
    status_error_class: ClassVar[type[Exception]]  # the SDK's HTTP-status exception

    def __init__(self, config: ProviderConfig, slots: int) -> None:
        self.name = config.name
        self.default_model = config.model
        self.config = config
        self._client = self._shared_client(config, slots)

    # -- what a kind provides

    def make_client(self, config: ProviderConfig, timeout: httpx2.Timeout,
                    limits: httpx2.Limits) -> Any:
        """A new SDK client for `config` over a pool with `limits` (SDK retries off:
        `resilient` owns the policy)."""
        raise NotImplementedError

    def send(self, body: bytes) -> httpx2.Response:
        """POST the JSON `body` to the streaming endpoint through the SDK; the raw
        response, its body unread (SDK status errors raised as the SDK raises them)."""
        raise NotImplementedError

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        """The API's JSON body for a request (plain JSON-able data)."""
        raise NotImplementedError

    def status_message(self, exc: Any) -> str:
        """The human message of an SDK status error."""
        return str(getattr(exc, "message", exc))

    # -- shared

    def _shared_client(self, config: ProviderConfig, slots: int) -> Any:
        tuning = config.tuning
        read_s = max(tuning.first_token_timeout_s, tuning.idle_timeout_s) + READ_TIMEOUT_MARGIN_S
        key = (self.kind, config.api_key, config.base_url, read_s, slots)
        client = _clients.get(key)
        if client is None:
            client = self.make_client(config, httpx2.Timeout(read_s, connect=CONNECT_TIMEOUT_S),
                                      pool_limits(slots))
            _clients[key] = client
        return client

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
        to produce the JSON we already have.
        """
        body = orjson.dumps(self.params(request))
        try:
            response = self.send(body)
        except self.sdk_error_class as exc:
            raise self.sdk_error(exc) from exc
        except (httpx2.HTTPError, OSError) as exc:
            raise _sse.transport_error(self.name, exc) from exc
        if not isinstance(response, httpx2.Response):  # an SDK that changed what it returns
            raise TypeError(f"{self.kind} SDK returned {type(response).__name__}, not a response")
        stream = self.stream_class(response)
        stream.vendor = self.name  # transport errors name the provider, not the wire format
        return stream

    def models(self) -> list[str]:
        """Model ids from the server's `GET …/models`; the default model alone if that fails."""
        try:
            raw = self._client.models.with_raw_response.list(timeout=MODELS_TIMEOUT_S)
            listed = _sse.loads(raw.http_response.read()).get("data") or []
            ids = [m["id"] for m in listed if isinstance(m, dict) and m.get("id")]
        except (self.sdk_error_class, ProviderError, httpx2.HTTPError, OSError):
            return [self.default_model]
        return ids or [self.default_model]
