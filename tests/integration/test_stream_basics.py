"""Create -> stream -> done, the record, 204 after the end, resume basics."""

from __future__ import annotations

from tests.conftest import Api

TEXT = "Hello, 世界! 🙂 e\u0301 line\nbreak — done."


def deltas(result) -> str:  # type: ignore[no-untyped-def]
    return "".join(e.data["text"] for e in result.events if e.event == "delta")


def test_create_stream_done(api: Api) -> None:
    created = api.create(TEXT)
    assert created["id"].startswith("gen_") and len(created["id"]) >= 26
    assert created["status"] == "queued"
    result = api.stream(created)
    assert result.status == 200
    assert result.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert result.headers["Cache-Control"] == "no-cache"
    assert result.headers["X-Accel-Buffering"] == "no"
    assert result.retry == 1000
    assert [e.id for e in result.events] == list(range(1, len(result.events) + 1))
    assert result.events[0].event == "status" and result.events[0].data == {"status": "queued"}
    assert result.events[-1].event == "done"
    assert result.events[-1].data["finish_reason"] == "stop"
    assert deltas(result) == TEXT
    record = api.generation(created["id"])
    assert record["status"] == "completed"
    assert record["text"] == TEXT
    assert record["last_event_id"] == result.events[-1].id


def test_resume_at_end_is_204(api: Api) -> None:
    created = api.create("short")
    full = api.stream(created)
    last = full.events[-1].id
    assert api.stream(created, headers={"Last-Event-ID": str(last)}).status == 204
    assert api.stream(created, query=f"&after={last + 5}").status == 204
    resumed = api.stream(created, headers={"Last-Event-ID": "2"})
    assert [e.id for e in resumed.events] == list(range(3, last + 1))


def test_a_log_that_expired_under_a_reader_ends_the_stream(api: Api) -> None:
    """The record was found, then the log expired before the relay read it
    (a real race at retention's edge): the stream must end, not hang."""
    import threading

    import redis

    from spool.keys import Keys

    created = api.create("soon gone")
    api.stream(created)
    client = redis.Redis.from_url(api.stack.redis_url)
    client.delete(Keys(api.stack.namespace).log(created["id"]))  # the record stays
    client.close()
    results: list = []
    reader = threading.Thread(target=lambda: results.append(api.stream(created)), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "the stream of an expired log never ended"
    [result] = results
    assert result.status == 200 and result.complete
    assert result.events == []  # and no invented terminal event
