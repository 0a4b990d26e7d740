"""Fixtures that build on each other: redis_server -> make_stack -> stack -> api.

- `redis_server` (session): a private redis-server on a free port, restartable
  (`redis_server.restart()`); or `SPOOL_TEST_REDIS_URL` to use an existing one.
- `make_stack(env=..., webs=1, workers=1, worker_args=[...])` (function): a
  factory of real gunicorn + `python -m worker` processes on that Redis, in a
  fresh namespace; everything is stopped after the test. Use `stack.start_web()`,
  `stack.start_worker()`, `stack.workers[0].kill()` for more or fewer processes.
- `stack` (module): one shared default stack (1 web, 1 worker, mock provider).
- `api` (module): an `Api` client bound to `stack`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.harness import RedisServer, Stack
from tests.sseclient import StreamResult, read_stream

# Fast enough for tests, slow enough to interleave with readers.
FAST_MOCK = {"tokens_per_second": 200, "ttft_ms": 20}


class ExternalRedis:
    """`SPOOL_TEST_REDIS_URL`: an existing server (cannot be restarted by tests)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def restart(self, down_s: float = 0.0) -> None:
        pytest.skip("needs a private redis-server (unset SPOOL_TEST_REDIS_URL)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    external = os.environ.get("SPOOL_TEST_REDIS_URL")
    if external:
        yield ExternalRedis(external)
        return
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the module's own: a module that changes its settings
    (maxmemory) or reads its `INFO` counters affects and sees no other."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


class Api:
    """A thin HTTP client for the Spool API of one stack."""

    def __init__(self, stack: Stack, key: str | None = None, web: int = 0) -> None:
        self.stack = stack
        self.web = web
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def url(self, path: str) -> str:
        return self.stack.url(path, self.web)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url(path), json=json, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=60, **kwargs)

    def create(self, text: str | None = None, mock: dict[str, Any] | None = None,
               **body: Any) -> dict[str, Any]:
        """POST /v1/generations with a mock answer; returns the 202 body."""
        options = {**FAST_MOCK, **(mock or {})}
        if text is not None:
            options["text"] = text
        body.setdefault("messages", [{"role": "user", "content": "hello"}])
        resp = self.post("/v1/generations", {**body, "mock": options})
        assert resp.status_code == 202, resp.text
        created: dict[str, Any] = resp.json()
        return created

    def generation(self, gen_id: str) -> dict[str, Any]:
        resp = self.get(f"/v1/generations/{gen_id}")
        assert resp.status_code == 200, resp.text
        found: dict[str, Any] = resp.json()
        return found

    def stream(self, created: dict[str, Any], headers: dict[str, str] | None = None,
               query: str = "", max_events: int | None = None) -> StreamResult:
        """Read a generation's events from its stream_url (+ extra query)."""
        url = self.url(created["stream_url"]) + query
        return read_stream(url, {**self.session.headers, **(headers or {})},  # type: ignore[arg-type]
                           max_events=max_events)


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(redis_server: Any, request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    stacks: list[Stack] = []

    def factory(env: dict[str, str] | None = None, webs: int = 1, workers: int = 1,
                worker_args: list[str] | None = None) -> Stack:
        stack = Stack(redis_server.url, env)
        stacks.append(stack)
        stack.start(webs, workers, worker_args)
        return stack

    yield factory
    failed = getattr(request.node, "rep_call", None)
    for stack in stacks:
        stack.close()
        if failed is not None and failed.failed:
            print(stack.logs())


@pytest.fixture(scope="module")
def stack(redis_server: Any) -> Iterator[Stack]:
    shared = Stack(redis_server.url)
    shared.start()
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack)
    yield client
    # An idle keep-alive socket would hold the web's graceful stop for its whole grace (20 s).
    client.session.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
