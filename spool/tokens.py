"""Stream tokens: HMAC-signed, expiring capabilities for one generation.

`EventSource` cannot send an Authorization header, so `stream_url` carries
`?token=`. A token names its generation inside the MAC, so a token for one
generation never opens another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

_SEPARATOR = "."


def _mac(secret: str, gen_id: str, expires: int) -> str:
    message = f"spool-stream:{gen_id}:{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_stream_token(secret: str, gen_id: str, ttl_s: int, now: float | None = None) -> str:
    """A token opening `gen_id`'s events until `now + ttl_s`."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{expires}{_SEPARATOR}{_mac(secret, gen_id, expires)}"


def verify_stream_token(secret: str, gen_id: str, token: str, now: float | None = None) -> bool:
    """True when `token` was signed for `gen_id` and has not expired."""
    if not token.isascii():  # compare_digest refuses non-ASCII str (a 500, not a 401)
        return False
    expires_text, sep, mac = token.partition(_SEPARATOR)
    if not sep or not expires_text.isdigit() or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac, _mac(secret, gen_id, expires))
