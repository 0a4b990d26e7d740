"""The job path's latency figure: idle POST -> first delta, and what bounds it on this host.

Issue 13's line 4 (idle `POST /v1/generations` -> first `delta` of its
stream, mock `ttft_ms: 0`) is two HTTP requests, the POST and the stream's
GET. Beside it, measured by the same client with the same idle pause:

- the floor server's one `POST /chat` -> first delta;
- the split: POST -> its answer, and the rest (the GET -> first delta);
- Spool's `GET /healthz` (one request through the whole web stack), and the
  same request to a do-nothing WSGI app under the Procfile's own web command
  (`bench.peers.bare_wsgi`): what the HTTP server alone costs per idle
  request here. Two of those are the least any two-request path can take;
- the same path back to back (what the processes' own work costs), and a
  Redis PING after the idle pause against back to back (what waking costs).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import redis

from bench import systems
from bench.jobpath_probe import row, run_client
from bench.registry import Context, Row
from bench.systems import Deployment

IDLE_PAUSE_S = 0.05  # between samples, so each starts on an idle system
WARMUP = 10
FLOOR_BODY = {"messages": [{"role": "user", "content": 'SCENARIO:{"text":"hello there",'
                                                      '"ttft_ms":0,"tps":0}'}]}
GOAL_MS = 3.0


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _idle(port: int, samples: int, **spec: Any) -> dict[str, Any]:
    """Warm up, then `samples` idle measurements of one client mode."""
    run_client({**spec, "port": port, "n": WARMUP})
    return run_client({**spec, "port": port, "n": samples, "pause_s": IDLE_PAUSE_S})


def _floor_ms(ctx: Context, samples: int) -> float:
    floor = systems.launch_floor(ctx.provider_url)
    try:
        return _p50_ms(_idle(floor.port, samples, mode="first_delta", body=FLOOR_BODY,
                             floor=True)["samples"])
    finally:
        floor.stop()


def _bare_web_ms(dep: Deployment, samples: int) -> float:
    assert dep.redis is not None
    bare = systems.launch_bare_web(dep.redis.url)
    try:
        return _p50_ms(_idle(bare.port, samples, mode="get", path="/healthz")["samples"])
    finally:
        bare.stop()


def _ping_us(dep: Deployment, samples: int, pause_s: float) -> float:
    """Median µs of a Redis PING sent `pause_s` after the last one (a host diagnostic)."""
    assert dep.redis is not None
    client = redis.Redis.from_url(dep.redis.url)
    try:
        client.ping()
        taken = []
        for _ in range(samples):
            time.sleep(pause_s)
            started = time.perf_counter()
            client.ping()
            taken.append(time.perf_counter() - started)
    finally:
        client.close()
    return statistics.median(taken) * 1e6


def first_delta(ctx: Context, dep: Deployment, samples: int, body: dict[str, Any]) -> list[Row]:
    """Line 4 of issue 13 (POSTing `body`, a mock `ttft_ms: 0` request) with its diagnostics."""
    floor50 = _floor_ms(ctx, samples)
    spool = _idle(dep.port, samples, mode="first_delta", body=body)
    p50, post50 = _p50_ms(spool["samples"]), _p50_ms(spool["posts"])
    warm50 = _p50_ms(run_client({"mode": "first_delta", "port": dep.port, "n": samples,
                                 "body": body})["samples"])
    healthz50 = _p50_ms(_idle(dep.port, samples, mode="get", path="/healthz")["samples"])
    bare50 = _bare_web_ms(dep, samples)
    ping_idle, ping_warm = _ping_us(dep, samples, IDLE_PAUSE_S), _ping_us(dep, samples, 0.0)
    ctx.log(f"    POST -> first delta p50 {p50:.2f} ms (POST {post50:.2f}, then GET -> delta "
            f"{p50 - post50:.2f}; floor {floor50:.2f}; back to back {warm50:.2f})")
    ctx.log(f"    one idle request: Spool /healthz {healthz50:.2f} ms, bare WSGI app under "
            f"the same web command {bare50:.2f} ms (two: {2 * bare50:.2f}); Redis PING idle "
            f"{ping_idle:.0f} us, back to back {ping_warm:.0f} us")
    return [row("4", "idle POST -> first delta p50 ms", p50, f"<= {GOAL_MS:g}", p50 <= GOAL_MS,
                floor_p50_ms=round(floor50, 2), post_p50_ms=round(post50, 2),
                warm_p50_ms=round(warm50, 2), healthz_p50_ms=round(healthz50, 2),
                bare_web_p50_ms=round(bare50, 2), ping_idle_us=round(ping_idle),
                ping_warm_us=round(ping_warm), n=samples)]

