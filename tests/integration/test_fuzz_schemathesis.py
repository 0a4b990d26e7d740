"""Schemathesis against the RUNNING service, from its own /openapi.json.

Every operation gets bounded generated requests (valid and invalid ones);
each response must be no 5xx, have a documented status and content type,
and match the documented schema. Auth is on, so the documented 401s and
the security schemes are exercised too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from tests.harness import Stack

KEY = "fz-" + secrets.token_hex(16)
MAX_EXAMPLES = 20  # per operation; bounded to keep the suite's time budget


@pytest.fixture(scope="module")
def fuzz_stack(redis_server: Any) -> Iterator[Stack]:
    stack = Stack(redis_server.url, {
        "SPOOL_API_KEYS": f"fuzz:{KEY}",
        "SPOOL_SECRET_KEY": secrets.token_hex(24),
        "SPOOL_CHAT_TIMEOUT_S": "0.3",  # /v1/chat answers 504 quickly for slow mock options
        "SPOOL_RATE_LIMIT": "1000000",
        "SPOOL_MAX_ACTIVE": "1000000",
        "SPOOL_WEB_GRACE_S": "2",
    })
    stack.start_web()
    stack.start_worker()
    yield stack
    for worker in stack.workers:
        worker.kill()  # it may be running a generation with a minutes-long mock delay
    stack.close()


CONFIG = {"checks": {
    # API.md's own 5xx answers: `/v1/chat` past its limit (504, checked below to come
    # from nowhere else) and `/readyz` without a live worker (503).
    "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "504"]},
    # A body over the size limit is rejected with 413 before it is parsed.
    "negative_data_rejection": {"expected-statuses": [
        "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]},
}}


@pytest.fixture(scope="module")
def openapi_schema(fuzz_stack: Stack) -> Any:
    config = schemathesis.config.SchemathesisConfig.from_dict(CONFIG)
    return schemathesis.openapi.from_url(fuzz_stack.url("/openapi.json"), config=config)


def only_chat_times_out(ctx: Any, response: Any, case: Any) -> bool:
    """The only 5xx the contract allows outside /readyz: a chat that did not finish in
    time (504), on /v1/chat or the facades' /v1/chat/completions and /v1/responses."""
    if response.status_code >= 500 and (case.method, case.path) not in (
            ("POST", "/v1/chat"), ("GET", "/readyz"), ("POST", "/v1/chat/completions"),
            ("POST", "/v1/responses")):
        raise AssertionError(f"{response.status_code} from {case.method} {case.path}")
    if response.status_code == 504 and case.path == "/v1/chat":
        assert response.json()["id"].startswith("gen_")
    return True


def combines_offset_with_after(case: Any) -> bool:
    """`offset` with `after`/Last-Event-ID is each valid alone but a 400 together,
    which OpenAPI cannot state; such cases skip only the positive-acceptance check."""
    query, headers = case.query or {}, case.headers or {}
    return "offset" in query and ("after" in query or "Last-Event-ID" in headers)


# The operations API.md defines (a test below checks the document lists exactly these).
OPERATIONS = [
    ("POST", "/v1/generations"), ("POST", "/v1/chat"), ("GET", "/v1/generations/{id}"),
    ("POST", "/v1/generations/{id}/cancel"), ("GET", "/v1/generations/{id}/events"),
    ("GET", "/v1/models"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json"),
]
# The OpenAI facade: its request contract is OpenAI's (checked by its translator and
# its own tests); here every check runs except "schema-valid data is accepted".
FACADE = [("POST", "/v1/chat/completions"), ("GET", "/v1/models/{model_id}"),
          # The AI SDK facade: its translator checks UI messages' parts (docs/ai-sdk.md).
          ("POST", "/v1/ai-sdk/chat"), ("GET", "/v1/ai-sdk/chat/{chatId}/stream"),
          # The Responses facade: its translator checks input items (docs/responses.md).
          ("POST", "/v1/responses"), ("GET", "/v1/responses/{response_id}"),
          ("POST", "/v1/responses/{response_id}/cancel")]
# Batches: a row is `custom_id` plus any generation field, which the document states
# loosely (BatchRow), so like the facades they skip only "schema-valid data is accepted".
BATCHES = [("POST", "/v1/batches"), ("GET", "/v1/batches/{id}"),
           ("GET", "/v1/batches/{id}/results"), ("GET", "/v1/batches/{id}/events"),
           ("POST", "/v1/batches/{id}/cancel")]
# Documented, not fuzzed: no input.
PAGES = [("GET", "/metrics"), ("GET", "/")]


# schemathesis' pytest plugin (`from_fixture`) does not run on pytest 9, so the
# strategies are driven by hypothesis directly: same generation, same checks.
WITH_INPUT = [(m, p) for m, p in OPERATIONS + FACADE + BATCHES if m == "POST" or "{" in p]
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS + FACADE + BATCHES] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in WITH_INPUT]


@pytest.mark.parametrize("method,path,mode", CASES, ids=[f"{m} {p} {g}" for m, p, g in CASES])
def test_service_conforms_to_its_openapi(openapi_schema: Any, fuzz_stack: Stack, method: str,
                                         path: str, mode: GenerationMode) -> None:
    operation = openapi_schema[path][method]
    session = requests.Session()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        skip_acceptance = ((method, path) in FACADE + BATCHES
                           or combines_offset_with_after(case))
        excluded = [positive_data_acceptance] if skip_acceptance else []
        case.call_and_validate(base_url=fuzz_stack.base_url, session=session,
                               headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                               additional_checks=[only_chat_times_out],
                               excluded_checks=excluded)

    try:
        check()
    finally:
        session.close()


def test_document_is_openapi_3_1_of_the_handlers_schemas(fuzz_stack: Stack) -> None:
    doc = requests.get(fuzz_stack.url("/openapi.json"), timeout=30).json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # against the official OpenAPI 3.1 schema: raises if invalid
    schemas = doc["components"]["schemas"]
    request = schemas["GenerationRequest"]
    from spool.schemas import GenerationRequest

    assert set(request["properties"]) == set(GenerationRequest.model_fields)
    assert request["additionalProperties"] is False
    assert request["properties"]["max_tokens"]["maximum"] == 32768
    assert request["properties"]["metadata"]["maxProperties"] == 16
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == set(OPERATIONS + FACADE + BATCHES + PAGES)
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
