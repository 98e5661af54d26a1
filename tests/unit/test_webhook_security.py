import pytest

from qpay_common.webhook_security import callback_token, callback_url, is_valid_callback_token

pytestmark = pytest.mark.unit


def test_callback_url_carries_the_session_and_a_token_that_verifies():
    url = callback_url("https://api.example.com/", "s3cret", "ps_abc")
    assert url.startswith("https://api.example.com/webhooks/qpay?session_id=ps_abc&token=")
    token = url.split("token=")[1]
    assert is_valid_callback_token(["s3cret"], "ps_abc", token)


def test_a_token_for_another_session_or_secret_is_refused():
    token = callback_token("s3cret", "ps_abc")
    assert not is_valid_callback_token(["s3cret"], "ps_other", token)
    assert not is_valid_callback_token(["other"], "ps_abc", token)
    assert not is_valid_callback_token(["s3cret"], "ps_abc", None)
    assert not is_valid_callback_token(["s3cret"], None, token)
    assert not is_valid_callback_token([], "ps_abc", token)


def test_a_token_made_with_any_key_still_in_the_secret_verifies():
    # Given a rotation: URLs of open invoices were signed with k1, new ones with k2
    old_token = callback_token("k1-secret", "ps_abc")
    new_token = callback_token("k2-secret", "ps_abc")
    # Then while both keys are in the secret, both verify; once k1 is dropped, only k2's does
    assert is_valid_callback_token(["k2-secret", "k1-secret"], "ps_abc", old_token)
    assert is_valid_callback_token(["k2-secret", "k1-secret"], "ps_abc", new_token)
    assert not is_valid_callback_token(["k2-secret"], "ps_abc", old_token)


def test_callback_url_fits_qpays_255_characters_on_a_long_api_host():
    host = "https://abcdefghij.execute-api.ap-southeast-1.amazonaws.com"
    assert len(callback_url(host, "k" * 48, "ps_" + "f" * 32)) <= 255


@pytest.mark.parametrize(
    "token",
    ["ñ" * 43, "\u202e" + "a" * 42, "a" * 129, "a" * 100_000, "", " " * 43, "\x00" * 43],
    ids=["non-ascii", "bidi-override", "129-chars", "100k-chars", "empty", "spaces", "nul"],
)
def test_a_hostile_token_is_refused_without_raising(token):
    # compare_digest raises TypeError on non-ASCII str: such a token must be a plain refusal.
    assert is_valid_callback_token(["s3cret"], "ps_abc", token) is False


@pytest.mark.parametrize(
    "session_id",
    ["ñandú", "\ud800", "x" * 100_000, "ps_abc\n"],
    ids=["non-ascii", "surrogate", "huge", "newline"],
)
def test_a_hostile_session_id_is_refused_without_raising(session_id):
    assert is_valid_callback_token(["s3cret"], session_id, callback_token("s3cret", "ps_abc")) is False
