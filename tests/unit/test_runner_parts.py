"""Coalescing and tool-call accumulation."""

from __future__ import annotations

import pytest

from worker.coalesce import MAX_HELD_CHARS, Coalescer
from worker.providers.base import ProviderError, ToolCallDelta
from worker.toolcalls import ToolCallAccumulator


def feed_all(mode: str, pieces: list[str]) -> list[str]:
    coalescer = Coalescer(mode)
    out = [coalescer.feed(p) for p in pieces]
    out.append(coalescer.flush())
    return [o for o in out if o]


def test_none_passes_through() -> None:
    assert feed_all("none", ["He", "llo wo", "rld"]) == ["He", "llo wo", "rld"]


def test_word_boundaries() -> None:
    assert feed_all("word", ["He", "llo wo", "rld. Bye"]) == ["Hello ", "world. ", "Bye"]


def test_sentence_boundaries() -> None:
    assert feed_all("sentence", ["One. Tw", "o! Thr", "ee"]) == ["One.", " Two!", " Three"]


def test_held_text_is_bounded() -> None:
    out = feed_all("word", ["x" * (MAX_HELD_CHARS + 10)])
    assert "".join(out) == "x" * (MAX_HELD_CHARS + 10)


def test_tool_calls_accumulate_per_index() -> None:
    acc = ToolCallAccumulator()
    acc.add(ToolCallDelta(1, id="b", name="g", arguments='{"y"'))
    acc.add(ToolCallDelta(0, id="a", name="f", arguments='{"x": '))
    acc.add(ToolCallDelta(0, arguments="1}"))
    acc.add(ToolCallDelta(1, arguments=": [true]}"))
    assert acc.complete() == [
        {"index": 0, "id": "a", "name": "f", "arguments": {"x": 1}},
        {"index": 1, "id": "b", "name": "g", "arguments": {"y": [True]}},
    ]


def test_empty_arguments_are_an_empty_object() -> None:
    acc = ToolCallAccumulator()
    acc.add(ToolCallDelta(0, name="f"))
    assert acc.complete()[0]["arguments"] == {}
    assert acc.complete()[0]["id"].startswith("call_")


@pytest.mark.parametrize("raw", ['{"x": ', "[1, 2]"])
def test_malformed_arguments_are_a_provider_error(raw: str) -> None:
    acc = ToolCallAccumulator()
    acc.add(ToolCallDelta(0, id="a", name="f", arguments=raw))
    with pytest.raises(ProviderError):
        acc.complete()
