"""What the handlers share, built once per app: clients, key builder, stores."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis

from spool.connection import check_rq_url, connect, connect_rq, is_cluster, publish_command
from spool.generations import Generations
from spool.keys import Keys
from spool.log import EventLog, Retention
from spool.settings import Settings
from webapp.hub import Hub
from webapp.shardhub import ShardedHub, make_hub

REDIS_POOL_SIZE = 200  # commands are short; bounded so a spike cannot exhaust Redis


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

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Create clients (lazy: no connection is opened until first use)."""
        client = connect(settings.redis_url, max_connections=REDIS_POOL_SIZE,
                         cluster=settings.redis_cluster)
        check_rq_url(settings.redis_url, settings.rq_redis_url, is_cluster(client))
        keys = Keys(settings.namespace)
        retention = Retention.from_settings(
            settings.retention_s, settings.job_timeout_s, settings.tombstone_s
        )
        event_log = EventLog(client, keys, retention, publish_command=publish_command(client))
        return cls(
            settings=settings,
            redis=client,
            rq_redis=connect_rq(settings.rq_redis_url),
            keys=keys,
            log=event_log,
            generations=Generations(client, keys, event_log),
            hub=make_hub(settings.redis_url, client),
        )


def services() -> Services:
    """The current app's services."""
    found: Services = current_app.extensions["spool"]
    return found
