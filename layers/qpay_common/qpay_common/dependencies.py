"""Composition root: builds the service graph once per execution environment from settings.

Handlers ask for a use case with Powertools' `Depends(dependencies.<use case>)`, so a test
overrides it per resolver (`app.dependency_overrides`) instead of changing shared objects. An
environment serves one invocation at a time, but a scheduled job's thread pool shares the graph:
the lock keeps it to one build.
"""

import threading
from collections.abc import Callable
from functools import cache, wraps
from typing import Any, TypeVar

from qpay_common import aws_clients
from qpay_common.admin import AdminOperations
from qpay_common.admin_reports import AdminReports
from qpay_common.cache import CacheStore
from qpay_common.cancellation import Cancellation
from qpay_common.creation import PaymentCreation
from qpay_common.credentials import QPayCredentials, load_credentials
from qpay_common.ebarimt import EbarimtService
from qpay_common.events import EventPublisher
from qpay_common.qpay_client import QPayAuthClient, QPayClient, QPayTransport
from qpay_common.queries import Queries
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
def credentials() -> QPayCredentials:
    return load_credentials(settings())


def qpay_transport(config: Settings) -> QPayTransport:
    return QPayTransport(
        config.qpay_base_url,
        connect_timeout=config.qpay_connect_timeout_seconds,
        read_timeout=config.qpay_read_timeout_seconds,
        max_attempts=config.qpay_max_attempts,
        budget_seconds=config.qpay_call_budget_seconds,
    )


def token_provider(config: Settings, secrets: QPayCredentials) -> QPayTokenProvider:
    auth = QPayAuthClient(qpay_transport(config), secrets.client_id, secrets.client_secret.get_secret_value())
    return QPayTokenProvider(CacheStore(config), auth)


@once
def qpay_client() -> QPayClient:
    config = settings()
    return QPayClient(qpay_transport(config), token_provider(config, credentials()))


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
    return Settlement(credentials(), repository(), qpay_client(), event_publisher())


@once
def cancellation() -> Cancellation:
    return Cancellation(repository(), qpay_client(), settlement())


@once
def payment_creation() -> PaymentCreation:
    return PaymentCreation(settings(), credentials(), repository(), cache_store(), qpay_client())


@once
def queries() -> Queries:
    return Queries(settings(), repository(), cache_store(), settlement(), cancellation())


@once
def ebarimt() -> EbarimtService:
    return EbarimtService(settings(), repository(), qpay_client())


@once
def scheduled_jobs() -> ScheduledJobs:
    return ScheduledJobs(settings(), repository(), settlement(), cancellation(), ebarimt())


@once
def refunds() -> Refunds:
    return Refunds(credentials(), repository(), qpay_client(), event_publisher(), ebarimt())


@once
def admin_operations() -> AdminOperations:
    return AdminOperations(repository(), qpay_client(), settlement(), event_publisher())


@once
def admin_reports() -> AdminReports:
    return AdminReports(repository())


def reset() -> None:
    built: tuple[Any, ...] = (
        settings,
        credentials,
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
        refunds,
        admin_operations,
        admin_reports,
    )
    for cached in built:
        cached.cache_clear()
    aws_clients.reset()
