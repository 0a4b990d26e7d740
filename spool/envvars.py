"""Reading typed values from the environment, with one clear error per bad value.

Shared by `spool.settings` and `spool.provider_config`; every message starts
with the variable's name, so an operator knows what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """A configuration value is missing or malformed (one line per mistake)."""


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """An integer >= `minimum`, or `default` when unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """A finite number >= `minimum`, or `default` when unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value < float("inf"):  # also rejects NaN
        raise ConfigError(f"{name} must be a number >= {minimum}, got {raw}")
    return value


def env_str(env: Mapping[str, str], name: str) -> str | None:
    """A stripped string, or None when unset or blank."""
    return env.get(name, "").strip() or None


def env_csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated values, stripped, blanks dropped."""
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
