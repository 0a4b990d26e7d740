"""The adapter registry: built once from the configuration, SDKs imported then, not per request."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from spool.settings import Settings
from tests.harness import ROOT
from worker.providers import Registry, registry
from worker.providers._sdk import ClientShelf
from worker.providers.anthropic import AnthropicProvider
from worker.providers.base import ProviderError
from worker.providers.openai import OpenAIProvider

ENV = {"OPENAI_API_KEY": "sk-a", "SPOOL_PROVIDERS": "local,claude-eu",
       "SPOOL_PROVIDER_LOCAL_BASE_URL": "http://127.0.0.1:9/v1",
       "SPOOL_PROVIDER_LOCAL_MODEL": "llama", "SPOOL_PROVIDER_CLAUDE_EU_KIND": "anthropic",
       "SPOOL_PROVIDER_CLAUDE_EU_BASE_URL": "http://127.0.0.1:9",
       "SPOOL_PROVIDER_CLAUDE_EU_MODEL": "claude-x"}


def test_one_adapter_per_configured_name() -> None:
    settings = Settings.from_env(ENV)
    adapters = Registry(settings)
    assert adapters.names() == ["mock", "openai", "local", "claude-eu"]
    local, openai_ = adapters.get("local"), adapters.get("openai")
    assert isinstance(local, OpenAIProvider) and isinstance(openai_, OpenAIProvider)
    assert (local.name, local.default_model) == ("local", "llama")
    assert isinstance(adapters.get("claude-eu"), AnthropicProvider)
    assert adapters.get("claude-eu").default_model == "claude-x"
    with pytest.raises(ProviderError) as caught:
        adapters.get("anthropic")  # known, but not configured here
    assert caught.value.type == "invalid_request"
    # the process's registry is kept while the settings are the same object
    assert registry(settings) is registry(settings)
    assert registry(Settings.from_env(ENV)) is not registry(settings)


def test_adapters_with_one_configuration_share_one_shelf_of_clients() -> None:
    settings = Settings.from_env({**ENV, "SPOOL_PROVIDERS": "local,local-2",
                                  "SPOOL_PROVIDER_LOCAL_2_BASE_URL": "http://127.0.0.1:9/v1",
                                  "SPOOL_PROVIDER_LOCAL_2_MODEL": "other",
                                  "SPOOL_PROVIDER_CLAUDE_EU_KIND": "",
                                  "SPOOL_PROVIDER_CLAUDE_EU_BASE_URL": "",
                                  "SPOOL_PROVIDER_CLAUDE_EU_MODEL": ""})
    adapters = Registry(settings)
    one, two = adapters.get("local"), adapters.get("local-2")
    assert isinstance(one, OpenAIProvider) and isinstance(two, OpenAIProvider)
    assert one._shelf is two._shelf  # same URL, key and timeouts: the same clients, connections
    assert one.default_model != two.default_model


CHECK = """
import sys
from spool.settings import Settings
from worker.providers import registry
settings = Settings.from_env({env!r})
before = 'anthropic' in sys.modules
registry(settings)
print(before, 'anthropic' in sys.modules)
"""


@pytest.mark.parametrize(("env", "imported"), [
    ({"ANTHROPIC_API_KEY": "ak"}, True),  # configured: imported when the worker starts
    ({"OPENAI_API_KEY": "sk"}, False),  # not configured: never imported at all
])
def test_sdks_are_imported_when_the_registry_is_built(env: dict[str, str],
                                                      imported: bool) -> None:
    done = subprocess.run([sys.executable, "-c", CHECK.format(env=env)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["False", str(imported)]


def test_a_shelf_closes_a_client_left_unused_for_its_idle_time() -> None:
    import openai

    shelf = ClientShelf(lambda http: openai.OpenAI(api_key="sk", base_url="http://127.0.0.1:9/v1",
                                                   max_retries=0, http_client=http),
                        openai.DefaultHttpxClient, idle_s=0.0)
    first, second = shelf.take(), shelf.take()
    assert first is not second and shelf.made == 2
    shelf.give_back(first)
    time.sleep(0.01)
    shelf.give_back(second)  # `first` has sat longer than idle_s: closed, not kept
    assert first.is_closed() and not second.is_closed()
    assert shelf.idle == 1 and shelf.take() is second
