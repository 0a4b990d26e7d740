"""The provider interface: one request in, normalized pieces out.

A provider adapter turns one vendor's stream into four kinds of piece. The
runner never sees a vendor type, and an adapter never sees Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, Union


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text (whole code points)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of tool call `index`; `arguments` is a piece of its JSON text.

    The first fragment of an index carries `id` and `name`; later ones may
    carry only more `arguments`. The runner accumulates and parses them.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts so far; a later Usage replaces an earlier one (never summed)."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Finish:
    """The provider said the answer is complete, and why (API.md finish reasons)."""

    reason: str  # "stop" | "length" | "tool_calls" | "content_filter"


Piece = Union[TextDelta, ToolCallDelta, Usage, Finish]  # noqa: UP007


class ProviderError(Exception):
    """A provider failure, normalized.

    `type` is an API.md error type (`provider_error`, `rate_limited`,
    `timeout`, `content_filter`, ...). `retryable` says whether the same
    request may succeed later; `retry_after_s` carries the provider's hint.
    """

    def __init__(
        self,
        type: str,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class Stream(Protocol):
    """An open provider stream: iterate for pieces; `close()` ends it early.

    Closing must close the upstream connection (that is what stops a
    provider from billing for an answer nobody reads), and must be safe to
    call more than once and from the iterating greenlet.
    """

    def __iter__(self) -> Iterator[Piece]: ...

    def close(self) -> None: ...


class Provider(Protocol):
    """A vendor adapter. `open()` starts one generation's stream."""

    name: str
    default_model: str

    def open(self, request: dict[str, Any]) -> Stream:
        """Start streaming `request` (a validated GenerationRequest as a dict).

        Raises ProviderError for failures before the stream starts; the
        returned stream raises ProviderError for failures while iterating.
        """
        ...

    def models(self) -> list[str]:
        """Model ids this provider offers (for `GET /v1/models` and the page)."""
        ...
