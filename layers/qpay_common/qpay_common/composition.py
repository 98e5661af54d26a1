"""Composition root: the one wiring of the service graph, for the functions and the tests alike.

A Graph builds each part on first use from the parts it needs, once; any part can be given
instead (the unit tests give in-memory stores and fakes, `sharing()` swaps a part of a graph that
is running), and the rest is built around it exactly as in Lambda. Each use case's module is
imported only when that use case is first built, so a function's cold start pays for the use
cases it serves and no other.

Handlers ask for a use case with Powertools' `Depends(composition.<use case>)`, so a test can also
override one per resolver (`app.dependency_overrides`). An execution environment serves one
invocation at a time, but a scheduled job's thread pool shares the graph: a lock keeps each part
to one build.

Secrets are read when first used, not when the graph is built: a function that never calls QPay
(listing) never reads the QPay secret, and only the functions that sign or check callback URLs
read the webhook keys. template.yaml gives each function only the secrets it uses.
"""

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from qpay_common.adapters.aws import clients as aws_clients
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.settings import Settings, load_settings

if TYPE_CHECKING:
    from qpay_common.adapters.aws.secrets import QPayCredentials
    from qpay_common.adapters.qpay.client import QPayTransport
    from qpay_common.adapters.qpay.models import TokenGrant
    from qpay_common.domain.callback_token import WebhookKeys
    from qpay_common.domain.store import SessionStore
    from qpay_common.usecases.admin import AdminOperations
    from qpay_common.usecases.admin_reports import AdminReports
    from qpay_common.usecases.cancellation import Cancellation
    from qpay_common.usecases.creation import PaymentCreation
    from qpay_common.usecases.ebarimt import EbarimtService
    from qpay_common.usecases.jobs import ScheduledJobs
    from qpay_common.usecases.ports import Cache, EventPublisher, QPay, TaskQueues, WebhookKeySource
    from qpay_common.usecases.queries import Queries
    from qpay_common.usecases.reconcile import ReconcileDispatcher, ReconcileWorker
    from qpay_common.usecases.refunds import Refunds
    from qpay_common.usecases.settlement import FaultHook, Settlement

T = TypeVar("T")
_building = threading.RLock()
_UNBUILT: Any = object()

# Re-parsed every minute from the secret Powertools caches SECRET_MAX_AGE_SECONDS: a change to the
# secret reaches every warm environment within SECRET_MAX_AGE_SECONDS + a minute.
WEBHOOK_KEYS_REFRESH_SECONDS = 60


class part(Generic[T]):  # lower case: used as a decorator, like functools.cached_property
    """A part of the graph: built by the decorated method on first use, then kept (under the
    graph lock); a part given to the Graph is used instead."""

    def __init__(self, build: Callable[["Graph"], T]) -> None:
        self._build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, graph: None, owner: type) -> "part[T]": ...

    @overload
    def __get__(self, graph: "Graph", owner: type) -> T: ...

    def __get__(self, graph: "Graph | None", owner: type) -> "T | part[T]":
        if graph is None:
            return self
        with _building:
            built = graph._parts.get(self.name, _UNBUILT)
            if built is _UNBUILT:
                built = graph._parts[self.name] = self._build(graph)
            return built  # type: ignore[no-any-return]


class Refreshed(Generic[T]):
    """A value re-read every `max_age_seconds`, not once per environment, so a key rotation
    reaches warm environments."""

    def __init__(
        self, load: Callable[[], T], max_age_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._value: T | None = None
        self._expires = 0.0

    def expire(self) -> None:
        """Due again now (after a SnapStart restore, the timer started in the snapshot)."""
        with _building:
            self._expires = 0.0

    def __call__(self) -> T:
        with _building:
            now = self._clock()
            if self._value is None or now >= self._expires:
                self._value = self._load()
                self._expires = now + self._max_age_seconds
            return self._value


def qpay_transport(config: Settings) -> "QPayTransport":
    from qpay_common.adapters.qpay.client import QPayTransport
    from qpay_common.observability import qpay_latency

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

    def __init__(self, transport: "QPayTransport", credentials: Callable[[], "QPayCredentials"]) -> None:
        self._transport = transport
        self._credentials = credentials

    def _client(self) -> Any:
        from qpay_common.adapters.qpay.client import QPayAuthClient

        secrets = self._credentials()
        return QPayAuthClient(self._transport, secrets.client_id, secrets.client_secret.get_secret_value())

    def fetch_token(self) -> "TokenGrant":
        return self._client().fetch_token()  # type: ignore[no-any-return]

    def refresh_token(self, refresh_token: str) -> "TokenGrant":
        return self._client().refresh_token(refresh_token)  # type: ignore[no-any-return]


class Graph:
    """Every part a function may need. `Graph(**parts)` uses the given parts (by name) and builds
    the others from them."""

    def __init__(self, **parts: Any) -> None:
        unknown = set(parts) - PART_NAMES
        if unknown:
            raise TypeError(f"not parts of the graph: {sorted(unknown)}")
        self._parts: dict[str, Any] = dict(parts)

    def sharing(self, **parts: Any) -> "Graph":
        """A graph with this one's settings, clock and adapters (built now if need be) and the
        given parts instead; its use cases are built anew around them."""
        kept = {name: getattr(self, name) for name in ADAPTER_PARTS}
        return Graph(**{**kept, **parts})

    # Configuration and seams

    @part
    def settings(self) -> Settings:
        return load_settings()

    @part
    def clock(self) -> Clock:
        return SYSTEM_CLOCK

    @part
    def fault_hook(self) -> "FaultHook | None":
        """Crash-injection tests' seam in settlement; nothing in Lambda."""
        return None

    @part
    def emit_lease_seconds(self) -> float:
        from qpay_common.usecases.settlement import EMIT_LEASE_SECONDS

        return EMIT_LEASE_SECONDS

    # Adapters

    @part
    def qpay_credentials(self) -> "QPayCredentials":
        from qpay_common.adapters.aws.secrets import load_qpay_credentials

        return load_qpay_credentials(self.settings)

    @part
    def webhook_keys(self) -> "WebhookKeySource":
        from qpay_common.adapters.aws.secrets import load_webhook_keys

        def load() -> "WebhookKeys":
            return load_webhook_keys(self.settings)

        return Refreshed(load, WEBHOOK_KEYS_REFRESH_SECONDS, clock=self.clock.epoch)

    @part
    def store(self) -> "SessionStore":
        from qpay_common.adapters.dynamodb.session_store import DynamoDBSessionStore

        return DynamoDBSessionStore(self.settings)

    @part
    def cache(self) -> "Cache":
        from qpay_common.adapters.dynamodb.cache import DynamoDBCache

        return DynamoDBCache(self.settings, self.clock)

    @part
    def qpay(self) -> "QPay":
        from qpay_common.adapters.qpay.client import QPayClient
        from qpay_common.adapters.qpay.token_cache import QPayTokenProvider
        from qpay_common.observability import QPayCallMetrics

        transport = qpay_transport(self.settings)
        tokens = QPayTokenProvider(
            self.cache, _AuthOnFirstUse(transport, lambda: self.qpay_credentials), clock=self.clock
        )
        return QPayClient(transport, tokens, monitor=QPayCallMetrics())

    @part
    def publisher(self) -> "EventPublisher":
        from qpay_common.adapters.aws.events import EventBridgePublisher

        return EventBridgePublisher(self.settings)

    @part
    def task_queues(self) -> "TaskQueues":
        from qpay_common.adapters.aws.sqs import SQSReconcileQueues

        return SQSReconcileQueues(self.settings)

    # Use cases

    @part
    def settlement(self) -> "Settlement":
        from qpay_common.usecases.settlement import Settlement

        return Settlement(
            self.webhook_keys,
            self.store,
            self.qpay,
            self.publisher,
            clock=self.clock,
            fault_hook=self.fault_hook,
            emit_lease_seconds=self.emit_lease_seconds,
        )

    @part
    def cancellation(self) -> "Cancellation":
        from qpay_common.usecases.cancellation import Cancellation

        return Cancellation(
            self.store,
            self.qpay,
            self.settlement,
            clock=self.clock,
            checks_after_cancel_seconds=self.settings.reconcile_after_cancel_seconds,
        )

    @part
    def payment_creation(self) -> "PaymentCreation":
        from qpay_common.usecases.creation import PaymentCreation

        return PaymentCreation(
            self.settings, self.webhook_keys, self.store, self.cache, self.qpay, clock=self.clock
        )

    @part
    def queries(self) -> "Queries":
        from qpay_common.usecases.queries import Queries

        return Queries(
            self.settings, self.store, self.cache, self.settlement, self.cancellation, clock=self.clock
        )

    @part
    def ebarimt(self) -> "EbarimtService":
        from qpay_common.usecases.ebarimt import EbarimtService

        return EbarimtService(self.settings, self.store, self.qpay, clock=self.clock)

    @part
    def scheduled_jobs(self) -> "ScheduledJobs":
        from qpay_common.usecases.jobs import ScheduledJobs

        return ScheduledJobs(self.settings, self.store, self.cancellation, self.ebarimt, clock=self.clock)

    @part
    def reconcile_dispatcher(self) -> "ReconcileDispatcher":
        from qpay_common.usecases.reconcile import ReconcileDispatcher

        return ReconcileDispatcher(self.settings, self.store, self.task_queues, clock=self.clock)

    @part
    def reconcile_worker(self) -> "ReconcileWorker":
        from qpay_common.usecases.reconcile import ReconcileWorker

        return ReconcileWorker(self.settings, self.store, self.settlement, clock=self.clock)

    @part
    def refunds(self) -> "Refunds":
        from qpay_common.usecases.refunds import Refunds

        return Refunds(
            self.webhook_keys, self.store, self.qpay, self.publisher, self.ebarimt, clock=self.clock
        )

    @part
    def admin_operations(self) -> "AdminOperations":
        from qpay_common.usecases.admin import AdminOperations

        return AdminOperations(self.store, self.qpay, self.settlement, self.publisher)

    @part
    def admin_reports(self) -> "AdminReports":
        from qpay_common.usecases.admin_reports import AdminReports

        return AdminReports(self.store, clock=self.clock)


PART_NAMES = frozenset(name for name, value in vars(Graph).items() if isinstance(value, part))
# What `sharing()` keeps: everything but the use cases and the seams.
ADAPTER_PARTS = (
    "settings",
    "clock",
    "qpay_credentials",
    "webhook_keys",
    "store",
    "cache",
    "qpay",
    "publisher",
    "task_queues",
)

# The execution environment's graph: built on the first invocation, kept while it lives.
_graph: Graph | None = None


def graph() -> Graph:
    global _graph
    with _building:
        if _graph is None:
            _graph = Graph()
        return _graph


def build_for_snapshot(use_cases: list[Callable[[], object]]) -> None:
    """Build `use_cases` (functions of this module) and the SDK clients their adapters use, before
    a SnapStart snapshot (snapstart.py): parts only, no call made and no secret read."""
    for use_case in use_cases:
        use_case()
    built = graph()
    if "publisher" in built._parts:
        # The publisher builds its client on first use; the shared one is built now instead.
        aws_clients.events_client(built.settings)


def after_restore() -> None:
    """After a SnapStart restore: what the graph re-reads on a timer is due again."""
    with _building:
        parts = list(graph()._parts.values())
    for value in parts:
        if isinstance(value, Refreshed):
            value.expire()


def reset() -> None:
    """Forget the environment's graph and AWS clients (tests that change the environment)."""
    global _graph
    with _building:
        _graph = None
    aws_clients.reset()


# What handlers depend on (`Depends(composition.queries)`): one function per use case, so a test
# can override one by identity.


def settings() -> Settings:
    return graph().settings


def webhook_keys() -> "WebhookKeys":
    return graph().webhook_keys()


def settlement() -> "Settlement":
    return graph().settlement


def cancellation() -> "Cancellation":
    return graph().cancellation


def payment_creation() -> "PaymentCreation":
    return graph().payment_creation


def queries() -> "Queries":
    return graph().queries


def scheduled_jobs() -> "ScheduledJobs":
    return graph().scheduled_jobs


def reconcile_dispatcher() -> "ReconcileDispatcher":
    return graph().reconcile_dispatcher


def reconcile_worker() -> "ReconcileWorker":
    return graph().reconcile_worker


def refunds() -> "Refunds":
    return graph().refunds


def admin_operations() -> "AdminOperations":
    return graph().admin_operations


def admin_reports() -> "AdminReports":
    return graph().admin_reports


def ebarimt() -> "EbarimtService":
    return graph().ebarimt
