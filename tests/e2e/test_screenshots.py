"""How the page looks: desktop and phone, light and dark, saved as test artifacts.

The files land in tests/artifacts/ (CI keeps them); the checks here are the
ones a screenshot cannot make by itself: the colour scheme really switched,
nothing overflows sideways on a narrow phone, and the streaming answer is
announced politely to screen readers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.chat import Chat
from tests.e2e.support import ARTIFACTS, DESKTOP, PHONE, Spool, chat_tab

pytestmark = pytest.mark.e2e

NARROWEST = {"width": 360, "height": 740}
BACKGROUNDS = {"light": "rgb(247, 247, 248)", "dark": "rgb(17, 17, 20)"}
TOOL_ANSWER = (
    "I'll check the forecast. Oslo in November is usually between −2 and 5 °C, "
    "so a warm coat is a safe bet either way."
)
STREAMING_ANSWER = (
    "Spool writes every token to an ordered log in Redis as it arrives. Your browser reads "
    "that log over Server-Sent Events and remembers the id of the last event it rendered. "
    "Lose the connection, close the laptop or reload the tab: the page asks for everything "
    "after that id, and the answer continues exactly where it stopped."
)


@pytest.fixture(params=["light", "dark"])
def scheme(request: pytest.FixtureRequest) -> str:
    """The colour scheme the browser reports (prefers-color-scheme)."""
    value: str = request.param
    return value


@pytest.fixture(params=["desktop", "phone"])
def styled_chat(
    browser: Any, spool: Spool, scheme: str, request: pytest.FixtureRequest
) -> Iterator[Chat]:
    """A chat tab at a device size and colour scheme."""
    viewport = DESKTOP if request.param == "desktop" else PHONE
    with chat_tab(browser, spool.url, request, viewport=viewport, color_scheme=scheme) as tab:
        yield tab


def _fill_conversation(chat: Chat) -> None:
    chat.set_mock(
        {
            "text": TOOL_ANSWER,
            "tokens_per_second": 60,
            "ttft_ms": 120,
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}
            ],
        }
    )
    chat.wait_status(chat.ask("What's the weather in Oslo this week?"), "done")
    chat.set_mock({"text": STREAMING_ANSWER, "tokens_per_second": 12, "ttft_ms": 50})
    chat.wait_for_text(chat.ask("How does Spool keep an answer safe if I lose Wi-Fi?"), 120)


def test_screenshot(styled_chat: Chat, scheme: str, request: pytest.FixtureRequest) -> None:
    chat = styled_chat
    chat.open()
    background = chat.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == BACKGROUNDS[scheme]
    _fill_conversation(chat)
    expect(chat.answers().last.locator(".answer")).to_have_attribute("aria-live", "polite")

    ARTIFACTS.mkdir(exist_ok=True)
    device = request.node.callspec.params["styled_chat"]
    # animations="disabled" freezes the blinking cursor in its visible state.
    chat.page.screenshot(
        path=str(ARTIFACTS / f"screenshot-{device}-{scheme}.png"), animations="disabled"
    )


def test_no_sideways_scroll_at_360px(
    browser: Any, spool: Spool, request: pytest.FixtureRequest
) -> None:
    with chat_tab(browser, spool.url, request, viewport=NARROWEST) as chat:
        chat.open()
        chat.set_mock(
            {
                "text": "A long unbroken token: " + "x" * 300,
                "tokens_per_second": 0,
                "tool_calls": [
                    {"name": "a_tool_with_a_rather_long_name", "arguments": {"q": "y" * 200}}
                ],
            }
        )
        chat.wait_status(chat.ask("z" * 200), "done")
        width = chat.page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROWEST["width"]
        for selector in ("#prompt", "#send", "#provider", "#model"):
            box = chat.page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0
            assert box["x"] + box["width"] <= NARROWEST["width"]
