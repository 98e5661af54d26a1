"""The per-session secret in the callback URL. QPay callbacks carry no signature, so the URL we
give QPay carries an HMAC of the session id; only QPay (and we) know it. URLs are signed with the
current webhook key and name it (`kid`), so a callback is checked against that one key; a URL
made before key ids existed (no `kid`) verifies against any key still in the secret
(credentials.py)."""

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import urlencode

# A token is 43 characters (unpadded base64url of SHA-256); anything far longer is not one.
MAX_TOKEN_LENGTH = 128


def callback_token(secret: str, session_id: str) -> str:
    # surrogatepass: a session id from a hostile query may hold lone surrogates; it must still
    # hash (to a token nobody holds) rather than raise.
    message = session_id.encode("utf-8", "surrogatepass")
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_valid_callback_token(secrets: Sequence[str], session_id: str | None, token: str | None) -> bool:
    """Constant time over bytes: compare_digest raises TypeError on non-ASCII str, so a token
    from the query is checked for ASCII (which says nothing about the secrets) and compared as
    bytes. Every key is compared (no early exit), so the time taken does not tell which matched."""
    if not session_id or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return False
    given = token.encode("ascii")
    matches = [
        hmac.compare_digest(callback_token(secret, session_id).encode("ascii"), given) for secret in secrets
    ]
    return any(matches)


def callback_url(base_url: str, secret: str, session_id: str, *, key_id: str | None = None) -> str:
    fields = {"session_id": session_id, "token": callback_token(secret, session_id)}
    if key_id is not None:
        fields["kid"] = key_id
    query = urlencode(fields)
    return f"{base_url.rstrip('/')}/webhooks/qpay?{query}"
