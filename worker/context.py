"""Process-wide worker state, built once (after gevent patching)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from redis import Redis

from spool.connection import connect
from spool.generations import Generations
from spool.keys import Keys
from spool.log import EventLog, open_event_log
from spool.settings import Settings
from worker.control import CancelWatcher
from worker.writer import BatchWriter
from worker.writeretry import WriteRetry

REDIS_POOL_SIZE = 64  # shared by all runners of the process (they wait, never fail)


@dataclass
class WorkerContext:
    """What every runner in this process shares."""

    settings: Settings
    redis: Redis
    keys: Keys
    log: EventLog
    generations: Generations
    writer: BatchWriter
    watcher: CancelWatcher
    worker_id: str

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        """Create clients and the shared writer and watcher (not yet started)."""
        client = connect(settings.redis_url, cluster=settings.redis_cluster,
                         max_connections=REDIS_POOL_SIZE, blocking=True)
        event_log = open_event_log(settings, client)
        keys = event_log.keys
        return cls(
            settings=settings,
            redis=client,
            keys=keys,
            log=event_log,
            generations=Generations(client, keys, event_log),
            writer=BatchWriter(event_log, WriteRetry(settings.write_retry_s)),
            watcher=CancelWatcher(client, keys),
            worker_id=f"{socket.gethostname()}.{os.getpid()}",
        )


_current: WorkerContext | None = None


def get_context() -> WorkerContext:
    """This process's context, built from the environment on first use."""
    global _current
    if _current is None:
        _current = WorkerContext.build(Settings.from_env())
    return _current


def set_context(context: WorkerContext) -> None:
    """Install a context (the worker entrypoint does this at startup)."""
    global _current
    _current = context
