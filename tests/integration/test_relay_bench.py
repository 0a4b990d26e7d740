"""The benchmark's own measuring parts: its SSE client must not mis-measure.

A load client that mis-parses chunked encoding or miscounts text would
make every figure in bench/README.md wrong, so it is checked here against
hand-made bytes and against a real floor-server process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bench import procs, systems
from bench.loadclient import Spec, run, summarize, text_damage
from bench.sse import Dechunker, parse_events
from bench.textgen import make_text

T = TypeVar("T")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: Playwright's sync API keeps an
    event loop running in the main thread for the whole session."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_dechunker_handles_any_split() -> None:
    payload = b"id: 1\nevent: delta\ndata: {\"text\":\"h\xc3\xa9\"}\n\n" * 3
    chunks = (payload[:7], payload[7:])
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in chunks) + b"0\r\n\r\n"
    for cut in range(1, len(wire)):
        dechunker = Dechunker()
        assert dechunker.feed(wire[:cut]) + dechunker.feed(wire[cut:]) == payload
        assert dechunker.finished


def test_parse_events_keeps_the_unfinished_rest() -> None:
    events, rest = parse_events(b"retry: 1000\n\n: ping\n\nevent: delta\ndata: {}\n\nevent: do")
    assert events == [(b"delta", b"{}")]
    assert rest == b"event: do"


def test_text_damage_counts_lost_and_doubled() -> None:
    text = make_text(7, 300)
    assert text_damage(text, text) == (0, 0)
    assert text_damage(text, text[:100] + text[110:]) == (10, 0)
    assert text_damage(text, text[:100] + text[90:]) == (0, 10)


def test_make_text_is_deterministic_and_sized() -> None:
    assert make_text(3, 400) == make_text(3, 400)
    assert make_text(3, 400) != make_text(4, 400)
    assert len(make_text(3, 400)) == 400


@pytest.fixture
def floor() -> systems.Deployment:
    deployment = systems.launch_floor("unused")
    yield deployment  # type: ignore[misc]
    deployment.stop()


def test_load_client_reads_a_real_server_exactly(floor: systems.Deployment) -> None:
    spec = Spec(host="127.0.0.1", port=floor.port, mode="direct", n=8, window_s=0.2,
                ttft_ms=50, tps=200, chars=120, timeout_s=20)
    results = run_loop(run(spec))
    summary = summarize(spec, results, 1.0)
    assert summary["errors"] == 0 and summary["exact"] == 8
    assert summary["lost_chars"] == summary["doubled_chars"] == 0
    assert summary["ttft_p50_ms"] >= 50  # the floor sleeps the TTFT before the first delta
    # Every stream's text is its own (seeded by stream index), so a mix-up would show.
    assert len({r.expected for r in results}) == 8


def test_shared_readers_and_a_slow_one_get_the_same_text(floor: systems.Deployment) -> None:
    spec = Spec(host="127.0.0.1", port=floor.port, mode="direct", n=4, window_s=0.1,
                ttft_ms=300, tps=0, chars=20000, shared=True, slow_readers=1,
                slow_pause_s=1.0, timeout_s=20)
    results = run_loop(run(dataclasses.replace(spec)))
    summary = summarize(spec, results, 1.0)
    assert summary["errors"] == 0 and summary["exact"] == 4 and summary["slow_exact"] == 1
    assert "spread_p99_ms" in summary


def _sample(t: float, busy: float) -> procs.Sample:
    return procs.Sample(t, 0, 0, 0, 0, procs.MachineCpu(busy, 0.0))


def test_busy_cores_is_the_busiest_window() -> None:
    # One core busy for 2 s, then two cores for 2 s, then idle, sampled every 0.5 s.
    samples, busy = [], 0.0
    for step in range(13):
        t = step * 0.5
        samples.append(_sample(t, busy))
        busy += 0.5 if t < 2 else 1.0 if t < 4 else 0.0
    assert procs.busy_cores(samples, 2.0) == pytest.approx(2.0)
    assert procs.busy_cores(samples, 1.0) == pytest.approx(2.0)
    assert procs.busy_cores(samples[:5], 2.0) == pytest.approx(1.0)
    assert procs.busy_cores(samples[:2], 2.0) == 0.0  # no window long enough


def test_machine_cpu_counts_a_spinning_process() -> None:
    spin = "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass\n"
    before = procs.MachineCpu.now()
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", spin], check=True)
    after = procs.MachineCpu.now()
    elapsed = time.monotonic() - started
    # The spinning process alone keeps about one core busy (the rest of the
    # machine may add more, never less).
    assert (after.busy - before.busy) / elapsed >= 0.8
    assert after.steal >= before.steal >= 0.0


def _client(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.jobpath_probe import run_client

    return run_client(spec)


def test_first_delta_client_times_the_answer_before_the_delta(
        floor: systems.Deployment) -> None:
    from bench.jobpath_latency import FLOOR_BODY

    got = _client({"mode": "first_delta", "port": floor.port, "n": 3, "body": FLOOR_BODY,
                   "floor": True})
    assert len(got["samples"]) == len(got["posts"]) == 3
    assert all(0 < post <= whole for post, whole in zip(got["posts"], got["samples"],
                                                        strict=True))


def test_bare_web_is_the_procfile_web_command_serving_nothing() -> None:
    redis_server = procs.start_redis("test-bare-redis")
    bare = systems.launch_bare_web(redis_server.url)
    try:
        got = _client({"mode": "get", "port": bare.port, "n": 3, "path": "/healthz"})
        assert len(got["samples"]) == 3 and all(s > 0 for s in got["samples"])
        # Spool's worker class (from gunicorn.conf.py) answers what gunicorn
        # rejects with API.md's JSON error body: the server is Spool's, the app is not.
        with socket.create_connection(("127.0.0.1", bare.port), timeout=10) as sock:
            sock.sendall(b"NOT A REQUEST LINE\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b'"error"' in body
    finally:
        bare.stop()
        redis_server.stop()


def test_get_client_refuses_a_non_200(tmp_path: Path) -> None:
    # A well-formed 404 (a timing of an error page is not a timing of the server).
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(subprocess.CalledProcessError):
            _client({"mode": "get", "port": server.server_port, "n": 1, "path": "/nowhere"})
        (tmp_path / "here").write_text("{}")
        assert len(_client({"mode": "get", "port": server.server_port, "n": 2,
                            "path": "/here"})["samples"]) == 2
    finally:
        server.shutdown()
        server.server_close()
