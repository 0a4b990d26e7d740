"""A loopback fake OpenAI / Anthropic server for tests and benchmarks.

`FakeProvider` runs it as a subprocess (fully independent of the test
process's gevent state) and reads its request log; `start_server` and
`serve_in_thread` (in `server`) run it in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

STARTUP_TIMEOUT_S = 15.0
ROOT = Path(__file__).resolve().parents[2]


def scenario(**spec: Any) -> str:
    """A user-message content that makes the fake play `spec`."""
    return "SCENARIO:" + orjson.dumps(spec).decode()


class FakeProvider:
    """A `python -m tests.fakeprovider` subprocess on a free loopback port."""

    def __init__(self, ttft_ms: int = 0, tps: float = 0.0, tokens: int = 20,
                 name: str = "fake") -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fakeprovider-")
        port_file = os.path.join(self._dir.name, "port")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeprovider", "--host", "127.0.0.1", "--port", "0",
             "--port-file", port_file, "--ttft-ms", str(ttft_ms), "--tps", str(tps),
             "--tokens", str(tokens), "--name", name],
            cwd=ROOT,
        )
        self.port = self._wait_for_port(port_file)
        self.url = f"http://127.0.0.1:{self.port}"

    def _wait_for_port(self, port_file: str) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                return int(Path(port_file).read_text())
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake provider exited with {self.proc.returncode}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("fake provider did not start")

    @property
    def openai_base_url(self) -> str:
        """What OPENAI_BASE_URL should be (the SDK appends `/chat/completions`)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """What ANTHROPIC_BASE_URL should be (the SDK appends `/v1/messages`)."""
        return self.url

    def requests(self) -> list[dict[str, Any]]:
        """Every request recorded so far, oldest first."""
        import requests  # here, not at the top: `drive` must patch gevent before ssl loads

        response = requests.get(f"{self.url}/_fake/requests", timeout=5)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    def reset(self) -> None:
        """Clear the request log and fault counters."""
        import requests

        requests.post(f"{self.url}/_fake/reset", timeout=5).raise_for_status()

    def stop(self) -> None:
        """Terminate the subprocess."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._dir.cleanup()


def matching(records: list[dict[str, Any]], marker: str) -> list[dict[str, Any]]:
    """The recorded requests whose body mentions `marker` (a test's unique key)."""
    return [r for r in records if marker in orjson.dumps(r["body"]).decode()]


def drive(provider: str, request: dict[str, Any], env: dict[str, str],
          close_after: int | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Run `request` through `resilient.open_stream` in a gevent-patched subprocess.

    Returns the report of `tests.fakeprovider.drive` (pieces, notices, error,
    provider, elapsed_s, closed_at).
    """
    cmd = [sys.executable, "-m", "tests.fakeprovider.drive", provider,
           orjson.dumps(request).decode()]
    if close_after is not None:
        cmd += ["--close-after", str(close_after)]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"drive failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    report: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return report


class Driver:
    """A long-lived `drive --serve` subprocess: `run()` one case at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeprovider.drive", "--serve"], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ),
        )

    def run(self, provider: str, request: dict[str, Any], env: dict[str, str],
            close_after: int | None = None) -> dict[str, Any]:
        """Same report as `drive()`, without a process start per case."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        case = {"provider": provider, "request": request, "env": env,
                "close_after": close_after}
        self.proc.stdin.write(orjson.dumps(case) + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"drive --serve exited with {self.proc.wait(5)}")
        report: dict[str, Any] = orjson.loads(line)
        if "crash" in report:
            raise RuntimeError(report["crash"])
        return report

    def stop(self) -> None:
        """Close stdin (the server's cue to exit) and wait."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
