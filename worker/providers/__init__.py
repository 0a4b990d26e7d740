"""Provider adapters: one module per wire format, the only place its SDK is imported.

`Registry` builds one adapter per configured provider (spool/provider_config.py)
once per worker process, at start: the SDKs are imported and their clients
made then, not on a generation's first request (importing the anthropic SDK
alone takes about a second). Nothing here runs on import.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING

from worker.providers.base import Provider, ProviderError

if TYPE_CHECKING:
    from spool.settings import ProviderConfig, Settings

log = logging.getLogger(__name__)

# Module of each wire format (`ProviderConfig.kind`); each exposes `build(settings, name)`.
KIND_MODULES = {
    "mock": "worker.providers.mock",
    "openai": "worker.providers.openai",
    "anthropic": "worker.providers.anthropic",
}


class Registry:
    """The adapters of every configured provider, built once from one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._adapters: dict[str, Provider] = {}
        self._broken: dict[str, str] = {}  # name -> why it could not be built
        started = time.monotonic()
        for name in settings.providers:
            try:
                self._adapters[name] = _build(settings, name)
            except Exception as exc:  # one broken SDK must not take the others down
                log.exception("provider %s could not be set up", name)
                self._broken[name] = f"{type(exc).__name__}: {exc}"
        self.build_s = time.monotonic() - started

    def get(self, name: str) -> Provider:
        """The adapter of provider `name`; ProviderError if it is not configured or broken."""
        adapter = self._adapters.get(name)
        if adapter is not None:
            return adapter
        if name in self._broken:
            raise ProviderError("provider_error",
                                f"provider {name!r} is unavailable: {self._broken[name]}")
        raise ProviderError("invalid_request", f"provider {name!r} is not configured")

    def config(self, name: str) -> ProviderConfig:
        """The configuration of provider `name` (KeyError if it is not configured)."""
        return self.settings.providers[name]

    def names(self) -> list[str]:
        """Providers with a working adapter."""
        return list(self._adapters)


def _build(settings: Settings, name: str) -> Provider:
    module = importlib.import_module(KIND_MODULES[settings.providers[name].kind])
    adapter: Provider = module.build(settings, name)
    return adapter


_registry: Registry | None = None


def registry(settings: Settings) -> Registry:
    """This process's registry for `settings`, built on first use (the worker builds it at start).

    A different Settings object (tests driving many configurations in one
    process) gets a fresh registry; SDK clients are still shared by configuration.
    """
    global _registry
    if _registry is None or _registry.settings is not settings:
        _registry = Registry(settings)
    return _registry


def get_provider(name: str, settings: Settings) -> Provider:
    """The adapter of provider `name` under `settings`."""
    return registry(settings).get(name)
