"""`make token USER=alice`: a dev JWT the front door accepts, and that standard JWT libraries verify."""

import time

import jwt
import pytest

from local.dev_token import main, mint_token
from local.jwt_auth import JwtSettings, Unauthorized, verify_token

pytestmark = pytest.mark.unit


def test_cli_prints_a_token_for_the_user(capsys, monkeypatch):
    monkeypatch.delenv("LOCAL_JWT_SECRET", raising=False)
    monkeypatch.delenv("LOCAL_JWT_ISSUER", raising=False)
    monkeypatch.delenv("LOCAL_JWT_AUDIENCE", raising=False)

    assert main(["alice", "--minutes", "5"]) == 0

    printed = capsys.readouterr().out.strip()
    claims = verify_token(f"Bearer {printed}", JwtSettings())
    assert claims["sub"] == "alice"
    assert claims["iss"] == "qpay-local"
    assert claims["aud"] == "qpay-local"
    assert abs(claims["exp"] - (time.time() + 300)) < 5
    assert claims["iat"] <= time.time()
    # And it is an ordinary HS256 JWT
    assert jwt.get_unverified_header(printed)["alg"] == "HS256"


def test_environment_settings_are_used_for_signing(monkeypatch):
    monkeypatch.setenv("LOCAL_JWT_SECRET", "a-much-longer-secret-for-this-test-only")
    monkeypatch.setenv("LOCAL_JWT_AUDIENCE", "shop")

    token = mint_token("bob")

    claims = jwt.decode(
        token, "a-much-longer-secret-for-this-test-only", algorithms=["HS256"], audience="shop"
    )
    assert claims["sub"] == "bob"
    with pytest.raises(Unauthorized):
        verify_token(token, JwtSettings())


def test_negative_minutes_give_an_expired_token():
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(mint_token("alice", minutes=-1, settings=JwtSettings()), JwtSettings())


def test_scopes_go_in_the_scope_claim_the_front_door_checks(capsys):
    from local.jwt_auth import Forbidden, check_scopes

    assert main(["ops", "--scopes", "payments/admin,reports/read"]) == 0
    claims = verify_token(capsys.readouterr().out.strip(), JwtSettings())

    assert claims["scope"] == "payments/admin reports/read"
    check_scopes(claims, ("payments/admin",))
    assert main(["alice"]) == 0
    plain = verify_token(capsys.readouterr().out.strip(), JwtSettings())
    assert "scope" not in plain
    with pytest.raises(Forbidden):
        check_scopes(plain, ("payments/admin",))
