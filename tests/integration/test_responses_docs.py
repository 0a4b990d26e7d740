"""The Python examples of docs/responses.md, run as written against a real server:
the documentation's code must keep its promises (exact resume, cancel, tool round trip)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "responses.md"
KEY = "sk-docs-" + secrets.token_hex(8)
SNIPPETS = ("create", "background", "tools")


@pytest.fixture(scope="module")
def stack(redis_server: Any) -> Iterator[Stack]:
    shared = Stack(redis_server.url, {"SPOOL_API_KEYS": f"docs:{KEY}",
                                      "SPOOL_SECRET_KEY": secrets.token_hex(32)})
    shared.start_web()
    shared.start_worker()
    yield shared
    shared.close()


def snippet(name: str) -> str:
    """The ```python block after `<!-- snippet: name -->` in docs/responses.md."""
    found = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", DOC.read_text(),
                      re.S)
    assert found, f"docs/responses.md lost its {name!r} snippet"
    return found.group(1)


def test_the_documented_examples_run_as_written(stack: Stack,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    scope: dict[str, Any] = {"BASE_URL": stack.url("/v1"), "API_KEY": KEY}
    for name in SNIPPETS:
        exec(compile(snippet(name), f"docs/responses.md:{name}", "exec"), scope)
    printed = capsys.readouterr().out
    assert printed.startswith("completed Hello from Spool! ")
    assert scope["streamed_text"] == "Hello again!"
    assert scope["received"] == scope["long_text"]
    assert scope["cancelled"].status == "cancelled"
    assert scope["second"].output_text == "It is 18 °C in Paris."
    assert printed.rstrip().endswith("It is 18 °C in Paris.")
