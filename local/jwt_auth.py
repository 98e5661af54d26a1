"""The local stand-in for the HTTP API JWT authorizer, and the signing of dev tokens.

In AWS the authorizer checks a token from the real identity provider (issuer and audience from
template.yaml). Locally the same checks run against an HS256 key: signature, `iss`, `aud`, an
unexpired `exp` (and `nbf` if present), plus `sub` because every authenticated route uses it as
the user id. A request that fails gets 401 before any handler runs, as in AWS.

Signing uses PyJWS (PyJWT's JWS layer) with an HMAC algorithm that skips one advisory: the
default LOCAL_JWT_SECRET is a short, public, development-only key, and PyJWT would otherwise warn
on every request. The claim checks are spelled out below rather than left to PyJWT's defaults,
so what the local authorizer accepts is visible in one place.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jwt import PyJWS
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import PyJWTError

DEFAULT_SECRET = "local-dev-secret"
DEFAULT_ISSUER = "qpay-local"
DEFAULT_AUDIENCE = "qpay-local"
ALGORITHM = "HS256"


class _DevSecretHMAC(HMACAlgorithm):
    def check_key_length(self, key: bytes) -> str | None:
        return None


_jws = PyJWS(algorithms=[])
_jws.register_algorithm(ALGORITHM, _DevSecretHMAC(HMACAlgorithm.SHA256))


@dataclass(frozen=True)
class JwtSettings:
    secret: str = DEFAULT_SECRET
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JwtSettings:
        env = os.environ if env is None else env
        return cls(
            secret=env.get("LOCAL_JWT_SECRET") or DEFAULT_SECRET,
            issuer=env.get("LOCAL_JWT_ISSUER") or DEFAULT_ISSUER,
            audience=env.get("LOCAL_JWT_AUDIENCE") or DEFAULT_AUDIENCE,
        )


class Unauthorized(Exception):
    """The token is missing or invalid; the reason is for the stack's log, never the client."""


class Forbidden(Exception):
    """The token is valid but lacks every scope the route requires."""


def sign_claims(claims: Mapping[str, Any], settings: JwtSettings) -> str:
    payload = json.dumps(dict(claims), separators=(",", ":")).encode()
    return _jws.encode(payload, settings.secret, algorithm=ALGORITHM, headers={"typ": "JWT"})


def verify_token(
    authorization: str | None, settings: JwtSettings, now: float | None = None
) -> dict[str, Any]:
    """Return the token's claims or raise Unauthorized.

    Like the HTTP API authorizer, the identity source value may carry a `Bearer ` prefix.
    """
    if not authorization or not authorization.strip():
        raise Unauthorized("no Authorization header")
    token = authorization.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    try:
        payload = _jws.decode(token, settings.secret, algorithms=[ALGORITHM])
        claims = json.loads(payload)
    except (PyJWTError, ValueError) as error:
        raise Unauthorized(f"{type(error).__name__}: {error}") from error
    if not isinstance(claims, dict):
        raise Unauthorized("the token's payload is not a JSON object")
    _check_claims(claims, settings, time.time() if now is None else now)
    return claims


def _numeric(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unauthorized(f"{name} is not a NumericDate")
    return float(value)


def _check_claims(claims: Mapping[str, Any], settings: JwtSettings, now: float) -> None:
    for required in ("exp", "sub", "iss", "aud"):
        if required not in claims:
            raise Unauthorized(f"the token has no {required} claim")
    if _numeric(claims, "exp") <= now:
        raise Unauthorized("the token has expired")
    if "nbf" in claims and _numeric(claims, "nbf") > now:
        raise Unauthorized("the token is not valid yet (nbf)")
    if claims["iss"] != settings.issuer:
        raise Unauthorized(f"issuer {claims['iss']!r} is not {settings.issuer!r}")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if settings.audience not in audiences:
        raise Unauthorized(f"audience {claims['aud']!r} does not include {settings.audience!r}")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise Unauthorized("sub must be a non-empty string")


def token_scopes(claims: Mapping[str, Any]) -> list[str]:
    """Scopes from `scope` (space separated, OAuth) or `scp` (list), as the authorizer reads them."""
    scopes = claims.get("scope", claims.get("scp", []))
    if isinstance(scopes, str):
        return scopes.split()
    return [str(scope) for scope in scopes] if isinstance(scopes, list) else []


def check_scopes(claims: Mapping[str, Any], required: tuple[str, ...]) -> None:
    if required and not set(required) & set(token_scopes(claims)):
        raise Forbidden(f"token has none of the scopes {list(required)}")


def claims_as_strings(claims: Mapping[str, Any]) -> dict[str, str]:
    """How the HTTP API authorizer hands claims to the integration: every value a string."""
    strings = {}
    for name, value in claims.items():
        if isinstance(value, bool):
            strings[name] = "true" if value else "false"
        elif isinstance(value, list):
            strings[name] = "[" + " ".join(str(item) for item in value) + "]"
        elif isinstance(value, dict):
            strings[name] = json.dumps(value, separators=(",", ":"))
        else:
            strings[name] = str(value)
    return strings
