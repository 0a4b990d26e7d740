"""Batches end to end: real gunicorn, real worker, real Redis.

One auth-enabled stack is shared by the module (two tenants). Workers get
few slots, so rows queue up behind each other and cancel/fairness matter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from spool.keys import Keys
from tests.conftest import Api
from tests.harness import Stack, wait_until
from tests.sseclient import read_stream

KEYS = {"alice": "key-alice-0123456789", "bob": "key-bob-0123456789"}
STACK_ENV = {
    "SPOOL_API_KEYS": ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
    "SPOOL_SECRET_KEY": "s" * 40,
    "SPOOL_MAX_BATCH_ROWS": "400",
    "SPOOL_WORKER_SLOTS": "4",
    "SPOOL_RATE_LIMIT": "100000",
    "SPOOL_WEB_GRACE_S": "2",  # keep-alive test sessions would hold shutdown 20 s
}
INSTANT = {"tokens_per_second": 0, "ttft_ms": 0}


@pytest.fixture(scope="module")
def bstack(redis_server: Any) -> Iterator[Stack]:
    shared = Stack(redis_server.url, STACK_ENV)
    shared.start_web()
    shared.start_worker()
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def alice(bstack: Stack) -> Api:
    return Api(bstack, key=KEYS["alice"])


@pytest.fixture(scope="module")
def bob(bstack: Stack) -> Api:
    return Api(bstack, key=KEYS["bob"])


def make_rows(n: int, prefix: str, mock: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"custom_id": f"{prefix}-{i}",
             "messages": [{"role": "user", "content": f"row {i}"}],
             "mock": {**INSTANT, "text": f"{prefix} answer {i} ✓", **(mock or {})}}
            for i in range(n)]


def submit(api: Api, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    resp = api.post("/v1/batches", {"requests": rows, **extra})
    assert resp.status_code == 202, resp.text
    created: dict[str, Any] = resp.json()
    assert created["object"] == "batch" and created["id"].startswith("batch_")
    assert created["total"] == len(rows)
    return created


def batch(api: Api, batch_id: str) -> dict[str, Any]:
    resp = api.get(f"/v1/batches/{batch_id}")
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def wait_ended(api: Api, batch_id: str, timeout: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: (b := batch(api, batch_id))["status"] in ("completed", "cancelled") and b,
        timeout, 0.1, f"batch {batch_id} to end")
    return found


def results(api: Api, batch_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/v1/batches/{batch_id}/results")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in resp.content.splitlines()]


def events_url(api: Api, batch_id: str) -> str:
    return api.url(f"/v1/batches/{batch_id}/events")


def test_json_batch_of_300_completes_with_one_result_per_row(alice: Api) -> None:
    rows = make_rows(300, "j")
    rows[7]["mock"]["tool_calls"] = [{"name": "lookup", "arguments": {"q": "x"}}]
    created = submit(alice, rows, metadata={"job": "nightly"})
    assert created["status"] == "queued" and created["metadata"] == {"job": "nightly"}
    done = wait_ended(alice, created["id"])
    assert done["status"] == "completed"
    assert (done["completed"], done["failed"], done["cancelled"]) == (300, 0, 0)
    assert done["finished_at"] is not None
    lines = results(alice, created["id"])
    assert len(lines) == 300
    by_id = {line["custom_id"]: line for line in lines}
    assert set(by_id) == {f"j-{i}" for i in range(300)}
    for i in range(300):
        line = by_id[f"j-{i}"]
        assert line["status"] == "completed" and line["error"] is None
        assert line["text"] == f"j answer {i} ✓"
        assert line["usage"]["output_tokens"] > 0
    assert by_id["j-7"]["tool_calls"][0]["name"] == "lookup"
    assert by_id["j-7"]["tool_calls"][0]["arguments"] == {"q": "x"}
    # Each row is an ordinary generation of the batch's tenant, run as batch work.
    row = alice.generation(by_id["j-3"]["generation_id"])
    assert row["status"] == "completed" and row["text"] == "j answer 3 ✓"
    # The full progress log: ids 1..N, counts never go down, one terminal `done`.
    stream = read_stream(events_url(alice, created["id"]), dict(alice.session.headers))
    assert stream.complete and [e.id for e in stream.events] == list(
        range(1, len(stream.events) + 1))
    assert [e.event for e in stream.events] == ["progress"] * 301 + ["done"]
    finished = [e.data["completed"] + e.data["failed"] for e in stream.events]
    assert finished == [*range(301), 300]
    assert stream.events[-1].data == {"status": "completed", "completed": 300, "failed": 0,
                                      "cancelled": 0, "total": 300}
    # A completed batch cannot be cancelled.
    assert alice.post(f"/v1/batches/{created['id']}/cancel").status_code == 409


def test_ndjson_batch_of_50_with_a_failing_row(alice: Api) -> None:
    rows = make_rows(50, "n")
    rows[10]["mock"].update(fail_after_tokens=1, fail_with="server_error")
    body = b"\n".join(orjson.dumps(row) for row in rows[:25]) + b"\n\n" + b"\n".join(
        orjson.dumps(row) for row in rows[25:]) + b"\n"
    resp = alice.post("/v1/batches", data=body,
                      headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 202, resp.text
    created = resp.json()
    assert created["total"] == 50
    done = wait_ended(alice, created["id"])
    assert (done["status"], done["completed"], done["failed"]) == ("completed", 49, 1)
    lines = {line["custom_id"]: line for line in results(alice, created["id"])}
    assert len(lines) == 50
    assert lines["n-10"]["status"] == "failed"
    assert lines["n-10"]["error"]["type"] == "provider_error"
    assert lines["n-49"]["text"] == "n answer 49 ✓"


def test_rows_default_to_sentence_sized_deltas(alice: Api) -> None:
    text = "One short sentence. Another one here! And a third? Done."
    rows = make_rows(2, "d", {"text": text})
    rows[1]["buffer"] = "none"
    created = submit(alice, rows)
    wait_ended(alice, created["id"])
    lines = {line["custom_id"]: line for line in results(alice, created["id"])}
    deltas = {}
    for custom_id, line in lines.items():
        stream = read_stream(alice.url(f"/v1/generations/{line['generation_id']}/events"),
                             dict(alice.session.headers))
        deltas[custom_id] = [e.data["text"] for e in stream.events if e.event == "delta"]
        assert "".join(deltas[custom_id]) == text == line["text"]
    assert deltas["d-0"] == ["One short sentence.", " Another one here!", " And a third?",
                             " Done."]
    assert len(deltas["d-1"]) > 4  # token-sized when the row asks for buffer "none"


@pytest.mark.parametrize(("rows_patch", "param"), [
    (lambda rows: rows[3].pop("messages"), "requests.3.messages"),
    (lambda rows: rows[5].update(max_tokens="many"), "requests.5.max_tokens"),
    (lambda rows: rows[2].pop("custom_id"), "requests.2.custom_id"),
    (lambda rows: rows[4].update(custom_id="r-1"), "requests.4.custom_id"),
    (lambda rows: rows[6].update(surprise=1), "requests.6.surprise"),
    (lambda rows: rows[1].update(priority="interactive"), "requests.1.priority"),
    (lambda rows: rows[0].update(idempotency_key="k"), "requests.0.idempotency_key"),
    (lambda rows: rows[7]["messages"].append({"role": "robot", "content": "x"}),
     "requests.7.messages.1.role"),
])
def test_invalid_row_rejected_with_its_row_number(alice: Api, bstack: Stack,
                                                  rows_patch: Any, param: str) -> None:
    rows = make_rows(8, "r")
    rows_patch(rows)
    client = redis.Redis.from_url(bstack.redis_url)
    before = client.smembers(Keys(bstack.namespace).batches_open())
    resp = alice.post("/v1/batches", {"requests": rows})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request" and error["param"] == param
    assert error["message"].startswith(f"row {param.split('.')[1]}")
    created = client.smembers(Keys(bstack.namespace).batches_open()) - before
    assert not created  # the batch is rejected whole


def test_invalid_uploads(alice: Api) -> None:
    ndjson = {"Content-Type": "application/x-ndjson"}
    good = orjson.dumps(make_rows(1, "u")[0])
    resp = alice.post("/v1/batches", data=good + b"\n\n{oops\n", headers=ndjson)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "requests.1"
    assert "line 3" in resp.json()["error"]["message"]
    resp = alice.post("/v1/batches", data=good + b"\n[1]\n", headers=ndjson)
    assert resp.json()["error"]["param"] == "requests.1"
    assert alice.post("/v1/batches", data=b"\n\n", headers=ndjson).status_code == 400
    assert alice.post("/v1/batches", {"requests": []}).json()["error"]["param"] == "requests"
    assert alice.post("/v1/batches", {"rows": []}).json()["error"]["param"] == "rows"
    too_many = alice.post("/v1/batches", {"requests": make_rows(401, "m")})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "requests"
    assert alice.post("/v1/batches", data=b"x",
                      headers={"Content-Type": "text/plain"}).status_code == 415
    assert alice.post("/v1/batches", data=b"{", headers={
        "Content-Type": "application/json"}).json()["error"]["type"] == "invalid_request"
    assert alice.post("/v1/batches", {"requests": make_rows(1, "z"), "metadata": {"k": 1}}
                      ).json()["error"]["param"] == "metadata"
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(300):  # orjson reads this but could not store it again
        inner["a"] = inner = {}
    rows = make_rows(2, "deep")
    rows[1]["tools"] = [{"type": "function", "function": {"name": "f", "parameters": deep}}]
    nested = alice.post("/v1/batches", {"requests": rows})
    assert nested.status_code == 400 and nested.json()["error"]["param"] == "requests.1"
    unauthenticated = Api(alice.stack)
    assert unauthenticated.post("/v1/batches", {"requests": make_rows(1, "a")}
                                ).status_code == 401


def test_idempotent_submission(alice: Api, bob: Api) -> None:
    rows = make_rows(3, "i")
    first = submit(alice, rows, idempotency_key="nightly-42")
    again = submit(alice, rows, idempotency_key="nightly-42")
    assert again["id"] == first["id"]
    body = b"\n".join(orjson.dumps(row) for row in rows)
    headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": "nightly-42"}
    via_header = alice.post("/v1/batches", data=body, headers=headers)
    assert via_header.status_code == 202 and via_header.json()["id"] == first["id"]
    # Another tenant's key space is separate.
    assert submit(bob, rows, idempotency_key="nightly-42")["id"] != first["id"]
    wait_ended(alice, first["id"])
    assert len(results(alice, first["id"])) == 3


def test_other_tenant_and_unknown_ids_are_404(alice: Api, bob: Api) -> None:
    created = submit(alice, make_rows(1, "t"))
    for path in ("", "/results", "/events"):
        assert bob.get(f"/v1/batches/{created['id']}{path}").status_code == 404
        assert alice.get(f"/v1/batches/batch_{'x' * 24}{path}").status_code == 404
    assert bob.post(f"/v1/batches/{created['id']}/cancel").status_code == 404
    assert alice.get("/v1/batches/not-an-id").status_code == 404


def test_progress_stream_resumes_after_a_cut(alice: Api) -> None:
    created = submit(alice, make_rows(30, "p", {"ttft_ms": 60}))
    url, headers = events_url(alice, created["id"]), dict(alice.session.headers)
    first = read_stream(url, headers, max_events=5)
    assert first.retry == 1000 and not first.complete
    assert [e.id for e in first.events] == [1, 2, 3, 4, 5]
    assert first.events[0].data == {"completed": 0, "failed": 0, "cancelled": 0, "total": 30}
    rest = read_stream(url, {**headers, "Last-Event-ID": "5"})
    assert rest.complete
    assert [e.id for e in rest.events] == list(range(6, 33))
    assert rest.events[-1].event == "done" and rest.events[-1].data["completed"] == 30
    completed = [e.data["completed"] for e in first.events + rest.events]
    assert completed == sorted(completed)
    assert read_stream(url, {**headers, "Last-Event-ID": "32"}).status == 204
    assert [e.id for e in read_stream(url + "?after=30", headers).events] == [31, 32]
    assert read_stream(url, {**headers, "Last-Event-ID": "x"}).status == 400


def test_cancel_drops_queued_rows_and_cancels_running_ones(alice: Api, bstack: Stack) -> None:
    slow = {"tokens_per_second": 20, "ttft_ms": 0, "text": "word " * 60}
    created = submit(alice, make_rows(30, "c", slow))
    batch_id = created["id"]
    running = wait_until(lambda: streaming_row(bstack, batch_id), 30, 0.05,
                         "a batch row to stream")
    resp = alice.post(f"/v1/batches/{batch_id}/cancel")
    assert resp.status_code == 202, resp.text
    assert alice.post(f"/v1/batches/{batch_id}/cancel").status_code == 202  # idempotent
    ended = wait_ended(alice, batch_id, 30)
    assert ended["status"] == "cancelled"
    assert ended["completed"] + ended["failed"] + ended["cancelled"] == 30
    assert ended["cancelled"] >= 25
    stopped = alice.generation(running)
    assert stopped["status"] == "cancelled" and stopped["finish_reason"] == "cancelled"
    assert 0 < len(stopped["text"]) < len(slow["text"])
    lines = results(alice, batch_id)
    assert len(lines) == 30
    never_started = [line for line in lines
                     if alice.generation(line["generation_id"])["started_at"] is None]
    assert len(never_started) >= 25
    assert all(line["status"] == "cancelled" for line in never_started)
    stream = read_stream(events_url(alice, batch_id), dict(alice.session.headers))
    assert stream.events[-1].event == "cancelled"
    assert stream.events[-1].data["reason"] == "user"
    assert stream.events[-1].data["status"] == "cancelled"
    time.sleep(0.5)  # dropped rows left on the RQ queue must not start later
    assert all(alice.generation(line["generation_id"])["started_at"] is None
               for line in never_started)


def test_cancelling_one_queued_row_counts_it_at_once(alice: Api, bstack: Stack) -> None:
    created = submit(alice, make_rows(40, "o", {"ttft_ms": 50}))
    client = redis.Redis.from_url(bstack.redis_url, decode_responses=True)
    pending = client.lrange(Keys(bstack.namespace).batch_pending(created["id"]), -1, -1)
    assert pending, "the last row should still be waiting for the feeder"
    resp = alice.post(f"/v1/generations/{pending[0]}/cancel")
    assert resp.status_code == 202 and resp.json()["status"] == "cancelled"
    assert batch(alice, created["id"])["cancelled"] == 1  # counted by the cancel itself
    done = wait_ended(alice, created["id"])
    assert (done["status"], done["completed"], done["cancelled"]) == ("completed", 39, 1)
    lines = {line["generation_id"]: line for line in results(alice, created["id"])}
    assert len(lines) == 40 and lines[pending[0]]["status"] == "cancelled"
    assert alice.generation(pending[0])["started_at"] is None


def test_two_tenants_batches_progress_together(alice: Api, bob: Api) -> None:
    a = submit(alice, make_rows(60, "fa", {"ttft_ms": 40}))
    b = submit(bob, make_rows(20, "fb", {"ttft_ms": 40}))
    a_done, b_done = wait_ended(alice, a["id"]), wait_ended(bob, b["id"])
    assert a_done["completed"] == 60 and b_done["completed"] == 20
    assert b_done["finished_at"] < a_done["finished_at"]  # the late small batch was not starved
    starts = []
    for api, batch_id in ((alice, a["id"]), (bob, b["id"])):
        for line in results(api, batch_id):
            record = api.generation(line["generation_id"])
            starts.append((record["started_at"], batch_id == b["id"]))
    order = [is_bob for _, is_bob in sorted(starts)]
    first, last = order.index(True), len(order) - 1 - order[::-1].index(True)
    alice_between = order[first:last + 1].count(False)
    # Round robin: while Bob has rows left, Alice's and Bob's alternate.
    assert 10 <= alice_between <= 30, order


def test_batch_survives_web_and_worker_restarts(make_stack: Any) -> None:
    stack = make_stack(env={"SPOOL_WEB_GRACE_S": "2"})
    api = Api(stack)
    created = submit(api, make_rows(60, "s", {"ttft_ms": 30}))
    wait_until(lambda: batch(api, created["id"])["completed"] >= 5, 30, 0.05, "some progress")
    stack.workers[0].stop()  # SIGTERM: the running row finishes, nothing new starts
    stack.webs[0].kill()
    paused = Api(stack, web=len(stack.webs))
    stack.start_web()
    frozen = batch(paused, created["id"])
    assert frozen["status"] == "in_progress" and frozen["completed"] < 60
    time.sleep(0.5)
    assert batch(paused, created["id"])["completed"] == frozen["completed"]
    stack.start_worker()
    done = wait_ended(paused, created["id"])
    # Every row ended exactly once. (The plain RQ SimpleWorker can fail the row
    # it was running at SIGTERM: gevent refuses its blocking signal handler.)
    assert done["status"] == "completed" and done["completed"] + done["failed"] == 60
    assert done["failed"] <= 1 and done["cancelled"] == 0
    lines = results(paused, created["id"])
    assert sorted(line["custom_id"] for line in lines) == sorted(f"s-{i}" for i in range(60))


def streaming_row(stack: Stack, batch_id: str) -> str | None:
    """A row of the batch that is running and has produced output, if any."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    keys = Keys(stack.namespace)
    for gen_id in client.zrange(keys.batch_dispatched(batch_id), 0, -1):
        if client.hget(keys.record(gen_id), "output") == "1":
            return str(gen_id)
    return None


def test_rows_of_a_killed_worker_follow_the_crash_rule(make_stack: Any) -> None:
    pytest.importorskip("spool.lease", reason="needs the concurrent worker's lease settler")
    stack = make_stack(env={"SPOOL_WEB_GRACE_S": "2", "SPOOL_WORKER_SLOTS": "4"})
    api = Api(stack)
    rows = make_rows(24, "k", {"ttft_ms": 0, "tokens_per_second": 10,
                               "text": "one two three four five six"})
    for row in rows:
        row["buffer"] = "none"  # output from the first token, so a row is caught mid-stream
    created = submit(api, rows)
    wait_until(lambda: batch(api, created["id"])["completed"] >= 3, 30, 0.05, "some progress")
    running = wait_until(lambda: streaming_row(stack, created["id"]), 30, 0.02, "a running row")
    stack.workers[0].kill()  # SIGKILL mid-row
    stack.start_worker()
    done = wait_ended(api, created["id"], 90)
    assert done["status"] == "completed"
    assert done["completed"] + done["failed"] == 24
    lines = {line["generation_id"]: line for line in results(api, created["id"])}
    assert len(lines) == 24
    # A row that had streamed output when its worker died ends worker_lost (the crash rule).
    assert lines[running]["status"] == "failed"
    assert lines[running]["error"]["type"] == "worker_lost"
