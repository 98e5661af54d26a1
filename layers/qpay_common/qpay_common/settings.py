"""Configuration, read from the environment once and validated (fail fast on a bad value).

Handlers never read os.environ; they get a Settings object. Secrets (QPay credentials, and the
webhook HMAC keys) come from two Secrets Manager secrets in AWS (QPAY_SECRET_ARN,
WEBHOOK_SECRET_ARN) and from the environment locally; see adapters/aws/secrets.py.
"""

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qpay_common.domain.errors import ConfigurationError

# QPAY_ENV picks one; QPAY_BASE_URL overrides it, with or without the /v2 (QPay documents the
# base as https://merchant.qpay.mn; the client adds /v2 when it is missing).
QPAY_BASE_URLS = {
    "live": "https://merchant.qpay.mn/v2",  # QPAY_ENV=live: real money
    "sandbox": "https://merchant-sandbox.qpay.mn/v2",  # QPAY_ENV=sandbox, the default
}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    sessions_table: str = Field(alias="SESSIONS_TABLE", min_length=1)
    orders_table: str = Field(alias="ORDERS_TABLE", min_length=1)
    cache_table: str = Field(alias="CACHE_TABLE", min_length=1)
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    aws_region: str = Field(alias="AWS_REGION", default="us-east-1")
    # Standard botocore variable names, so the local stack and tests can point at local engines.
    dynamodb_endpoint_url: str | None = Field(alias="AWS_ENDPOINT_URL_DYNAMODB", default=None)
    eventbridge_endpoint_url: str | None = Field(alias="AWS_ENDPOINT_URL_EVENTBRIDGE", default=None)
    sqs_endpoint_url: str | None = Field(alias="AWS_ENDPOINT_URL_SQS", default=None)

    qpay_env: Literal["sandbox", "live"] = Field(alias="QPAY_ENV", default="sandbox")
    qpay_base_url_override: str | None = Field(alias="QPAY_BASE_URL", default=None)
    qpay_invoice_code: str = Field(alias="QPAY_INVOICE_CODE", default="TEST_INVOICE", min_length=1)
    qpay_secret_arn: str | None = Field(alias="QPAY_SECRET_ARN", default=None)
    webhook_secret_arn: str | None = Field(alias="WEBHOOK_SECRET_ARN", default=None)
    qpay_connect_timeout_seconds: float = Field(alias="QPAY_CONNECT_TIMEOUT_SECONDS", default=3.05, gt=0)
    qpay_read_timeout_seconds: float = Field(alias="QPAY_READ_TIMEOUT_SECONDS", default=10.0, gt=0)
    # Idempotent QPay calls are tried at most this often, and all tries of one call must fit in
    # the budget, so a callback answers well inside API Gateway's 30 s limit.
    qpay_max_attempts: int = Field(alias="QPAY_MAX_ATTEMPTS", default=4, ge=1, le=10)
    qpay_call_budget_seconds: float = Field(alias="QPAY_CALL_BUDGET_SECONDS", default=20.0, gt=0)

    public_base_url: str | None = Field(alias="PUBLIC_BASE_URL", default=None)
    session_expiry_minutes: int = Field(alias="SESSION_EXPIRY_MINUTES", default=30, ge=1)
    # DynamoDB's TTL deletes a session this long after it ends: abandoned ones (cancelled,
    # expired, failed) after purge_after_days, paid ones (PROCESSED, REFUNDED) only after
    # paid_retention_days, so an operator can still refund or answer a dispute (card schemes
    # allow chargebacks for months).
    purge_after_days: int = Field(alias="PURGE_AFTER_DAYS", default=30, ge=1)
    paid_retention_days: int = Field(alias="PAID_RETENTION_DAYS", default=400, ge=1)
    # A client polling GET /payments/{id} causes at most one QPay payment check per this interval.
    status_poll_interval_seconds: int = Field(alias="STATUS_POLL_INTERVAL_SECONDS", default=5, ge=1)
    idempotency_ttl_hours: int = Field(alias="IDEMPOTENCY_TTL_HOURS", default=24, ge=1)
    # Reconcile keeps asking QPay about CANCELLED/EXPIRED/FAILED sessions this long (policy A).
    reconcile_grace_hours: int = Field(alias="RECONCILE_GRACE_HOURS", default=24, ge=1)
    # Once QPay confirmed an invoice cancelled, grace checks go on only this long (a payment that
    # raced the cancel); 0 ends them at once.
    reconcile_after_cancel_seconds: int = Field(alias="RECONCILE_AFTER_CANCEL_SECONDS", default=600, ge=0)
    # The reconcile dispatcher's queues (SQS) and lease: a queued session is not due again until
    # the lease ends, so it is never queued twice, and a lost message only delays it.
    reconcile_queue_url: str | None = Field(alias="RECONCILE_QUEUE_URL", default=None)
    reconcile_priority_queue_url: str | None = Field(alias="RECONCILE_PRIORITY_QUEUE_URL", default=None)
    reconcile_lease_seconds: int = Field(alias="RECONCILE_LEASE_SECONDS", default=900, ge=60)
    # At most this many messages wait in each queue; the dispatcher tops it up each run. Keep it
    # below what the workers drain within one lease, or leases run out while messages wait.
    reconcile_max_queued: int = Field(alias="RECONCILE_MAX_QUEUED", default=5000, ge=1)
    job_concurrency: int = Field(alias="JOB_CONCURRENCY", default=16, ge=1, le=64)
    # Scheduled jobs stop taking new work this long before their Lambda timeout: more than one
    # QPay call budget, so a session started last still finishes in time.
    job_safety_seconds: float = Field(alias="JOB_SAFETY_SECONDS", default=25.0, ge=0)

    ebarimt_enabled: bool = Field(alias="EBARIMT_ENABLED", default=False)
    ebarimt_receiver_type: Literal["CITIZEN", "COMPANY"] = Field(
        alias="EBARIMT_RECEIVER_TYPE", default="CITIZEN"
    )
    ebarimt_district_code: str = Field(alias="EBARIMT_DISTRICT_CODE", default="3505", pattern=r"^[0-9]{4}$")
    ebarimt_classification_code: str = Field(
        alias="EBARIMT_CLASSIFICATION_CODE", default="0000010", pattern=r"^[0-9]{7}$"
    )
    # A receipt QPay fails to register is retried (backoff up to hourly) this long after it was
    # queued (the payment, or an operator's re-queue), then GAVE_UP; a refund's cancel likewise.
    ebarimt_max_age_hours: int = Field(alias="EBARIMT_MAX_AGE_HOURS", default=72, ge=1, le=720)

    @field_validator(
        "dynamodb_endpoint_url",
        "eventbridge_endpoint_url",
        "sqs_endpoint_url",
        "reconcile_queue_url",
        "reconcile_priority_queue_url",
        "qpay_base_url_override",
        "qpay_secret_arn",
        "webhook_secret_arn",
        "public_base_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # CloudFormation cannot pass "no value": an empty parameter arrives as "".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def qpay_base_url(self) -> str:
        return (self.qpay_base_url_override or QPAY_BASE_URLS[self.qpay_env]).rstrip("/")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    source = os.environ if environ is None else environ
    try:
        return Settings.model_validate(dict(source))
    except ValidationError as exc:
        # Name the variables, never their values: some are secrets.
        problems = ", ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigurationError(f"invalid configuration: {problems}") from None
