"""The QPay access token, shared by every function through the cache table.

QPay asks merchants not to fetch a token per call. Cold Lambdas starting together would each
fetch one, so a conditional-put lock with a short TTL lets one of them fetch while the others
re-read the cache; after a bounded wait a waiter fetches directly rather than fail the request.
"""

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from qpay_common import deadlines
from qpay_common.adapters.qpay.errors import QPayError
from qpay_common.adapters.qpay.models import TokenGrant
from qpay_common.clock import SYSTEM_CLOCK, Clock
from qpay_common.observability import count, logger
from qpay_common.usecases.ports import Cache

TOKEN_KEY = "token#qpay"
LOCK_KEY = "lock#token"
REFRESH_MARGIN_SECONDS = 60
LOCK_TTL_SECONDS = 10
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05


class TokenIssuer(Protocol):
    """QPay's /auth endpoints (qpay_client.QPayAuthClient)."""

    def fetch_token(self) -> TokenGrant: ...

    def refresh_token(self, refresh_token: str) -> TokenGrant: ...


def fingerprint(access_token: str) -> str:
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


class QPayTokenProvider:
    def __init__(
        self,
        cache: Cache,
        auth: TokenIssuer,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._cache = cache
        self._auth = auth
        self._clock = clock
        self._sleep = sleep
        self._wait_seconds = wait_seconds
        # The token this execution environment last read or fetched, and until when it is good:
        # one read of the cache table per token, not per QPay call (a reconcile worker makes
        # thousands). A 401 drops it, as it drops the shared one.
        self._known: tuple[str, float] | None = None

    def get_token(self) -> str:
        cached = self._fresh_token()
        if cached is not None:
            return cached
        owner = uuid.uuid4().hex
        now = self._clock.epoch()
        if self._cache.put_if_absent(LOCK_KEY, {}, expires_at=now + LOCK_TTL_SECONDS, tag=owner):
            try:
                # Another holder may have stored a token between our read and our lock.
                cached = self._fresh_token()
                return cached if cached is not None else self._fetch_and_store()
            finally:
                self._cache.delete(LOCK_KEY, tag=owner)
        # Waiting must leave the invocation time for the call the token is for.
        left = deadlines.seconds_left()
        wait = self._wait_seconds if left is None else min(self._wait_seconds, left / 2)
        deadline = self._clock.epoch() + wait
        while self._clock.epoch() < deadline:
            self._sleep(POLL_SECONDS)
            cached = self._fresh_token()
            if cached is not None:
                return cached
        logger.warning("QPay token lock holder did not deliver in time; fetching directly")
        return self._fetch_and_store()

    def invalidate(self, access_token: str) -> None:
        """Drop the cached token if it is still the one QPay refused (not a newer one)."""
        known = self._known
        if known is not None and known[0] == access_token:
            self._known = None
        self._cache.delete(TOKEN_KEY, tag=fingerprint(access_token))

    def _fresh_token(self) -> str | None:
        known = self._known
        if known is not None and known[1] - REFRESH_MARGIN_SECONDS > self._clock.epoch():
            return known[0]
        found = self._cache.get(TOKEN_KEY)
        if found is None:
            return None
        data, _ = found
        access_token = data.get("access_token")
        expires_at = data.get("access_expires_at", 0)
        if not access_token or expires_at - REFRESH_MARGIN_SECONDS <= self._clock.epoch():
            return None
        self._known = (str(access_token), float(expires_at))
        return str(access_token)

    def _fetch_and_store(self) -> str:
        now = self._clock.epoch()
        grant = self._refresh_or_fetch(now)
        access_expires_at = grant.access_expires_at(now)
        refresh_expires_at = grant.refresh_expires_at(now)
        self._cache.put(
            TOKEN_KEY,
            {
                "access_token": grant.access_token,
                "access_expires_at": access_expires_at,
                "refresh_token": grant.refresh_token,
                "refresh_expires_at": refresh_expires_at,
            },
            # Keep the item while the refresh token can still be used.
            expires_at=max(access_expires_at, refresh_expires_at or 0),
            tag=fingerprint(grant.access_token),
        )
        self._known = (grant.access_token, float(access_expires_at))
        count("TokenFetched")
        return grant.access_token

    def _refresh_or_fetch(self, now: float) -> TokenGrant:
        found = self._cache.get(TOKEN_KEY)
        if found is not None:
            data, _ = found
            refresh_token = data.get("refresh_token")
            refresh_expires_at = data.get("refresh_expires_at") or 0
            if refresh_token and refresh_expires_at - REFRESH_MARGIN_SECONDS > now:
                try:
                    return self._auth.refresh_token(str(refresh_token))
                except QPayError as exc:
                    # QPay_API.md: if refresh fails, fall back to /auth/token.
                    logger.info("QPay token refresh failed; fetching a new token", extra={"error": str(exc)})
        return self._auth.fetch_token()
