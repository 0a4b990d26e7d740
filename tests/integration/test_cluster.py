"""The event log and pub/sub on a 3-master Redis Cluster; RQ on a plain Redis.

The test starts three `redis-server --cluster-enabled yes` on free loopback
ports, joins them with `redis-cli --cluster create`, and runs real web and
worker processes with REDIS_URL on the Cluster (mode auto-detected) and
RQ_REDIS_URL on a separate plain server.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from tests.conftest import Api
from tests.harness import RedisServer, Stack, free_port, redis_server_binary, wait_until
from tests.integration.test_ops import scrape, value
from tests.sseclient import Event, read_stream

MASTERS = 3
TEXT = "".join(f"shard{i} " for i in range(60)) + "— ✓"


class Cluster:
    """Three cluster-enabled redis-servers on loopback, joined into one Cluster."""

    def __init__(self) -> None:
        self.ports = [free_port() for _ in range(MASTERS)]
        self.directory = tempfile.mkdtemp(prefix="spool-cluster-")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            node_dir = f"{self.directory}/{port}"
            subprocess.run(["mkdir", "-p", node_dir], check=True)
            self.procs.append(subprocess.Popen(
                [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                 "--cluster-config-file", "nodes.conf", "--dir", node_dir,
                 "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports:
            wait_until(redis.Redis(port=port).ping, 10, what=f"cluster node {port}")
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0",
             "--cluster-yes"], check=True, stdout=subprocess.DEVNULL, timeout=60)
        wait_until(self._ok, 30, 0.1, "cluster_state:ok on every node")

    def _ok(self) -> bool:
        return all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok"
                   for p in self.ports)

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)


class ClusterStack(Stack):
    """A Stack whose worker heartbeats live on the Cluster."""

    cluster_client: RedisCluster

    def worker_count(self) -> int:
        return int(self.cluster_client.zcount(f"{self.namespace}:workers",
                                              time.time() - 30, "+inf"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is needed to create the Cluster (apt-get install redis-tools)")
    started = Cluster()
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def rq_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster_stack(cluster: Cluster, rq_redis: RedisServer) -> Iterator[ClusterStack]:
    # A long ping interval: if live delivery were broken, readers would stall
    # (the relay's periodic re-read would otherwise hide it).
    stack = ClusterStack(cluster.url, {"RQ_REDIS_URL": rq_redis.url,
                                       "SPOOL_METRICS_FLUSH_S": "0.2",
                                       "SPOOL_PING_INTERVAL_S": "120"})
    stack.cluster_client = cluster.client()
    stack.start_web()
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


def _gen_keys(stack: Stack, gen_id: str) -> list[str]:
    return [f"{stack.namespace}:gen:{{{gen_id}}}:{part}" for part in ("rec", "log", "text")]


def _deltas(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")


def test_generations_stream_from_every_shard(cluster: Cluster, cluster_stack: ClusterStack,
                                             rq_redis: RedisServer) -> None:
    api = Api(cluster_stack)
    client = cluster.client()
    nodes: set[str] = set()
    for i in range(9):
        created = api.create(f"answer {i}", mock={"tokens_per_second": 0})
        result = api.stream(created)
        assert result.events[-1].event == "done"
        assert _deltas(result.events) == f"answer {i}"
        keys = _gen_keys(cluster_stack, created["id"])
        assert len({client.keyslot(k) for k in keys}) == 1, "a generation spans slots"
        nodes.add(client.get_node_from_key(keys[0]).name)
        # RQ's job hash is on the plain Redis, never on the Cluster.
        rq_plain = redis.Redis.from_url(rq_redis.url)
        assert rq_plain.exists(f"rq:job:{created['id']}") == 1
    assert len(nodes) >= 2, "nine generations all hashed to one shard"


def test_live_events_travel_by_sharded_pubsub(cluster: Cluster,
                                              cluster_stack: ClusterStack) -> None:
    api = Api(cluster_stack, web=1)
    created = api.create(TEXT, mock={"tokens_per_second": 40, "ttft_ms": 0})
    channel = f"{cluster_stack.namespace}:gen:{{{created['id']}}}:ch"
    events: list[Event] = []
    reader = threading.Thread(target=lambda: events.extend(
        read_stream(api.url(created["stream_url"]), {}).events))
    reader.start()
    owner = cluster.client().get_node_from_key(channel)
    node = redis.Redis(host=owner.host, port=owner.port, decode_responses=True)

    def subscribed() -> bool:
        shard = dict(zip(*[iter(node.execute_command("PUBSUB", "SHARDNUMSUB", channel))] * 2,
                         strict=True))
        return int(shard.get(channel, 0)) == 1

    wait_until(subscribed, 10, 0.05, "a sharded subscription on the owning shard")
    assert node.execute_command("PUBSUB", "NUMSUB", channel)[1] == 0  # no classic one
    reader.join(30)
    assert events and events[-1].event == "done"
    assert _deltas(events) == TEXT
    assert [e.id for e in events] == list(range(1, len(events) + 1))


def test_resume_across_webs_and_cancel_on_the_cluster(cluster_stack: ClusterStack) -> None:
    web0, web1 = Api(cluster_stack, web=0), Api(cluster_stack, web=1)
    created = web0.create(TEXT, mock={"tokens_per_second": 60, "ttft_ms": 0})
    first = web0.stream(created, max_events=8)
    rest = web1.stream(created, headers={"Last-Event-ID": str(first.events[-1].id)})
    events = first.events + rest.events
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert _deltas(events) == TEXT

    long = web0.create(TEXT * 5, mock={"tokens_per_second": 30, "ttft_ms": 0})
    partial = web1.stream(long, max_events=4)
    assert web0.post(f"/v1/generations/{long['id']}/cancel").status_code == 202
    tail = web1.stream(long, headers={"Last-Event-ID": str(partial.events[-1].id)})
    assert tail.events[-1].event == "cancelled"
    assert web0.generation(long["id"])["status"] == "cancelled"


def test_readyz_and_metrics_on_the_cluster(cluster_stack: ClusterStack) -> None:
    ready = Api(cluster_stack).get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] == 1

    def counted() -> Any:
        found = scrape(cluster_stack.url("/metrics", 1))
        done = value(found, "spool_generations_total", provider="mock", outcome="completed",
                     finish_reason="stop")
        return found if done >= 10 else None

    found = wait_until(counted, 15, 0.2, "completed generations counted on the cluster")
    assert value(found, "spool_redis_up") == 1
    assert value(found, "spool_processes", kind="web") == 2
