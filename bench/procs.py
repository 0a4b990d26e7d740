"""Process plumbing for the benchmark: free ports, child processes, a private Redis.

Every system under test is a set of real processes started here; the
`Sampler` watches their CPU, RSS and Redis connections while a scenario runs.
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
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0  # then SIGKILL: a benchmark needs no graceful drain
SAMPLE_INTERVAL_S = 0.25
LOG_DIR = ROOT / ".run" / "bench"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None,
              timeout: float = READY_TIMEOUT_S) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def wait_port_file(path: Path, proc: subprocess.Popen[bytes],
                   timeout: float = READY_TIMEOUT_S) -> int:
    """Wait for a child to write its bound port into `path`, return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text().strip()
            if text:
                return int(text)
        time.sleep(0.05)
    raise TimeoutError(f"{path} not written after {timeout}s")


@dataclass
class Proc:
    """One child process (and its descendants) that belongs to a system under test."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.popen.pid

    def tree(self) -> list[psutil.Process]:
        """The process and all its live descendants."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL what is left after a grace period."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT_S)


def spawn(name: str, argv: Sequence[str], env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> Proc:
    """Start `argv` in its own process group with output in a log file."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env=full_env,
            cwd=cwd, start_new_session=True,
        )
    return Proc(name, popen, log_path)


def python_argv(*args: str) -> list[str]:
    """`python <args>` with the interpreter running the benchmark."""
    return [sys.executable, *args]


@dataclass
class RedisServer:
    """A throwaway redis-server on a free port: no persistence, never shared."""

    proc: Proc
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        """redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(name: str = "redis") -> RedisServer:
    """Start a private redis-server (the shared one on 6379 is never touched)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--maxclients", "20000"]
    proc = spawn(name, argv)
    wait_port(port, proc.popen)
    return RedisServer(proc, port, workdir)


def cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds of `procs` (already-exited ones count as 0)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(procs: Sequence[psutil.Process]) -> int:
    """Summed resident set size of `procs`."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def tcp_to_port(procs: Sequence[psutil.Process], port: int) -> int:
    """How many established TCP connections `procs` hold to 127.0.0.1:`port`."""
    count = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == port and conn.status == "ESTABLISHED":
                    count += 1
    return count


@dataclass(frozen=True)
class MachineCpu:
    """The whole machine's CPU counters (`/proc/stat`), in seconds summed over cores.

    `busy` is every process's time, the load client's, the fake provider's
    and anything else on the machine included; `steal` is time the
    hypervisor gave the machine's virtual CPUs to someone else (a shared
    host's noise, which no process here can see in its own counters).
    """

    busy: float
    steal: float

    @classmethod
    def now(cls) -> MachineCpu:
        """The counters now (zeros where `/proc/stat` is unreadable)."""
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return cls(0.0, 0.0)
        tick = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        idle = sum(fields[3:5])
        steal = fields[7] if len(fields) > 7 else 0
        return cls((sum(fields[:8]) - idle - steal) / tick, steal / tick)

    def cores_since(self, earlier: MachineCpu, seconds: float) -> float:
        """Mean cores the machine kept busy between `earlier` and these counters."""
        return (self.busy - earlier.busy) / seconds if seconds > 0 else 0.0


def busy_cores(samples: Sequence[Sample], window_s: float) -> float:
    """The most cores the machine kept busy over any `window_s` between samples."""
    peak = 0.0
    start = 0
    for end, sample in enumerate(samples):
        while sample.t - samples[start].t > window_s and start < end:
            start += 1
        span = sample.t - samples[start].t
        if span >= window_s * 0.75:
            peak = max(peak, sample.cpu.cores_since(samples[start].cpu, span))
    return peak


@dataclass
class Sample:
    """One observation of a system's processes."""

    t: float
    rss: int
    web_rss: int
    redis_conns: int
    redis_clients: int
    cpu: MachineCpu


@dataclass
class Sampler:
    """Background thread sampling RSS and Redis connections of a system's processes.

    `web` are the processes that hold client connections (RSS per connection
    is theirs); `redis_port` (if any) is where Redis connections are counted.
    """

    procs: list[Proc]
    web: list[Proc]
    redis_port: int | None = None
    interval: float = SAMPLE_INTERVAL_S
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _redis: redis.Redis | None = None

    def snapshot(self) -> Sample:
        """Take one sample now."""
        at, cpu = time.monotonic(), MachineCpu.now()
        everyone = [p for proc in self.procs for p in proc.tree()]
        web = [p for proc in self.web for p in proc.tree()]
        conns = tcp_to_port(web, self.redis_port) if self.redis_port else 0
        return Sample(at, rss_bytes(everyone), rss_bytes(web), conns, self._client_list(), cpu)

    def _client_list(self) -> int:
        """Clients Redis itself reports (`CLIENT LIST`), minus this sampler's own."""
        if not self.redis_port:
            return 0
        if self._redis is None:
            self._redis = redis.Redis(port=self.redis_port, socket_timeout=2)
        try:
            return len(self._redis.client_list()) - 1
        except redis.RedisError:
            return 0

    def start(self) -> None:
        """Start sampling in a daemon thread."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.snapshot())

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak(self, attr: str) -> int:
        """Largest sampled value of `attr` (0 with no samples)."""
        return max((getattr(s, attr) for s in self.samples), default=0)


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Stop every process on exit, last started first."""
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()
