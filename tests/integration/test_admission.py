"""The admission script against a real Redis: a resent call changes nothing."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from rq import Queue

from spool.admission import Admission, Ticket
from spool.connection import connect, connect_rq
from spool.generations import Generations
from spool.ids import new_generation_id
from spool.keys import Keys
from spool.log import EventLog, Retention
from spool.queue import enqueue_commands
from spool.schemas import parse_generation_request

RETENTION = Retention(live_s=3600, final_s=3600, tombstone_s=7200)


@pytest.fixture
def generations(redis_server: Any) -> Iterator[Generations]:
    client = connect(redis_server.url)
    keys = Keys(f"adm{secrets.token_hex(4)}")
    yield Generations(client, keys, EventLog(client, keys, RETENTION))
    client.close()


def test_a_resent_admission_is_not_applied_twice(generations: Generations,
                                                 redis_server: Any) -> None:
    keys, client = generations.keys, generations.client
    rq = connect_rq(redis_server.url)
    request = parse_generation_request({"messages": [{"role": "user", "content": "hi"}]},
                                       max_tokens_limit=4096, providers=("mock",))
    gen_id = new_generation_id()
    ticket = Ticket(gen_id, "acme",
                    generations.new_record("acme", request, provider="mock", model="mock-1",
                                           abandon_after_s=None, holds_place=True),
                    rate=("cred", 100), active_limit=10,
                    enqueue=enqueue_commands(rq, keys, gen_id, "interactive", 600))
    admission = Admission(generations)
    first, again = admission.admit(ticket), admission.admit(ticket)  # the reply "lost", resent
    assert first.gen_id == again.gen_id == gen_id and not again.existing
    assert [entry.seq for entry in generations.log.read_all(gen_id)] == [1]
    # The record as written: every field of the ticket's, and event 1 counted.
    written = client.hgetall(keys.record(gen_id))
    assert written == {**{k: str(v) for k, v in ticket.record.items()}, "last_seq": "1"}
    assert Queue(keys.queue_name("interactive"), connection=rq).get_job_ids() == [gen_id]
    assert client.zcard(keys.active("acme")) == 1
    rate_keys = client.keys(f"{keys.namespace}:rate:*")
    assert [client.get(key) for key in rate_keys] == ["1"]
    rq.close()
