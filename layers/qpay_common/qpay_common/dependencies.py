"""Composition root: builds the service graph once per Lambda container from settings.

Tests call reset() after changing the environment, or pass their own parts to the classes.
"""

import threading
from collections.abc import Callable
from functools import cache, wraps
from typing import Any, TypeVar

from qpay_common.cache import CacheStore
from qpay_common.credentials import QPayCredentials, load_credentials
from qpay_common.ebarimt import EbarimtService
from qpay_common.events import EventPublisher
from qpay_common.payments import PaymentsService
from qpay_common.qpay_client import QPayAuthClient, QPayClient, QPayTransport
from qpay_common.repository import SessionsRepository
from qpay_common.scheduled import ScheduledJobs
from qpay_common.settings import Settings, load_settings
from qpay_common.token_cache import QPayTokenProvider

T = TypeVar("T")
# One build even when threads (the local stack, a job's pool) ask at once: several graphs would
# each create their own AWS clients, which is slow.
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
def payments_service() -> PaymentsService:
    config = settings()
    return PaymentsService(
        config, credentials(), repository(), CacheStore(config), qpay_client(), EventPublisher(config)
    )


@once
def scheduled_jobs() -> ScheduledJobs:
    config = settings()
    ebarimt = EbarimtService(config, repository(), qpay_client())
    return ScheduledJobs(config, repository(), payments_service(), ebarimt)


def reset() -> None:
    built: tuple[Any, ...] = (
        settings,
        credentials,
        qpay_client,
        repository,
        payments_service,
        scheduled_jobs,
    )
    for cached in built:
        cached.cache_clear()
