"""Composition root: builds the service graph once per execution environment from settings.

Handlers ask for a use case with Powertools' `Depends(dependencies.<use case>)`, so a test
overrides it per resolver (`app.dependency_overrides`) instead of changing shared objects. An
environment serves one invocation at a time, but a scheduled job's thread pool shares the graph:
the lock keeps it to one build.

Secrets are read when first used, not when the graph is built: a function that never calls QPay
(listing) never reads the QPay secret, and only the functions that sign or check callback URLs
read the webhook keys. template.yaml gives each function only the secrets it uses.
"""

import threading
import time
from collections.abc import Callable
from functools import cache, wraps
from typing import Any, TypeVar

from qpay_common import aws_clients
from qpay_common.admin import AdminOperations
from qpay_common.admin_reports import AdminReports
from qpay_common.cache import CacheStore
from qpay_common.cancellation import Cancellation
from qpay_common.creation import PaymentCreation
from qpay_common.credentials import (
    QPayCredentials,
    WebhookKeys,
    load_qpay_credentials,
    load_webhook_keys,
)
from qpay_common.ebarimt import EbarimtService
from qpay_common.events import EventPublisher
from qpay_common.observability import qpay_latency
from qpay_common.qpay_client import QPayAuthClient, QPayClient, QPayTransport
from qpay_common.qpay_models import TokenGrant
from qpay_common.queries import Queries
from qpay_common.reconcile import ReconcileDispatcher, ReconcileWorker
from qpay_common.reconcile_queues import ReconcileQueues
from qpay_common.refunds import Refunds
from qpay_common.repository import SessionsRepository
from qpay_common.scheduled import ScheduledJobs
from qpay_common.settings import Settings, load_settings
from qpay_common.settlement import Settlement
from qpay_common.token_cache import QPayTokenProvider

T = TypeVar("T")
_building = threading.RLock()


def once(factory: Callable[[], T]) -> Callable[[], T]:
    cached = cache(factory)

    @wraps(factory)
    def get() -> T:
        with _building:
            return cached()

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return get


@once
def settings() -> Settings:
    return load_settings()


@once
def qpay_credentials() -> QPayCredentials:
    return load_qpay_credentials(settings())


class _Refreshed:
    """A value re-read every `max_age_seconds`, not once per environment, so a key rotation
    reaches warm environments."""

    def __init__(
        self,
        load: Callable[[], WebhookKeys],
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._value: WebhookKeys | None = None
        self._expires = 0.0

    def __call__(self) -> WebhookKeys:
        with _building:
            now = self._clock()
            if self._value is None or now >= self._expires:
                self._value = self._load()
                self._expires = now + self._max_age_seconds
            return self._value

    def cache_clear(self) -> None:
        with _building:
            self._value = None


# Re-parsed every minute from the secret Powertools caches SECRET_MAX_AGE_SECONDS: a change to the
# secret reaches every warm environment within SECRET_MAX_AGE_SECONDS + a minute.
WEBHOOK_KEYS_REFRESH_SECONDS = 60
webhook_keys = _Refreshed(lambda: load_webhook_keys(settings()), WEBHOOK_KEYS_REFRESH_SECONDS)


def qpay_transport(config: Settings) -> QPayTransport:
    return QPayTransport(
        config.qpay_base_url,
        connect_timeout=config.qpay_connect_timeout_seconds,
        read_timeout=config.qpay_read_timeout_seconds,
        max_attempts=config.qpay_max_attempts,
        budget_seconds=config.qpay_call_budget_seconds,
        observe=qpay_latency,
    )


class _AuthOnFirstUse:
    """QPay's /auth endpoints with the merchant credentials read on the first token fetch."""

    def __init__(self, transport: QPayTransport, credentials: Callable[[], QPayCredentials]) -> None:
        self._transport = transport
        self._credentials = credentials

    def _client(self) -> QPayAuthClient:
        secrets = self._credentials()
        return QPayAuthClient(self._transport, secrets.client_id, secrets.client_secret.get_secret_value())

    def fetch_token(self) -> TokenGrant:
        return self._client().fetch_token()

    def refresh_token(self, refresh_token: str) -> TokenGrant:
        return self._client().refresh_token(refresh_token)


def token_provider(config: Settings, credentials: Callable[[], QPayCredentials]) -> QPayTokenProvider:
    return QPayTokenProvider(CacheStore(config), _AuthOnFirstUse(qpay_transport(config), credentials))


@once
def qpay_client() -> QPayClient:
    config = settings()
    return QPayClient(qpay_transport(config), token_provider(config, qpay_credentials))


@once
def repository() -> SessionsRepository:
    return SessionsRepository(settings())


@once
def cache_store() -> CacheStore:
    return CacheStore(settings())


@once
def event_publisher() -> EventPublisher:
    return EventPublisher(settings())


@once
def settlement() -> Settlement:
    return Settlement(webhook_keys, repository(), qpay_client(), event_publisher())


@once
def cancellation() -> Cancellation:
    return Cancellation(
        repository(),
        qpay_client(),
        settlement(),
        checks_after_cancel_seconds=settings().reconcile_after_cancel_seconds,
    )


@once
def payment_creation() -> PaymentCreation:
    return PaymentCreation(settings(), webhook_keys, repository(), cache_store(), qpay_client())


@once
def queries() -> Queries:
    return Queries(settings(), repository(), cache_store(), settlement(), cancellation())


@once
def ebarimt() -> EbarimtService:
    return EbarimtService(settings(), repository(), qpay_client())


@once
def scheduled_jobs() -> ScheduledJobs:
    return ScheduledJobs(settings(), repository(), cancellation(), ebarimt())


@once
def reconcile_dispatcher() -> ReconcileDispatcher:
    return ReconcileDispatcher(settings(), repository(), ReconcileQueues(settings()))


@once
def reconcile_worker() -> ReconcileWorker:
    return ReconcileWorker(settings(), repository(), settlement())


@once
def refunds() -> Refunds:
    return Refunds(webhook_keys, repository(), qpay_client(), event_publisher(), ebarimt())


@once
def admin_operations() -> AdminOperations:
    return AdminOperations(repository(), qpay_client(), settlement(), event_publisher())


@once
def admin_reports() -> AdminReports:
    return AdminReports(repository())


def reset() -> None:
    built: tuple[Any, ...] = (
        settings,
        qpay_credentials,
        webhook_keys,
        qpay_client,
        repository,
        cache_store,
        event_publisher,
        settlement,
        cancellation,
        payment_creation,
        queries,
        ebarimt,
        scheduled_jobs,
        reconcile_dispatcher,
        reconcile_worker,
        refunds,
        admin_operations,
        admin_reports,
    )
    for cached in built:
        cached.cache_clear()
    aws_clients.reset()
