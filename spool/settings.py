"""Settings, read from the environment only (the Heroku contract).

Every variable API.md names is here, plus the tunables that tests and
operators need. `Settings.from_env()` validates everything up front so a
bad value fails at startup with a clear message, not mid-request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from spool.envvars import ConfigError, env_csv, env_float, env_int
from spool.provider_config import BUILTIN, PRESETS, ProviderConfig, RetryPolicy, Tuning
from spool.provider_env import builtin_providers, parse_providers

__all__ = ["ConfigError", "ProviderConfig", "RetryPolicy", "Settings", "parse_api_keys"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
UNCONFIGURED_HINTS = {"openai": "OPENAI_API_KEY or OPENAI_BASE_URL",
                      "anthropic": "ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL",
                      "gemini": "GEMINI_API_KEY"}
MIN_SECRET_LEN = 32
LOG_FORMATS = ("auto", "json", "text")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    return env_int(env, name, default, minimum)


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    return env_float(env, name, default, minimum)


def _optional_int(env: Mapping[str, str], name: str, minimum: int = 1) -> int | None:
    if not env.get(name, "").strip():
        return None
    return _int(env, name, 0, minimum)


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _tristate(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if raw in {"", "auto"}:
        return None
    if raw in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return raw in {"1", "true", "yes", "on"}
    raise ConfigError(f"{name} must be 1, 0 or auto, got {raw!r}")


def parse_api_keys(raw: str) -> dict[str, str]:
    """Parse `tenant:key,tenant:key` into {key: tenant}."""
    keys: dict[str, str] = {}
    for pair in (p.strip() for p in raw.split(",")):
        if not pair:
            continue
        tenant, sep, key = pair.partition(":")
        tenant, key = tenant.strip(), key.strip()
        if not sep or not tenant or not key:
            raise ConfigError("SPOOL_API_KEYS must be comma-separated tenant:key pairs")
        if key in keys and keys[key] != tenant:
            raise ConfigError("SPOOL_API_KEYS gives one key to two tenants")
        keys[key] = tenant
    return keys


def _check_provider_choice(variable: str, names: tuple[str, ...], known: tuple[str, ...]) -> None:
    for name in names:
        if name not in known:
            raise ConfigError(f"{variable}: unknown provider {name!r}; known providers: "
                              f"{', '.join(known)} (add others to SPOOL_PROVIDERS)")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with API.md's defaults."""

    redis_url: str = DEFAULT_REDIS_URL
    rq_redis_url: str = DEFAULT_REDIS_URL
    port: int = 5000
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> tenant
    secret_key: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    default_provider: str = "mock"
    fallback_providers: tuple[str, ...] = ()
    rate_limit: int = 600
    max_active: int = 100
    # True when SPOOL_RATE_LIMIT or SPOOL_MAX_ACTIVE was set explicitly: then
    # the limits apply even in dev mode (without keys they apply only then).
    limits_configured: bool = False
    retention_s: int = 86400
    tombstone_s: int = 7 * 86400
    worker_slots: int = 200
    batch_share: float = 0.75
    shutdown_grace_s: float = 25.0
    cors_origins: tuple[str, ...] = ()
    log_content: bool = False
    abandon_after_s: int | None = None
    namespace: str = "spool"
    max_body_bytes: int = 1024 * 1024
    max_tokens_limit: int = 32768
    chat_timeout_s: float = 120.0
    job_timeout_s: int = 900
    ping_interval_s: float = 15.0
    sse_retry_ms: int = 1000
    stream_token_ttl_s: int = 86400
    first_token_timeout_s: float = 60.0
    idle_timeout_s: float = 60.0
    max_batch_rows: int = 50000
    redis_cluster: bool | None = None  # None: detect at connect time
    metrics_flush_s: float = 5.0
    log_format: str = "auto"  # auto (JSON unless stderr is a TTY), json, text
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # SPOOL_RETRY_*
    # Configured providers by name (spool/provider_config.py); every known name,
    # configured or not, is in provider_names. Made from the fields above when empty.
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    provider_names: tuple[str, ...] = BUILTIN + PRESETS
    # Web read timeouts: a request head must arrive within header_timeout_s of
    # its first byte (or of the connection opening); a body within
    # body_timeout_s of its head. Slow or silent clients are cut, not waited on.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    # How long the worker retries event writes Redis refuses (OOM, READONLY,
    # MISCONF, LOADING, connection loss) before ending the stuck generations
    # `unavailable` (worker/writeretry.py).
    write_retry_s: float = 20.0

    def __post_init__(self) -> None:
        # Settings made in code (tests, tools) get the built-in providers from their fields.
        if not self.providers:
            object.__setattr__(self, "providers", builtin_providers(
                self.openai_api_key, self.openai_base_url, self.anthropic_api_key,
                self.anthropic_base_url, self.tuning))

    @property
    def tuning(self) -> Tuning:
        """The global timeouts and retry policy (each provider may override them)."""
        return Tuning(self.first_token_timeout_s, self.idle_timeout_s, self.retry)

    @property
    def auth_enabled(self) -> bool:
        """Auth is on exactly when API keys are configured."""
        return bool(self.api_keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default `os.environ`), validating every value."""
        env = os.environ if env is None else env
        redis_url = env.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL
        api_keys = parse_api_keys(env.get("SPOOL_API_KEYS", ""))
        secret = env.get("SPOOL_SECRET_KEY", "").strip() or None
        if api_keys and (secret is None or len(secret) < MIN_SECRET_LEN):
            raise ConfigError(
                f"SPOOL_SECRET_KEY must be set to at least {MIN_SECRET_LEN} characters "
                "when SPOOL_API_KEYS is set (it signs stream tokens)"
            )
        tuning = Tuning(
            first_token_timeout_s=_float(env, "SPOOL_FIRST_TOKEN_TIMEOUT_S", 60.0, 0.1),
            idle_timeout_s=_float(env, "SPOOL_IDLE_TIMEOUT_S", 60.0, 0.1),
            retry=RetryPolicy(attempts=_int(env, "SPOOL_RETRY_ATTEMPTS", 3, 1),
                              base_s=_float(env, "SPOOL_RETRY_BASE_S", 0.5),
                              max_s=_float(env, "SPOOL_RETRY_MAX_S", 8.0)),
        )
        providers, provider_names = parse_providers(env, tuning)
        default_provider = env.get("SPOOL_DEFAULT_PROVIDER", "").strip() or "mock"
        fallbacks = env_csv(env, "SPOOL_FALLBACK_PROVIDERS")
        _check_provider_choice("SPOOL_DEFAULT_PROVIDER", (default_provider,), provider_names)
        if default_provider not in providers:
            # Every request without "provider" would fail: refuse now. (A fallback that
            # is not configured is only skipped, as it always was.)
            raise ConfigError(f"SPOOL_DEFAULT_PROVIDER: provider {default_provider!r} is not "
                              f"configured (set {UNCONFIGURED_HINTS[default_provider]})")
        _check_provider_choice("SPOOL_FALLBACK_PROVIDERS", fallbacks, provider_names)
        batch_share = _float(env, "SPOOL_BATCH_SHARE", 0.75)
        if batch_share > 1:
            raise ConfigError("SPOOL_BATCH_SHARE must be between 0 and 1")
        log_format = env.get("SPOOL_LOG_FORMAT", "").strip().lower() or "auto"
        if log_format not in LOG_FORMATS:
            raise ConfigError(f"SPOOL_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        namespace = env.get("SPOOL_NAMESPACE", "").strip() or "spool"
        if not namespace.replace("_", "").replace("-", "").isalnum():
            raise ConfigError("SPOOL_NAMESPACE may hold only letters, digits, '-' and '_'")
        return cls(
            redis_url=redis_url,
            rq_redis_url=env.get("RQ_REDIS_URL", "").strip() or redis_url,
            port=_int(env, "PORT", 5000, 1),
            api_keys=api_keys,
            secret_key=secret,
            openai_api_key=env.get("OPENAI_API_KEY", "").strip() or None,
            openai_base_url=env.get("OPENAI_BASE_URL", "").strip() or None,
            anthropic_api_key=env.get("ANTHROPIC_API_KEY", "").strip() or None,
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL", "").strip() or None,
            default_provider=default_provider,
            fallback_providers=fallbacks,
            rate_limit=_int(env, "SPOOL_RATE_LIMIT", 600, 1),
            max_active=_int(env, "SPOOL_MAX_ACTIVE", 100, 1),
            limits_configured=any(
                env.get(name, "").strip() for name in ("SPOOL_RATE_LIMIT", "SPOOL_MAX_ACTIVE")
            ),
            retention_s=_int(env, "SPOOL_RETENTION_S", 86400, 1),
            tombstone_s=_int(env, "SPOOL_TOMBSTONE_S", 7 * 86400, 1),
            worker_slots=_int(env, "SPOOL_WORKER_SLOTS", 200, 1),
            batch_share=batch_share,
            shutdown_grace_s=_float(env, "SPOOL_SHUTDOWN_GRACE_S", 25.0),
            cors_origins=env_csv(env, "SPOOL_CORS_ORIGINS"),
            log_content=_flag(env, "SPOOL_LOG_CONTENT"),
            abandon_after_s=_optional_int(env, "SPOOL_ABANDON_AFTER_S"),
            namespace=namespace,
            max_body_bytes=_int(env, "SPOOL_MAX_BODY_BYTES", 1024 * 1024, 1024),
            max_tokens_limit=_int(env, "SPOOL_MAX_TOKENS_LIMIT", 32768, 1),
            chat_timeout_s=_float(env, "SPOOL_CHAT_TIMEOUT_S", 120.0, 0.1),
            job_timeout_s=_int(env, "SPOOL_JOB_TIMEOUT_S", 900, 1),
            ping_interval_s=_float(env, "SPOOL_PING_INTERVAL_S", 15.0, 0.05),
            sse_retry_ms=_int(env, "SPOOL_SSE_RETRY_MS", 1000, 0),
            stream_token_ttl_s=_int(env, "SPOOL_STREAM_TOKEN_TTL_S", 86400, 1),
            first_token_timeout_s=tuning.first_token_timeout_s,
            idle_timeout_s=tuning.idle_timeout_s,
            retry=tuning.retry,
            providers=providers,
            provider_names=provider_names,
            max_batch_rows=_int(env, "SPOOL_MAX_BATCH_ROWS", 50000, 1),
            redis_cluster=_tristate(env, "SPOOL_REDIS_CLUSTER"),
            metrics_flush_s=_float(env, "SPOOL_METRICS_FLUSH_S", 5.0, 0.05),
            log_format=log_format,
            header_timeout_s=_float(env, "SPOOL_HEADER_TIMEOUT_S", 10.0, 0.1),
            body_timeout_s=_float(env, "SPOOL_BODY_TIMEOUT_S", 30.0, 0.1),
            write_retry_s=_float(env, "SPOOL_WRITE_RETRY_S", 20.0, 0.1),
        )
