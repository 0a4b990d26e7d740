"""SSE lines every facade's stream is made of (pure, no Flask).

The OpenAI-style streams and the Vercel AI SDK's UI message stream are all
`data: <json>` lines ending with `data: [DONE]`, with comment lines as
keep-alives (every SSE parser skips them).
"""

from __future__ import annotations

from typing import Any

import orjson

DONE_LINE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def data_line(body: Any) -> bytes:
    """One SSE `data:` line (compact JSON never holds a raw line break)."""
    return b"data: " + orjson.dumps(body) + b"\n\n"
