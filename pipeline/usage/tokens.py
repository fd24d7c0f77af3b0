"""Key-scoped API tokens that expire, signed with a list of secrets so the secret can be rotated.

A key token lets its holder read the usage of exactly one key until it expires. Nothing is stored: the
token is ``mlk2_`` + a JSON Web Token (RFC 7519) signed with HMAC-SHA256 by PyJWT, with the claims
``sub`` (the api_key_id), ``iat`` and ``exp`` (UTC seconds), ``iss`` = ``meterline`` and ``aud`` =
``meterline-usage-api`` (so a JWT the same secret signs for anything else is refused). The prefix lets people
and secret scanners recognise a meterline token.

Rotation: the first secret of the list signs, every secret of the list verifies. Adding a new secret in front
keeps the tokens signed with the older ones valid until they expire or the old secret is dropped
(docs/deploy.md, "Key tokens"). Tokens of the first format (``mlk_``: never expiring, hand-made HMAC) are
refused with a detail telling the holder to ask for a new token.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import jwt

from pipeline.config import MIN_TOKEN_SECRET_BYTES as MIN_SECRET_BYTES

PREFIX = "mlk2_"
LEGACY_PREFIX = "mlk_"
ISSUER = "meterline"
AUDIENCE = "meterline-usage-api"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 90 * 86400.0
# Far above any token we issue (about 200 characters plus the key id): longer input is refused unread.
MAX_TOKEN_CHARS = 4096
_REQUIRED_CLAIMS = ["sub", "iat", "exp", "iss", "aud"]


@dataclasses.dataclass(frozen=True)
class KeyToken:
    """A verified key token: the key it reads and its validity (UTC datetimes)."""

    api_key_id: str
    issued_at: datetime
    expires_at: datetime


class TokenError(Exception):
    """A token that does not grant access. ``detail`` is safe to show its holder (it never quotes the token);
    ``description`` is the short RFC 6750 ``error_description``."""

    description = "The access token is not valid"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TokenExpired(TokenError):
    """A genuine token past its ``exp``."""

    description = "The access token expired"

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(f"the token expired at {_iso(expires_at)}; ask for a new one (meterline token --key K)")
        self.expires_at = expires_at


class LegacyToken(TokenError):
    """An ``mlk_`` token of the first format, which is no longer accepted."""

    description = "The access token format is no longer accepted"

    def __init__(self) -> None:
        super().__init__("this token has the old mlk_ format, which never expires and is no longer accepted; "
                         "ask for a new token (meterline token --key K)")


def check_secret(secret: str, name: str = "the token secret") -> None:
    """Raises ValueError unless ``secret`` is at least :data:`MIN_SECRET_BYTES` bytes (UTF-8)."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{name} must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`), "
                         f"got {len(secret.encode())}")


def issue_key_token(secret: str, api_key_id: str, ttl_s: float = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A token reading ``api_key_id`` for ``ttl_s`` seconds from ``now`` (Unix seconds; default: the clock).

    Raises ValueError for an empty or very long (over ~2,900 characters) key id, a TTL that is not positive, or a secret shorter than
    :data:`MIN_SECRET_BYTES` (empty: key tokens are not configured, METERLINE_API_TOKEN_SECRET).
    """
    if not secret:
        raise ValueError("no token secret configured (METERLINE_API_TOKEN_SECRET)")
    check_secret(secret)
    if not api_key_id:
        raise ValueError("api_key_id must not be empty")
    if not ttl_s > 0:
        raise ValueError(f"the token lifetime must be positive, got {ttl_s} s")
    issued = int(time.time() if now is None else now)
    claims = {"sub": api_key_id, "iat": issued, "exp": issued + max(1, round(ttl_s)), "iss": ISSUER,
              "aud": AUDIENCE}
    token = PREFIX + jwt.encode(claims, secret, algorithm=ALGORITHM)
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"api_key_id is too long for a key token ({len(api_key_id)} characters)")
    return token


def verify(secrets: Sequence[str], token: str) -> KeyToken:
    """The key a genuine, unexpired token reads, trying each accepted secret (newest first).

    Raises :class:`LegacyToken` for an ``mlk_`` token, :class:`TokenExpired` for a genuine token past its
    expiry, and :class:`TokenError` for anything else (forged, tampered, malformed, signed by a secret no
    longer accepted, or no secret configured).
    """
    if token.startswith(LEGACY_PREFIX):
        raise LegacyToken()
    # A JWT is ASCII; header bytes that are not UTF-8 reach us as lone surrogates, which must not get further.
    if not token.startswith(PREFIX) or not token.isascii() or len(token) > MAX_TOKEN_CHARS or not secrets:
        raise TokenError("the token is not valid")
    encoded = token[len(PREFIX):]
    for secret in secrets:
        try:
            claims = _decode(encoded, secret, verify_exp=True)
        except jwt.InvalidSignatureError:
            continue  # signed with another secret (or forged): try the next one
        except jwt.ExpiredSignatureError:
            # The signature is good (PyJWT checks it before the claims); read the expiry for the message.
            expired = _decode(encoded, secret, verify_exp=False)
            raise TokenExpired(datetime.fromtimestamp(expired["exp"], timezone.utc)) from None
        except jwt.PyJWTError:  # malformed, wrong claims, or a secret PyJWT refuses as too short
            raise TokenError("the token is not valid") from None
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise TokenError("the token is not valid")
        return KeyToken(api_key_id=claims["sub"], issued_at=datetime.fromtimestamp(claims["iat"], timezone.utc),
                        expires_at=datetime.fromtimestamp(claims["exp"], timezone.utc))
    raise TokenError("the token is not valid")


def _decode(encoded: str, secret: str, verify_exp: bool) -> dict:
    return jwt.decode(encoded, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                      options={"require": _REQUIRED_CLAIMS, "verify_exp": verify_exp,
                               "enforce_minimum_key_length": True})


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
