"""The systems under test and how to start each as real processes.

A `System` knows its load-client mode and how to launch itself; `launch()`
returns a `Deployment` whose processes are sampled and stopped by the
scenario. Spool is started exactly as its Procfile says.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.procs import Proc, RedisServer

BENCH_API_KEY = "sk-bench-not-a-secret"
SPOOL_WSGI_APP = "wsgi:app"  # what the Procfile's web command serves
GUNICORN_GEVENT = ["-m", "gunicorn", "-k", "gevent", "--worker-connections", "10000",
                   "-w", "1", "--log-level", "warning"]
# Limits Spool would otherwise apply per tenant; the bench is one tenant with many streams.
SPOOL_BENCH_ENV = {
    "SPOOL_MAX_ACTIVE": "100000", "SPOOL_RATE_LIMIT": "10000000", "SPOOL_WORKER_SLOTS": "2000",
    "WEB_CONCURRENCY": "1", "SPOOL_NAMESPACE": "bench",
}


@dataclass
class Deployment:
    """A started system: its processes, the port clients use, and its Redis (if any)."""

    port: int
    procs: list[Proc]
    web: list[Proc]
    redis: RedisServer | None = None
    workers: list[Proc] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every process (and the private Redis)."""
        for proc in reversed(self.procs):
            proc.stop()
        if self.redis is not None:
            self.redis.stop()


@dataclass(frozen=True)
class System:
    """One contender: a name, the load-client mode it speaks, and a launcher."""

    name: str
    mode: str
    launch: Callable[[str], Deployment]  # provider base URL -> deployment
    provider: str = "openai"  # what the load client asks Spool for (mock/openai)
    uses_provider: bool = True


def provider_env(base_url: str) -> dict[str, str]:
    """Environment pointing the official SDKs at the loopback fake provider."""
    return {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": BENCH_API_KEY,
            "ANTHROPIC_BASE_URL": base_url.removesuffix("/v1"),
            "ANTHROPIC_API_KEY": BENCH_API_KEY}


def _gunicorn(name: str, app: str, env: dict[str, str]) -> tuple[Proc, int]:
    port = procs.free_port()
    argv = procs.python_argv(*GUNICORN_GEVENT, "-b", f"127.0.0.1:{port}", app)
    proc = procs.spawn(name, argv, env)
    procs.wait_port(port, proc.popen)
    return proc, port


def launch_floor(_base_url: str) -> Deployment:
    """The zero-work floor server."""
    port_file = Path(tempfile.mkstemp(prefix="bench-port-")[1])
    proc = procs.spawn("floor", procs.python_argv("-m", "bench.peers.floor", "--port-file",
                                                  str(port_file)))
    port = procs.wait_port_file(port_file, proc.popen)
    port_file.unlink()
    return Deployment(port, [proc], [proc])


def launch_fastapi(base_url: str) -> Deployment:
    """Peer (a): FastAPI + AsyncOpenAI under uvicorn, one process."""
    port = procs.free_port()
    argv = procs.python_argv("-m", "uvicorn", "bench.peers.fastapi_proxy:app", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning",
                             "--backlog", "4096")
    proc = procs.spawn("fastapi", argv, provider_env(base_url))
    procs.wait_port(port, proc.popen)
    return Deployment(port, [proc], [proc])


def launch_flask(base_url: str) -> Deployment:
    """Peer (b): Flask + sync openai under gunicorn's gevent worker."""
    proc, port = _gunicorn("flask", "bench.peers.flask_proxy:app", provider_env(base_url))
    return Deployment(port, [proc], [proc])


def launch_flasksse(base_url: str) -> Deployment:
    """Peer (c): flask-sse with a publisher greenlet, on a private Redis."""
    redis = procs.start_redis("flasksse-redis")
    env = {**provider_env(base_url), "REDIS_URL": redis.url}
    proc, port = _gunicorn("flasksse", "bench.peers.flasksse_app:app", env)
    return Deployment(port, [proc], [proc], redis=redis)


def procfile_commands(path: Path = procs.ROOT / "Procfile") -> dict[str, str]:
    """`{process type: command}` from the Procfile."""
    commands = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


def _procfile_argv(command: str, env: dict[str, str]) -> list[str]:
    """Expand `$VARS` like a shell would and run Python tools with this interpreter."""
    argv = shlex.split(command)
    argv = [_expand(arg, env) for arg in argv]
    if argv[0] == "python":
        return procs.python_argv(*argv[1:])
    venv_bin = Path(procs.python_argv()[0]).parent
    if (venv_bin / argv[0]).exists():
        argv[0] = str(venv_bin / argv[0])
    return argv


def _expand(arg: str, env: dict[str, str]) -> str:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return os.path.expandvars(arg)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def launch_spool(base_url: str, extra_env: dict[str, str] | None = None) -> Deployment:
    """Spool: one web and one worker process from the Procfile, on a private Redis."""
    redis = procs.start_redis("spool-redis")
    port = procs.free_port()
    env = {**provider_env(base_url), **SPOOL_BENCH_ENV, "REDIS_URL": redis.url,
           "PORT": str(port), **(extra_env or {})}
    commands = procfile_commands()
    web = procs.spawn("spool-web", _procfile_argv(commands["web"], env), env)
    worker = procs.spawn("spool-worker", _procfile_argv(commands["worker"], env), env)
    procs.wait_port(port, web.popen)
    return Deployment(port, [web, worker], [web], redis=redis, workers=[worker])


def launch_bare_web(redis_url: str) -> Deployment:
    """The Procfile's `web` command serving `bench.peers.bare_wsgi` instead of Spool's app."""
    port = procs.free_port()
    env = {**SPOOL_BENCH_ENV, "REDIS_URL": redis_url, "PORT": str(port)}
    argv = _procfile_argv(procfile_commands()["web"], env)
    argv = ["bench.peers.bare_wsgi:app" if arg == SPOOL_WSGI_APP else arg for arg in argv]
    if "bench.peers.bare_wsgi:app" not in argv:
        raise RuntimeError(f"the Procfile's web command does not serve {SPOOL_WSGI_APP}")
    web = procs.spawn("bare-web", argv, env)
    procs.wait_port(port, web.popen)
    return Deployment(port, [web], [web])


FLOOR = System("floor", "direct", launch_floor, uses_provider=False)
FASTAPI = System("fastapi-proxy", "direct", launch_fastapi)
FLASK = System("flask-proxy", "direct", launch_flask)
FLASKSSE = System("flask-sse", "flasksse", launch_flasksse)
SPOOL_MOCK = System("spool-mock", "spool", launch_spool, provider="mock", uses_provider=False)
SPOOL_OPENAI = System("spool-openai", "spool", launch_spool)
ALL = (FLOOR, FASTAPI, FLASK, FLASKSSE, SPOOL_MOCK, SPOOL_OPENAI)


def available(system: System) -> bool:
    """Spool runs once its core (Procfile, wsgi) and the provider it uses are present."""
    if system.mode != "spool":
        return True
    core = (procs.ROOT / "Procfile").exists() and (procs.ROOT / "wsgi.py").exists()
    adapter = procs.ROOT / "worker" / "providers" / f"{system.provider}.py"
    return core and adapter.exists()
