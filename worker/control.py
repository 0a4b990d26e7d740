"""Cancellation: a control channel for speed, a poll for certainty.

The web publishes a generation id on the control channel after flagging the
record. A runner blocked inside its provider (waiting for the next token)
is interrupted at once with `Cancelled`, which closes the upstream
connection; a runner between pieces sees the flag on its next check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gevent
import redis

from spool.connection import is_cluster
from spool.keys import Keys

log = logging.getLogger("spool.control")

POLL_INTERVAL_S = 0.5  # the backstop if a control message is missed

# KEYS: generation records. Returns each one's `cancel` field ('' when unset).
_CANCEL_FLAGS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], 'cancel') or '' end
return out
"""


class Cancelled(BaseException):
    """Raised into a runner's greenlet when its generation is cancelled.

    A BaseException so that no `except Exception` inside an SDK swallows it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobTimeout(BaseException):
    """Raised into a runner's greenlet when its job outlives its RQ timeout.

    A BaseException for the same reason as `Cancelled`.
    """

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the generation exceeded its job timeout of {timeout_s:g} s")
        self.timeout_s = timeout_s


@dataclass
class Handle:
    """A running generation as the watcher sees it."""

    gen_id: str
    greenlet: Any  # gevent.Greenlet, or a raw greenlet
    reason: str | None = None
    interruptible: bool = False  # True while the runner waits on its provider

    def cancel(self, reason: str) -> None:
        """Record the request; interrupt the runner if it is waiting upstream."""
        if self.reason is not None:
            return
        self.reason = reason
        if self.interruptible:
            interrupt(self.greenlet, Cancelled(reason))


def interrupt(target: Any, exc: BaseException) -> None:
    """Raise `exc` inside `target` the next time it is suspended.

    gevent Greenlets have `kill`; a raw greenlet (e.g. the main one, where a
    one-job-at-a-time RQ worker runs jobs) is thrown into from the hub loop.
    """
    if isinstance(target, gevent.Greenlet):
        target.kill(exc, block=False)
    else:
        gevent.get_hub().loop.run_callback(target.throw, exc)


class CancelWatcher:
    """Watches for cancel requests of this process's running generations."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.handles: dict[str, Handle] = {}
        self._started = False
        self._cancel_flags = client.register_script(_CANCEL_FLAGS)

    def start(self) -> None:
        """Start the listener and the poller (idempotent)."""
        if not self._started:
            self._started = True
            gevent.spawn(self._listen)
            gevent.spawn(self._poll)

    def register(self, gen_id: str) -> Handle:
        """Track the calling greenlet as `gen_id`'s runner."""
        self.start()
        handle = Handle(gen_id, gevent.getcurrent())
        self.handles[gen_id] = handle
        return handle

    def unregister(self, gen_id: str) -> None:
        """Stop tracking `gen_id`."""
        self.handles.pop(gen_id, None)

    def _check(self, gen_ids: list[str]) -> None:
        if not gen_ids:
            return
        keys = [self.keys.record(gen_id) for gen_id in gen_ids]
        if is_cluster(self.client):
            # A script may not span slots on a Cluster: one HGET each.
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "cancel")
            reasons = [reason or "" for reason in pipe.execute()]
        else:
            # One script call for all of them: a pipeline of hundreds of HGETs
            # every half second cost the worker several percent of a core.
            reasons = self._cancel_flags(keys=keys)
        for gen_id, reason in zip(gen_ids, reasons, strict=True):
            handle = self.handles.get(gen_id)
            if reason and handle is not None:
                handle.cancel(str(reason))

    def _listen(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.keys.cancel_channel())
                for message in pubsub.listen():
                    gen_id = message.get("data")
                    if isinstance(gen_id, str) and gen_id in self.handles:
                        self._check([gen_id])
            except redis.RedisError as exc:
                log.warning("control channel lost (%s); resubscribing", type(exc).__name__)
                gevent.sleep(POLL_INTERVAL_S)

    def _poll(self) -> None:
        while True:
            gevent.sleep(POLL_INTERVAL_S)
            try:
                self._check(list(self.handles))
            except redis.RedisError as exc:
                log.warning("cancel poll failed: %s", type(exc).__name__)
