"""Run the load client against one deployed system and collect server-side figures."""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import procs
from bench.loadclient import Spec
from bench.registry import Context, Row
from bench.systems import Deployment, System

WARMUP_STREAMS = 4
CLIENT_GRACE_S = 60.0
MB = 1024 * 1024
LOG_KEYS = ("ttft_p50_ms", "ttft_p99_ms", "gap_p99_ms", "tok_per_s", "cpu_s_per_1k_tok",
            "peak_web_rss_mb", "machine_cores_peak", "errors", "lost_chars", "doubled_chars",
            "error_samples")
# The machine's busiest stretch of a run is measured over windows this long: about
# the arrivals' span, when starts and the first tokens compete for the cores.
PEAK_WINDOW_S = 2.0


def run_client(spec: Spec) -> dict[str, Any]:
    """Run `python -m bench.loadclient` for `spec` and return its summary."""
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_bytes(orjson.dumps(dataclasses.asdict(spec)))
        argv = procs.python_argv("-m", "bench.loadclient", str(spec_path), str(out_path))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            subprocess.run(argv, cwd=procs.ROOT, check=True,
                           timeout=spec.timeout_s + spec.window_s + CLIENT_GRACE_S)
        except subprocess.SubprocessError as exc:
            # A system that hangs the client is a measured failure, not a crashed run.
            return {"streams": spec.n, "errors": spec.n, "tokens": 0,
                    "error_samples": [f"load client: {type(exc).__name__}"]}
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary: dict[str, Any] = orjson.loads(out_path.read_bytes())
        # The client shares the two cores with the servers: its cost is reported too.
        summary["client_cpu_s"] = round(after.ru_utime + after.ru_stime
                                        - before.ru_utime - before.ru_stime, 2)
        return summary


def _trees(deployment: Deployment, which: str) -> list[psutil.Process]:
    group = deployment.web if which == "web" else deployment.procs
    return [p for proc in group for p in proc.tree()]


def _redis_proc(deployment: Deployment) -> list[psutil.Process]:
    if deployment.redis is None:
        return []
    return deployment.redis.proc.tree()


def warm_up(system: System, deployment: Deployment, spec: Spec) -> None:
    """A few short streams so lazy imports and first connections are not measured."""
    warm = dataclasses.replace(spec, n=WARMUP_STREAMS, window_s=0.1, chars=40, ttft_ms=10,
                               tps=0, shared=False, slow_readers=0, timeout_s=30)
    with contextlib.suppress(subprocess.SubprocessError):
        run_client(warm)


def measure(ctx: Context, system: System, scenario: str, spec: Spec,
            idle_probe_s: float | None = None) -> Row:
    """Deploy `system`, run `spec` against it, and return the row of figures.

    `idle_probe_s`: seconds after load start at which the web RSS is taken
    as "all connections open and idle" (for RSS per idle connection).
    """
    ctx.log(f"  {scenario:>14} {system.name:<14} n={spec.n}")
    deployment = system.launch(ctx.provider_url)
    try:
        spec = dataclasses.replace(spec, port=deployment.port, mode=system.mode,
                                   provider=system.provider)
        warm_up(system, deployment, spec)
        return _measured_run(system, scenario, spec, deployment, idle_probe_s, ctx.provider)
    finally:
        deployment.stop()


def _measured_run(system: System, scenario: str, spec: Spec, deployment: Deployment,
                  idle_probe_s: float | None, provider: procs.Proc | None = None) -> Row:
    redis_port = deployment.redis.port if deployment.redis else None
    sampler = procs.Sampler(deployment.procs, deployment.web, redis_port)
    base = sampler.snapshot()
    servers, redis = _trees(deployment, "all"), _redis_proc(deployment)
    web = _trees(deployment, "web")
    cpu0, rcpu0 = procs.cpu_seconds(servers), procs.cpu_seconds(redis)
    wcpu0 = procs.cpu_seconds(web)
    fake = provider.tree() if provider is not None else []
    pcpu0, machine0 = procs.cpu_seconds(fake), procs.MachineCpu.now()
    started = time.monotonic()
    sampler.start()
    try:
        summary = run_client(spec)
    finally:
        sampler.stop()
    machine, elapsed = procs.MachineCpu.now(), time.monotonic() - started
    cpu = procs.cpu_seconds(servers) - cpu0
    web_cpu = procs.cpu_seconds(web) - wcpu0
    tokens = summary["tokens"] or 0
    row: Row = {"scenario": scenario, "system": system.name, "n": spec.n, **summary}
    row.update({
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1k_tok": round(cpu / tokens * 1000, 4) if tokens else None,
        "web_cpu_s_per_1k_tok": round(web_cpu / tokens * 1000, 4) if tokens else None,
        "redis_cpu_s": round(procs.cpu_seconds(redis) - rcpu0, 3),
        "redis_cpu_s_per_1k_tok": (round((procs.cpu_seconds(redis) - rcpu0) / tokens * 1000, 4)
                                   if tokens and redis else None),
        "peak_rss_mb": round(sampler.peak("rss") / MB, 1),
        "peak_web_rss_mb": round(sampler.peak("web_rss") / MB, 1),
        "rss_growth_mb": round((sampler.peak("web_rss") - base.web_rss) / MB, 1),
        "rss_per_conn_kb": round((sampler.peak("web_rss") - base.web_rss) / 1024 / spec.n, 1),
        "web_redis_conns": sampler.peak("redis_conns"),
        "redis_clients": sampler.peak("redis_clients"),
        # The whole machine: servers, Redis, the load client, the fake provider.
        "provider_cpu_s": round(procs.cpu_seconds(fake) - pcpu0, 2) if fake else None,
        "machine_cores": round(machine.cores_since(machine0, elapsed), 2),
        "machine_cores_peak": round(procs.busy_cores(sampler.samples, PEAK_WINDOW_S), 2),
        "steal_cores": round((machine.steal - machine0.steal) / elapsed, 2),
    })
    ctx_line = ", ".join(f"{k}={row.get(k)}" for k in LOG_KEYS if row.get(k) is not None)
    print(f"      {ctx_line}", flush=True)
    if idle_probe_s is not None:
        idle = [s for s in sampler.samples if s.t >= started + idle_probe_s]
        if idle:
            row["idle_rss_per_conn_kb"] = round((idle[0].web_rss - base.web_rss) / 1024 / spec.n, 1)
    return row


def add_floor_deltas(rows: list[Row]) -> None:
    """Add `added_*` figures: each row minus the floor's row of the same scenario and n."""
    floors = {(r["scenario"], r["n"]): r for r in rows if r["system"] == "floor"}
    for row in rows:
        floor = floors.get((row["scenario"], row["n"]))
        if floor is None:
            continue
        for key in ("ttft_p50_ms", "ttft_p99_ms", "gap_p99_ms", "spread_p99_ms"):
            mine, theirs = row.get(key), floor.get(key)
            if mine is not None and theirs is not None:
                row["added_" + key] = round(mine - theirs, 2)
