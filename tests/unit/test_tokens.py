"""Key-scoped API tokens: signed JWTs (PyJWT) that expire, verified against a list of accepted secrets."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from pipeline.config import ConfigError, load_settings
from pipeline.usage.tokens import (AUDIENCE, DEFAULT_TTL_S, ISSUER, LEGACY_PREFIX, PREFIX, LegacyToken, TokenError,
                             TokenExpired, issue_key_token, verify)

SECRET = "s3cret-for-tests-0123456789abcdef"          # 33 bytes: long enough for HMAC-SHA256
NEW_SECRET = "the-next-secret-for-tests-0123456789"
OLD_SECRET = "the-retired-secret-for-tests-012345"


@pytest.mark.parametrize("key", ["key-1", "sha256:" + "ab" * 32, "ключ/with spaces+=", "x"])
def test_a_token_names_its_key(key):
    token = issue_key_token(SECRET, key)
    assert token.startswith(PREFIX) and verify([SECRET], token).api_key_id == key


def test_tokens_are_url_and_header_safe():
    token = issue_key_token(SECRET, "ключ/with spaces+=")
    assert all(c.isascii() and (c.isalnum() or c in "_-.") for c in token)


def test_the_default_lifetime_is_90_days_and_ttl_sets_it():
    now = time.time()
    default = verify([SECRET], issue_key_token(SECRET, "k", now=now))
    assert DEFAULT_TTL_S == 90 * 86400
    assert default.expires_at.timestamp() - default.issued_at.timestamp() == 90 * 86400
    assert default.issued_at.timestamp() == int(now)
    short = verify([SECRET], issue_key_token(SECRET, "k", ttl_s=3600, now=now))
    assert short.expires_at.timestamp() == int(now) + 3600


def test_the_claims_are_standard_jwt_claims():
    """Anything that reads JWTs can inspect a token (it is signed, not encrypted: the key id is readable)."""
    claims = jwt.decode(issue_key_token(SECRET, "key-1", ttl_s=60, now=1_800_000_000)[len(PREFIX):], SECRET,
                        algorithms=["HS256"], audience=AUDIENCE, options={"verify_exp": False, "verify_iat": False})
    assert claims == {"sub": "key-1", "iat": 1_800_000_000, "exp": 1_800_000_060, "iss": ISSUER, "aud": AUDIENCE}


def test_an_expired_token_says_so_and_when():
    token = issue_key_token(SECRET, "key-1", ttl_s=60, now=time.time() - 3600)
    with pytest.raises(TokenExpired) as expired:
        verify([SECRET], token)
    assert "expired" in expired.value.detail and expired.value.expires_at.tzinfo is not None
    assert abs(expired.value.expires_at.timestamp() - (time.time() - 3540)) < 5
    assert "expired" in expired.value.description


def test_another_secret_does_not_verify():
    with pytest.raises(TokenError) as refused:
        verify(["other-secret-also-long-enough-0123456789"], issue_key_token(SECRET, "key-1"))
    assert refused.value.detail == "the token is not valid" and not isinstance(refused.value, TokenExpired)


def test_an_expired_token_of_an_unknown_secret_is_not_valid_rather_than_expired():
    """Expiry is told only about genuine tokens: a forger learns nothing from the answer."""
    forged = issue_key_token("a-forger-s-secret-0123456789abcdef", "key-1", ttl_s=60, now=time.time() - 3600)
    with pytest.raises(TokenError) as refused:
        verify([SECRET], forged)
    assert not isinstance(refused.value, TokenExpired)


def test_rotation_the_newest_signs_and_every_listed_secret_verifies():
    before = issue_key_token(OLD_SECRET, "key-1")
    secrets = (NEW_SECRET, OLD_SECRET)  # what ApiSettings.token_secrets gives: the signing secret first
    assert verify(secrets, before).api_key_id == "key-1"
    after = issue_key_token(secrets[0], "key-2")
    assert verify(secrets, after).api_key_id == "key-2"
    with pytest.raises(TokenError):  # the old secret dropped: its tokens stop working
        verify((NEW_SECRET,), before)


def test_no_secret_disables_tokens():
    with pytest.raises(TokenError):
        verify([], issue_key_token(SECRET, "key-1"))
    with pytest.raises(ValueError, match="METERLINE_API_TOKEN_SECRET"):
        issue_key_token("", "key-1")


def test_short_secrets_are_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue_key_token("short", "key-1")
    with pytest.warns(InsecureKeyLengthWarning):  # PyJWT signs with it, warning
        token = jwt.encode({"sub": "k", "iat": int(time.time()), "exp": int(time.time()) + 60, "iss": ISSUER,
                            "aud": AUDIENCE}, "short", algorithm="HS256")
    with pytest.raises(TokenError):
        verify(["short"], PREFIX + token)


def test_tokens_of_the_first_format_are_refused_with_a_way_out():
    """``mlk_`` tokens (never expiring HMAC, before this format) are refused, however genuine they were."""
    legacy = LEGACY_PREFIX + base64.urlsafe_b64encode(b"key-1").decode().rstrip("=") + "." + "ab" * 32
    with pytest.raises(LegacyToken) as refused:
        verify([SECRET], legacy)
    assert "meterline token --key" in refused.value.detail and "no longer accepted" in refused.value.detail


def _forge(header: dict, claims: dict, signature: str = "") -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{PREFIX}{part(header)}.{part(claims)}.{signature}"


def test_tampered_and_malformed_tokens_are_rejected():
    token = issue_key_token(SECRET, "key-1")
    head, claims, signature = token[len(PREFIX):].split(".")
    other = issue_key_token(SECRET, "key-2")[len(PREFIX):].split(".")[1]
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    now = int(time.time())
    good_claims = {"sub": "key-1", "iat": now, "exp": now + 60, "iss": ISSUER, "aud": AUDIENCE}
    forged = [
        f"{PREFIX}{head}.{other}.{signature}", f"{PREFIX}{head}.{claims}.{flipped}", f"{PREFIX}{head}.{claims}.",
        f"{PREFIX}{head}.{claims}", token + "x", token.upper(), token[len(PREFIX):], PREFIX, "", "mlk2_é.a.b",
        "mlk2_\udcff.a.b", "mlk2_\ud800.a.b", PREFIX + "a" * 10_000 + ".b.c", "mlk2_..", "mlk2_a.b.c.d",
        _forge({"alg": "none", "typ": "JWT"}, good_claims),                       # unsigned
        _forge({"alg": "HS512", "typ": "JWT"}, good_claims, signature),           # algorithm swapped
        # Genuinely signed, but not a meterline key token:
        PREFIX + jwt.encode({**good_claims, "aud": "something-else"}, SECRET, algorithm="HS256"),
        PREFIX + jwt.encode({**good_claims, "iss": "someone"}, SECRET, algorithm="HS256"),
        PREFIX + jwt.encode({k: v for k, v in good_claims.items() if k != "exp"}, SECRET, algorithm="HS256"),
        PREFIX + jwt.encode({**good_claims, "sub": ""}, SECRET, algorithm="HS256"),
        PREFIX + jwt.encode({**good_claims, "iat": now + 3600}, SECRET, algorithm="HS256"),  # issued in the future
    ]
    for bad in forged:
        with pytest.raises(TokenError) as refused:
            verify([SECRET], bad)
        assert refused.value.detail == "the token is not valid", bad


@pytest.mark.parametrize("key, ttl", [("", 60), ("k", 0), ("k", -5), ("k" * 5000, 60)])
def test_bad_issue_arguments(key, ttl):
    with pytest.raises(ValueError):
        issue_key_token(SECRET, key, ttl_s=ttl)


# --- configuration ------------------------------------------------------------------------------------------

def test_the_signing_secret_comes_first_then_the_previous_ones():
    api = load_settings({"METERLINE_API_TOKEN_SECRET": NEW_SECRET,
                         "METERLINE_API_TOKEN_PREVIOUS_SECRETS": f" {OLD_SECRET} ,, {SECRET}"}).api
    assert api.token_secret == NEW_SECRET and api.token_secrets == (NEW_SECRET, OLD_SECRET, SECRET)
    assert load_settings({}).api.token_secrets == ()


@pytest.mark.parametrize("env, variable", [
    ({"METERLINE_API_TOKEN_SECRET": "too-short"}, "METERLINE_API_TOKEN_SECRET"),
    ({"METERLINE_API_TOKEN_SECRET": SECRET, "METERLINE_API_TOKEN_PREVIOUS_SECRETS": "short"},
     "METERLINE_API_TOKEN_PREVIOUS_SECRETS"),
    ({"METERLINE_API_TOKEN_PREVIOUS_SECRETS": OLD_SECRET}, "METERLINE_API_TOKEN_PREVIOUS_SECRETS"),
])
def test_bad_secret_settings_are_named(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)
