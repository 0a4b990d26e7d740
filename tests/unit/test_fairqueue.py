"""FairLifoQueue: the web's Redis pools serve waiting greenlets in arrival order."""

from __future__ import annotations

import queue

import gevent
import pytest
import redis

from webapp.fairqueue import FairLifoQueue


def test_free_items_are_reused_last_in_first_out() -> None:
    q = FairLifoQueue(3)
    for item in (None, "warm", "warmest"):
        q.put_nowait(item)
    assert [q.get(), q.get(), q.get()] == ["warmest", "warm", None]
    with pytest.raises(queue.Full):
        for _ in range(4):
            q.put_nowait("x")


def test_a_greenlet_that_keeps_asking_cannot_starve_one_that_waits() -> None:
    q = FairLifoQueue(1)
    q.put_nowait("conn")
    served: list[str] = []

    def greedy() -> None:
        # Takes the connection, yields (as a Redis round trip does), returns
        # it and asks again at once: with queue.LifoQueue it gets it back
        # every time, before the woken waiter runs.
        for _ in range(50):
            item = q.get()
            served.append("greedy")
            gevent.sleep(0)
            q.put_nowait(item)

    def patient() -> None:
        q.put_nowait(q.get(timeout=5))
        served.append("patient")

    first = gevent.spawn(greedy)
    gevent.sleep(0)  # greedy holds the connection now
    second = gevent.spawn(patient)
    gevent.joinall([first, second], timeout=10, raise_error=True)
    assert "patient" in served[:3]


def test_waiters_are_served_in_arrival_order() -> None:
    q = FairLifoQueue(1)
    order: list[int] = []

    def wait(n: int) -> None:
        item = q.get(timeout=5)
        order.append(n)
        q.put_nowait(item)

    waiters = [gevent.spawn(wait, n) for n in range(5)]
    gevent.sleep(0)
    q.put_nowait("conn")
    gevent.joinall(waiters, timeout=5, raise_error=True)
    assert order == [0, 1, 2, 3, 4]


def test_a_wait_times_out_with_empty_and_leaves_the_line() -> None:
    q = FairLifoQueue(1)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(block=False)
    q.put_nowait("conn")  # nobody waits any more: kept
    assert q.qsize() == 1 and q.get_nowait() == "conn"


def test_redis_pool_over_it_hands_out_and_takes_back(redis_server: object) -> None:
    pool = redis.BlockingConnectionPool.from_url(
        redis_server.url, max_connections=2, timeout=1,  # type: ignore[attr-defined]
        queue_class=FairLifoQueue)
    client = redis.Redis(connection_pool=pool)
    assert client.ping()
    first, second = pool.get_connection(), pool.get_connection()
    with pytest.raises(redis.ConnectionError):
        pool.get_connection()  # both in use: waits its timeout, then fails as redis-py does
    pool.release(first)
    pool.release(second)
    assert client.ping()
    pool.disconnect()
