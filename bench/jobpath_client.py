"""The job-path benchmark's HTTP client (public API only), run as its own process.

`python -m bench.jobpath_client SPEC.json OUT.json`, where SPEC has `mode`:

- `create`: `n` POSTs of `body`, `concurrency` at a time; counts statuses.
- `first_delta`: `n` times, one after the other (`pause_s` apart): POST,
  GET the stream_url, read to the first `delta`; the time from sending the
  POST to it, and to the POST's answer (`posts`). With
  `floor: true` the floor server's `POST /chat` (same client, same path
  length: one request less) is timed instead.
- `get`: `n` times, one after the other (`pause_s` apart): GET `path` on a
  fresh connection and read the whole answer; the time each took.
- `burst`: `n` clients at once, each POSTs and reads its stream to the end;
  per generation: the POST's send time, its end, and `metrics.queue_ms`
  from its `done` event.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import sse

HOST = "127.0.0.1"


async def _post(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await sse.request(HOST, port, "POST", path, orjson.dumps(body))
    raw = await resp.body()
    return resp.status, (orjson.loads(raw) if raw and resp.status < 300 else {})


async def create(spec: dict[str, Any]) -> dict[str, Any]:
    """`n` POSTs, `concurrency` at a time."""
    statuses: dict[str, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(spec["n"]):
        queue.put_nowait(i)

    async def one_worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                status, _ = await _post(spec["port"], "/v1/generations", spec["body"])
            except (OSError, sse.HTTPError):
                status = 0
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one_worker() for _ in range(spec.get("concurrency", 32))))
    return {"statuses": statuses, "seconds": time.perf_counter() - started}


async def _read_until(resp: sse.Response, stop: set[bytes]) -> tuple[bytes, bytes]:
    """Read events until one named in `stop`; returns (name, data)."""
    dechunker = sse.Dechunker() if resp.chunked else None
    buf = b""
    while True:
        data = await resp.reader.read(sse.READ_SIZE)
        if not data:
            raise sse.HTTPError("stream ended early")
        buf += dechunker.feed(data) if dechunker else data
        events, buf = sse.parse_events(buf)
        for name, payload in events:
            if name in stop:
                return name, payload


async def first_delta(spec: dict[str, Any]) -> dict[str, Any]:
    """Sequential POST -> first delta samples, and POST -> its answer (seconds)."""
    samples, posts = [], []
    for _ in range(spec["n"]):
        t0 = time.perf_counter()
        if spec.get("floor"):
            resp = await sse.request(HOST, spec["port"], "POST", "/chat",
                                     orjson.dumps(spec["body"]))
            posts.append(time.perf_counter() - t0)
        else:
            _, created = await _post(spec["port"], "/v1/generations", spec["body"])
            posts.append(time.perf_counter() - t0)
            resp = await sse.request(HOST, spec["port"], "GET", created["stream_url"],
                                     headers={"Accept": "text/event-stream"})
        try:
            await _read_until(resp, {b"delta"})
        finally:
            resp.close()
        samples.append(time.perf_counter() - t0)
        # Idle means idle: the previous sample's end (its done event, the
        # worker's finish) is over before the next POST.
        await asyncio.sleep(spec.get("pause_s", 0.0))
    return {"samples": samples, "posts": posts}


async def get(spec: dict[str, Any]) -> dict[str, Any]:
    """Sequential GETs of one path (seconds each, whole answer read)."""
    samples = []
    for _ in range(spec["n"]):
        t0 = time.perf_counter()
        resp = await sse.request(HOST, spec["port"], "GET", spec["path"])
        if resp.status != 200:
            resp.close()
            raise sse.HTTPError(f"GET {spec['path']}: {resp.status}")
        await resp.body()
        samples.append(time.perf_counter() - t0)
        await asyncio.sleep(spec.get("pause_s", 0.0))
    return {"samples": samples}


async def _stream_one(spec: dict[str, Any], gate: asyncio.Event) -> dict[str, Any]:
    await gate.wait()
    t0 = time.perf_counter()
    try:
        _, created = await _post(spec["port"], "/v1/generations", spec["body"])
        resp = await sse.request(HOST, spec["port"], "GET", created["stream_url"],
                                 headers={"Accept": "text/event-stream"})
        try:
            name, data = await asyncio.wait_for(
                _read_until(resp, {b"done", b"error", b"cancelled"}), spec["timeout_s"])
        finally:
            resp.close()
    except Exception as exc:  # a failure is a measured error, not a crash
        return {"t0": t0, "end": time.perf_counter(), "error": f"{type(exc).__name__}: {exc}"}
    metrics = orjson.loads(data).get("metrics") or {} if name == b"done" else {}
    return {"t0": t0, "end": time.perf_counter(), "queue_ms": metrics.get("queue_ms"),
            "error": None if name == b"done" else name.decode()}


async def burst(spec: dict[str, Any]) -> dict[str, Any]:
    """`n` clients released at once: POST and read to the end."""
    gate = asyncio.Event()
    tasks = [asyncio.ensure_future(_stream_one(spec, gate)) for _ in range(spec["n"])]
    await asyncio.sleep(0.05)  # every task is waiting on the gate
    gate.set()
    return {"streams": await asyncio.gather(*tasks)}


MODES = {"create": create, "first_delta": first_delta, "get": get, "burst": burst}


def main() -> None:
    """CLI: read the spec, run it, write the result."""
    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    result = asyncio.run(MODES[spec["mode"]](spec))
    Path(sys.argv[2]).write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
