"""The load client: N concurrent generations/streams read over SSE, measured client-side.

Run as `python -m bench.loadclient SPEC.json OUT.json` (a separate process so
its CPU and GIL never mix with the harness's sampling thread). It records,
per stream, time to first delta, gaps between deltas, the exact text, and
errors; it writes one JSON summary.

Modes (how a system is asked for a stream):
- `direct`: `POST /chat {"messages": [...]}` answers with the SSE stream
  (floor server, FastAPI and Flask proxies).
- `spool`: `POST /v1/generations`, then `GET stream_url`.
- `flasksse`: `GET /stream?channel=C` (subscribe), then `POST /generate`.
With `shared`, one generation is read by all N readers ("many readers").
"""

from __future__ import annotations

import asyncio
import difflib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import sse
from bench.textgen import make_text

ERROR_SAMPLES = 5
RECORD_SAMPLE_EVERY = 10  # every 10th Spool generation's record is fetched for its metrics
SLOW_RCVBUF = 8192  # bytes: the slow reader's socket buffers almost nothing
MAX_DIFF_CELLS = 4_000_000  # beyond this a text diff would stall the client


@dataclass
class Spec:
    """What to run; built by the harness, passed as JSON."""

    host: str
    port: int
    mode: str
    n: int
    window_s: float = 2.0
    ttft_ms: int = 200
    tps: float = 50.0
    chars: int = 400
    chunk_chars: int = 4
    provider: str = "mock"
    shared: bool = False
    slow_readers: int = 0
    slow_after_deltas: int = 5
    slow_pause_s: float = 8.0
    timeout_s: float = 120.0
    api_key: str | None = None

    def directive(self, seed: int, start_at: float | None = None) -> dict[str, Any]:
        """The fake provider's SCENARIO directive for stream `seed`."""
        scenario: dict[str, Any] = {
            "text": make_text(seed, self.chars), "ttft_ms": self.ttft_ms, "tps": self.tps,
            "chunk_chars": self.chunk_chars,
        }
        if start_at is not None:
            scenario["start_at"] = start_at
        return scenario

    def messages(self, seed: int, start_at: float | None = None) -> list[dict[str, str]]:
        """Chat messages carrying the directive."""
        content = "SCENARIO:" + orjson.dumps(self.directive(seed, start_at)).decode()
        return [{"role": "user", "content": content}]


@dataclass
class StreamResult:
    """What one reader saw."""

    expected: str
    t0: float = 0.0
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    terminal: bool = False
    error: str | None = None
    slow: bool = False
    end: float = 0.0
    gen_id: str | None = None
    server_metrics: dict[str, Any] | None = None


def _headers(spec: Spec) -> dict[str, str]:
    return {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}


async def _read_sse(resp: sse.Response, result: StreamResult, spec: Spec) -> None:
    if resp.status != 200:
        body = await resp.body()
        raise sse.HTTPError(f"status {resp.status}: {body[:200]!r}")
    dechunker = sse.Dechunker() if resp.chunked else None
    buf = b""
    last = 0.0
    paused = not result.slow
    reader = resp.reader
    while True:
        data = await reader.read(sse.READ_SIZE)
        if not data:
            break
        now = time.perf_counter()
        buf += dechunker.feed(data) if dechunker else data
        events, buf = sse.parse_events(buf)
        for name, payload in events:
            text = sse.delta_text(name, payload)
            if text is not None:
                if result.ttft is None:
                    result.ttft = now - result.t0
                else:
                    result.gaps.append(now - last)
                last = now
                result.arrivals.append(now)
                result.parts.append(text)
            elif sse.is_terminal(name, payload):
                result.terminal = True
                if name == b"error":
                    result.error = f"error event: {payload[:200]!r}"
                return
        if not paused and len(result.parts) >= spec.slow_after_deltas:
            paused = True
            # The slow reader stops reading until the others are long done,
            # then catches up; the server must neither buffer it nor stall others.
            await asyncio.sleep(spec.slow_pause_s)
    if dechunker is not None and dechunker.finished:
        return
    raise sse.HTTPError("stream ended without a terminal event")


async def _get_json(spec: Spec, path: str) -> dict[str, Any]:
    resp = await sse.request(spec.host, spec.port, "GET", path, headers=_headers(spec))
    raw = await resp.body()
    parsed: dict[str, Any] = orjson.loads(raw) if resp.status == 200 and raw else {}
    return parsed


async def _post_json(spec: Spec, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await sse.request(spec.host, spec.port, "POST", path, orjson.dumps(body),
                             _headers(spec))
    raw = await resp.body()
    if resp.status >= 300:
        raise sse.HTTPError(f"POST {path} status {resp.status}: {raw[:200]!r}")
    parsed: dict[str, Any] = orjson.loads(raw) if raw else {}
    return parsed


def spool_body(spec: Spec, seed: int) -> dict[str, Any]:
    """`POST /v1/generations` body for stream `seed`."""
    body: dict[str, Any] = {"provider": spec.provider, "max_tokens": 32768}
    if spec.provider == "mock":
        body["messages"] = [{"role": "user", "content": "bench"}]
        body["mock"] = {"text": make_text(seed, spec.chars), "tokens_per_second": spec.tps,
                        "ttft_ms": spec.ttft_ms, "chunk": "token"}
    else:
        body["messages"] = spec.messages(seed)
    return body


async def _open_stream(spec: Spec, seed: int, result: StreamResult,
                       shared_url: str | None) -> None:
    """Start (or join) a generation and read it to its end."""
    result.t0 = result.t0 or time.perf_counter()
    rcvbuf = SLOW_RCVBUF if result.slow else None
    if spec.mode == "direct":
        start_at = _SHARED_START if spec.shared else None
        resp = await sse.request(spec.host, spec.port, "POST", "/chat",
                                 orjson.dumps({"messages": spec.messages(seed, start_at)}),
                                 rcvbuf=rcvbuf)
    elif spec.mode == "spool":
        if shared_url:
            url = shared_url
        else:
            created = await _post_json(spec, "/v1/generations", spool_body(spec, seed))
            url, result.gen_id = created["stream_url"], created["id"]
        resp = await sse.request(spec.host, spec.port, "GET", url,
                                 headers={"Accept": "text/event-stream", **_headers(spec)},
                                 rcvbuf=rcvbuf)
    elif spec.mode == "flasksse":
        channel = shared_url or f"gen-{seed}"
        resp_task = asyncio.ensure_future(sse.request(
            spec.host, spec.port, "GET", f"/stream?channel={channel}",
            headers={"Accept": "text/event-stream"}, rcvbuf=rcvbuf))
        if not spec.shared:
            # flask-sse has no replay: subscribe first, then start the generation.
            await asyncio.sleep(0)
            await _post_json(spec, "/generate", {"channel": channel,
                                                 "messages": spec.messages(seed)})
        resp = await resp_task
    else:
        raise ValueError(f"unknown mode {spec.mode!r}")
    try:
        await _read_sse(resp, result, spec)
    finally:
        resp.close()
    if result.gen_id and seed % RECORD_SAMPLE_EVERY == 0:
        record = await _get_json(spec, f"/v1/generations/{result.gen_id}")
        result.server_metrics = record.get("metrics") or {}


_SHARED_START: float | None = None


async def _create_shared(spec: Spec) -> str | None:
    """Start the one generation every reader of a `shared` run reads."""
    global _SHARED_START
    _SHARED_START = time.time()
    if spec.mode == "spool":
        url: str = (await _post_json(spec, "/v1/generations", spool_body(spec, 0)))["stream_url"]
        return url
    if spec.mode == "flasksse":
        await _post_json(spec, "/generate", {"channel": "shared", "messages": spec.messages(0)})
        return "shared"
    return None


async def _one(spec: Spec, seed: int, delay: float, result: StreamResult,
               shared_url: str | None) -> None:
    await asyncio.sleep(delay)
    try:
        await asyncio.wait_for(_open_stream(spec, seed, result, shared_url), spec.timeout_s)
    except Exception as exc:  # every failure is a measured error, not a crash
        result.error = result.error or f"{type(exc).__name__}: {exc}"[:300]
    result.end = time.perf_counter()


async def run(spec: Spec) -> list[StreamResult]:
    """Run all streams; arrivals are spread evenly over `window_s`."""
    results = [StreamResult(make_text(0 if spec.shared else i, spec.chars),
                            slow=i < spec.slow_readers) for i in range(spec.n)]
    shared_url = None
    if spec.shared:
        t0 = time.perf_counter()
        shared_url = await _create_shared(spec)
        for res in results:
            res.t0 = t0
    step = spec.window_s / max(spec.n, 1)
    await asyncio.gather(*(_one(spec, 0 if spec.shared else i, i * step, res, shared_url)
                           for i, res in enumerate(results)))
    return results


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of `a` and `b` (compared in blocks, then by character)."""
    limit, i, block = min(len(a), len(b)), 0, 1024
    while i + block <= limit and a[i:i + block] == b[i:i + block]:
        i += block
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def text_damage(expected: str, got: str) -> tuple[int, int]:
    """(lost, doubled) characters of `got` against `expected`.

    Common prefix and suffix are cut first; a differing middle too long for
    an exact diff (quadratic) is counted by its length difference only.
    """
    if got == expected:
        return 0, 0
    head = _common_prefix(expected, got)
    expected, got = expected[head:], got[head:]
    tail = _common_prefix(expected[::-1], got[::-1])
    if tail:
        expected, got = expected[:-tail], got[:-tail]
    if len(expected) * len(got) > MAX_DIFF_CELLS:
        return max(0, len(expected) - len(got)), max(0, len(got) - len(expected))
    lost = doubled = 0
    matcher = difflib.SequenceMatcher(None, expected, got, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            lost += i2 - i1
        if tag in ("insert", "replace"):
            doubled += j2 - j1
    return lost, doubled


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def summarize(spec: Spec, results: list[StreamResult], wall_s: float) -> dict[str, Any]:
    """Aggregate per-stream results into the figures the report shows."""
    normal = [r for r in results if not r.slow]
    ttfts = [r.ttft for r in normal if r.ttft is not None]
    gaps = [g for r in normal for g in r.gaps]
    lost = doubled = exact = 0
    chars = 0
    errors: list[str] = []
    for res in results:
        got = "".join(res.parts)
        chars += len(got)
        if res.error is None and not res.terminal:
            res.error = "no terminal event"
        if res.error is not None:
            errors.append(res.error)
        damage = text_damage(res.expected, got)
        lost, doubled = lost + damage[0], doubled + damage[1]
        exact += got == res.expected and res.error is None
    starts = [r.t0 for r in results if r.t0]
    ends = [r.end for r in results if r.end]
    active_s = (max(ends) - min(starts)) if starts and ends else wall_s
    summary: dict[str, Any] = {
        "streams": len(results), "exact": exact, "errors": len(errors),
        "error_samples": sorted(set(errors))[:ERROR_SAMPLES],
        "lost_chars": lost, "doubled_chars": doubled, "chars": chars,
        "tokens": chars / spec.chunk_chars, "active_s": round(active_s, 3),
        "tok_per_s": round(chars / spec.chunk_chars / active_s, 1) if active_s else None,
        "ttft_p50_ms": _ms(percentile(ttfts, 50)), "ttft_p99_ms": _ms(percentile(ttfts, 99)),
        "gap_p50_ms": _ms(percentile(gaps, 50)), "gap_p99_ms": _ms(percentile(gaps, 99)),
        "gap_max_ms": _ms(max(gaps) if gaps else None),
        "slow_exact": sum("".join(r.parts) == r.expected for r in results if r.slow),
    }
    if spec.shared:
        summary.update(_spread(normal))
    summary.update(_server_metrics(results))
    return summary


def _server_metrics(results: list[StreamResult]) -> dict[str, Any]:
    """Spool's own view of sampled generations: time queued, and TTFT from worker start."""
    sampled = [r.server_metrics for r in results if r.server_metrics]
    if not sampled:
        return {}
    queue = [float(m["queue_ms"]) for m in sampled if m.get("queue_ms") is not None]
    ttft = [float(m["ttft_ms"]) for m in sampled if m.get("ttft_ms") is not None]
    return {"queue_ms_p50": percentile(queue, 50), "queue_ms_p99": percentile(queue, 99),
            "server_ttft_ms_p50": percentile(ttft, 50)}


def _spread(readers: list[StreamResult]) -> dict[str, Any]:
    """Fan-out spread: for each delta index, last reader's arrival minus first's."""
    depth = min((len(r.arrivals) for r in readers), default=0)
    spreads = [max(r.arrivals[k] for r in readers) - min(r.arrivals[k] for r in readers)
               for k in range(depth)]
    return {"spread_p50_ms": _ms(percentile(spreads, 50)),
            "spread_p99_ms": _ms(percentile(spreads, 99))}


def main(argv: list[str]) -> int:
    """Entry point: `python -m bench.loadclient SPEC.json OUT.json`."""
    spec = Spec(**orjson.loads(Path(argv[0]).read_bytes()))
    try:
        import uvloop  # optional: a cheaper event loop leaves more CPU to the servers
        uvloop.install()
    except ImportError:
        pass
    started = time.perf_counter()
    results = asyncio.run(run(spec))
    summary = summarize(spec, results, time.perf_counter() - started)
    Path(argv[1]).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
