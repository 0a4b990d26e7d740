"""A generation's log, translated event by event into a facade's wire format.

Every facade stream is the same loop: follow the log (backlog, then live,
merged by seq: `webapp.relay.follow`), hand each event to a translator,
send a keep-alive while nothing happens. A run of consecutive events (a
backlog page, or the live events already queued) goes out as one write, as
the SSE relay's do: a replay of a long answer is a few writes, not one per
token. What differs is the translator and
how a stream cut on the server side (Redis lost) is told to the client,
which the caller decides by looking at `translator.ended` afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

import orjson
import redis

from webapp.facades.wire import KEEPALIVE
from webapp.relay.follow import Quiet, follow_batches
from webapp.relay.hub import HubUnavailable, Live
from webapp.relay.presence import Presence
from webapp.services import Services

log = logging.getLogger("spool.facade")


class Translator(Protocol):
    """Turns one generation's events into wire bytes, in order."""

    @property
    def ended(self) -> bool:
        """True once the terminal event has been translated."""
        ...

    def feed(self, event: str, data: dict[str, Any]) -> list[bytes]:
        """The lines for one Spool event (possibly none)."""
        ...


def translate_log(svc: Services, gen_id: str, translator: Translator, *,
                  keepalive: bytes = KEEPALIVE, watch: Presence | None = None,
                  abandon_s: int | None = None) -> Iterator[bytes]:
    """Every event of `gen_id` from its start through `translator`, until the terminal one.

    Returns early (without raising) when the stream is cut on the server
    side; the generation itself goes on. With `watch`, the reader counts in
    the generation's `readers` (and keeps an `abandon_after_s` one alive).
    """
    if watch is not None:
        watch.attach(gen_id, abandon_s)
    try:
        for run in follow_batches(svc, gen_id, 0):
            if isinstance(run, Quiet):
                yield keepalive
                continue
            lines: list[bytes] = []
            for item in run:
                entry = item.entry() if isinstance(item, Live) else item
                lines += translator.feed(entry.event, orjson.loads(entry.data))
            if lines:
                yield b"".join(lines)
    except (HubUnavailable, redis.RedisError) as exc:
        log.warning("facade stream %s cut: %s", gen_id, type(exc).__name__)
    finally:
        if watch is not None:
            watch.detach(gen_id)
