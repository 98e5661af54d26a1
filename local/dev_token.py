"""Mint a development JWT the local front door accepts: `python -m local.dev_token alice [--minutes 60]
[--scopes payments/admin]`.

`make token USER=alice` runs this; `make token USER=ops SCOPES=payments/admin` mints an operator's
token for the /admin routes (scopes go in the `scope` claim, space separated, as OAuth servers
such as Cognito put them). The token is HS256-signed with LOCAL_JWT_SECRET and carries
LOCAL_JWT_ISSUER / LOCAL_JWT_AUDIENCE (defaults: local-dev-secret, qpay-local, qpay-local), the
same settings the front door verifies with.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from local.jwt_auth import JwtSettings, sign_claims


def mint_token(
    user_id: str,
    minutes: float = 60,
    *,
    settings: JwtSettings | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A signed token for `user_id` (the `sub` claim) valid for `minutes` (negative: already expired)."""
    settings = settings or JwtSettings.from_env()
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": user_id,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": issued_at,
        "exp": issued_at + int(minutes * 60),
    }
    claims.update(extra_claims or {})
    return sign_claims(claims, settings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.dev_token", description=__doc__.splitlines()[0])
    parser.add_argument("user", help="user id, becomes the token's sub claim")
    parser.add_argument("--minutes", type=float, default=60, help="lifetime (default 60)")
    parser.add_argument(
        "--scopes", default="", help="space- or comma-separated scopes, e.g. payments/admin (default none)"
    )
    args = parser.parse_args(argv)
    if not args.user.strip():
        parser.error("the user id must not be empty")
    scopes = args.scopes.replace(",", " ").split()
    extra = {"scope": " ".join(scopes)} if scopes else None
    sys.stdout.write(mint_token(args.user, args.minutes, extra_claims=extra) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
