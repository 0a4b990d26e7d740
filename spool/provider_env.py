"""Named providers from the environment, validated once, at startup.

`mock`, `openai` (`OPENAI_API_KEY` / `OPENAI_BASE_URL`) and `anthropic`
(`ANTHROPIC_*`) keep their variables; `gemini` is a preset (`GEMINI_API_KEY`:
Google's OpenAI-compatible endpoint). `SPOOL_PROVIDERS` names more; for each
NAME (upper-cased, `-` → `_`) the `SPOOL_PROVIDER_<NAME>_*` variables give
its wire format, base URL, key, default model, model list, and optionally
its own timeouts and retry policy. Every mistake is collected and reported
on a line of its own that names the variable, so one restart fixes them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from spool.envvars import ConfigError, env_csv, env_float, env_int, env_str
from spool.provider_config import (
    BUILTIN,
    DEFAULT_MODELS,
    GEMINI_BASE_URL,
    KINDS,
    KNOWN_MODELS,
    MIN_TIMEOUT_S,
    NAME_RE,
    PRESETS,
    ProviderConfig,
    RetryPolicy,
    Tuning,
)

CONNECTION_FIELDS = ("KIND", "BASE_URL", "API_KEY")
MODEL_FIELDS = ("MODEL", "MODELS")
TUNING_FIELDS = ("FIRST_TOKEN_TIMEOUT_S", "IDLE_TIMEOUT_S", "RETRY_ATTEMPTS", "RETRY_BASE_S",
                 "RETRY_MAX_S")
ALL_FIELDS = CONNECTION_FIELDS + MODEL_FIELDS + TUNING_FIELDS
AUTO_MODELS = "auto"  # `_MODELS=auto`: ask the server for its models at startup

T = TypeVar("T")


def env_name(name: str) -> str:
    """The variable-name form of a provider name (`my-llm` → `MY_LLM`)."""
    return name.upper().replace("-", "_")


def var(name: str, setting: str) -> str:
    """`SPOOL_PROVIDER_<NAME>_<SETTING>`."""
    return f"SPOOL_PROVIDER_{env_name(name)}_{setting}"


class _Reader:
    """Reads values, collecting each mistake instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def get(self, read: Callable[..., T], name: str, *args: object) -> T | None:
        try:
            return read(self.env, name, *args)
        except ConfigError as exc:
            self.errors.append(str(exc))
            return None

    def url(self, name: str) -> str | None:
        raw = env_str(self.env, name)
        if raw is None:
            return None
        try:
            parts = urlsplit(raw)
            valid = (parts.scheme in ("http", "https") and bool(parts.hostname)
                     and (parts.port is None or parts.port > 0))  # .port checks the port
        except ValueError:  # e.g. a bad port or an unclosed IPv6 bracket
            valid = False
        if not valid:
            # Credentials in a URL (user:password@) are not echoed back.
            shown = raw.rsplit("@", 1)[-1] if "@" in raw else raw
            self.errors.append(f"{name} must be an http:// or https:// URL, got {shown!r}")
            return None
        return raw


def _tuning(reader: _Reader, name: str, base: Tuning) -> Tuning:
    """`base`, with whatever SPOOL_PROVIDER_<NAME>_* timeouts and retry settings override."""
    def num(setting: str, default: float, minimum: float) -> float:
        value = reader.get(env_float, var(name, setting), default, minimum)
        return default if value is None else value

    attempts = reader.get(env_int, var(name, "RETRY_ATTEMPTS"), base.retry.attempts, 1)
    return Tuning(
        first_token_timeout_s=num("FIRST_TOKEN_TIMEOUT_S", base.first_token_timeout_s,
                                  MIN_TIMEOUT_S),
        idle_timeout_s=num("IDLE_TIMEOUT_S", base.idle_timeout_s, MIN_TIMEOUT_S),
        retry=RetryPolicy(attempts=base.retry.attempts if attempts is None else attempts,
                          base_s=num("RETRY_BASE_S", base.retry.base_s, 0.0),
                          max_s=num("RETRY_MAX_S", base.retry.max_s, 0.0)),
    )


def _models(reader: _Reader, name: str, default: str | None,
            listed: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """(default model, listed models): the default comes first in the list.

    `_MODELS=auto` lists the default model alone here; the web asks the
    server for the rest at startup (`spool.model_listing`).
    """
    model = env_str(reader.env, var(name, "MODEL")) or default
    models = env_csv(reader.env, var(name, "MODELS")) or listed
    if models == (AUTO_MODELS,):
        models = ()
    model = model or (models[0] if models else None)
    if model is None:
        reader.errors.append(f"{var(name, 'MODEL')} must be set: the model a request that "
                             f"names none gets from the {name} provider")
        return None
    return model, tuple(dict.fromkeys((model, *models)))


def parse_names(reader: _Reader) -> tuple[str, ...]:
    """The names SPOOL_PROVIDERS adds, each checked."""
    names: list[str] = []
    for name in env_csv(reader.env, "SPOOL_PROVIDERS"):
        if not NAME_RE.match(name):
            reader.errors.append(f"SPOOL_PROVIDERS: {name!r} is not a valid provider name "
                                 "(lowercase letters, digits and '-', at most 40)")
        elif name in BUILTIN:
            reader.errors.append(f"SPOOL_PROVIDERS: {name!r} is built in; configure it with "
                                 f"its own variables ({name.upper()}_API_KEY, ...)"
                                 if name != "mock" else
                                 "SPOOL_PROVIDERS: 'mock' is built in and always configured")
        elif name in names:
            reader.errors.append(f"SPOOL_PROVIDERS names {name!r} twice")
        else:
            names.append(name)
    return tuple(names)


def _named(reader: _Reader, name: str, base: Tuning) -> ProviderConfig | None:
    """A provider named by SPOOL_PROVIDERS (or the gemini preset)."""
    preset = name in PRESETS
    kind = (env_str(reader.env, var(name, "KIND")) or "openai").lower()
    if kind not in KINDS:
        reader.errors.append(f"{var(name, 'KIND')} must be openai or anthropic, got {kind!r}")
    base_url = reader.url(var(name, "BASE_URL")) or (GEMINI_BASE_URL if preset else None)
    if base_url is None and not env_str(reader.env, var(name, "BASE_URL")):
        reader.errors.append(f"{var(name, 'BASE_URL')} must be set: where the {name} provider "
                             "listens (e.g. http://127.0.0.1:8000/v1 for vLLM)")
    api_key = env_str(reader.env, var(name, "API_KEY"))
    if preset:
        api_key = api_key or env_str(reader.env, "GEMINI_API_KEY")
        if api_key is None:
            reader.errors.append("GEMINI_API_KEY must be set to use the gemini provider")
    models = _models(reader, name, DEFAULT_MODELS.get(name), KNOWN_MODELS.get(name, ()))
    tuning = _tuning(reader, name, base)
    if models is None or base_url is None or kind not in KINDS:
        return None
    return ProviderConfig(name, kind, models[0], models[1], base_url, api_key, tuning,
                          list_models=_auto(reader, name))


def _builtin(reader: _Reader, name: str, base: Tuning) -> ProviderConfig | None:
    """`mock`, or `openai` / `anthropic` when their key or base URL is set.

    A base URL alone counts because local OpenAI-compatible servers (vLLM,
    Ollama, llama.cpp) often need no key.
    """
    prefix = name.upper()
    base_url = None if name == "mock" else reader.url(f"{prefix}_BASE_URL")
    api_key = None if name == "mock" else env_str(reader.env, f"{prefix}_API_KEY")
    tuning = _tuning(reader, name, base)
    if name != "mock" and base_url is None and api_key is None:
        return None
    models = _models(reader, name, DEFAULT_MODELS[name], KNOWN_MODELS[name])
    if models is None:
        return None
    return ProviderConfig(name, name, models[0], models[1], base_url, api_key, tuning,
                          list_models=_auto(reader, name))


def _auto(reader: _Reader, name: str) -> bool:
    return env_str(reader.env, var(name, "MODELS")) == AUTO_MODELS


def _check_variables(reader: _Reader, names: tuple[str, ...]) -> None:
    """Refuse SPOOL_PROVIDER_* variables that configure nothing (a typo, usually)."""
    forms = {env_name(name): name for name in names}
    for variable in sorted(reader.env):
        if not variable.startswith("SPOOL_PROVIDER_") or not reader.env[variable].strip():
            continue
        rest = variable[len("SPOOL_PROVIDER_"):]
        fields = [f for f in ALL_FIELDS if rest.endswith(f"_{f}")]
        owners = [(forms[rest[:-len(f) - 1]], f) for f in fields if rest[:-len(f) - 1] in forms]
        if not owners:
            what = ("names no provider listed in SPOOL_PROVIDERS" if fields else
                    "is not a provider setting (" + ", ".join(ALL_FIELDS) + ")")
            reader.errors.append(f"{variable} {what}")
            continue
        name, setting = owners[0]
        if name in BUILTIN and setting not in TUNING_FIELDS + (MODEL_FIELDS * (name != "mock")):
            reader.errors.append(f"{variable}: the {name} provider is configured by "
                                 + ("nothing else" if name == "mock" else
                                    f"{name.upper()}_API_KEY and {name.upper()}_BASE_URL"))


def parse_providers(env: Mapping[str, str],
                    base: Tuning) -> tuple[dict[str, ProviderConfig], tuple[str, ...]]:
    """(configured providers by name, every known name); raises ConfigError listing mistakes.

    Known names are the built-in ones, `gemini` and SPOOL_PROVIDERS; a known
    name is configured once it has what it needs (a key or base URL).
    """
    reader = _Reader(env)
    extra = parse_names(reader)
    known = tuple(dict.fromkeys((*BUILTIN, *PRESETS, *extra)))
    _check_variables(reader, known)
    configs: dict[str, ProviderConfig | None] = {name: _builtin(reader, name, base)
                                                 for name in BUILTIN}
    wanted = any(v.strip() for k, v in env.items() if k.startswith("SPOOL_PROVIDER_GEMINI_"))
    if "gemini" in extra or wanted or env_str(env, "GEMINI_API_KEY"):
        configs["gemini"] = _named(reader, "gemini", base)
    for name in extra:
        if name not in PRESETS:
            configs[name] = _named(reader, name, base)
    if reader.errors:
        raise ConfigError("\n".join(reader.errors))
    return {name: config for name, config in configs.items() if config is not None}, known


def builtin_providers(openai_key: str | None, openai_url: str | None, anthropic_key: str | None,
                      anthropic_url: str | None, base: Tuning) -> dict[str, ProviderConfig]:
    """The built-in providers from values already read (for Settings made in code)."""
    env = {"OPENAI_API_KEY": openai_key or "", "OPENAI_BASE_URL": openai_url or "",
           "ANTHROPIC_API_KEY": anthropic_key or "", "ANTHROPIC_BASE_URL": anthropic_url or ""}
    return parse_providers(env, base)[0]
