"""Reading a few fields of a generation's record (what a stream's opening needs)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from spool.connection import connect
from spool.generations import Generations
from spool.ids import new_generation_id
from spool.keys import Keys
from spool.log import EventLog, Retention
from spool.schemas import GenerationRequest

RETENTION = Retention(live_s=600, final_s=60, tombstone_s=120)
OPENING = ("tenant", "ended", "last_seq", "abandon_after_s")


@pytest.fixture
def generations(redis_server: Any) -> Iterator[Generations]:
    client: redis.Redis = connect(redis_server.url)
    keys = Keys("f" + secrets.token_hex(4))
    yield Generations(client, keys, EventLog(client, keys, RETENTION))
    client.close()


def create(generations: Generations, prompt: str, abandon_after_s: int | None) -> str:
    gen_id = new_generation_id()
    request = GenerationRequest.model_validate({"messages": [{"role": "user", "content": prompt}]})
    generations.create(gen_id, "t1", request, provider="mock", model="m",
                       abandon_after_s=abandon_after_s)
    return gen_id


def test_only_the_asked_fields_come_back_never_the_request(generations: Generations) -> None:
    gen_id = create(generations, "x" * 300_000, abandon_after_s=30)
    whole = generations.load(gen_id)
    assert whole is not None and len(whole["request"]) > 300_000

    fields = generations.load_fields(gen_id, OPENING)

    assert fields == {"tenant": "t1", "last_seq": "1", "abandon_after_s": "30"}


def test_fields_that_are_not_set_are_left_out(generations: Generations) -> None:
    gen_id = create(generations, "hi", abandon_after_s=None)
    generations.log.append(gen_id, "done", {"finish_reason": "stop"}, {"status": "completed"})

    fields = generations.load_fields(gen_id, ("status", "ended", "abandon_after_s"))

    assert fields == {"tenant": "t1", "status": "completed", "ended": "2"}


def test_no_record_is_none(generations: Generations) -> None:
    assert generations.load_fields(new_generation_id(), OPENING) is None
