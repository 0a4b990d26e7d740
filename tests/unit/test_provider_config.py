"""Provider configuration from the environment: what is configured, and each mistake's line."""

from __future__ import annotations

import pytest

from spool.catalog import configured_providers, default_model, model_ids
from spool.provider_config import GEMINI_BASE_URL, RetryPolicy, Tuning
from spool.settings import ConfigError, Settings
from tests.harness import ROOT

TOGETHER = {  # README's example: OpenAI + a local vLLM + Gemini
    "OPENAI_API_KEY": "sk-openai",
    "GEMINI_API_KEY": "g-key",
    "SPOOL_PROVIDERS": "local,claude-eu",
    "SPOOL_PROVIDER_LOCAL_BASE_URL": "http://127.0.0.1:8000/v1",
    "SPOOL_PROVIDER_LOCAL_MODEL": "Qwen/Qwen2.5-7B-Instruct",
    "SPOOL_PROVIDER_LOCAL_FIRST_TOKEN_TIMEOUT_S": "120",
    "SPOOL_PROVIDER_LOCAL_RETRY_ATTEMPTS": "1",
    "SPOOL_PROVIDER_CLAUDE_EU_KIND": "anthropic",
    "SPOOL_PROVIDER_CLAUDE_EU_BASE_URL": "https://eu.proxy.example",
    "SPOOL_PROVIDER_CLAUDE_EU_API_KEY": "ak-eu",
    "SPOOL_PROVIDER_CLAUDE_EU_MODELS": "claude-a,claude-b",
    "SPOOL_PROVIDER_OPENAI_MODELS": "gpt-4.1-mini",
    "SPOOL_DEFAULT_PROVIDER": "local",
    "SPOOL_FALLBACK_PROVIDERS": "openai,gemini",
    "SPOOL_RETRY_ATTEMPTS": "4",
    "SPOOL_IDLE_TIMEOUT_S": "30",
}


def test_openai_local_and_gemini_together() -> None:
    settings = Settings.from_env(TOGETHER)
    assert configured_providers(settings) == ["mock", "openai", "gemini", "local", "claude-eu"]
    assert settings.provider_names == ("mock", "openai", "anthropic", "gemini", "local",
                                       "claude-eu")
    local = settings.providers["local"]
    assert (local.kind, local.base_url, local.api_key) == ("openai", "http://127.0.0.1:8000/v1",
                                                           None)
    assert local.tuning == Tuning(120.0, 30.0, RetryPolicy(1, 0.5, 8.0))
    gemini = settings.providers["gemini"]
    assert (gemini.kind, gemini.base_url, gemini.api_key) == ("openai", GEMINI_BASE_URL, "g-key")
    assert gemini.tuning.retry.attempts == 4  # the global policy when not overridden
    claude = settings.providers["claude-eu"]
    assert (claude.kind, claude.model, claude.models) == ("anthropic", "claude-a",
                                                          ("claude-a", "claude-b"))
    assert default_model(settings, "local") == "Qwen/Qwen2.5-7B-Instruct"
    # the default model is always listed, first
    assert ("openai", "gpt-4o-mini") in model_ids(settings)
    assert [m for p, m in model_ids(settings) if p == "openai"] == ["gpt-4o-mini", "gpt-4.1-mini"]
    assert "sk-openai" not in repr(settings.providers)  # keys stay out of reprs and logs


def test_legacy_variables_are_the_openai_and_anthropic_providers() -> None:
    settings = Settings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
                                  "ANTHROPIC_API_KEY": "ak"})
    assert configured_providers(settings) == ["mock", "openai", "anthropic"]
    assert settings.providers["openai"].api_key is None
    assert settings.providers["anthropic"].model == "claude-sonnet-4-6"
    assert configured_providers(Settings.from_env({})) == ["mock"]
    # Settings made in code get them from their fields
    assert configured_providers(Settings(anthropic_base_url="http://x")) == ["mock", "anthropic"]


def mistakes(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return str(caught.value).splitlines()


LOCAL = {"SPOOL_PROVIDERS": "local", "SPOOL_PROVIDER_LOCAL_BASE_URL": "http://h:1/v1",
         "SPOOL_PROVIDER_LOCAL_MODEL": "m"}


@pytest.mark.parametrize(("env", "line"), [
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_KIND": "vllm"},
     "SPOOL_PROVIDER_LOCAL_KIND must be openai or anthropic, got 'vllm'"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_BASE_URL": " "}, "SPOOL_PROVIDER_LOCAL_BASE_URL must be set"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_BASE_URL": "ftp://h"},
     "SPOOL_PROVIDER_LOCAL_BASE_URL must be an http:// or https:// URL, got 'ftp://h'"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_RETRY_MAX_S": "nan"},
     "SPOOL_PROVIDER_LOCAL_RETRY_MAX_S must be a number >= 0.0, got nan"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_FIRST_TOKEN_TIMEOUT_S": "0"},
     "SPOOL_PROVIDER_LOCAL_FIRST_TOKEN_TIMEOUT_S must be a number >= 0.1, got 0"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_RETRY_ATTEMPTS": "0"},
     "SPOOL_PROVIDER_LOCAL_RETRY_ATTEMPTS must be >= 1, got 0"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_MODEL": ""}, "SPOOL_PROVIDER_LOCAL_MODEL must be set"),
    ({"SPOOL_PROVIDERS": "my_llm"}, "SPOOL_PROVIDERS: 'my_llm' is not a valid provider name"),
    ({"SPOOL_PROVIDERS": "a" * 41}, "SPOOL_PROVIDERS: '" + "a" * 41 + "' is not a valid"),
    ({"SPOOL_PROVIDERS": "openai"}, "SPOOL_PROVIDERS: 'openai' is built in"),
    ({"SPOOL_PROVIDERS": "mock"}, "SPOOL_PROVIDERS: 'mock' is built in"),
    ({**LOCAL, "SPOOL_PROVIDERS": "local,local"}, "SPOOL_PROVIDERS names 'local' twice"),
    ({"SPOOL_PROVIDER_LOCAL_MODEL": "m"},
     "SPOOL_PROVIDER_LOCAL_MODEL names no provider listed in SPOOL_PROVIDERS"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_URL": "x"},
     "SPOOL_PROVIDER_LOCAL_URL is not a provider setting"),
    ({"SPOOL_PROVIDER_OPENAI_BASE_URL": "http://x"},
     "SPOOL_PROVIDER_OPENAI_BASE_URL: the openai provider is configured by OPENAI_API_KEY"),
    ({"SPOOL_PROVIDER_GEMINI_MODEL": "gemini-2.5-pro"},
     "GEMINI_API_KEY must be set to use the gemini provider"),
    ({"OPENAI_BASE_URL": "localhost:11434"},
     "OPENAI_BASE_URL must be an http:// or https:// URL"),
    ({"ANTHROPIC_BASE_URL": "socks5://user:pw-secret@proxy:1080"},
     "ANTHROPIC_BASE_URL must be an http:// or https:// URL, got 'proxy:1080'"),
    ({"ANTHROPIC_BASE_URL": "http://[::1"}, "ANTHROPIC_BASE_URL must be an http:// or https://"),
    ({**LOCAL, "SPOOL_PROVIDER_LOCAL_BASE_URL": "http://h:99999/v1"},
     "SPOOL_PROVIDER_LOCAL_BASE_URL must be an http:// or https:// URL"),
    ({"SPOOL_DEFAULT_PROVIDER": "cohere"}, "SPOOL_DEFAULT_PROVIDER: unknown provider 'cohere'"),
    ({"SPOOL_DEFAULT_PROVIDER": "anthropic"},
     "SPOOL_DEFAULT_PROVIDER: provider 'anthropic' is not configured (set ANTHROPIC_API_KEY"),
    ({"SPOOL_DEFAULT_PROVIDER": "gemini"},
     "SPOOL_DEFAULT_PROVIDER: provider 'gemini' is not configured (set GEMINI_API_KEY)"),
    ({"SPOOL_FALLBACK_PROVIDERS": "openai,x"}, "SPOOL_FALLBACK_PROVIDERS: unknown provider 'x'"),
    ({"SPOOL_RETRY_ATTEMPTS": "three"}, "SPOOL_RETRY_ATTEMPTS must be an integer, got 'three'"),
])
def test_each_mistake_is_one_line_naming_the_variable(env: dict[str, str], line: str) -> None:
    found = mistakes(env)
    assert len(found) == 1 and found[0].startswith(line), found


def test_all_mistakes_are_reported_together_without_keys() -> None:
    found = mistakes({"SPOOL_PROVIDERS": "a,b", "SPOOL_PROVIDER_A_KIND": "x",
                      "SPOOL_PROVIDER_A_API_KEY": "sk-very-secret", "SPOOL_PROVIDER_B_MODEL": "m"})
    assert [f.split(" ")[0] for f in found] == [
        "SPOOL_PROVIDER_A_KIND", "SPOOL_PROVIDER_A_BASE_URL", "SPOOL_PROVIDER_A_MODEL",
        "SPOOL_PROVIDER_B_BASE_URL"]
    assert "sk-very-secret" not in "\n".join(found)


def test_models_auto_is_asked_for_later() -> None:
    settings = Settings.from_env({**LOCAL, "SPOOL_PROVIDER_LOCAL_MODELS": "auto",
                                  "OPENAI_API_KEY": "sk", "SPOOL_PROVIDER_OPENAI_MODELS": "auto"})
    assert settings.providers["local"].models == ("m",) and settings.providers["local"].list_models
    assert settings.providers["openai"].models == ("gpt-4o-mini",)
    assert settings.providers["openai"].list_models
    assert not Settings.from_env(LOCAL).providers["local"].list_models
    assert mistakes({**LOCAL, "SPOOL_PROVIDER_LOCAL_MODEL": "",
                     "SPOOL_PROVIDER_LOCAL_MODELS": "auto"})[0].startswith(
        "SPOOL_PROVIDER_LOCAL_MODEL must be set")


def test_names_that_share_a_prefix_keep_their_own_variables() -> None:
    settings = Settings.from_env({
        "SPOOL_PROVIDERS": "local,local-fast", "SPOOL_PROVIDER_LOCAL_BASE_URL": "http://a/v1",
        "SPOOL_PROVIDER_LOCAL_MODEL": "big", "SPOOL_PROVIDER_LOCAL_FAST_BASE_URL": "http://b/v1",
        "SPOOL_PROVIDER_LOCAL_FAST_MODEL": "small"})
    assert settings.providers["local"].model == "big"
    assert settings.providers["local-fast"].base_url == "http://b/v1"


def documented_env(path: str, marker: str) -> dict[str, str]:
    """The `export NAME=value` lines of the shell block after `marker` in a doc."""
    text = (ROOT / path).read_text()
    block = text[text.index(marker):].split("make run", 1)[0]
    env: dict[str, str] = {}
    for line in block.splitlines():
        if line.strip().startswith("export "):
            words = line.split("#", 1)[0].split()[1:]
            env.update(word.split("=", 1) for word in words)  # type: ignore[misc]
    return env


@pytest.mark.parametrize(("path", "marker"), [
    ("README.md", "OpenAI, a local vLLM and"),
    ("docs/providers.md", "### OpenAI + a local vLLM + Gemini, configured together"),
])
def test_the_documented_configuration_is_valid(path: str, marker: str) -> None:
    env = documented_env(path, marker)
    settings = Settings.from_env(env)
    assert configured_providers(settings) == ["mock", "openai", "gemini", "local"]
    assert settings.default_provider == "local" and settings.fallback_providers == ("openai",)
    assert default_model(settings, "local") == "Qwen/Qwen2.5-7B-Instruct"
