"""A minimal OpenAI-format pacing provider, used only until `tests/fakeprovider` lands.

Speaks just the streaming `POST /v1/chat/completions` the benchmark needs,
driven by the same `SCENARIO:` directive as the shared fake provider.
Run: `python -m bench.pacer --port 0 --port-file PATH`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from bench.peers.floor import scenario_of
from bench.peers.rawhttp import chunk, paced, serve_forever, split_tokens

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


def _chunk_event(delta: dict[str, Any], finish: str | None, created: int) -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created,
            "model": "bench", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return chunk(b"data: " + orjson.dumps(body) + b"\n\n")


async def handle(method: str, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
    """Stream the directive's text as Chat Completions chunks."""
    scenario = scenario_of(body)
    tokens = split_tokens(scenario["text"], scenario.get("chunk_chars", 4))
    created = int(time.time())
    yield HEAD + _chunk_event({"role": "assistant", "content": ""}, None, created)
    async for _, token in paced(tokens, scenario.get("ttft_ms", 0), scenario.get("tps", 0),
                                scenario.get("start_at")):
        yield _chunk_event({"content": token}, None, created)
    yield _chunk_event({}, "stop", created)
    yield chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()
    serve_forever(handle, args.host, args.port, args.port_file)


if __name__ == "__main__":
    main()
