"""Which providers are configured, and the models each offers.

Shared by the web (validation, `GET /v1/models`) and the worker (defaults),
so both agree without importing each other.
"""

from __future__ import annotations

from spool.settings import Settings

DEFAULT_MODELS = {
    "mock": "mock-1",
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-6",
}
KNOWN_MODELS = {
    "mock": ("mock-1",),
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini"),
    "anthropic": ("claude-sonnet-4-6", "claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"),
}


def configured_providers(settings: Settings) -> list[str]:
    """Providers a request may choose: mock always; a vendor once it has a key or base URL.

    A base URL alone counts because local OpenAI-compatible servers (vLLM,
    Ollama, llama.cpp) often need no key.
    """
    names = ["mock"]
    if settings.openai_api_key or settings.openai_base_url:
        names.append("openai")
    if settings.anthropic_api_key or settings.anthropic_base_url:
        names.append("anthropic")
    return names


def default_model(provider: str) -> str:
    """The model used when a request names none."""
    return DEFAULT_MODELS[provider]
