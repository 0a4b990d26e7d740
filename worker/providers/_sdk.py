"""The shape both SDK-backed kinds share: one configured provider, opened and listed alike.

A kind (`openai`, `anthropic`) says how to make its SDK client, how to turn
a request into the SDK's arguments, which streaming call to make and how to
read its error messages; everything else (client reuse, error mapping,
opening the raw stream, listing models) is here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import httpx2

from spool.provider_config import ProviderConfig
from worker.providers import _sse
from worker.providers.base import ProviderError

# Servers that need no key still get one: both SDKs refuse to start without.
PLACEHOLDER_KEY = "spool-no-key"
CONNECT_TIMEOUT_S = 10.0
# The SDK's read timeout is only a backstop: the resilience layer's gevent timeouts fire first.
READ_TIMEOUT_MARGIN_S = 30.0
MODELS_TIMEOUT_S = 5.0

# One client (and connection pool) per kind, key, base URL and read timeout,
# shared by every adapter with that configuration in the process.
_clients: dict[tuple[Any, ...], Any] = {}


class SDKProvider:
    """A configured provider over an official SDK. Subclasses fill in the class variables."""

    kind: ClassVar[str]
    stream_class: ClassVar[type[_sse.SSEStream]]
    sdk_error_class: ClassVar[type[Exception]]  # the SDK's base exception
    status_error_class: ClassVar[type[Exception]]  # the SDK's HTTP-status exception

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.default_model = config.model
        self.config = config
        self._client = self._shared_client(config)

    # -- what a kind provides

    def make_client(self, config: ProviderConfig, timeout: httpx2.Timeout) -> Any:
        """A new SDK client for `config` (SDK retries off: `resilient` owns the policy)."""
        raise NotImplementedError

    def create_call(self) -> Callable[..., Any]:
        """The SDK's `with_streaming_response.create` for this kind."""
        raise NotImplementedError

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        """The create call's keyword arguments for an API request."""
        raise NotImplementedError

    def status_message(self, exc: Any) -> str:
        """The human message of an SDK status error."""
        return str(getattr(exc, "message", exc))

    # -- shared

    def _shared_client(self, config: ProviderConfig) -> Any:
        tuning = config.tuning
        read_s = max(tuning.first_token_timeout_s, tuning.idle_timeout_s) + READ_TIMEOUT_MARGIN_S
        key = (self.kind, config.api_key, config.base_url, read_s)
        client = _clients.get(key)
        if client is None:
            client = self.make_client(config, httpx2.Timeout(read_s, connect=CONNECT_TIMEOUT_S))
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
        """Send the request; the returned stream is positioned before the first event."""
        params = self.params(request)
        try:
            response = self.create_call()(**params).__enter__()
        except self.sdk_error_class as exc:
            raise self.sdk_error(exc) from exc
        except (httpx2.HTTPError, OSError) as exc:
            raise _sse.transport_error(self.name, exc) from exc
        stream = self.stream_class(response.http_response)
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
