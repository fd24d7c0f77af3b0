"""Key-scoped API tokens: issued and verified statelessly with an HMAC."""

from __future__ import annotations

import pytest

from pipeline.usage.tokens import PREFIX, issue_key_token, verify

SECRET = "s3cret-for-tests"


@pytest.mark.parametrize("key", ["key-1", "sha256:" + "ab" * 32, "ключ/with spaces+=", "x"])
def test_a_token_names_its_key(key):
    token = issue_key_token(SECRET, key)
    assert token.startswith(PREFIX) and verify(SECRET, token) == key
    assert token == issue_key_token(SECRET, key)  # stateless: the same key always gets the same token


def test_tokens_are_url_and_header_safe():
    token = issue_key_token(SECRET, "ключ/with spaces+=")
    assert all(c.isalnum() or c in "_-." for c in token)


def test_another_secret_does_not_verify():
    assert verify("other-secret", issue_key_token(SECRET, "key-1")) is None


def test_no_secret_disables_tokens():
    assert verify("", issue_key_token(SECRET, "key-1")) is None
    with pytest.raises(ValueError):
        issue_key_token("", "key-1")


def test_tampered_tokens_are_rejected():
    token = issue_key_token(SECRET, "key-1")
    body, signature = token.split(".")
    other_body = issue_key_token(SECRET, "key-2").split(".")[0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    for forged in (f"{other_body}.{signature}", f"{body}.{flipped}", f"{body}.", body, f"{body}.{signature}x",
                   f"{body}=.{signature}", token.upper(), f"{PREFIX}.{signature}", "mlk_!!!.abc", "mlk_é.ab",
                   f"{body}.{signature[:10]}", ""):
        assert verify(SECRET, forged) is None, forged


def test_the_key_id_is_required():
    with pytest.raises(ValueError):
        issue_key_token(SECRET, "")
