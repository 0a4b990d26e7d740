"""Strict JSON bodies: depth, duplicate keys, and the shortcut that skips the depth walk."""

from __future__ import annotations

import orjson
import pytest

from spool.schemas import MAX_JSON_DEPTH
from webapp.body import decode_json, json_depth_exceeds
from webapp.errors import ApiError


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() -> None:
    assert decode_json(_nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(ApiError) as refused:
        decode_json(_nested(MAX_JSON_DEPTH + 1))
    assert refused.value.status == 400 and "nests deeper" in refused.value.message


def test_objects_count_as_levels_too() -> None:
    deep = b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH
    assert decode_json(deep) is not None
    with pytest.raises(ApiError):
        decode_json(b"[" + deep + b"]")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    raw = orjson.dumps({"messages": [{"role": "user", "content": "[{" * 500}]})
    assert decode_json(raw)["messages"][0]["content"] == "[{" * 500


def test_many_shallow_containers_are_walked_and_accepted() -> None:
    raw = orjson.dumps({"rows": [[{"a": 1}] for _ in range(100)]})
    assert not json_depth_exceeds(orjson.loads(raw))
    assert len(decode_json(raw)["rows"]) == 100


def test_duplicate_keys_are_refused_at_any_level() -> None:
    with pytest.raises(ApiError) as refused:
        decode_json(b'{"mock": {"text": "a", "text": "b"}}')
    assert refused.value.status == 400 and "'text'" in refused.value.message
