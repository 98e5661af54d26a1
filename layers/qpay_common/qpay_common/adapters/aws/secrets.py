"""Secrets, in two parts with separate lifecycles: the QPay merchant credentials (only functions
that call QPay load them) and the webhook HMAC keys (only the functions that sign or check
callback URLs). In AWS each is a Secrets Manager secret (QPAY_SECRET_ARN, WEBHOOK_SECRET_ARN);
locally they come from the environment.

The webhook secret holds versioned keys (domain/callback_token.WebhookKeys). Warm functions see
a change within SECRET_MAX_AGE_SECONDS and a minute (composition.WEBHOOK_KEYS_REFRESH_SECONDS), so
rotating is: add a key; once every environment has it, make it current; drop the old one once no
open invoice carries it (README, "Operating it").
"""

import os
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from qpay_common.domain.callback_token import LOCAL_CURRENT_KEY_ID, WebhookKeys
from qpay_common.domain.errors import ConfigurationError
from qpay_common.observability import logger
from qpay_common.settings import Settings

SECRET_MAX_AGE_SECONDS = 300
# Locally: WEBHOOK_SECRET is the current key, its id WEBHOOK_KEY_ID (default "local");
# WEBHOOK_PREVIOUS_SECRETS (comma-separated) the ones still accepted, each `id:key` so the URLs
# that name it keep verifying (a bare key gets id previous-N and verifies only URLs without kid,
# or naming previous-N).
# The rotation keeps the current key and the one before it; more is left over from a rotation.
EXPECTED_MAX_KEYS = 2


class QPayCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    client_id: str
    client_secret: SecretStr


def load_qpay_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> QPayCredentials:
    try:
        if settings.qpay_secret_arn:
            return QPayCredentials.model_validate(_secret_json(settings, settings.qpay_secret_arn))
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
            keys = WebhookKeys.from_secret(_secret_json(settings, settings.webhook_secret_arn))
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
    current_key_id = source.get("WEBHOOK_KEY_ID") or LOCAL_CURRENT_KEY_ID
    keys: dict[str, object] = {}
    previous = [
        part.strip() for part in source.get("WEBHOOK_PREVIOUS_SECRETS", "").split(",") if part.strip()
    ]
    for number, entry in enumerate(previous, start=1):
        key_id, separator, key = entry.partition(":")
        keys.update({key_id.strip(): key.strip()} if separator else {f"previous-{number}": entry})
    keys[current_key_id] = source.get("WEBHOOK_SECRET")
    return WebhookKeys.model_validate({"current_key_id": current_key_id, "keys": keys})


# One provider per Secrets Manager client: Powertools caches each secret in its provider for
# SECRET_MAX_AGE_SECONDS, so it must outlive one call.
_provider_lock = threading.Lock()
_provider: Any = None


def _secrets_provider(settings: Settings) -> Any:
    global _provider
    # Imported here: only deployed functions pay for the parameters utility.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from qpay_common.adapters.aws.clients import secretsmanager_client

    client = secretsmanager_client(settings)
    with _provider_lock:
        if _provider is None or _provider.client is not client:
            _provider = SecretsProvider(boto3_client=client)
        return _provider


def _secret_json(settings: Settings, secret_arn: str) -> dict[str, object]:
    secret = _secrets_provider(settings).get(secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(secret, dict):
        raise ConfigurationError("a secret is not a JSON object")
    return secret
