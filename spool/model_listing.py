"""`_MODELS=auto`: ask a provider for its models once, at web startup, never per request.

A local vLLM or Ollama serves whatever it was started with; asking its
`GET …/models` spares the operator listing them by hand. A server that does
not answer within LIST_TIMEOUT_S (or answers nonsense) leaves the provider
listing its default model alone, with a warning: startup never fails on it.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.request
from typing import Any

import orjson

from spool.provider_config import ProviderConfig
from spool.settings import Settings

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 3.0
MAX_LIST_BYTES = 1 << 20
MAX_LISTED = 200  # a catalogue bigger than this is cut (GET /v1/models stays small)
ANTHROPIC_VERSION = "2023-06-01"


def _request(config: ProviderConfig) -> urllib.request.Request:
    """The models request in the provider's wire format."""
    base = (config.base_url or "").rstrip("/")
    if config.kind == "anthropic":
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if config.api_key:
            headers["x-api-key"] = config.api_key
        return urllib.request.Request(f"{base or 'https://api.anthropic.com'}/v1/models",
                                      headers=headers)
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    return urllib.request.Request(f"{base or 'https://api.openai.com/v1'}/models",
                                  headers=headers)


def ask_models(config: ProviderConfig, timeout_s: float = LIST_TIMEOUT_S) -> list[str] | None:
    """The model ids the provider lists, or None when it cannot say."""
    try:
        # The URL is the configured http(s) base URL (checked at startup), never a request's.
        with urllib.request.urlopen(_request(config), timeout=timeout_s) as response:
            body: Any = orjson.loads(response.read(MAX_LIST_BYTES))
        listed = body.get("data") if isinstance(body, dict) else None
        ids = [m["id"] for m in (listed if isinstance(listed, list) else ())
               if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]]
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        log.warning("provider %s: could not list its models (%s); listing %s only",
                    config.name, type(exc).__name__, config.model)
        return None
    return ids[:MAX_LISTED] or None


def with_listed_models(settings: Settings) -> Settings:
    """`settings` with every `_MODELS=auto` provider's models asked for (default model first)."""
    providers = dict(settings.providers)
    changed = False
    for name, config in settings.providers.items():
        if not config.list_models:
            continue
        ids = ask_models(config)
        if ids:
            models = tuple(dict.fromkeys((config.model, *ids)))
            providers[name] = dataclasses.replace(config, models=models)
            changed = True
    return dataclasses.replace(settings, providers=providers) if changed else settings
