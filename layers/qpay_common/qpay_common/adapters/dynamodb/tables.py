"""pynamodb models of the three tables. Table names are bound from settings when a store
is built (bind()), never at import time."""

import functools
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from qpay_common.adapters.aws import clients as aws_clients
from qpay_common.settings import Settings

ModelT = TypeVar("ModelT", bound=Model)
CallT = TypeVar("CallT", bound=Callable[..., Any])

# DynamoDB's answers that mean "not now" rather than "no": throttling and internal errors, seen
# only once the SDK's own retries are spent, and a write meeting an in-flight transaction where
# no lost race is possible (the session store turns that one into StaleSession first).
TRANSIENT_CODES = frozenset(
    {
        "TransactionConflictException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


# A call DynamoDB refused for a moment is tried this often in all (on top of the SDK's own
# retries), then the caller hears StorageUnavailable. Every write is conditional, so a repeat of
# one that landed after all fails its condition and reads as a lost race, never a second write.
STORAGE_ATTEMPTS = 5
STORAGE_RETRY_SECONDS = 0.05
_JITTER = random.SystemRandom()


def storage_call(call: CallT) -> CallT:
    """`call`, tried again on DynamoDB's transient failures (throttling, internal errors, timeouts,
    lost connections), then raising the domain's StorageUnavailable, so a caller can tell
    "repeat it" from a bug."""
    from botocore.exceptions import BotoCoreError
    from pynamodb.exceptions import PynamoDBException

    from qpay_common.domain.errors import StorageUnavailable

    @functools.wraps(call)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, STORAGE_ATTEMPTS + 1):
            try:
                return call(*args, **kwargs)
            except PynamoDBException as exc:
                transient = exc.cause_response_code in TRANSIENT_CODES or isinstance(exc.cause, BotoCoreError)
                if not transient:
                    raise
                if attempt == STORAGE_ATTEMPTS:
                    raise StorageUnavailable() from exc
                time.sleep(STORAGE_RETRY_SECONDS * attempt * _JITTER.uniform(0.5, 1.5))
        raise AssertionError("unreachable")  # pragma: no cover

    return cast(CallT, guarded)


# What the by_status index copies besides its keys: the fields the operators' listing and summary
# read (admin_models.AdminPaymentItem), not the QR image or the Ebarimt overrides. Not `version`:
# it changes on every write (a lease bump too), so projecting it would write both indexes each
# time, and nothing read from an index is written back. DynamoDB allows at most 20 per index.
BY_STATUS_PROJECTED = (
    "user_id",
    "amount",
    "paid_amount",
    "currency",
    "description",
    "invoice_id",
    "payment_ids",
    "order_id",
    "updated_at",
    "expires_at",
    "paid_at",
    "cancelled_at",
    "expired_at",
    "processed_at",
    "late_payment",
    "failure_reason",
    "refund",
    "ebarimt_status",
)


# What GET /payments returns (api_models.PaymentView), the operators' listing by user reads (the
# by_status fields, as admin_models.AdminPaymentItem), and a PaymentSession needs besides the
# keys. The QR image, deeplinks, items and metadata stay out: writing them does not write the
# index. template.yaml declares the same list (a unit test keeps them equal).
BY_USER_ATTRIBUTES = (
    "status",
    *(name for name in BY_STATUS_PROJECTED if name != "user_id"),
    "ebarimt_receipt_id",
    "ebarimt_qr_data",
)


class SessionsByUser(GlobalSecondaryIndex["SessionItem"]):
    class Meta:
        index_name = "by_user"
        projection = IncludeProjection(non_attr_keys=list(BY_USER_ATTRIBUTES))

    user_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class SessionsByStatus(GlobalSecondaryIndex["SessionItem"]):
    """Every session by status, newest first: the operators' listing and summary, never a Scan.

    The partition key is the status itself, so DynamoDB moves a session between partitions when
    its status changes, with no index attribute to keep. One partition per status takes every
    change into that status: fine to about a thousand a second; a busier shop would shard it.
    """

    class Meta:
        index_name = "by_status"
        projection = IncludeProjection(list(BY_STATUS_PROJECTED))

    status = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class SessionsByEbarimtStatus(GlobalSecondaryIndex["SessionItem"]):
    """Sessions by receipt status, newest first (the operators' listing by ebarimt_status). Keys
    only: a listing reads the sessions of a page with BatchGetItem."""

    class Meta:
        index_name = "by_ebarimt_status"
        projection = KeysOnlyProjection()

    ebarimt_status = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class ReconcileDue(GlobalSecondaryIndex["SessionItem"]):
    class Meta:
        index_name = "reconcile_due"
        projection = KeysOnlyProjection()

    reconcile_shard = UnicodeAttribute(hash_key=True)
    next_check_at = NumberAttribute(range_key=True)


class PendingSince(GlobalSecondaryIndex["SessionItem"]):
    class Meta:
        index_name = "pending_since"
        projection = KeysOnlyProjection()

    pending_shard = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class EbarimtDue(GlobalSecondaryIndex["SessionItem"]):
    class Meta:
        index_name = "ebarimt_due"
        projection = KeysOnlyProjection()

    ebarimt_shard = UnicodeAttribute(hash_key=True)
    ebarimt_next_at = NumberAttribute(range_key=True)


class SessionItem(Model):
    class Meta:
        table_name = "unbound"

    session_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    status = UnicodeAttribute()
    version = VersionAttribute()
    amount = NumberAttribute()
    paid_amount = NumberAttribute(default=0)
    currency = UnicodeAttribute(default="MNT")
    description = UnicodeAttribute(null=True)
    items = JSONAttribute(null=True)
    metadata = JSONAttribute(null=True)
    ebarimt_overrides = JSONAttribute(null=True)
    invoice_id = UnicodeAttribute(null=True)
    qr_text = UnicodeAttribute(null=True)
    qr_image = UnicodeAttribute(null=True)
    short_url = UnicodeAttribute(null=True)
    deeplinks = JSONAttribute(null=True)
    payment_ids = ListAttribute(of=UnicodeAttribute, null=True)
    order_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    expires_at = UnicodeAttribute(null=True)
    paid_at = UnicodeAttribute(null=True)
    cancelled_at = UnicodeAttribute(null=True)
    expired_at = UnicodeAttribute(null=True)
    processed_at = UnicodeAttribute(null=True)
    late_payment = BooleanAttribute(null=True)
    failure_reason = UnicodeAttribute(null=True)
    invoice_cancelled_at = UnicodeAttribute(null=True)
    refund = JSONAttribute(null=True)
    # Epoch seconds; the table's TTL attribute. Only terminal (and abandoned CREATING) sessions.
    purge_at = NumberAttribute(null=True)
    # Whoever holds this lease publishes PaymentCompleted; others leave it to them (or reconcile).
    emit_lease_until = NumberAttribute(null=True)
    # Sparse index keys (work_queues.py): present only while a scheduled job has work here.
    reconcile_shard = UnicodeAttribute(null=True)
    next_check_at = NumberAttribute(null=True)
    reconcile_checks = NumberAttribute(null=True)
    grace_until = NumberAttribute(null=True)
    pending_shard = UnicodeAttribute(null=True)
    ebarimt_shard = UnicodeAttribute(null=True)
    ebarimt_next_at = NumberAttribute(null=True)
    ebarimt_status = UnicodeAttribute(null=True)
    ebarimt_receipt_id = UnicodeAttribute(null=True)
    ebarimt_qr_data = UnicodeAttribute(null=True)
    ebarimt_lottery = UnicodeAttribute(null=True)
    ebarimt_attempts = NumberAttribute(null=True)
    ebarimt_last_error = UnicodeAttribute(null=True)
    ebarimt_queued_at = UnicodeAttribute(null=True)
    ebarimt_registered_at = UnicodeAttribute(null=True)
    ebarimt_vat_amount = UnicodeAttribute(null=True)
    ebarimt_city_tax_amount = UnicodeAttribute(null=True)
    ebarimt_answer = JSONAttribute(null=True)

    by_user = SessionsByUser()
    by_status = SessionsByStatus()
    by_ebarimt_status = SessionsByEbarimtStatus()
    reconcile_due = ReconcileDue()
    pending_since = PendingSince()
    ebarimt_due = EbarimtDue()


class OrderItem(Model):
    """Orders (pk `order#<order_id>`) and settlement markers (pk `settlement#<payment_id>`)."""

    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    order_id = UnicodeAttribute()
    session_id = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    amount = NumberAttribute(null=True)
    paid_amount = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    payment_ids = ListAttribute(of=UnicodeAttribute, null=True)
    items = JSONAttribute(null=True)
    metadata = JSONAttribute(null=True)
    created_at = UnicodeAttribute()


class CacheItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    # Epoch seconds; the table's TTL attribute. Readers also check it: TTL deletes lazily.
    expires_at = NumberAttribute()
    data = JSONAttribute(null=True)
    # Lock owner, or a fingerprint of the cached token, for conditional deletes.
    tag = UnicodeAttribute(null=True)


def bind(model: type[ModelT], table_name: str, settings: Settings) -> type[ModelT]:
    """`model` bound to its table, served by the environment's one DynamoDB client."""
    meta: dict[str, Any] = {
        "table_name": table_name,
        "region": settings.aws_region,
        "host": settings.dynamodb_endpoint_url,
        # pynamodb's own client would be built with these; the shared one has the same limits.
        "connect_timeout_seconds": aws_clients.DYNAMODB_CONNECT_TIMEOUT_SECONDS,
        "read_timeout_seconds": aws_clients.DYNAMODB_READ_TIMEOUT_SECONDS,
        "max_retry_attempts": aws_clients.DYNAMODB_MAX_RETRY_ATTEMPTS,
        "max_pool_connections": aws_clients.DYNAMODB_MAX_POOL_CONNECTIONS,
    }
    # pynamodb copies indexes onto each subclass, so by_user follows the bound table.
    attrs: dict[str, Any] = {"Meta": type("Meta", (), meta), "__module__": model.__module__}
    bound = cast(type[ModelT], type(model.__name__, (model,), attrs))
    share_client(bound._get_connection().connection, settings)
    return bound


def connection(settings: Settings) -> Connection:
    """A pynamodb Connection (for transactions) on the environment's one DynamoDB client."""
    built = Connection(
        region=settings.aws_region,
        host=settings.dynamodb_endpoint_url,
        connect_timeout_seconds=aws_clients.DYNAMODB_CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds=aws_clients.DYNAMODB_READ_TIMEOUT_SECONDS,
        max_retry_attempts=aws_clients.DYNAMODB_MAX_RETRY_ATTEMPTS,
        max_pool_connections=aws_clients.DYNAMODB_MAX_POOL_CONNECTIONS,
    )
    share_client(built, settings)
    return built


def share_client(target: Connection, settings: Settings) -> None:
    """Serve `target` with the shared client instead of one pynamodb would build for it (a
    botocore session and client per model class: aws_clients.py says what that costs). Set now,
    at build time, so concurrent first requests (a job's pool) never build one each."""
    # pynamodb keeps the client in Connection._client and builds one only while that is unset;
    # there is no public way to hand it one.
    target._client = aws_clients.dynamodb_client(settings)
