"""The worker's RQ timestamp parser: RQ's answers, RQ's errors, installed where RQ looks."""

from __future__ import annotations

import datetime
import importlib
import random

import pytest
import redis
import rq.utils
from rq.job import Job

from worker import rqtime

RQ_PARSE = rq.utils.utcparse if not hasattr(rq.utils.utcparse, "__wrapped__") \
    else rq.utils.utcparse.__wrapped__


def _stamps() -> list[datetime.datetime]:
    rng = random.Random(7)
    start = datetime.datetime(1000, 1, 1, tzinfo=datetime.UTC)
    span = int((datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC) - start)
               .total_seconds())
    picked = [start + datetime.timedelta(seconds=rng.randrange(span),
                                         microseconds=rng.randrange(1_000_000))
              for _ in range(2_000)]
    return [*picked, datetime.datetime(2024, 2, 29, 23, 59, 59, 0, datetime.UTC),
            datetime.datetime(2026, 12, 4, 0, 0, 0, 999_999, datetime.UTC)]


def test_rq_written_stamps_parse_as_rq_parses_them() -> None:
    parse = rqtime.fast_utcparse(RQ_PARSE)
    for stamp in _stamps():
        text = rq.utils.utcformat(stamp)
        fast = parse(text)
        assert fast == RQ_PARSE(text) == stamp
        assert fast.tzinfo is datetime.UTC


@pytest.mark.parametrize("text", [
    "2026-12-04T17:00:00Z",                # RQ's old format: RQ's own fallback
    "2026-12-04T17:00:00.123456+00:00",    # fromisoformat would read it, RQ does not
    "2026-12-04 17:00:00.123456Z",         # a space instead of the T
    "2026-12-04T17:00:00,123456Z",         # a comma before the microseconds
    "2026-02-30T17:00:00.123456Z",         # no such day
    "2026-12-04T24:00:00.123456Z",
    "20261204T170000.1234567890Z",         # the length alone is not the shape
    "",
])
def test_other_strings_get_rq_answer_or_rq_error(text: str) -> None:
    parse = rqtime.fast_utcparse(RQ_PARSE)
    try:
        expected = RQ_PARSE(text)
    except ValueError as exc:
        with pytest.raises(ValueError) as raised:
            parse(text)
        assert str(raised.value) == str(exc)
    else:
        assert parse(text) == expected


def test_install_reaches_the_modules_that_parse_and_a_job_restores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in rqtime.RQ_MODULES:  # restored after the test
        module = importlib.import_module(name)
        if getattr(module, "utcparse", None) in (RQ_PARSE, rq.utils.utcparse):
            monkeypatch.setattr(module, "utcparse", RQ_PARSE)
    rqtime.install()
    rqtime.install()  # idempotent: not wrapped twice
    for name in rqtime.RQ_MODULES:
        installed = importlib.import_module(name).utcparse
        assert installed.__wrapped__ is RQ_PARSE
    written = Job.create(print, args=("hi",), connection=redis.Redis())  # never connects
    written.enqueued_at = written.created_at + datetime.timedelta(microseconds=1)
    job = Job(id=written.id, connection=redis.Redis())
    job.restore({k.encode(): v for k, v in written.to_dict().items()})
    assert (job.created_at, job.enqueued_at) == (written.created_at, written.enqueued_at)
    assert job.args == ("hi",)
