"""Masking secrets in log text: configured keys wherever they appear, and
credential-shaped substrings (bearer tokens, `key=` pairs, `sk-` keys, Redis
URL passwords) by pattern."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET_LEN = 6  # shorter "secrets" would redact ordinary words
# Credentials that may show up in messages even when not configured here.
SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
    re.compile(r"(?i)((?:token|api_key|apikey|key|password)=)[^&\s\"',]+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(redis(?:s)?://[^:/@\s]*:)[^@\s]+(@)"),
)
# A fixed part of each of SECRET_PATTERNS (lower case): without it, it cannot match.
PATTERN_HINTS = ("bearer", "=", "sk-", "redis")


class Redactor:
    """Masks configured secrets and credential-shaped substrings.

    Most lines hold nothing to mask: a substring test per secret and per
    pattern's fixed part (C-speed) decides which regexes run at all, which
    halves the cost of a log line (paid per request and per generation).
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len,
                       reverse=True)
        self._secrets = tuple(found)
        self._literal = re.compile("|".join(map(re.escape, found))) if found else None

    def __call__(self, text: str) -> str:
        if self._literal is not None and any(s in text for s in self._secrets):
            text = self._literal.sub(REDACTED, text)
        lowered = text.lower()
        for hint, pattern in zip(PATTERN_HINTS, SECRET_PATTERNS, strict=True):
            if hint in lowered:
                text = pattern.sub(_mask, text)
        return text


def _mask(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if not groups:
        return REDACTED
    return groups[0] + REDACTED + (groups[1] if len(groups) > 1 else "")
