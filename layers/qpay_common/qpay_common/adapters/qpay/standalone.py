"""The QPay client outside Lambda: in a merchant's Django, FastAPI or worker process.

QPayClient needs only a TokenSource (`get_token`, `invalidate`). InProcessTokens keeps the token in
memory, shared by the threads of one process, refreshed before it expires; an app that runs many
processes implements the same two methods over its own cache (Django's cache, Redis) so they share
one token, as QPay asks. Nothing here imports boto3, pynamodb or DynamoDB settings.
"""

import threading

from qpay_common.adapters.qpay.client import QPayAuthClient, QPayClient, QPayTransport
from qpay_common.adapters.qpay.errors import QPayError
from qpay_common.adapters.qpay.models import TokenGrant
from qpay_common.clock import SYSTEM_CLOCK, Clock

REFRESH_MARGIN_SECONDS = 60


class InProcessTokens:
    """One QPay access token per process: fetched once, refreshed `margin` seconds early with the
    refresh token (a new one is fetched if that fails), dropped when QPay answers 401."""

    def __init__(
        self,
        auth: QPayAuthClient,
        *,
        clock: Clock = SYSTEM_CLOCK,
        refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self._auth = auth
        self._clock = clock
        self._margin = refresh_margin_seconds
        self._lock = threading.Lock()
        self._access: tuple[str, float] | None = None
        self._refresh: tuple[str, float] | None = None

    def get_token(self) -> str:
        with self._lock:
            now = self._clock.epoch()
            if self._access is not None and self._access[1] - self._margin > now:
                return self._access[0]
            grant = self._renewed(now)
            self._keep(grant, now)
            return grant.access_token

    def invalidate(self, access_token: str) -> None:
        with self._lock:
            if self._access is not None and self._access[0] == access_token:
                self._access = None

    def _renewed(self, now: float) -> TokenGrant:
        if self._refresh is not None and self._refresh[1] - self._margin > now:
            try:
                return self._auth.refresh_token(self._refresh[0])
            except QPayError:
                self._refresh = None  # revoked or expired early: ask for a new pair
        return self._auth.fetch_token()

    def _keep(self, grant: TokenGrant, now: float) -> None:
        self._access = (grant.access_token, grant.access_expires_at(now))
        refresh_expires_at = grant.refresh_expires_at(now)
        if grant.refresh_token is not None and refresh_expires_at is not None:
            self._refresh = (grant.refresh_token, refresh_expires_at)


def standalone_client(
    base_url: str,
    client_id: str,
    client_secret: str,
    *,
    connect_timeout: float = 3.05,
    read_timeout: float = 10.0,
    max_attempts: int = 4,
    budget_seconds: float = 20.0,
) -> QPayClient:
    """A QPay client with in-process tokens, e.g. `standalone_client("https://merchant.qpay.mn",
    "MY_CLIENT_ID", "secret")` (the base with or without /v2). The same timeouts, retries and typed
    errors as in Lambda."""
    transport = QPayTransport(
        base_url,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        budget_seconds=budget_seconds,
    )
    return QPayClient(transport, InProcessTokens(QPayAuthClient(transport, client_id, client_secret)))
