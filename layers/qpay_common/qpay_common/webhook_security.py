"""The per-session secret in the callback URL. QPay callbacks carry no signature, so the URL we
give QPay carries an HMAC of the session id; only QPay (and we) know it. URLs are signed with the
current webhook key; a token made with any key still in the secret verifies (credentials.py)."""

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import urlencode


def callback_token(secret: str, session_id: str) -> str:
    digest = hmac.new(secret.encode(), session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_valid_callback_token(secrets: Sequence[str], session_id: str | None, token: str | None) -> bool:
    if not session_id or not token:
        return False
    # Every key is compared (no early exit), so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(callback_token(secret, session_id), token) for secret in secrets]
    return any(matches)


def callback_url(base_url: str, secret: str, session_id: str) -> str:
    query = urlencode({"session_id": session_id, "token": callback_token(secret, session_id)})
    return f"{base_url.rstrip('/')}/webhooks/qpay?{query}"
