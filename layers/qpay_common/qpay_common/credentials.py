"""QPay credentials and the webhook HMAC key: Secrets Manager in AWS, environment locally."""

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from qpay_common.errors import ConfigurationError
from qpay_common.settings import Settings

SECRET_MAX_AGE_SECONDS = 300


class QPayCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    client_id: str
    client_secret: SecretStr
    webhook_secret: SecretStr


def load_credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> QPayCredentials:
    try:
        if settings.qpay_secret_arn:
            # Imported here: only deployed functions pay for the parameters utility.
            from aws_lambda_powertools.utilities import parameters

            secret = parameters.get_secret(
                settings.qpay_secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS
            )
            return QPayCredentials.model_validate(secret)
        source = os.environ if environ is None else environ
        return QPayCredentials.model_validate(
            {
                "client_id": source.get("QPAY_CLIENT_ID"),
                "client_secret": source.get("QPAY_CLIENT_SECRET"),
                "webhook_secret": source.get("WEBHOOK_SECRET"),
            }
        )
    except ValidationError as exc:
        missing = ", ".join(str(err["loc"][0]) for err in exc.errors())
        raise ConfigurationError(f"QPay credentials incomplete: {missing}") from None
