"""The orjson provider writes what Flask's own JSON provider wrote, faster."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import uuid
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider

from webapp.jsonprovider import OrjsonProvider, install


@dataclasses.dataclass
class Point:
    x: int
    y: str


VALUES: list[Any] = [
    {"id": "gen_x", "object": "generation", "status": "queued", "n": 3, "f": 0.5,
     "none": None, "ok": True, "list": [1, "two", {"three": 3}]},
    [],
    {},
    "text",
    {"order": 1, "is": 2, "kept": 3, "a": 4},
    {"when": datetime.datetime(2026, 12, 4, 15, 0, tzinfo=datetime.UTC)},
    {"day": datetime.date(2026, 12, 4)},
    {"point": Point(1, "b")},
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678")},
    {"amount": decimal.Decimal("1.50")},
    {"big": 2**70},
    {1: "int key"},
]


def _apps() -> tuple[Flask, Flask]:
    fast, plain = Flask("fast"), Flask("plain")
    install(fast)
    plain.json = DefaultJSONProvider(plain)
    plain.json.sort_keys = False  # type: ignore[attr-defined]
    return fast, plain


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_jsonify_writes_the_same_bytes_as_flask(value: Any) -> None:
    fast, plain = _apps()
    with fast.app_context():
        ours = jsonify(value)
    with plain.app_context():
        theirs = jsonify(value)
    assert ours.get_data() == theirs.get_data()
    assert ours.mimetype == theirs.mimetype == "application/json"


def test_non_ascii_is_utf8_and_means_the_same() -> None:
    fast, plain = _apps()
    value = {"text": "héllo ✓ 𝄞", "key é": 1}
    with fast.app_context():
        ours = jsonify(value).get_data()
    with plain.app_context():
        theirs = jsonify(value).get_data()
    assert json.loads(ours) == json.loads(theirs) == value
    assert "✓".encode() in ours and ours.endswith(b"\n")


def test_orjson_does_the_work() -> None:
    fast, _ = _apps()
    provider = fast.json
    assert isinstance(provider, OrjsonProvider)
    calls = []
    original = provider._fast

    def spy(obj: Any, option: int = 0) -> bytes | None:
        calls.append(obj)
        return original(obj, option)

    provider._fast = spy  # type: ignore[method-assign]
    with fast.app_context():
        jsonify(status="ok")
        assert fast.json.dumps({"a": 1}) == '{"a":1}'
    assert len(calls) == 2


def test_formatting_options_and_debug_keep_flasks_encoder() -> None:
    fast, _ = _apps()
    assert fast.json.dumps({"a": [1]}, indent=2) == '{\n  "a": [\n    1\n  ]\n}'
    fast.debug = True
    with fast.app_context():
        assert jsonify(a=1).get_data() == b'{\n  "a": 1\n}\n'
