"""Stateless key-scoped API tokens: ``mlk_`` + urlsafe-base64(api_key_id) + ``.`` + HMAC-SHA256 hex.

A token lets its holder read the usage of exactly one key. Nothing is stored: the HMAC over the key id (with
a domain prefix, so the secret signs nothing else by accident) is the proof. Tokens do not expire; rotating
``METERLINE_API_TOKEN_SECRET`` revokes all of them at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PREFIX = "mlk_"
_DOMAIN = b"meterline key token v1\x00"


def issue_key_token(secret: str, api_key_id: str) -> str:
    if not secret:
        raise ValueError("no token secret configured (METERLINE_API_TOKEN_SECRET)")
    if not api_key_id:
        raise ValueError("api_key_id must not be empty")
    return f"{PREFIX}{_encode(api_key_id)}.{_signature(secret, api_key_id)}"


def verify(secret: str, token: str) -> str | None:
    """The api_key_id a genuine token names, or None for anything else (forged, tampered, malformed, or no
    secret configured)."""
    if not secret or not token.startswith(PREFIX):
        return None
    encoded, dot, signature = token[len(PREFIX):].partition(".")
    if not dot or not encoded:
        return None
    try:
        api_key_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    # Only the canonical spelling is accepted, so one key has exactly one valid token per secret.
    if not api_key_id or _encode(api_key_id) != encoded:
        return None
    if not hmac.compare_digest(signature.encode(), _signature(secret, api_key_id).encode()):
        return None
    return api_key_id


def _encode(api_key_id: str) -> str:
    return base64.urlsafe_b64encode(api_key_id.encode()).decode().rstrip("=")


def _signature(secret: str, api_key_id: str) -> str:
    return hmac.new(secret.encode(), _DOMAIN + api_key_id.encode(), hashlib.sha256).hexdigest()
