"""Redis memory per generation, measured with MEMORY USAGE on real keys.

Starts a private redis-server, a web and a worker (the test harness's real
processes), runs mock generations of several sizes to completion and sums
MEMORY USAGE over every key each one left behind: record, log, text, tool
calls, tombstone, and RQ's job hash. Run: `python -m bench.generation_memory`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import redis
import requests

from spool.keys import Keys
from tests.harness import RedisServer, Stack, wait_until

WORDS = "the quick brown fox jumps over a lazy dog while streaming tokens to many readers "
SIZES_FULL = (1_000, 10_000, 100_000)
SIZES_QUICK = (1_000, 10_000)
BUFFERS = ("none", "sentence")
SAMPLES = 3  # generations per (size, buffer); the mean is reported


def _text(chars: int) -> str:
    sentences = (WORDS.strip() + ". ") * (chars // len(WORDS) + 1)
    return sentences[:chars]


def _run_one(stack: Stack, text: str, buffer: str) -> str:
    body = {"messages": [{"role": "user", "content": "measure"}], "buffer": buffer,
            "max_tokens": 32768,
            "mock": {"text": text, "tokens_per_second": 0, "ttft_ms": 0}}
    created = requests.post(stack.url("/v1/generations"), json=body, timeout=30).json()
    gen_id: str = created["id"]

    def finished() -> bool:
        view = requests.get(stack.url(f"/v1/generations/{gen_id}"), timeout=30).json()
        return view["status"] == "completed"

    wait_until(finished, 120, what=f"{gen_id} to finish")
    return gen_id


def _usage(client: redis.Redis, key: str) -> int:
    used = client.memory_usage(key, samples=0)
    return int(used or 0)


def measure(client: redis.Redis, keys: Keys, gen_id: str) -> dict[str, int]:
    """Bytes per key of one finished generation (MEMORY USAGE, all samples)."""
    parts = {
        "record": keys.record(gen_id), "log": keys.log(gen_id), "text": keys.text(gen_id),
        "tools": keys.tool_calls(gen_id), "tombstone": keys.tombstone(gen_id),
        "rq_job": f"rq:job:{gen_id}",
    }
    sizes = {name: _usage(client, key) for name, key in parts.items()}
    sizes["log_entries"] = int(client.llen(keys.log(gen_id)))  # type: ignore[arg-type]
    return sizes


def run(quick: bool = False) -> dict[str, Any]:
    """Rows of {text_chars, buffer, log_entries, bytes per key, total}."""
    server = RedisServer()
    server.start()
    stack = Stack(server.url, {"SPOOL_WEB_GRACE_S": "1"})
    rows = []
    try:
        stack.start_web()
        stack.start_worker()
        client = redis.Redis.from_url(server.url)
        keys = Keys(stack.namespace)
        for chars in SIZES_QUICK if quick else SIZES_FULL:
            for buffer in BUFFERS:
                samples = [measure(client, keys, _run_one(stack, _text(chars), buffer))
                           for _ in range(1 if quick else SAMPLES)]
                row: dict[str, Any] = {"text_chars": chars, "buffer": buffer}
                for name in samples[0]:
                    row[name] = round(sum(s[name] for s in samples) / len(samples))
                spool_bytes = sum(row[k] for k in ("record", "log", "text", "tools", "tombstone"))
                row["spool_bytes"] = spool_bytes
                row["total_bytes"] = spool_bytes + row["rq_job"]
                row["bytes_per_char"] = round(row["total_bytes"] / chars, 2)
                rows.append(row)
        client.close()
    finally:
        stack.close()
        server.stop()
    return {"name": "generation_memory", "rows": rows}


def main(argv: list[str]) -> int:
    """Print the table (and JSON with --json)."""
    result = run(quick="--quick" in argv)
    if "--json" in argv:
        print(json.dumps(result, indent=2))
        return 0
    columns = ["text_chars", "buffer", "log_entries", "record", "log", "text", "tombstone",
               "rq_job", "total_bytes", "bytes_per_char"]
    print(" | ".join(columns))
    for row in result["rows"]:
        print(" | ".join(str(row[c]) for c in columns))
    return 0


try:  # registered with `python -m bench`; also runnable standalone
    from bench.registry import Context, Row, scenario
except ImportError:
    pass
else:

    @scenario("memory", "per_generation")
    def _registered(ctx: Context) -> list[Row]:
        """Redis memory of one finished generation, by answer length and buffering."""
        return [{"scenario": "memory", "system": "spool", "n": row.get("text_chars", 0), **row}
                for row in run(ctx.quick)["rows"]]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
