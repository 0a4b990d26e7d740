"""What the handlers share, built once per app: clients, key builder, stores."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from flask import current_app
from redis import Redis

from spool.admission import Admission
from spool.connection import (
    connect,
    connect_rq,
    detect_cluster,
)
from spool.generations import Generations
from spool.keys import Keys
from spool.log import EventLog, open_event_log
from spool.settings import Settings
from webapp.batcher import PipelineBatcher
from webapp.fairqueue import FairLifoQueue
from webapp.relay.hub import Hub
from webapp.relay.shardhub import ShardedHub, make_hub

# Commands are short and greenlets wait their turn for a connection, so a few
# suffice for thousands of readers. Readers' log reads have a pool of their
# own, so a burst of (re)connecting readers never makes a POST, a GET or a
# cancel wait behind them. Admissions have one pipelined connection of their
# own (webapp.batcher): with the hub's subscriber and the RQ client that is
# at most 1 + 8 + 8 + 1 + 1 = 19 Redis connections per (single-node) web process.
REDIS_POOL_SIZE = 8  # the API's requests (records, cancels, script loads)
RELAY_POOL_SIZE = 8  # SSE and facade readers' log reads
RQ_POOL_SIZE = 1
# The Cluster client cannot wait for a connection, so it keeps a larger bound per node.
CLUSTER_POOL_SIZE = 200


@dataclass
class Services:
    """Per-app singletons (stored in `app.extensions["spool"]`)."""

    settings: Settings
    redis: Redis
    rq_redis: Redis
    keys: Keys
    log: EventLog
    generations: Generations
    hub: Hub | ShardedHub
    admission: Admission
    # RQ's queues on Spool's own (single) Redis: admission enqueues in its script.
    rq_shared: bool = False
    # The readers' own client and event log (a separate pool; see RELAY_POOL_SIZE).
    relay_redis: Redis | None = None
    relay_log: EventLog | None = None
    relay_generations: Generations | None = None

    @property
    def reader_redis(self) -> Redis:
        """The client for readers' log reads."""
        return self.relay_redis or self.redis

    @property
    def reader_log(self) -> EventLog:
        """The event log as readers read it."""
        return self.relay_log or self.log

    @property
    def reader_generations(self) -> Generations:
        """Records as readers read them (on the readers' pool)."""
        return self.relay_generations or self.generations

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Create clients (lazy: no connection is opened until first use)."""
        cluster = settings.redis_cluster
        if cluster is None:
            cluster = detect_cluster(settings.redis_url)
        client = connect(settings.redis_url, cluster=cluster, blocking=True,
                         max_connections=CLUSTER_POOL_SIZE if cluster else REDIS_POOL_SIZE,
                         queue_class=FairLifoQueue)
        event_log = open_event_log(settings, client)
        relay_client = client if cluster else connect(settings.redis_url, cluster=False,
                                                      blocking=True,
                                                      max_connections=RELAY_POOL_SIZE,
                                                      queue_class=FairLifoQueue)
        keys = event_log.keys
        generations = Generations(client, keys, event_log)
        relay_log = open_event_log(settings, relay_client)
        send = None
        if not cluster:
            # Concurrent requests share their admission round trips (webapp.batcher).
            batcher = PipelineBatcher(client)
            send = partial(_send_one, batcher)
        admission = Admission(generations, send)
        if send is not None:
            batcher.scripts = dict([admission.script])
        return cls(
            settings=settings,
            redis=client,
            rq_redis=connect_rq(settings.rq_redis_url, max_connections=RQ_POOL_SIZE,
                                blocking=True),
            keys=keys,
            log=event_log,
            generations=generations,
            hub=make_hub(settings.redis_url, client),
            admission=admission,
            rq_shared=not cluster and settings.rq_redis_url == settings.redis_url,
            relay_redis=relay_client,
            relay_log=relay_log,
            relay_generations=Generations(relay_client, keys, relay_log),
        )


def _send_one(batcher: PipelineBatcher, command: tuple[Any, ...]) -> Any:
    reply = batcher.call(command)[0]
    if isinstance(reply, Exception):
        raise reply
    return reply


def services() -> Services:
    """The current app's services."""
    found: Services = current_app.extensions["spool"]
    return found
