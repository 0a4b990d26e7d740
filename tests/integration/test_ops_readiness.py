"""/readyz flips with Redis and worker availability; /metrics survives Redis going away.

Uses its own redis-server (conftest's `private_redis`): the test stops it,
which must not disturb any other test's stack.
"""

from __future__ import annotations

import signal

import requests

from tests.conftest import Api
from tests.harness import RedisServer, Stack, wait_until
from tests.integration.test_ops import scrape, value

ENV = {"SPOOL_METRICS_FLUSH_S": "0.2"}


def readyz(stack: Stack) -> tuple[int, dict[str, object]]:
    resp = requests.get(stack.url("/readyz"), timeout=10)
    return resp.status_code, resp.json()


def test_readyz_flips_with_worker_and_redis(private_redis: RedisServer) -> None:
    stack = Stack(private_redis.url, ENV)
    api = Api(stack)
    try:
        stack.start_web()
        assert readyz(stack) == (503, {"status": "unavailable", "redis": True, "workers": 0})
        assert requests.get(stack.url("/healthz"), timeout=5).status_code == 200

        stack.start_worker()
        assert readyz(stack) == (200, {"status": "ok", "redis": True, "workers": 1})

        # A worker that shuts down cleanly withdraws its heartbeat at once.
        stack.workers[0].signal(signal.SIGTERM)
        wait_until(lambda: readyz(stack)[0] == 503, 20, 0.1, "503 after the worker left")
        assert readyz(stack)[1]["workers"] == 0

        # Work waits in the queue while no worker is alive, and /metrics shows it.
        created = api.create("queued while no worker runs")
        assert value(scrape(stack.url("/metrics")), "spool_generations_queued",
                     queue="interactive") == 1

        stack.start_worker()
        assert readyz(stack)[0] == 200
        assert api.stream(created).complete

        private_redis.stop()
        status, body = readyz(stack)
        assert (status, body["redis"]) == (503, False)
        assert requests.get(stack.url("/healthz"), timeout=5).status_code == 200
        down = scrape(stack.url("/metrics"))  # still answers, and says Redis is down
        assert value(down, "spool_redis_up") == 0

        private_redis.start()  # empty: the worker's next heartbeat makes it ready again
        try:
            wait_until(lambda: readyz(stack)[0] == 200, 30, 0.2, "ready after Redis returned")
        except TimeoutError:
            assert stack.workers[-1].alive(), "the worker process died during the Redis outage"
            raise
        # Failures while Redis was down were counted and added once it came back.
        wait_until(lambda: value(scrape(stack.url("/metrics")), "spool_redis_errors_total",
                                 error="ConnectionError") > 0, 15, 0.2, "redis errors counted")
    finally:
        api.session.close()
        stack.close()
        print(stack.logs())
