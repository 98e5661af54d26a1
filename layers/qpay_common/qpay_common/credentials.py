"""Secrets, in two parts with separate lifecycles: the QPay merchant credentials (only functions
that call QPay load them) and the webhook HMAC keys (only the functions that sign or check
callback URLs). In AWS each is a Secrets Manager secret (QPAY_SECRET_ARN, WEBHOOK_SECRET_ARN);
locally they come from the environment.

The webhook secret holds versioned keys, `{"current_key_id": "k2", "k1": "...", "k2": "..."}`:
new callback URLs are signed with the current key, and a token made with any key in the secret
verifies. Rotating is: add a key, make it current, and drop the old one once no open invoice
carries it (README, "Deploy").
"""

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from qpay_common.errors import ConfigurationError
from qpay_common.observability import logger
from qpay_common.settings import Settings

SECRET_MAX_AGE_SECONDS = 300
CURRENT_KEY_FIELD = "current_key_id"
# Local key ids: WEBHOOK_SECRET is the current key, WEBHOOK_PREVIOUS_SECRETS (comma-separated)
# the ones still accepted.
LOCAL_CURRENT_KEY_ID = "local"
# The rotation keeps the current key and the one before it; more is left over from a rotation.
EXPECTED_MAX_KEYS = 2


class QPayCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    client_id: str
    client_secret: SecretStr


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

    @classmethod
    def from_secret(cls, secret: Mapping[str, object]) -> "WebhookKeys":
        keys = {key_id: value for key_id, value in secret.items() if key_id != CURRENT_KEY_FIELD}
        return cls.model_validate({"current_key_id": secret.get(CURRENT_KEY_FIELD), "keys": keys})

    @classmethod
    def single(cls, key: str) -> "WebhookKeys":
        return cls(current_key_id=LOCAL_CURRENT_KEY_ID, keys={LOCAL_CURRENT_KEY_ID: SecretStr(key)})


def load_qpay_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> QPayCredentials:
    try:
        if settings.qpay_secret_arn:
            return QPayCredentials.model_validate(_secret_json(settings.qpay_secret_arn))
        source = os.environ if environ is None else environ
        return QPayCredentials.model_validate(
            {"client_id": source.get("QPAY_CLIENT_ID"), "client_secret": source.get("QPAY_CLIENT_SECRET")}
        )
    except ValidationError as exc:
        missing = ", ".join(str(err["loc"][0]) for err in exc.errors())
        raise ConfigurationError(f"QPay credentials incomplete: {missing}") from None


def load_webhook_keys(settings: Settings, environ: Mapping[str, str] | None = None) -> WebhookKeys:
    try:
        if settings.webhook_secret_arn:
            keys = WebhookKeys.from_secret(_secret_json(settings.webhook_secret_arn))
        else:
            keys = _local_webhook_keys(os.environ if environ is None else environ)
    except ValidationError as exc:
        # Field names only, never values.
        problems = ", ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigurationError(f"webhook keys invalid: {problems}") from None
    if len(keys.keys) > EXPECTED_MAX_KEYS:
        logger.warning("The webhook secret holds more keys than a rotation needs; drop the oldest")
    return keys


def _local_webhook_keys(source: Mapping[str, str]) -> WebhookKeys:
    keys: dict[str, object] = {LOCAL_CURRENT_KEY_ID: source.get("WEBHOOK_SECRET")}
    previous = [
        part.strip() for part in source.get("WEBHOOK_PREVIOUS_SECRETS", "").split(",") if part.strip()
    ]
    keys.update({f"previous-{number}": key for number, key in enumerate(previous, start=1)})
    return WebhookKeys.model_validate({"current_key_id": LOCAL_CURRENT_KEY_ID, "keys": keys})


def _secret_json(secret_arn: str) -> dict[str, object]:
    # Imported here: only deployed functions pay for the parameters utility.
    from aws_lambda_powertools.utilities import parameters

    secret = parameters.get_secret(secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(secret, dict):
        raise ConfigurationError("a secret is not a JSON object")
    return secret
