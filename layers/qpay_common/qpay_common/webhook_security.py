"""The per-session secret in the callback URL. QPay callbacks carry no signature, so the URL we
give QPay carries an HMAC of the session id; only QPay (and we) know it."""

import base64
import hashlib
import hmac
from urllib.parse import urlencode

# A token is 43 characters (unpadded base64url of SHA-256); anything far longer is not one.
MAX_TOKEN_LENGTH = 128


def callback_token(secret: str, session_id: str) -> str:
    # surrogatepass: a session id from a hostile query may hold lone surrogates; it must still
    # hash (to a token nobody holds) rather than raise.
    message = session_id.encode("utf-8", "surrogatepass")
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_valid_callback_token(secret: str, session_id: str | None, token: str | None) -> bool:
    """Constant time over bytes: compare_digest raises TypeError on non-ASCII str, so a token
    from the query is checked for ASCII (which says nothing about the secret) and compared as bytes."""
    if not session_id or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return False
    expected = callback_token(secret, session_id).encode("ascii")
    return hmac.compare_digest(expected, token.encode("ascii"))


def callback_url(base_url: str, secret: str, session_id: str) -> str:
    query = urlencode({"session_id": session_id, "token": callback_token(secret, session_id)})
    return f"{base_url.rstrip('/')}/webhooks/qpay?{query}"
