"""Generation and batch ids: unguessable (144 random bits), URL-safe."""

from __future__ import annotations

import re
import secrets

ID_RANDOM_BYTES = 18  # 144 bits -> 24 url-safe characters
_ID_RE = re.compile(r"^(gen|batch)_[A-Za-z0-9_-]{22,64}$")


def new_generation_id() -> str:
    """A fresh generation id, `gen_` + 24 random url-safe characters."""
    return "gen_" + secrets.token_urlsafe(ID_RANDOM_BYTES)


def new_batch_id() -> str:
    """A fresh batch id, `batch_` + 24 random url-safe characters."""
    return "batch_" + secrets.token_urlsafe(ID_RANDOM_BYTES)


def is_generation_id(value: str) -> bool:
    """True when `value` has the shape of a generation id (no Redis lookup)."""
    return bool(_ID_RE.match(value)) and value.startswith("gen_")


def is_batch_id(value: str) -> bool:
    """True when `value` has the shape of a batch id."""
    return bool(_ID_RE.match(value)) and value.startswith("batch_")
