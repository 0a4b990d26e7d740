"""`_MODELS=auto`: the provider's own model list, asked once at web startup (real fake server)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from spool.model_listing import ask_models, with_listed_models
from spool.settings import Settings
from tests.fakeprovider import FakeProvider
from tests.harness import free_port


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider()
    yield server
    server.stop()


def settings_for(openai_url: str, anthropic_url: str) -> Settings:
    return Settings.from_env({
        "SPOOL_PROVIDERS": "vllm,claude-proxy,fixed",
        "SPOOL_PROVIDER_VLLM_BASE_URL": openai_url, "SPOOL_PROVIDER_VLLM_MODEL": "served-model",
        "SPOOL_PROVIDER_VLLM_MODELS": "auto",
        "SPOOL_PROVIDER_CLAUDE_PROXY_KIND": "anthropic",
        "SPOOL_PROVIDER_CLAUDE_PROXY_BASE_URL": anthropic_url,
        "SPOOL_PROVIDER_CLAUDE_PROXY_API_KEY": "ak-p",
        "SPOOL_PROVIDER_CLAUDE_PROXY_MODEL": "claude-default",
        "SPOOL_PROVIDER_CLAUDE_PROXY_MODELS": "auto",
        "SPOOL_PROVIDER_FIXED_BASE_URL": openai_url, "SPOOL_PROVIDER_FIXED_MODEL": "only-this",
    })


def test_auto_lists_the_servers_models_default_first(fake: FakeProvider) -> None:
    settings = settings_for(fake.openai_base_url, fake.anthropic_base_url)
    assert settings.providers["vllm"].models == ("served-model",)  # until asked
    assert settings.providers["vllm"].list_models
    listed = with_listed_models(settings)
    assert listed.providers["vllm"].models == ("served-model", "gpt-fake-mini", "gpt-fake")
    # asked in Anthropic's format (the fake tells the formats apart by anthropic-version)
    assert listed.providers["claude-proxy"].models == ("claude-default", "claude-fake-haiku")
    assert listed.providers["fixed"].models == ("only-this",)  # not auto: never asked


def test_a_server_that_does_not_answer_leaves_the_default_model(fake: FakeProvider) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(f"{dead}/v1", dead)
    started = time.monotonic()
    assert with_listed_models(settings) is settings
    assert time.monotonic() - started < 5
    assert ask_models(settings.providers["vllm"]) is None
