"""The per-session secret in the callback URL. QPay callbacks carry no signature, so the URL we
give QPay carries an HMAC of the session id; only QPay (and we) know it.

The webhook keys are versioned, `{"current_key_id": "k2", "k1": "...", "k2": "..."}`: new callback
URLs are signed with the current key and carry its id (`kid=k2`); a callback is checked against the
key it names, and one that names a key no longer held is refused. URLs from before key ids (no
`kid`) verify against any key still held. Where the keys come from: adapters/aws/secrets.py.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

# A token is 43 characters (unpadded base64url of SHA-256); anything far longer is not one.
MAX_TOKEN_LENGTH = 128
CURRENT_KEY_FIELD = "current_key_id"
LOCAL_CURRENT_KEY_ID = "local"
# Key ids travel in every callback URL (QPay allows 255 characters): short and URL-safe.
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,16}")


class WebhookKeys(BaseModel):
    model_config = ConfigDict(frozen=True)

    current_key_id: str
    keys: dict[str, SecretStr]

    @model_validator(mode="after")
    def _current_key_exists(self) -> "WebhookKeys":
        if self.current_key_id not in self.keys:
            raise ValueError("current_key_id names no key")
        if any(not key.get_secret_value() for key in self.keys.values()):
            raise ValueError("a webhook key is empty")
        if any(not KEY_ID_PATTERN.fullmatch(key_id) for key_id in self.keys):
            raise ValueError("a key id is not 1-16 of A-Z a-z 0-9 _ -")
        return self

    @property
    def signing_key(self) -> str:
        return self.keys[self.current_key_id].get_secret_value()

    @property
    def verification_keys(self) -> list[str]:
        """The current key first, then the others still accepted."""
        others = [
            key.get_secret_value() for key_id, key in self.keys.items() if key_id != self.current_key_id
        ]
        return [self.signing_key, *others]

    def keys_for(self, key_id: str | None) -> list[str]:
        """The keys a callback URL's token may be made with: the one its `kid` names, none if
        that key is gone (or never was), every key if the URL predates key ids."""
        if key_id is None:
            return self.verification_keys
        key = self.keys.get(key_id)
        return [key.get_secret_value()] if key is not None else []

    @classmethod
    def from_secret(cls, secret: Mapping[str, object]) -> "WebhookKeys":
        keys = {key_id: value for key_id, value in secret.items() if key_id != CURRENT_KEY_FIELD}
        return cls.model_validate({"current_key_id": secret.get(CURRENT_KEY_FIELD), "keys": keys})

    @classmethod
    def single(cls, key: str) -> "WebhookKeys":
        return cls(current_key_id=LOCAL_CURRENT_KEY_ID, keys={LOCAL_CURRENT_KEY_ID: SecretStr(key)})


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
