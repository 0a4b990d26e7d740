"""What the OpenAI facade costs over Spool's native SSE relay.

`python -m bench.facade [--quick]` measures two things and prints a table:

- `micro`: CPU per event to turn a stored log entry into what goes on the
  wire — the native relay's frame vs the facade's `chat.completion.chunk`
  (which parses the entry's JSON and builds a new object).
- `e2e`: the same generations read end to end through real gunicorn + worker
  processes, natively (`POST /v1/generations` + events) and through
  `POST /v1/chat/completions` with `stream: true`: wall time per stream,
  bytes on the wire and the web process's CPU per delta. The mock provider
  runs as fast as it can (`tokens_per_second: 0`), so the web side is what
  is measured. Every stream's text is checked against the expected text.

Numbers are for comparison on one machine, never asserted anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import orjson
import psutil
import requests

from spool.events import encode_entry
from spool.log import dumps
from tests.harness import RedisServer, Stack
from webapp.facades.chat_format import ChunkStream
from webapp.sse import entry_frame

MICRO_EVENTS = {True: 20_000, False: 200_000}
E2E_RUNS = {True: 3, False: 10}
E2E_CHARS = {True: 4_000, False: 40_000}
WORD = "spool🙂 "
HTTP_TIMEOUT_S = 120


def _text(chars: int) -> str:
    return (WORD * (chars // len(WORD) + 1))[:chars]


def micro(quick: bool) -> list[dict[str, Any]]:
    """CPU µs per delta event: native frame vs facade chunk."""
    count = MICRO_EVENTS[quick]
    raws = [encode_entry(i + 1, "delta", dumps({"text": "tok" + str(i % 10) + " "})).encode()
            for i in range(count)]
    started = time.process_time()
    for raw in raws:
        seq, name, data = raw.split(b" ", 2)
        entry_frame(seq, name, data)
    native = time.process_time() - started
    chunks = ChunkStream("gen_benchbenchbenchbench", 0, "mock/mock-1", False)
    started = time.process_time()
    for raw in raws:
        _, name, data = raw.split(b" ", 2)
        chunks.feed(name.decode(), orjson.loads(data))
    facade = time.process_time() - started
    return [{"scenario": "facade.micro", "system": system, "n": count,
             "us_per_event": round(seconds / count * 1e6, 3)}
            for system, seconds in (("native", native), ("facade", facade))]


def _cpu(web_pid: int) -> float:
    root = psutil.Process(web_pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _read_native(stack: Stack, body: dict[str, Any]) -> tuple[str, int, int]:
    created = requests.post(stack.url("/v1/generations"), json=body, timeout=HTTP_TIMEOUT_S)
    created.raise_for_status()
    resp = requests.get(stack.url(created.json()["stream_url"]), stream=True,
                        timeout=HTTP_TIMEOUT_S)
    text, deltas, size, event = [], 0, 0, ""
    for line in resp.iter_lines():
        size += len(line) + 1
        if line.startswith(b"event: "):
            event = line[7:].decode()
        elif line.startswith(b"data: ") and event == "delta":
            text.append(orjson.loads(line[6:])["text"])
            deltas += 1
    return "".join(text), deltas, size


def _read_facade(stack: Stack, body: dict[str, Any]) -> tuple[str, int, int]:
    facade_body = {**body, "model": "mock/mock-1", "stream": True}
    resp = requests.post(stack.url("/v1/chat/completions"), json=facade_body, stream=True,
                         timeout=HTTP_TIMEOUT_S)
    resp.raise_for_status()
    text, deltas, size = [], 0, 0
    for line in resp.iter_lines():
        size += len(line) + 1
        if line.startswith(b"data: {"):
            content = orjson.loads(line[6:])["choices"][0]["delta"].get("content")
            if content:
                text.append(content)
                deltas += 1
    return "".join(text), deltas, size


def e2e(quick: bool) -> list[dict[str, Any]]:
    """Sequential streams through real processes, native vs facade."""
    expected = _text(E2E_CHARS[quick])
    body = {"messages": [{"role": "user", "content": "bench"}], "max_tokens": 32768,
            "mock": {"text": expected, "tokens_per_second": 0, "ttft_ms": 0}}
    redis_server = RedisServer()
    redis_server.start()
    stack = Stack(redis_server.url)
    rows = []
    try:
        web = stack.start_web()
        stack.start_worker()
        for system, read in (("native", _read_native), ("facade", _read_facade)):
            read(stack, body)  # warm-up
            walls, cpu, deltas, size = [], 0.0, 0, 0
            for _ in range(E2E_RUNS[quick]):
                cpu_before, started = _cpu(web.proc.pid), time.perf_counter()
                text, count, nbytes = read(stack, body)
                walls.append(time.perf_counter() - started)
                cpu += _cpu(web.proc.pid) - cpu_before
                if text != expected:
                    raise AssertionError(f"{system}: the streamed text differs")
                deltas, size = deltas + count, size + nbytes
            rows.append({"scenario": "facade.e2e", "system": system, "n": E2E_RUNS[quick],
                         "deltas_per_stream": deltas // E2E_RUNS[quick],
                         "wall_s_p50": round(statistics.median(walls), 3),
                         "web_cpu_us_per_delta": round(cpu / deltas * 1e6, 1),
                         "bytes_per_delta": round(size / deltas, 1)})
    finally:
        stack.close()
        redis_server.stop()
    return rows


def run(quick: bool) -> dict[str, Any]:
    """Both measurements, as rows for a table."""
    return {"rows": [*micro(quick), *e2e(quick)]}


def main(argv: list[str] | None = None) -> int:
    """Run and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.facade", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small loads")
    args = parser.parse_args(argv)
    rows = run(args.quick)["rows"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row.get(column, "")) for column in columns))
    return 0


try:  # registered with `python -m bench`; also runnable standalone
    from bench.registry import Context, Row, scenario
except ImportError:
    pass
else:

    @scenario("facade", "cost")
    def _registered(ctx: Context) -> list[Row]:
        """CPU per event of the OpenAI-format facade beside the native SSE stream."""
        return [{"scenario": "facade", "system": "spool", "n": index, **row}
                for index, row in enumerate(run(ctx.quick)["rows"])]


if __name__ == "__main__":
    sys.exit(main())
