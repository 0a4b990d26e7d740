"""Accumulate tool-call fragments per index; parse arguments once complete."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.providers.base import ProviderError, ToolCallDelta


@dataclass
class _Call:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class ToolCallAccumulator:
    """Collects ToolCallDelta pieces; `complete()` returns parsed calls in index order."""

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}

    def add(self, delta: ToolCallDelta) -> None:
        """Merge one fragment into its call."""
        call = self._calls.setdefault(delta.index, _Call())
        call.id = call.id or delta.id
        call.name = call.name or delta.name
        if delta.arguments:
            call.arguments.append(delta.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def complete(self) -> list[dict[str, Any]]:
        """The calls as `tool_call` event data; ProviderError if one is malformed."""
        events = []
        for position, index in enumerate(sorted(self._calls)):
            call = self._calls[index]
            if not call.name:
                raise ProviderError("provider_error", f"tool call {index} has no name")
            raw = "".join(call.arguments).strip() or "{}"
            try:
                arguments = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ProviderError(
                    "provider_error", f"tool call {call.name!r} arguments are not valid JSON"
                ) from None
            if not isinstance(arguments, dict):
                raise ProviderError("provider_error", f"tool call {call.name!r} arguments "
                                    "are not a JSON object")
            events.append({
                "index": position,
                "id": call.id or "call_" + secrets.token_urlsafe(12),
                "name": call.name,
                "arguments": arguments,
            })
        return events
