"""The web's shared admission round trips (`webapp.batcher`) against a real Redis."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
import redis

from spool.connection import connect, take_round_trips
from webapp.batcher import SPILL_AT, PipelineBatcher

ECHO = "return {KEYS[1], ARGV[1], ARGV[2], #ARGV}"


@pytest.fixture
def client(redis_server: Any) -> Iterator[Any]:
    found = connect(redis_server.url, max_connections=4, blocking=True)
    yield found
    found.close()


@pytest.fixture
def batcher(client: Any) -> PipelineBatcher:
    sha = client.script_load(ECHO)
    return PipelineBatcher(client, {sha: ECHO})


def sha_of(batcher: PipelineBatcher) -> str:
    return next(iter(batcher.scripts))


def test_concurrent_calls_share_one_round_trip_and_get_their_own_replies(
        batcher: PipelineBatcher) -> None:
    sha = sha_of(batcher)
    batcher.call(("PING",))  # the batcher's own connection is open (its handshake counts)
    take_round_trips()
    n = SPILL_AT - 1
    calls = [gevent.spawn(batcher.call, ("EVALSHA", sha, 1, f"key-{i}", f"value {i}", i))
             for i in range(n)]
    gevent.joinall(calls, raise_error=True)
    assert [call.value for call in calls] == [[[f"key-{i}", f"value {i}", str(i), 2]]
                                              for i in range(n)]
    assert sum(take_round_trips().values()) == 1


def test_a_burst_leaves_in_rounds_of_spill_at_without_waiting_for_the_rest(
        batcher: PipelineBatcher, redis_server: Any) -> None:
    """The SPILL_AT-th waiting call sends them at once: before later greenlets even run."""
    batcher.call(("PING",))  # the batcher's own connection is open (its handshake counts)
    take_round_trips()
    seen: list[int] = []
    observer = redis.Redis.from_url(redis_server.url)

    def look() -> None:  # a greenlet that runs between the first and second SPILL_AT calls
        seen.append(int(observer.get("batcher:burst") or 0))

    first = [gevent.spawn(batcher.call, ("INCR", "batcher:burst")) for _ in range(SPILL_AT)]
    looker = gevent.spawn(look)
    rest = [gevent.spawn(batcher.call, ("INCR", "batcher:burst")) for _ in range(2 * SPILL_AT)]
    try:
        gevent.joinall([*first, looker, *rest], raise_error=True)
        assert seen == [SPILL_AT]
        assert sorted(call.value[0] for call in first + rest) == list(range(1, 3 * SPILL_AT + 1))
        assert sum(take_round_trips().values()) == 3
    finally:
        observer.delete("batcher:burst")
        observer.close()


def test_arguments_reach_redis_exactly(batcher: PipelineBatcher, redis_server: Any) -> None:
    binary = zlib.compress(b"\x00\r\n$3\r\nnot a command" * 5)
    text = "Hello, 世界! 🙂 e\u0301 \"quoted\"\r\n*1"
    replies = batcher.call(("SET", "batcher:bin", binary), ("SET", "batcher:text", text),
                           ("HSET", "batcher:hash", "n", 12345, "neg", -7))
    assert replies == ["OK", "OK", 2]
    raw = redis.Redis.from_url(redis_server.url)
    try:
        assert raw.get("batcher:bin") == binary
        assert raw.get("batcher:text") == text.encode()
        assert raw.hgetall("batcher:hash") == {b"n": b"12345", b"neg": b"-7"}
    finally:
        raw.delete("batcher:bin", "batcher:text", "batcher:hash")
        raw.close()


def test_an_error_reply_is_that_call_s_reply_not_the_batch_s(batcher: PipelineBatcher,
                                                            client: Any) -> None:
    client.set("batcher:string", "x")
    try:
        wrong, right = batcher.call(("LPUSH", "batcher:string", "y"), ("GET", "batcher:string"))
    finally:
        client.delete("batcher:string")
    assert isinstance(wrong, redis.ResponseError) and "WRONGTYPE" in str(wrong)
    assert right == "x"


def test_lost_scripts_are_loaded_again_and_the_call_goes_through(batcher: PipelineBatcher,
                                                                 client: Any) -> None:
    sha = sha_of(batcher)
    client.script_flush()
    assert batcher.call(("EVALSHA", sha, 1, "k", "a", "b")) == [["k", "a", "b", 2]]


def test_a_dropped_connection_is_made_again(batcher: PipelineBatcher, client: Any) -> None:
    assert batcher.call(("PING",)) == ["PONG"]
    client.client_kill_filter(_type="normal", skipme=False)  # every client, ours included
    assert batcher.call(("ECHO", "back")) == ["back"]



LOST_IN_FLIGHT = """
from gevent import monkey
monkey.patch_all()
import json, sys, time
import gevent, redis
from spool.connection import connect
from webapp.batcher import PipelineBatcher

url = sys.argv[1]
batcher = PipelineBatcher(connect(url, blocking=True, max_connections=2))
batcher.call(("PING",))
other = redis.Redis.from_url(url)
other.delete("batcher:lost", "batcher:never")
blocked = gevent.spawn(batcher.call, ("BLPOP", "batcher:never", 1))
gevent.sleep(0.1)
behind = gevent.spawn(batcher.call, ("INCR", "batcher:lost"))  # queued behind it, same connection
gevent.sleep(0.1)
other.client_kill_filter(_type="normal", skipme=True)  # both are in flight
gevent.joinall([blocked, behind], timeout=10)
print(json.dumps({"blocked": blocked.value, "behind": behind.value,
                  "counter": int(other.get("batcher:lost") or 0)}))
other.delete("batcher:lost")
"""


def test_batches_in_flight_on_a_lost_connection_are_written_again_once(
        redis_server: Any) -> None:
    """A connection dropped with two batches in flight: both go again, in order, once."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOST_IN_FLIGHT, redis_server.url],
                          capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"blocked": [None], "behind": [1], "counter": 1}
