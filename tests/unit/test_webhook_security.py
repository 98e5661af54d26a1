from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr, ValidationError

from qpay_common.domain.callback_token import (
    WebhookKeys,
    callback_token,
    callback_url,
    is_valid_callback_token,
)
from qpay_common.domain.payment_request import CreatePaymentRequest

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


def test_callback_url_names_the_key_that_made_its_token():
    url = callback_url("https://api.example.com", "s3cret", "ps_abc", key_id="k2")
    query = parse_qs(urlsplit(url).query)
    assert query["kid"] == ["k2"]
    assert query["token"] == [callback_token("s3cret", "ps_abc")]


def test_callback_url_fits_qpays_255_characters_on_a_long_api_host_with_the_longest_key_id():
    host = "https://abcdefghij.execute-api.ap-southeast-1.amazonaws.com"
    assert len(callback_url(host, "k" * 48, "ps_" + "f" * 32, key_id="k" * 16)) <= 255


def rotated_keys() -> WebhookKeys:
    return WebhookKeys.from_secret({"current_key_id": "k2", "k1": "first-key", "k2": "second-key"})


def test_a_url_naming_a_key_is_checked_against_that_key_only():
    keys = rotated_keys()
    old_token = callback_token("first-key", "ps_abc")
    # The old URL names k1: it verifies with k1, and k1's token does not pass as k2's
    assert is_valid_callback_token(keys.keys_for("k1"), "ps_abc", old_token)
    assert not is_valid_callback_token(keys.keys_for("k2"), "ps_abc", old_token)
    assert is_valid_callback_token(keys.keys_for("k2"), "ps_abc", callback_token("second-key", "ps_abc"))


def test_a_url_without_a_key_id_verifies_against_every_key_and_an_unknown_id_against_none():
    keys = rotated_keys()
    assert keys.keys_for(None) == ["second-key", "first-key"]
    for unknown in ("k3", "", "K1", "k1 ", "\ud800"):
        assert keys.keys_for(unknown) == []
    # Once k1 is dropped, URLs naming it are refused even with a once-valid token
    dropped = WebhookKeys.from_secret({"current_key_id": "k2", "k2": "second-key"})
    assert not is_valid_callback_token(
        dropped.keys_for("k1"), "ps_abc", callback_token("first-key", "ps_abc")
    )


@pytest.mark.parametrize("key_id", ["k 1", "k&1", "k" * 17, "ключ", ""], ids=str)
def test_a_key_id_that_cannot_travel_in_a_callback_url_is_refused(key_id):
    with pytest.raises(ValidationError, match="key id"):
        WebhookKeys(current_key_id=key_id, keys={key_id: SecretStr("x")})


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


def test_a_rotation_reaches_a_warm_environment_within_the_secret_cache_age():
    from qpay_common.adapters.aws.secrets import SECRET_MAX_AGE_SECONDS
    from qpay_common.composition import Refreshed

    # Given a warm environment that read the keys before a rotation
    secret = {"current_key_id": "k1", "k1": "first-key"}
    now = [1000.0]
    keys = Refreshed(lambda: WebhookKeys.from_secret(secret), SECRET_MAX_AGE_SECONDS, lambda: now[0])
    assert keys().current_key_id == "k1"
    # When k2 is added and made current
    secret.update({"current_key_id": "k2", "k2": "second-key"})
    now[0] += SECRET_MAX_AGE_SECONDS - 1
    assert keys().current_key_id == "k1"  # still the cached read
    now[0] += 1
    # Then new URLs are signed with k2 and callbacks naming k2 verify, without a new environment
    assert keys().current_key_id == "k2"
    assert is_valid_callback_token(keys().keys_for("k2"), "ps_abc", callback_token("second-key", "ps_abc"))


def test_a_warm_graph_signs_and_verifies_with_the_rotated_key_a_minute_after_the_rotation(monkeypatch):
    from qpay_common.composition import WEBHOOK_KEYS_REFRESH_SECONDS, Graph
    from qpay_common.domain.session import PaymentStatus
    from tests.fakes import FakeCache, FakePublisher, FakeQPay, FixedClock, InMemorySessions, unit_settings

    def callback_query(qpay, session):
        query = parse_qs(urlsplit(qpay.invoices[session.invoice_id]["callback_url"]).query)
        return query["token"][0], query["kid"][0]

    # Given a warm environment's graph whose webhook keys come from the environment (k1)
    monkeypatch.setenv("WEBHOOK_KEY_ID", "k1")
    monkeypatch.setenv("WEBHOOK_SECRET", "first-key")
    settings, clock, qpay = unit_settings(), FixedClock(), FakeQPay()
    graph = Graph(
        settings=settings,
        clock=clock,
        store=InMemorySessions(settings),
        cache=FakeCache(clock),
        qpay=qpay,
        publisher=FakePublisher(),
    )
    request = CreatePaymentRequest(amount=500)
    before, _ = graph.payment_creation.create_payment("alice", request, "https://shop.example")
    assert callback_query(qpay, before)[1] == "k1"
    # When k2 becomes current (k1 still accepted) and a minute passes
    monkeypatch.setenv("WEBHOOK_KEY_ID", "k2")
    monkeypatch.setenv("WEBHOOK_SECRET", "second-key")
    monkeypatch.setenv("WEBHOOK_PREVIOUS_SECRETS", "k1:first-key")
    clock.advance(seconds=WEBHOOK_KEYS_REFRESH_SECONDS)
    after, _ = graph.payment_creation.create_payment("alice", request, "https://shop.example")
    # Then the new invoice's URL is signed with k2, and callbacks on both URLs are accepted
    token, kid = callback_query(qpay, after)
    assert kid == "k2"
    assert graph.settlement.handle_callback(after.session_id, token, kid).status == PaymentStatus.PENDING
    old_token, old_kid = callback_query(qpay, before)
    assert (
        graph.settlement.handle_callback(before.session_id, old_token, old_kid).status
        == PaymentStatus.PENDING
    )
