"""What one fake request should do: the `SCENARIO:` directive, or server defaults.

A scenario is vendor-neutral; the wire modules turn it into OpenAI chunks or
Anthropic events. Text is pre-split into chunks here so both formats stream
exactly the same pieces.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

DIRECTIVE = "SCENARIO:"
DEFAULT_CHUNK_CHARS = 4
TOOL_ARG_FRAGMENT_CHARS = 7  # small, so tool arguments always span several chunks
WORDS = [
    "river", "stone", "lantern", "quiet", "harbor", "maple", "signal", "orbit", "velvet",
    "ember", "meadow", "pixel", "canyon", "thread", "falcon", "cobalt", "willow", "prism",
    "summit", "echo", "garnet", "tundra", "beacon", "drift",
]


@dataclass
class Defaults:
    """Server-wide pacing and length used when a scenario does not say."""

    ttft_ms: int = 200
    tps: float = 50.0
    tokens: int = 100
    name: str = "fake"  # says who answered, for `whoami` scenarios


@dataclass
class Scenario:
    """The resolved behaviour of one request."""

    chunks: list[str]
    ttft_ms: int
    tps: float
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] | None = None
    fault: str | None = None
    fault_after_tokens: int = 0
    retry_after_s: float | None = None
    finish_reason: str | None = None
    input_tokens: int = 0

    @property
    def status_fault(self) -> int | None:
        """The HTTP status to answer with instead of a stream, if the fault is one."""
        if self.fault and self.fault.isdigit():
            return int(self.fault)
        return None

    def final_usage(self) -> tuple[int, int]:
        """(input, output) tokens to report at the end."""
        if self.usage:
            return int(self.usage.get("input_tokens", 0)), int(self.usage.get("output_tokens", 0))
        return self.input_tokens, len(self.chunks) + len(self.tool_calls)

    def final_reason(self) -> str:
        """API-level finish reason: explicit, else tool_calls or stop."""
        if self.finish_reason:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


class FaultCounter:
    """Counts requests per scenario `key`, so `fail_times` faults only the first N."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def should_fault(self, key: str | None, fail_times: int | None) -> bool:
        """True when this request (the n-th with `key`) should carry the fault."""
        if fail_times is None:
            return True
        with self._lock:
            count = self._seen.get(key or "", 0) + 1
            self._seen[key or ""] = count
        return count <= fail_times

    def reset(self) -> None:
        """Forget all keys."""
        with self._lock:
            self._seen.clear()


def _content_text(content: Any) -> str:
    """Text of an OpenAI or Anthropic message content (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def last_user_text(messages: list[Any]) -> str:
    """Content of the last `user` message (tool results excluded)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def split_chunks(text: str, size: int) -> list[str]:
    """Split `text` into pieces of `size` code points (never splitting one)."""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def derived_text(prompt: str, tokens: int) -> list[str]:
    """A deterministic answer of `tokens` word-chunks derived from the prompt."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return [
        WORDS[(digest[i % len(digest)] + i) % len(WORDS)] + " " for i in range(max(0, tokens))
    ]


def _count_words(messages: list[Any]) -> int:
    return sum(
        len(_content_text(m.get("content")).split()) for m in messages if isinstance(m, dict)
    )


def resolve(body: dict[str, Any], defaults: Defaults, counter: FaultCounter) -> Scenario:
    """Turn a request body into the scenario to play."""
    messages = body.get("messages") or []
    prompt = last_user_text(messages)
    spec: dict[str, Any] = {}
    if prompt.startswith(DIRECTIVE):
        spec = orjson.loads(prompt[len(DIRECTIVE) :])
    if spec.get("whoami"):
        # Names the server and the model it was asked for: proves where a request went.
        whoami = f"{defaults.name} answering for model {body.get('model')}"
        chunks = split_chunks(whoami, DEFAULT_CHUNK_CHARS)
    elif "text" in spec:
        chunks = split_chunks(spec["text"], int(spec.get("chunk_chars", DEFAULT_CHUNK_CHARS)))
    else:
        chunks = derived_text(prompt, int(spec.get("tokens", defaults.tokens)))
    fault = spec.get("fault")
    if spec.get("fault_on") not in (None, defaults.name):
        fault = None  # the fault belongs to another named server
    if fault is not None and not counter.should_fault(spec.get("key"), spec.get("fail_times")):
        fault = None
    return Scenario(
        chunks=chunks,
        ttft_ms=int(spec.get("ttft_ms", defaults.ttft_ms)),
        tps=float(spec.get("tps", defaults.tps)),
        tool_calls=list(spec.get("tool_calls") or []),
        usage=spec.get("usage"),
        fault=str(fault) if fault is not None else None,
        fault_after_tokens=int(spec.get("fault_after_tokens", 0)),
        retry_after_s=spec.get("retry_after_s"),
        finish_reason=spec.get("finish_reason"),
        input_tokens=_count_words(messages) + 3,
    )
