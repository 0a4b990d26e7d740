"""The zero-work floor: sleeps the TTFT, then writes the same SSE events at the same pace.

No provider, no Redis, no JSON parsing per token: whatever latency a real
system shows above this server's, measured by the same client in the same
run, is latency that system added.

Run: `python -m bench.peers.floor --port 0 --port-file PATH`. `POST /chat`
takes the same `{"messages": [{"content": "SCENARIO:{...}"}]}` body as the
proxies (keys `text`, `ttft_ms`, `tps`, `chunk_chars`, optional `start_at`).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import orjson

from bench.peers.rawhttp import SSE_HEAD, chunk, paced, serve_forever, split_tokens


def scenario_of(body: dict[str, Any]) -> dict[str, Any]:
    """The SCENARIO directive in the last message of a chat body."""
    content: str = body["messages"][-1]["content"]
    parsed: dict[str, Any] = orjson.loads(content.removeprefix("SCENARIO:"))
    return parsed


async def handle(method: str, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
    """Stream the scenario's text as Spool-shaped `delta` events, then `done`."""
    scenario = scenario_of(body)
    tokens = split_tokens(scenario["text"], scenario.get("chunk_chars", 4))
    yield SSE_HEAD + chunk(b"retry: 1000\n\n")
    async for index, token in paced(tokens, scenario.get("ttft_ms", 0),
                                    scenario.get("tps", 0), scenario.get("start_at")):
        event = b"id: %d\nevent: delta\ndata: %s\n\n" % (index + 1, orjson.dumps({"text": token}))
        yield chunk(event)
    yield chunk(b'id: %d\nevent: done\ndata: {"finish_reason":"stop"}\n\n' % (len(tokens) + 1))
    yield b"0\r\n\r\n"


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
