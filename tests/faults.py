"""Redis fault injection against real processes, shared by the fault tests and
`python -m tests.fault_loop` (which reruns every case ten times).

A case starts generations with known text on a real gunicorn + worker stack,
makes the stack's private redis-server misbehave for a while (refuse writes
at maxmemory under noeviction, turn read-only, pause writers, sleep, restart
from its AOF), probes the web API all along, puts Redis right, and then
checks every generation's log: exactly one terminal event, ids 1..n with
no gap, the deltas joined equal the record's text, which is the expected
text (or an exact prefix of it when the generation ended `unavailable`);
that no process exited; that nothing answered a 5xx other than the
contract's 503 with `Retry-After`; and that new work runs without restarts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from tests.harness import RedisServer, Stack, free_port, wait_until
from tests.sseclient import Event, Parser

TERMINAL = ("done", "error", "cancelled")
FAULT_REDIS_ARGS = ("--appendonly", "yes", "--appendfsync", "everysec",
                    "--enable-debug-command", "yes")
# The worker gives up on writes after this (SPOOL_WRITE_RETRY_S for fault stacks).
WRITE_RETRY_S = 4.0
STACK_ENV = {"SPOOL_WRITE_RETRY_S": str(WRITE_RETRY_S), "SPOOL_SSE_RETRY_MS": "200"}
SETTLE_TIMEOUT_S = 90.0  # after the fault: every generation must have ended by then


@dataclass
class Report:
    """What one run of a case found."""

    case: str
    generations: int = 0
    completed: int = 0
    unavailable: int = 0
    other_end: int = 0
    stuck: int = 0  # no terminal event SETTLE_TIMEOUT_S after the fault ended
    holes: int = 0  # ids not 1..n, more or less than one terminal, text not a prefix
    exits: int = 0  # web or worker processes that died
    server_errors: int = 0  # 5xx answers other than 503 + JSON + Retry-After
    unavailable_503: int = 0  # the contract's answer while Redis refused
    recovered: bool = False  # a generation started after the fault completed exactly
    problems: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return (not self.stuck and not self.holes and not self.exits
                and not self.server_errors and self.recovered)


def text_for(index: int) -> str:
    """A distinct, checkable answer: ~180 mock tokens, ~6 s at 30 tokens/s."""
    return "".join(f"w{index}.{n} " for n in range(120))


# -- faults: each makes Redis misbehave, returns a function that puts it right ----------
def _oom(client: redis.Redis) -> Callable[[], None]:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 100_000)  # far below what a live server uses
    return lambda: client.config_set("maxmemory", 0)


def _readonly(client: redis.Redis) -> Callable[[], None]:
    client.execute_command("REPLICAOF", "127.0.0.1", free_port())  # a master that never answers
    return lambda: client.execute_command("REPLICAOF", "NO", "ONE")


def _pause(client: redis.Redis, seconds: float) -> Callable[[], None]:
    client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "WRITE")
    return lambda: client.execute_command("CLIENT", "UNPAUSE")


def _sleep(client: redis.Redis, seconds: float) -> Callable[[], None]:
    threading.Thread(target=lambda: redis.Redis(port=client.connection_pool.connection_kwargs[
        "port"]).execute_command("DEBUG", "SLEEP", seconds), daemon=True).start()
    return lambda: None


@dataclass
class Case:
    name: str
    hold_s: float  # how long the fault lasts
    start: Callable[[redis.Redis, RedisServer, float], Callable[[], None]]
    ends_unavailable: bool  # past the retry bound: generations may end `unavailable`
    kill_worker: bool = False  # SIGKILL the worker mid-fault: the lease settler ends them


def _restart(server: RedisServer, seconds: float) -> Callable[[], None]:
    server.stop()  # SIGTERM: redis-server fsyncs its AOF on the way out
    return server.start


CASES = {
    "oom_short": Case("oom_short", WRITE_RETRY_S / 2, lambda c, s, h: _oom(c), False),
    "oom_long": Case("oom_long", WRITE_RETRY_S * 2, lambda c, s, h: _oom(c), True),
    "oom_past_lease": Case("oom_past_lease", 14.0, lambda c, s, h: _oom(c), True),
    "readonly_short": Case("readonly_short", WRITE_RETRY_S / 2,
                           lambda c, s, h: _readonly(c), False),
    "readonly_long": Case("readonly_long", WRITE_RETRY_S * 2,
                          lambda c, s, h: _readonly(c), True),
    "client_pause": Case("client_pause", 3.0, lambda c, s, h: _pause(c, h), False),
    "debug_sleep": Case("debug_sleep", 2.0, lambda c, s, h: _sleep(c, h), False),
    "restart_aof": Case("restart_aof", 2.0, lambda c, s, h: _restart(s, h), False),
    "oom_worker_killed": Case("oom_worker_killed", 14.0, lambda c, s, h: _oom(c), True,
                              kill_worker=True),
}


# -- probes and checks ---------------------------------------------------------
class Prober:
    """Keeps asking the web API while the fault lasts; counts what it must never see."""

    def __init__(self, stack: Stack, report: Report) -> None:
        self.stack, self.report = stack, report
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.gen_id: str | None = None

    def _run(self) -> None:
        session = requests.Session()
        body = {"messages": [{"role": "user", "content": "probe"}],
                "mock": {"text": "probe", "tokens_per_second": 0, "ttft_ms": 0}}
        while not self.stop.is_set():
            for method, path in (("POST", "/v1/generations"), ("GET", "/readyz"),
                                 ("GET", f"/v1/generations/{self.gen_id}"),
                                 ("GET", f"/v1/generations/{self.gen_id}/events")):
                if "None" in path:
                    continue
                try:
                    # The events route: only its status (the stream itself is read later).
                    resp = session.request(method, self.stack.url(path), stream=True,
                                           json=body if method == "POST" else None, timeout=15)
                    if not path.endswith("/events"):
                        resp.content  # noqa: B018 - read the JSON body before closing
                    resp.close()
                except requests.RequestException as exc:
                    self.report.server_errors += 1
                    self.report.problems.append(f"{method} {path}: {type(exc).__name__}")
                    continue
                self._check(method, path, resp)
            self.stop.wait(0.2)
        session.close()

    def _check(self, method: str, path: str, resp: requests.Response) -> None:
        if resp.status_code < 500:
            return
        if path == "/readyz" and resp.status_code == 503:
            return  # readiness says "not now": its job
        json_503 = (resp.status_code == 503 and "Retry-After" in resp.headers
                    and resp.headers.get("Content-Type", "").startswith("application/json")
                    and resp.json()["error"]["type"] == "unavailable")
        if json_503:
            self.report.unavailable_503 += 1
        else:
            self.report.server_errors += 1
            self.report.problems.append(f"{method} {path}: {resp.status_code} {resp.text[:120]}")

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(30)


def check_generation(stack: Stack, created: dict[str, Any], expected: str,
                     report: Report) -> None:
    """Read the whole log from the start and hold it to the rules."""
    gen_id = created["id"]
    record = requests.get(stack.url(f"/v1/generations/{gen_id}"), timeout=30).json()
    if record["status"] not in ("completed", "failed", "cancelled"):
        report.stuck += 1
        report.problems.append(f"{gen_id} stuck in {record['status']}")
        return
    events = _read_log(stack.url(created["stream_url"]))
    ids = [e.id for e in events]
    terminals = [e for e in events if e.event in TERMINAL]
    text = "".join(e.data["text"] for e in events if e.event == "delta")
    problem = None
    if ids != list(range(1, len(ids) + 1)):
        problem = f"ids {ids[:5]}…{ids[-5:]} not 1..n"
    elif len(terminals) != 1 or events[-1].event not in TERMINAL:
        problem = f"{len(terminals)} terminal events"
    elif text != record["text"]:
        problem = "deltas joined differ from the record's text"
    elif not expected.startswith(text):
        problem = f"text is not a prefix of the expected text: {text[:60]!r}"
    elif events[-1].event == "done" and text != expected:
        problem = "done with text short of the expected text"
    if problem:
        report.holes += 1
        report.problems.append(f"{gen_id}: {problem}")
        return
    last = events[-1]
    if last.event == "done":
        report.completed += 1
    elif last.event == "error" and last.data["type"] == "unavailable" and last.data["retryable"]:
        report.unavailable += 1
    else:
        report.other_end += 1
        report.problems.append(f"{gen_id}: ended {last.event} {last.data}")


def _read_log(url: str, limit_s: float = 30.0) -> list[Event]:
    """Every event of a stream from the start, or what came within `limit_s`
    (a log without its end would otherwise keep the stream open forever)."""
    parser, events = Parser(), []
    deadline = time.monotonic() + limit_s
    with requests.get(url, stream=True, timeout=limit_s) as resp:
        if resp.status_code != 200:
            return []
        for chunk in resp.iter_content(chunk_size=None):
            events.extend(parser.feed(chunk))
            if (events and events[-1].event in TERMINAL) or time.monotonic() > deadline:
                break
    return events


def run_case(stack: Stack, server: RedisServer, case: Case, count: int = 10) -> Report:
    """Start `count` generations, inject the fault mid-stream, put it right, check."""
    report = Report(case.name, generations=count)
    client = redis.Redis.from_url(server.url)
    session = requests.Session()
    started = []
    for index in range(count):
        body = {"messages": [{"role": "user", "content": "hi"}],
                "mock": {"text": text_for(index), "tokens_per_second": 30, "ttft_ms": 100}}
        resp = session.post(stack.url("/v1/generations"), json=body, timeout=30)
        assert resp.status_code == 202, resp.text
        started.append((resp.json(), text_for(index)))
    wait_until(lambda: requests.get(stack.url(f"/v1/generations/{started[-1][0]['id']}"),
                                    timeout=10).json()["text"], 30, 0.05, "streaming")
    with Prober(stack, report) as prober:
        prober.gen_id = started[0][0]["id"]
        restore = case.start(client, server, case.hold_s)
        killed = None
        if case.kill_worker:
            time.sleep(1.0)
            killed = stack.workers[-1]
            killed.kill()
        time.sleep(case.hold_s)
        _retry(restore)
        time.sleep(1.0)
    client.close()
    client = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    for created, _ in started:
        _wait_ended(stack, created["id"], deadline)
    for created, expected in started:
        check_generation(stack, created, expected, report)
    report.exits = sum(not p.alive() for p in [*stack.webs, *stack.workers] if p is not killed)
    if killed is not None:
        stack.workers.remove(killed)
        stack.start_worker()  # for the recovery check: the killed one ran everything
    report.recovered = _recovers(stack, session, report)
    session.close()
    client.close()
    if not case.ends_unavailable and report.unavailable:
        report.problems.append(f"{report.unavailable} ended unavailable under a short fault")
    return report


def _retry(action: Callable[[], Any]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            action()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_ended(stack: Stack, gen_id: str, deadline: float) -> None:
    def ended() -> bool:
        record = requests.get(stack.url(f"/v1/generations/{gen_id}"), timeout=10).json()
        return record["status"] in ("completed", "failed", "cancelled")

    with contextlib.suppress(TimeoutError):  # counted as stuck by check_generation
        wait_until(ended, max(0.1, deadline - time.monotonic()), 0.2, f"{gen_id} ended")


def _recovers(stack: Stack, session: requests.Session, report: Report) -> bool:
    """New work after the fault: accepted and completed exactly, without restarts."""
    text = "after the fault, as before"
    body = {"messages": [{"role": "user", "content": "hi"}],
            "mock": {"text": text, "tokens_per_second": 0, "ttft_ms": 0}}
    try:
        resp = wait_until(lambda: (r := session.post(stack.url("/v1/generations"), json=body,
                                                     timeout=10)).status_code == 202 and r,
                          30, 0.2, "POST accepted after the fault")
        events = _read_log(stack.url(resp.json()["stream_url"]))
    except (TimeoutError, requests.RequestException) as exc:
        report.problems.append(f"no recovery: {exc}")
        return False
    joined = "".join(e.data["text"] for e in events if e.event == "delta")
    if not events or events[-1].event != "done" or joined != text:
        report.problems.append(f"recovery generation: {events[-1:]}")
        return False
    return True


def fault_stack(server: RedisServer) -> Stack:
    """One web and one worker on `server`, with the short write-retry bound."""
    stack = Stack(server.url, STACK_ENV)
    stack.start_web()
    stack.start_worker()
    return stack


def fault_server() -> RedisServer:
    """A private redis-server that keeps an AOF (so a restart keeps the logs)."""
    server = RedisServer(extra_args=FAULT_REDIS_ARGS)
    server.start()
    return server
