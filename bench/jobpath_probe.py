"""Probes for the job-path benchmark: wrk rates, Redis command and round-trip counts, CPU."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import redis

from bench import procs
from bench.registry import Row
from bench.systems import SPOOL_BENCH_ENV, Deployment
from spool.metrics import ROUND_TRIPS, parse_series

WRK_THREADS = 2
FLUSH_WAIT_S = 1.2  # > the processes' metrics flush interval (JOBPATH_ENV)
CLIENT_TIMEOUT_S = 600

_WRK_POST = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk_rate(port: int, path: str, body: dict[str, Any] | None, seconds: float,
             connections: int) -> dict[str, Any]:
    """Requests per second (and non-2xx count) of `wrk` against one path."""
    if shutil.which("wrk") is None:
        return {"rate": None, "error": "wrk not installed"}
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds:g}s",
            f"http://127.0.0.1:{port}{path}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(_WRK_POST % orjson.dumps(body).decode())
            argv += ["-s", script.name]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        Path(script.name).unlink()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rate": float(rate.group(1)) if rate else None,
            "non_2xx": int(bad.group(1)) if bad else 0}


def row(line: str, figure: str, measured: float | None, target: str, ok: bool | None,
        **extra: Any) -> Row:
    """One row of the job-path table: a figure of issue 13's "Done when" line `line`."""
    value = None if measured is None else round(measured, 3)
    return {"scenario": "jobpath", "system": "spool-mock", "line": line, "figure": figure,
            "measured": value, "target": target,
            "pass": "-" if ok is None else ("PASS" if ok else "FAIL"), **extra}


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `python -m bench.jobpath_client` for `spec` (its own process) and return its output."""
    with tempfile.TemporaryDirectory(prefix="bench-jobpath-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_bytes(orjson.dumps(spec))
        subprocess.run(procs.python_argv("-m", "bench.jobpath_client", str(spec_path),
                                         str(out_path)),
                       cwd=procs.ROOT, check=True, timeout=CLIENT_TIMEOUT_S)
        result: dict[str, Any] = orjson.loads(out_path.read_bytes())
        return result


@dataclasses.dataclass
class Counts:
    """Redis commands (INFO commandstats) and round trips by process kind, at one moment."""

    commands: int
    round_trips: dict[tuple[str, str], float]

    def minus(self, earlier: Counts) -> Counts:
        """The difference since `earlier`."""
        trips = {k: v - earlier.round_trips.get(k, 0.0) for k, v in self.round_trips.items()}
        return Counts(self.commands - earlier.commands, trips)

    def trips(self, kind: str, purpose: str = "other") -> float:
        """Round trips of one process kind and purpose."""
        return self.round_trips.get((kind, purpose), 0.0)


def counts(deployment: Deployment, wait_flush: bool = True) -> Counts:
    """Commands processed so far (less INFO itself) and the processes' flushed round trips."""
    if wait_flush:
        time.sleep(FLUSH_WAIT_S)
    assert deployment.redis is not None
    client = redis.Redis(port=deployment.redis.port, decode_responses=True)
    try:
        stats = client.info("commandstats")
        commands = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
        raw = client.hgetall(f"{SPOOL_BENCH_ENV['SPOOL_NAMESPACE']}:metrics:counters")
    finally:
        client.close()
    trips = {}
    for name, value in raw.items():
        metric, labels, _ = parse_series(str(name))  # decode_responses: already str
        if metric == ROUND_TRIPS.name:
            trips[(labels[0], labels[1])] = float(value)
    return Counts(commands, trips)


def active_count(deployment: Deployment) -> int:
    """Queued + running generations of the bench's (dev) tenant, as admission sees them."""
    from spool.keys import Keys

    assert deployment.redis is not None
    client = redis.Redis(port=deployment.redis.port)
    try:
        return int(client.zcard(Keys(SPOOL_BENCH_ENV["SPOOL_NAMESPACE"]).active("dev")))
    finally:
        client.close()


def wait_idle(deployment: Deployment, timeout_s: float = 120.0) -> float:
    """Block until no generation is active; returns the seconds waited."""
    started = time.monotonic()
    while active_count(deployment) and time.monotonic() - started < timeout_s:
        time.sleep(0.01)
    return time.monotonic() - started


def cpu_of(deployment: Deployment, which: str) -> float:
    """CPU seconds so far of the web (`web`) or worker (`worker`) processes."""
    group = deployment.web if which == "web" else deployment.workers
    trees: list[psutil.Process] = [p for proc in group for p in proc.tree()]
    return procs.cpu_seconds(trees)
