"""Redis unreachable: 503 with the error body and Retry-After, never a 500 or a traceback."""

from __future__ import annotations

import secrets

import requests

from tests.conftest import FAST_MOCK, StackFactory
from tests.harness import free_port

KEY = "k-" + secrets.token_hex(12)


def test_every_route_answers_503_without_redis(make_stack: StackFactory) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    stack = make_stack(workers=0, env={
        "REDIS_URL": dead, "SPOOL_API_KEYS": f"t:{KEY}", "SPOOL_SECRET_KEY": secrets.token_hex(24),
    })
    auth = {"Authorization": f"Bearer {KEY}"}
    gen_id = "gen_" + secrets.token_urlsafe(18)
    body = {"messages": [{"role": "user", "content": "x"}], "mock": FAST_MOCK}
    for method, path, payload in (
        ("POST", "/v1/generations", body),
        ("POST", "/v1/chat", body),
        ("GET", f"/v1/generations/{gen_id}", None),
        ("POST", f"/v1/generations/{gen_id}/cancel", None),
    ):
        resp = requests.request(method, stack.url(path), json=payload, headers=auth, timeout=30)
        assert resp.status_code == 503, (path, resp.text)
        assert resp.json()["error"]["type"] == "unavailable"
        assert resp.headers["Retry-After"] == "1"
    # The events route keeps EventSource reconnecting: 200, a retry line, and the end.
    events = requests.get(stack.url(f"/v1/generations/{gen_id}/events"), headers=auth,
                          timeout=30)
    assert events.status_code == 200 and events.text.startswith("retry: ")
    # Wrong keys are still refused without Redis; nothing else needs it.
    assert requests.get(stack.url(f"/v1/generations/{gen_id}"), timeout=30).status_code == 401
    assert requests.get(stack.url("/healthz"), timeout=30).status_code == 200
    assert requests.get(stack.url("/readyz"), timeout=30).status_code == 503
    log = stack.webs[0].output()
    assert "Traceback" not in log and KEY not in log
