"""Provider adapters: one module per vendor, the only place its SDK is imported."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from worker.providers.base import Provider, ProviderError

if TYPE_CHECKING:
    from spool.settings import Settings

# Module path of each provider; imported on first use so a missing SDK or key
# for one vendor never breaks the others.
PROVIDER_MODULES = {
    "mock": "worker.providers.mock",
    "openai": "worker.providers.openai",
    "anthropic": "worker.providers.anthropic",
}


def get_provider(name: str, settings: Settings) -> Provider:
    """Build the adapter for provider `name` (each module exposes `build(settings)`)."""
    path = PROVIDER_MODULES.get(name)
    if path is None:
        raise ProviderError("invalid_request", f"unknown provider {name!r}")
    module = importlib.import_module(path)
    provider: Provider = module.build(settings)
    return provider
