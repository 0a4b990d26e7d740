"""The worker side of leases: one refresh per tick for all in-flight generations,
and the fence before a generation's first output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import redis

from spool.lease import CONFIRM_MARGIN_MS, Leases

log = logging.getLogger("spool.lease")

REFRESH_INTERVAL_S = 2.0  # lease ttl is 10 s: four refreshes may fail before it lapses
CLOCK_SLACK_S = 0.5  # for clock-rate differences between this host and Redis


class LeaseLost(BaseException):
    """Raised into a runner whose lease another process took (it settled the run)."""


class HandBack(BaseException):
    """Raised into a runner still going when the shutdown grace ends."""


class LeaseKeeper:
    """Refreshes this worker's leases; reports the ones it lost."""

    def __init__(self, leases: Leases, owner: str, held: Callable[[], list[str]],
                 on_lost: Callable[[str], None]) -> None:
        self.leases = leases
        self.owner = owner
        self.held = held
        self.on_lost = on_lost
        # gen -> monotonic time an acquire/refresh that succeeded was sent: its
        # deadline is at least a lease ttl after that on the Redis clock.
        self._extended: dict[str, float] = {}
        self._sure_for_s = (leases.ttl_ms - CONFIRM_MARGIN_MS) / 1000 - CLOCK_SLACK_S

    def acquire(self, gen_ids: list[str]) -> None:
        """Lease generations just dequeued (one round trip)."""
        sent = time.monotonic()
        self.leases.acquire(gen_ids, self.owner)
        for gen_id in gen_ids:
            self._extended[gen_id] = sent

    def acquired(self, gen_ids: list[str], sent: float) -> None:
        """Note leases taken by a claim pipeline sent at monotonic time `sent`."""
        for gen_id in gen_ids:
            self._extended[gen_id] = sent

    def released(self, gen_ids: list[str]) -> None:
        """Forget leases a finish pipeline released."""
        for gen_id in gen_ids:
            self._extended.pop(gen_id, None)

    def release(self, gen_id: str) -> None:
        """Drop the lease of a generation that ended here."""
        self._extended.pop(gen_id, None)
        self.leases.release(gen_id, self.owner)

    def refresh_once(self) -> None:
        """Extend every held lease in one script call; hand lost ones to `on_lost`."""
        held, sent = self.held(), time.monotonic()
        lost = set(self.leases.refresh(held, self.owner))
        for gen_id in held:
            if gen_id not in lost:
                self._extended[gen_id] = sent
        for gen_id in lost:
            self._extended.pop(gen_id, None)
            log.warning("lease of %s was taken over; stopping its runner", gen_id)
            self.on_lost(gen_id)

    def run(self) -> None:
        """Refresh forever (spawn as a greenlet)."""
        while True:
            started = time.monotonic()
            try:
                self.refresh_once()
            except redis.RedisError as exc:
                log.warning("lease refresh failed: %s", type(exc).__name__)
            gevent.sleep(max(0.0, REFRESH_INTERVAL_S - (time.monotonic() - started)))

    def guard(self, gen_id: str) -> None:
        """Writer output guard: refuse a first output unless the lease is safely ours.

        No settler can take a lease before its deadline, so while our last
        extension is recent enough no round trip is needed.
        """
        extended = self._extended.get(gen_id)
        if extended is not None and time.monotonic() - extended < self._sure_for_s:
            return
        try:
            ours = self.leases.confirm(gen_id, self.owner)
        except redis.RedisError:
            ours = True  # the append will wait for Redis anyway; do not drop work for a blip
        if not ours:
            raise LeaseLost(gen_id)

