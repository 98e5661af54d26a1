"""The only module that speaks HTTP to QPay.

Every call has a connect/read timeout and an overall budget, both cut to what is left of the
running Lambda invocation (deadlines.py). Idempotent calls are retried with
full-jitter backoff on connection errors, timeouts, 429 and 5xx. Invoice creation is not retried
once the request may have reached QPay (a read timeout or a 5xx could mean it was created), only
when it certainly did not (connect timeout, 429).

Each call is named by its operation (`payment_check`, `create_invoice`, ...) to a monitor, which
in Lambda counts it and its failure once, here (composition.QPAY_MONITOR); the use cases only
decide what a failure means for them.
"""

import functools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, cast

import requests
from pydantic import BaseModel, ValidationError

from qpay_common import deadlines
from qpay_common.adapters.qpay.errors import (
    QPayAuthError,
    QPayError,
    QPayNoReceipt,
    QPayRejected,
    QPayTransportError,
    QPayUnexpectedAnswer,
)
from qpay_common.adapters.qpay.models import (
    EbarimtReceipt,
    FullInvoiceRequest,
    Invoice,
    InvoiceDetails,
    InvoiceRequest,
    PaymentCheck,
    PaymentDetails,
    PaymentList,
    TokenGrant,
    error_code_of,
    without_receiver,
)
from qpay_common.observability import logger

BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 2.0
PAGE_LIMIT = 100
MAX_PAGES = 20

ModelT = TypeVar("ModelT", bound=BaseModel)

# Retry jitter from the OS, not random's module state: under SnapStart every execution
# environment restored from one snapshot would share that state and retry in lockstep.
_JITTER = random.SystemRandom()


def _parse(model: type[ModelT], body: Any, what: str) -> ModelT:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # Field paths only, never values: QPay bodies can carry tokens and personal data.
        fields = sorted({".".join(str(part) for part in error["loc"]) or "body" for error in exc.errors()})
        raise QPayUnexpectedAnswer(
            f"QPay answered {what} that cannot be read ({', '.join(fields)})"
        ) from None


class TokenSource(Protocol):
    def get_token(self) -> str: ...

    def invalidate(self, access_token: str) -> None: ...


class CallMonitor(Protocol):
    """Told of each QPay call by operation, and of each that failed (after its retries)."""

    def called(self, operation: str) -> None: ...

    def failed(self, operation: str, error: QPayError) -> None: ...


# requests keeps 10 connections per host by default; a job's pool has up to 64 threads (the
# JOB_CONCURRENCY limit) sharing one transport, and past 10 each call would open a new TCP (and,
# to QPay, TLS) connection and throw it away.
POOL_CONNECTIONS = 64


def _pooled_session() -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_CONNECTIONS)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


API_ROOT = "/v2"


def v2_root(base_url: str) -> str:
    """The merchant API v2's root from QPay's base as documented (`https://merchant.qpay.mn`) or
    from the v2 root itself (`https://merchant.qpay.mn/v2`): every path is under /v2."""
    stripped = base_url.rstrip("/")
    return stripped if stripped.endswith(API_ROOT) else stripped + API_ROOT


class QPayTransport:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        budget_seconds: float,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        """`observe(milliseconds)` is told how long each answered request took (the QPayLatency
        metric in Lambda; nothing outside it)."""
        self.base_url = v2_root(base_url)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.budget_seconds = budget_seconds
        self.session = session or _pooled_session()
        self._sleep = sleep
        self._observe = observe

    def send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json_body: Any = None,
        bearer: str | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + self.budget_seconds
        invocation_left = deadlines.seconds_left()
        if invocation_left is not None:
            deadline = min(deadline, time.monotonic() + invocation_left)
        headers = {"Accept": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        url = f"{self.base_url}{path}"
        last_error: QPayError = QPayTransportError(f"QPay {method} {path}: no attempt made")
        for attempt in range(1, self.max_attempts + 1):
            remaining = deadline - time.monotonic()
            if not idempotent and remaining < self.connect_timeout + self.read_timeout:
                # A call that may create something (an invoice, a receipt) is only started, or
                # retried after a connect timeout, if it can run to its read timeout: cut short,
                # QPay might create it with nobody left to record it.
                logger.warning(
                    "QPay call not started: too little time left",
                    extra={"qpay_path": path, "seconds_left": round(max(remaining, 0.0), 3)},
                )
                if attempt == 1:
                    last_error = QPayTransportError(f"QPay {method} {path}: not started, too little time")
                break
            if remaining <= 0.05:
                break
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json_body,
                    headers=headers,
                    auth=basic_auth,
                    timeout=(min(self.connect_timeout, remaining), min(self.read_timeout, remaining)),
                )
            except requests.ConnectTimeout:
                # The request never left: always safe to try again.
                last_error = QPayTransportError(f"QPay {method} {path}: connect timeout")
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_error = QPayTransportError(f"QPay {method} {path}: {type(exc).__name__}")
                if not idempotent:
                    raise last_error from None
            else:
                if self._observe is not None:
                    self._observe((time.monotonic() - started) * 1000)
                if response.status_code < 400:
                    return _json_or_empty(response)
                last_error = _error_from(response, method, path)
                retryable = response.status_code == 429 or (response.status_code >= 500 and idempotent)
                if not retryable:
                    raise last_error
            logger.warning(
                "QPay call failed, will retry",
                extra={"qpay_path": path, "attempt": attempt, "error": str(last_error)},
            )
            if attempt < self.max_attempts:
                pause = _JITTER.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))
                self._sleep(max(0.0, min(pause, deadline - time.monotonic() - 0.05)))
        raise last_error


def _json_or_empty(response: requests.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        raise QPayTransportError(
            f"QPay answered {response.status_code} with a body that is not JSON", status=response.status_code
        ) from None


def _error_from(response: requests.Response, method: str, path: str) -> QPayError:
    try:
        body = response.json()
    except ValueError:
        body = None
    code = error_code_of(body)
    message = f"QPay {method} {path} answered {response.status_code}" + (f" {code}" if code else "")
    if response.status_code == 401:
        return QPayAuthError(message, status=401, code=code)
    if response.status_code == 429 or response.status_code >= 500:
        return QPayTransportError(message, status=response.status_code, code=code)
    return QPayRejected(message, status=response.status_code, code=code)


class QPayAuthClient:
    """/auth/token and /auth/refresh: used by the token cache only."""

    def __init__(self, transport: QPayTransport, client_id: str, client_secret: str) -> None:
        self._transport = transport
        self._basic = (client_id, client_secret)

    def fetch_token(self) -> TokenGrant:
        body = self._transport.send("POST", "/auth/token", idempotent=True, basic_auth=self._basic)
        return _parse(TokenGrant, body, "a token")

    def refresh_token(self, refresh_token: str) -> TokenGrant:
        body = self._transport.send("POST", "/auth/refresh", idempotent=True, bearer=refresh_token)
        return _parse(TokenGrant, body, "a token")


ResultT = TypeVar("ResultT")
ArgsP = ParamSpec("ArgsP")


def operation(
    name: str,
) -> Callable[
    [Callable[Concatenate["QPayClient", ArgsP], ResultT]], Callable[Concatenate["QPayClient", ArgsP], ResultT]
]:
    """Names a QPayClient method to the client's monitor: told once per call, and once more if
    the call fails in any way (no answer, a refusal, an answer that cannot be read)."""

    def named(
        method: Callable[Concatenate["QPayClient", ArgsP], ResultT],
    ) -> Callable[Concatenate["QPayClient", ArgsP], ResultT]:
        @functools.wraps(method)
        def monitored(self: "QPayClient", *args: ArgsP.args, **kwargs: ArgsP.kwargs) -> ResultT:
            monitor = self._monitor
            if monitor is not None:
                monitor.called(name)
            try:
                return method(self, *args, **kwargs)
            except QPayError as exc:
                if monitor is not None:
                    monitor.failed(name, exc)
                raise

        return cast(Callable[Concatenate["QPayClient", ArgsP], ResultT], monitored)

    return named


class QPayClient:
    def __init__(
        self, transport: QPayTransport, tokens: TokenSource, *, monitor: CallMonitor | None = None
    ) -> None:
        self._transport = transport
        self._tokens = tokens
        self._monitor = monitor

    def _call(self, method: str, path: str, *, idempotent: bool, json_body: Any = None) -> Any:
        token = self._tokens.get_token()
        try:
            return self._transport.send(
                method, path, idempotent=idempotent, json_body=json_body, bearer=token
            )
        except QPayAuthError:
            # Expired or revoked: drop it for every function sharing the cache, retry once.
            self._tokens.invalidate(token)
            token = self._tokens.get_token()
            return self._transport.send(
                method, path, idempotent=idempotent, json_body=json_body, bearer=token
            )

    @operation("create_invoice")
    def create_invoice(self, request: InvoiceRequest) -> Invoice:
        body = self._call("POST", "/invoice", idempotent=False, json_body=request.model_dump())
        return _parse(Invoice, body, "an invoice")

    @operation("get_invoice")
    def get_invoice(self, invoice_id: str) -> InvoiceDetails:
        body = self._call("GET", f"/invoice/{invoice_id}", idempotent=True)
        return _parse(InvoiceDetails, body, "an invoice")

    @operation("cancel_invoice")
    def cancel_invoice(self, invoice_id: str) -> None:
        self._call("DELETE", f"/invoice/{invoice_id}", idempotent=True)

    @operation("get_payment")
    def get_payment(self, payment_id: str) -> PaymentDetails:
        body = self._call("GET", f"/payment/{payment_id}", idempotent=True)
        return _parse(PaymentDetails, body, "a payment")

    @operation("payment_check")
    def check_payment(self, invoice_id: str) -> PaymentCheck:
        rows: list[Any] = []
        count = 0
        for page in range(1, MAX_PAGES + 1):
            body = self._call(
                "POST",
                "/payment/check",
                idempotent=True,
                json_body={
                    "object_type": "INVOICE",
                    "object_id": invoice_id,
                    "offset": {"page_number": page, "page_limit": PAGE_LIMIT},
                },
            )
            page_check = _parse(PaymentCheck, body, "a payment check")
            rows.extend(page_check.rows)
            count = max(count, page_check.count)
            if len(page_check.rows) < PAGE_LIMIT or len(rows) >= count:
                break
        return PaymentCheck(count=count, rows=rows)

    @operation("create_ebarimt")
    def create_ebarimt(self, payload: dict[str, Any]) -> EbarimtReceipt:
        # One attempt per call: the Ebarimt job retries across runs with its own backoff and
        # records each failure, so an in-call retry would only hide them.
        body = self._call("POST", "/ebarimt_v3/create", idempotent=False, json_body=payload)
        receipt = _parse(EbarimtReceipt, body, "an ebarimt receipt")
        receipt = receipt.model_copy(update={"answer": without_receiver(body)})
        reason = receipt.not_registered_reason()
        if reason is not None:
            # A 200 is not a receipt. A QPay code in the body (EBARIMT_NOT_REGISTERED, ...) is the
            # better reason: it says whether trying again can help.
            code = error_code_of(body) or reason
            raise QPayNoReceipt(
                f"QPay POST /ebarimt_v3/create answered without a registered receipt: {code}", code=code
            )
        return receipt

    # The rest of the merchant API (operators' tools and merchants' own apps).

    @operation("create_invoice")
    def create_full_invoice(self, request: FullInvoiceRequest) -> Invoice:
        """The full form: lines, receiver data, expiry, partial/exceed limits, Ebarimt 3.0 fields.
        Not retried once it may have reached QPay, like the simple form: reuse the same
        `sender_invoice_no` to try again (QPay refuses a second invoice with it)."""
        body = self._call("POST", "/invoice", idempotent=False, json_body=request.to_body())
        return _parse(Invoice, body, "an invoice")

    @operation("list_payments")
    def list_payments(
        self,
        object_type: Literal["INVOICE", "MERCHANT", "QR"],
        object_id: str | None = None,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        page_number: int = 1,
        page_limit: int = PAGE_LIMIT,
    ) -> PaymentList:
        """One page of payments: of an invoice code (INVOICE), a QR code (QR), or the whole
        merchant (MERCHANT) between two moments."""
        request: dict[str, Any] = {
            "object_type": object_type,
            "offset": {"page_number": page_number, "page_limit": page_limit},
        }
        if object_id is not None:
            request["object_id"] = object_id
        if start_date is not None:
            request["start_date"] = _qpay_moment(start_date)
        if end_date is not None:
            request["end_date"] = _qpay_moment(end_date)
        body = self._call("POST", "/payment/list", idempotent=True, json_body=request)
        return _parse(PaymentList, body, "a payment list")

    def list_merchant_payments(self, start_date: datetime, end_date: datetime) -> list[PaymentDetails]:
        """Every payment the merchant received in the window (all pages, up to MAX_PAGES)."""
        rows: list[PaymentDetails] = []
        for page in range(1, MAX_PAGES + 1):
            listed = self.list_payments(
                "MERCHANT", start_date=start_date, end_date=end_date, page_number=page
            )
            rows.extend(listed.rows)
            if len(listed.rows) < PAGE_LIMIT or len(rows) >= listed.count:
                break
        return rows

    @operation("cancel_payment")
    def cancel_payment(self, payment_id: str, note: str, callback_url: str | None = None) -> None:
        """Void a card payment (QPay: card payments only). Not retried once it may have reached
        QPay: read the payment (get_payment) to learn whether an unanswered call took effect."""
        self._reverse("cancel", payment_id, note, callback_url)

    @operation("refund_payment")
    def refund_payment(self, payment_id: str, note: str, callback_url: str | None = None) -> None:
        """Refund a card payment (QPay: card payments only; a QR/P2P transfer is refused). Not
        retried once it may have reached QPay: read the payment to learn whether it took effect."""
        self._reverse("refund", payment_id, note, callback_url)

    def _reverse(self, action: str, payment_id: str, note: str, callback_url: str | None) -> None:
        request: dict[str, Any] = {"note": note}
        if callback_url is not None:
            request["callback_url"] = callback_url
        self._call("DELETE", f"/payment/{action}/{payment_id}", idempotent=False, json_body=request)

    @operation("cancel_ebarimt")
    def cancel_ebarimt(self, payment_id: str) -> EbarimtReceipt:
        """Cancel the Ebarimt 3.0 receipt of a payment; cancelling a cancelled receipt is a no-op."""
        body = self._call("DELETE", f"/ebarimt_v3/{payment_id}", idempotent=True)
        return _parse(EbarimtReceipt, body, "an ebarimt receipt")


def _qpay_moment(moment: datetime) -> str:
    """QPay's date form ("2026-11-22 10:00:00"), in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
