"""The worker's remembering serializer check: same answers as RQ's, one check per object."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import redis
import rq.serializers
from rq.job import Job
from rq.serializers import DefaultSerializer, JSONSerializer

from worker import serializers


class Counted:
    """RQ's resolve_serializer, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, serializer: Any = None) -> Any:
        self.calls += 1
        return rq.serializers.resolve_serializer(serializer)


def test_a_serializer_object_is_checked_once() -> None:
    counted = Counted()
    resolve = serializers.remembering(counted)
    for _ in range(5):
        assert resolve(JSONSerializer) is JSONSerializer
    assert counted.calls == 1


def test_none_and_names_resolve_as_rq_does_every_time() -> None:
    counted = Counted()
    resolve = serializers.remembering(counted)
    assert resolve() is DefaultSerializer and resolve(None) is DefaultSerializer
    assert resolve("json") is rq.serializers.resolve_serializer("json")
    assert resolve("json") is rq.serializers.resolve_serializer("json")
    assert counted.calls == 4


def test_a_bad_serializer_is_refused_every_time() -> None:
    resolve = serializers.remembering(rq.serializers.resolve_serializer)

    class NoLoads:
        @staticmethod
        def dumps(obj: Any) -> bytes:
            return b""

    for _ in range(2):
        with pytest.raises(NotImplementedError):
            resolve(NoLoads)


def test_install_swaps_rq_modules_and_jobs_still_serialize(
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = rq.serializers.resolve_serializer
    for name in serializers.RQ_MODULES:  # restored after the test
        monkeypatch.setattr(importlib.import_module(name), "resolve_serializer", original)
    serializers.install()
    serializers.install()  # idempotent: not wrapped twice
    for name in serializers.RQ_MODULES:
        installed = importlib.import_module(name).resolve_serializer
        assert installed is not original
        assert installed.__wrapped__ is original
    job = Job(id="j1", connection=redis.Redis(), serializer=JSONSerializer)  # never connects
    assert job.serializer is JSONSerializer
    assert job.serializer.loads(job.serializer.dumps({"a": 1})) == {"a": 1}
