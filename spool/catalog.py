"""Which providers are configured, and the models each offers.

Shared by the web (validation, `GET /v1/models`) and the worker (defaults),
so both agree without importing each other. The configuration itself is
parsed once, at startup, by `spool.provider_config`.
"""

from __future__ import annotations

from spool.provider_config import DEFAULT_MODELS, KNOWN_MODELS, ProviderConfig
from spool.settings import Settings

__all__ = ["DEFAULT_MODELS", "KNOWN_MODELS", "configured_providers", "default_model",
           "model_ids", "provider_config"]


def configured_providers(settings: Settings) -> list[str]:
    """Providers a request may choose: mock always, and every configured name."""
    return list(settings.providers)


def provider_config(settings: Settings, provider: str) -> ProviderConfig | None:
    """The configuration of `provider`, or None when it is not configured."""
    return settings.providers.get(provider)


def default_model(settings: Settings, provider: str) -> str:
    """The model used when a request to a configured `provider` names none."""
    return settings.providers[provider].model


def model_ids(settings: Settings) -> list[tuple[str, str]]:
    """(provider, model) for every configured provider's listed models, in configuration order."""
    return [(name, model) for name, config in settings.providers.items()
            for model in config.models]
