"""The simulated QPay merchant: invoices, payments, tokens, e-receipts, faults and call statistics.

Everything lives behind one lock. Critical sections are short and never sleep or do I/O, so the HTTP
layer can deliver a callback whose handler calls straight back into the simulator. Methods take the
parsed JSON body of a request and return the JSON payload of the response; a refusal is raised as
`QPayError` carrying QPay's status and error body.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from datetime import time as day_time
from decimal import Decimal, InvalidOperation
from typing import Any

from local.qpay_simulator.qr import bank_app_links, build_qr_text, qr_png_base64

logger = logging.getLogger("local.qpay_simulator")

DEFAULT_CLIENT_ID = "TEST_MERCHANT"
DEFAULT_CLIENT_SECRET = "local-sim-secret"
DEFAULT_INVOICE_CODE = "TEST_INVOICE"

MAX_INVOICE_AMOUNT = 1_000_000_000
TOKEN_LIFETIME_S = 24 * 3600
DURATION_FORM_LIFETIME_S = 3600
REFRESH_LIFETIME_S = 48 * 3600
SENDER_INVOICE_NO_MAX = 45
DESCRIPTION_MAX = 255
CALLBACK_URL_MAX = 255

# Full-form invoice fields QPay documents; kept and shown by the control API, otherwise inert.
_INVOICE_FULL_FORM_FIELDS = (
    "sender_staff_code",
    "sender_terminal_code",
    "invoice_receiver_data",
    "enable_expiry",
    "expiry_date",
    "invoice_due_date",
    "allow_partial",
    "minimum_amount",
    "allow_exceed",
    "maximum_amount",
    "note",
    "tax_type",
    "calculate_vat",
    "district_code",
    "lines",
    "transactions",
)
_FAULT_RULE_FIELDS = {"path", "method", "status", "error", "delay_ms", "expires_in", "times"}
_PAYMENT_TYPES = ("P2P", "CARD")
_RECEIVER_TYPES = ("CITIZEN", "COMPANY")


class QPayError(Exception):
    """A refusal, with the HTTP status and the exact error body QPay would send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


# Real QPay puts the error code in three different places depending on the endpoint; clients must
# read all three. See the package docstring for which endpoint uses which.
def error_in_error(status: int, code: str, message: str) -> QPayError:
    return QPayError(status, {"error": code, "message": message})


def error_in_message(status: int, code: str) -> QPayError:
    return QPayError(status, {"message": code})


def error_in_error_code(status: int, code: str, message: str) -> QPayError:
    return QPayError(status, {"error_code": code, "message": message})


def _invalid(message: str) -> QPayError:
    # The code is the simulator's choice: public sources show no code for plain field validation.
    return error_in_error(400, "VALIDATION_ERROR", message)


def _money(amount: int) -> str:
    return f"{amount}.00"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _jwt_like(claims: dict[str, Any]) -> str:
    """Looks like QPay's RS256 JWT so clients that log or size-check tokens behave; never verified."""
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{_b64url(secrets.token_bytes(32))}"


def _parse_amount(value: Any, name: str = "amount") -> int:
    """A positive whole number of MNT, given as a number or a numeric string ("15000", "15000.00")."""
    if isinstance(value, bool):
        raise _invalid(f"{name} must be a positive whole number")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise _invalid(f"{name} must be a positive whole number") from None
    # MNT requests carry whole numbers; refusing fractions keeps clients from relying on them.
    if not number.is_finite() or number <= 0 or number != number.to_integral_value():
        raise _invalid(f"{name} must be a positive whole number")
    return int(number)


def _required_text(body: dict[str, Any], name: str, max_length: int | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{name} is required")
    if max_length is not None and len(value) > max_length:
        raise _invalid(f"{name} must be at most {max_length} characters")
    return value


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{name} must be a string")
    return value


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"{name} must be a positive integer")
    return value


def _page(body: dict[str, Any]) -> tuple[int, int]:
    offset = body.get("offset") or {}
    if not isinstance(offset, dict):
        raise _invalid("offset must be an object")
    return (
        _positive_int(offset.get("page_number", 1), "offset.page_number"),
        _positive_int(offset.get("page_limit", 100), "offset.page_limit"),
    )


def _parse_moment(value: Any, name: str, end_of_day: bool) -> datetime | None:
    """Dates as QPay clients send them: "2026-11-22", "2026-11-22 10:00:00" or ISO 8601; naive is UTC."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a date string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(f"{name} is not a date") from None
    if len(value.strip()) == 10 and end_of_day:
        moment = datetime.combine(moment.date(), day_time.max)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TokenPolicy:
    """How long a new access token lives and whether `expires_in` is sent as a duration or an epoch."""

    lifetime_s: int = TOKEN_LIFETIME_S
    as_duration: bool = False


@dataclass
class FaultRule:
    path: str
    method: str | None = None
    status: int | None = None
    error: str | None = None
    delay_ms: int = 0
    expires_in: str | int | None = None
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def token_policy(self) -> TokenPolicy:
        if self.expires_in == "duration":
            return TokenPolicy(lifetime_s=DURATION_FORM_LIFETIME_S, as_duration=True)
        assert isinstance(self.expires_in, int)
        return TokenPolicy(lifetime_s=self.expires_in)

    @classmethod
    def parse(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict):
            raise _invalid("each rule must be an object")
        unknown = set(raw) - _FAULT_RULE_FIELDS
        if unknown:
            raise _invalid(f"unknown rule fields: {', '.join(sorted(unknown))}")
        path = raw.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise _invalid("rule.path must be a path starting with /")
        method = raw.get("method")
        if method is not None and not isinstance(method, str):
            raise _invalid("rule.method must be a string")
        status = raw.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise _invalid("rule.status must be an integer")
        if status is not None and not 100 <= status <= 599:
            raise _invalid("rule.status must be an HTTP status")
        error = raw.get("error")
        if error is not None and not isinstance(error, str):
            raise _invalid("rule.error must be a string")
        delay_ms = raw.get("delay_ms", 0)
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int | float) or delay_ms < 0:
            raise _invalid("rule.delay_ms must be a non-negative number")
        expires_in = raw.get("expires_in")
        if expires_in is not None and expires_in != "duration":
            expires_in = _positive_int(expires_in, "rule.expires_in")
        times = raw.get("times")
        if times is not None:
            times = _positive_int(times, "rule.times")
        if status is None and not delay_ms and expires_in is None:
            raise _invalid("a rule needs status, delay_ms or expires_in")
        return cls(
            path=path,
            method=method.upper() if method else None,
            status=status,
            error=error,
            delay_ms=int(delay_ms),
            expires_in=expires_in,
            times=times,
        )


@dataclass(frozen=True)
class FaultDecision:
    """What the injected faults make of one request."""

    delay_s: float = 0.0
    status: int | None = None
    error: str | None = None
    token_policy: TokenPolicy = field(default_factory=TokenPolicy)


@dataclass
class Invoice:
    invoice_id: str
    invoice_code: str
    sender_invoice_no: str
    invoice_receiver_code: str
    invoice_description: str
    amount: int
    callback_url: str
    qr_text: str
    short_url: str
    created_at: datetime
    sender_branch_code: str | None = None
    full_form: dict[str, Any] = field(default_factory=dict)
    status: str = "OPEN"
    payment_ids: list[str] = field(default_factory=list)


@dataclass
class Payment:
    payment_id: str
    invoice_id: str
    amount: int
    payment_type: str
    paid_at: datetime
    status: str = "PAID"
    wallet: str = "Khan bank"


@dataclass(frozen=True)
class SimulatedPayment:
    """A payment the control API recorded, and where to deliver its callback (None: no callback)."""

    payment_id: str
    invoice_id: str
    callback_url: str | None
    callback_method: str


class SimulatorState:
    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        invoice_code: str = DEFAULT_INVOICE_CODE,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.invoice_code = invoice_code
        self._lock = threading.Lock()
        self._forget_everything()

    def _forget_everything(self) -> None:
        self._invoices: dict[str, Invoice] = {}
        self._sender_invoice_nos: set[str] = set()
        self._payments: dict[str, Payment] = {}
        self._receipts: dict[str, dict[str, Any]] = {}
        self._access_tokens: dict[str, float] = {}
        self._refresh_tokens: dict[str, float] = {}
        self._faults: list[FaultRule] = []
        self._calls: Counter[str] = Counter()
        self._tokens_issued = 0
        self._callbacks_attempted = 0
        self._callbacks_succeeded = 0
        self._ebarimt_registered = True

    # Requests and faults

    def begin_request(self, call_key: str, method: str, path: str, issues_tokens: bool) -> FaultDecision:
        """Counts the call and applies the fault rules that match it (each use spends one of `times`)."""
        delay_ms = 0
        status: int | None = None
        error: str | None = None
        policy: TokenPolicy | None = None
        with self._lock:
            self._calls[call_key] += 1
            for rule in self._faults:
                if not rule.matches(method, path):
                    continue
                applied = False
                if rule.delay_ms:
                    delay_ms += rule.delay_ms
                    applied = True
                if rule.status is not None and status is None:
                    status, error = rule.status, rule.error
                    applied = True
                if rule.expires_in is not None and issues_tokens and policy is None:
                    policy = rule.token_policy()
                    applied = True
                if applied and rule.times is not None:
                    rule.times -= 1
        return FaultDecision(
            delay_s=delay_ms / 1000, status=status, error=error, token_policy=policy or TokenPolicy()
        )

    def add_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        raw_rules = body.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise _invalid("rules must be a non-empty list")
        rules = [FaultRule.parse(raw) for raw in raw_rules]
        with self._lock:
            self._faults.extend(rules)
            return self._fault_listing()

    def list_faults(self) -> dict[str, Any]:
        with self._lock:
            return self._fault_listing()

    def clear_faults(self) -> dict[str, Any]:
        with self._lock:
            self._faults.clear()
            return self._fault_listing()

    def _fault_listing(self) -> dict[str, Any]:
        return {"rules": [asdict(rule) for rule in self._faults]}

    # Auth

    def authenticate_client(self, client_id: str, client_secret: str) -> None:
        id_ok = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        if not (id_ok and secret_ok):
            raise error_in_error(401, "AUTHENTICATION_FAILED", "Invalid client credentials")

    def issue_token(self, policy: TokenPolicy) -> dict[str, Any]:
        now = time.time()
        expires_at = now + policy.lifetime_s
        refresh_expires_at = now + REFRESH_LIFETIME_S
        session_state = str(uuid.uuid4())
        common = {"iat": int(now), "sid": session_state, "azp": self.client_id, "iss": "qpay-simulator"}
        access_token = _jwt_like(
            {**common, "typ": "Bearer", "exp": int(expires_at), "jti": str(uuid.uuid4())}
        )
        refresh_token = _jwt_like(
            {**common, "typ": "Refresh", "exp": int(refresh_expires_at), "jti": str(uuid.uuid4())}
        )
        with self._lock:
            self._access_tokens[access_token] = expires_at
            self._refresh_tokens[refresh_token] = refresh_expires_at
            self._tokens_issued += 1
        return {
            "token_type": "bearer",
            "access_token": access_token,
            # Epochs by default, as captured sandbox responses show; durations when a fault asks.
            "expires_in": policy.lifetime_s if policy.as_duration else int(expires_at),
            "refresh_token": refresh_token,
            "refresh_expires_in": REFRESH_LIFETIME_S if policy.as_duration else int(refresh_expires_at),
            "scope": "get_token",
            "not-before-policy": "0",
            "session_state": session_state,
        }

    def refresh_token(self, refresh_token: str | None, policy: TokenPolicy) -> dict[str, Any]:
        with self._lock:
            expires_at = self._refresh_tokens.get(refresh_token or "")
        if expires_at is None or expires_at <= time.time():
            raise error_in_error(401, "AUTHENTICATION_FAILED", "Refresh token is invalid or expired")
        return self.issue_token(policy)

    def require_access_token(self, access_token: str | None) -> None:
        with self._lock:
            expires_at = self._access_tokens.get(access_token or "")
        if expires_at is None or expires_at <= time.time():
            raise error_in_error(401, "AUTHENTICATION_FAILED", "Access token is missing, invalid or expired")

    def expire_tokens(self, body: dict[str, Any]) -> dict[str, Any]:
        include_refresh = body.get("refresh_tokens", False)
        if not isinstance(include_refresh, bool):
            raise _invalid("refresh_tokens must be a boolean")
        with self._lock:
            expired = len(self._access_tokens)
            self._access_tokens.clear()
            if include_refresh:
                self._refresh_tokens.clear()
        return {"expired": expired, "refresh_tokens_expired": include_refresh}

    # Invoices

    def create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("invoice_code") != self.invoice_code:
            raise error_in_error(400, "INVOICE_CODE_INVALID", "Invoice code is invalid")
        sender_invoice_no = _required_text(body, "sender_invoice_no", SENDER_INVOICE_NO_MAX)
        receiver_code = _required_text(body, "invoice_receiver_code")
        description = _required_text(body, "invoice_description", DESCRIPTION_MAX)
        callback_url = _required_text(body, "callback_url", CALLBACK_URL_MAX)
        if not callback_url.startswith(("http://", "https://")):
            raise _invalid("callback_url must be an http(s) URL")
        if "amount" not in body:
            raise _invalid("amount is required")
        amount = _parse_amount(body["amount"])
        if amount > MAX_INVOICE_AMOUNT:
            raise error_in_error(400, "MAX_AMOUNT_ERR", f"Amount exceeds {MAX_INVOICE_AMOUNT}")
        branch_code = _optional_text(body, "sender_branch_code")

        invoice_id = str(uuid.uuid4())
        qr_text = build_qr_text(invoice_id, amount)
        invoice = Invoice(
            invoice_id=invoice_id,
            invoice_code=self.invoice_code,
            sender_invoice_no=sender_invoice_no,
            invoice_receiver_code=receiver_code,
            invoice_description=description,
            amount=amount,
            callback_url=callback_url,
            qr_text=qr_text,
            short_url=f"https://s.qpay.mn/{secrets.token_urlsafe(8)}",
            created_at=datetime.now(UTC),
            sender_branch_code=branch_code,
            full_form={name: body[name] for name in _INVOICE_FULL_FORM_FIELDS if name in body},
        )
        with self._lock:
            if sender_invoice_no in self._sender_invoice_nos:
                # The code is the simulator's choice: public sources show the refusal, not its code.
                raise error_in_error(
                    400, "SENDER_INVOICE_NO_DUPLICATED", "sender_invoice_no is already used by this merchant"
                )
            self._sender_invoice_nos.add(sender_invoice_no)
            self._invoices[invoice_id] = invoice
        logger.info("invoice %s created for %s MNT", invoice_id, amount)
        # PNG rendering is the slow part; it runs outside the lock.
        return {
            "invoice_id": invoice_id,
            "qr_text": qr_text,
            "qr_image": qr_png_base64(qr_text),
            "qPay_shortUrl": invoice.short_url,
            "urls": bank_app_links(qr_text),
        }

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self._lock:
            invoice = self._invoice_or_404(invoice_id)
            return {
                "invoice_id": invoice.invoice_id,
                "invoice_status": invoice.status,
                "sender_invoice_no": invoice.sender_invoice_no,
                "sender_branch_code": invoice.sender_branch_code,
                "invoice_description": invoice.invoice_description,
                "invoice_receiver_code": invoice.invoice_receiver_code,
                "total_amount": _money(invoice.amount),
                "gross_amount": _money(invoice.amount),
                "tax_amount": "0.00",
                "callback_url": invoice.callback_url,
                "note": invoice.full_form.get("note"),
                "lines": invoice.full_form.get("lines") or [],
                "payments": [self._check_row(self._payments[pid]) for pid in invoice.payment_ids],
            }

    def cancel_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self._lock:
            invoice = self._invoice_or_404(invoice_id)
            if invoice.status == "CANCELLED":
                raise error_in_message(400, "INVOICE_ALREADY_CANCELED")
            if invoice.status == "CLOSED":
                raise error_in_error_code(400, "INVOICE_PAID", "Invoice is paid and cannot be cancelled")
            invoice.status = "CANCELLED"
        logger.info("invoice %s cancelled", invoice_id)
        return {}

    def _invoice_or_404(self, invoice_id: str) -> Invoice:
        invoice = self._invoices.get(invoice_id)
        if invoice is None:
            raise error_in_error(404, "INVOICE_NOTFOUND", "Invoice not found")
        return invoice

    def _paid_sum(self, invoice: Invoice) -> int:
        return sum(
            self._payments[pid].amount for pid in invoice.payment_ids if self._payments[pid].status == "PAID"
        )

    # Payments

    def check_payments(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("object_type") != "INVOICE":
            raise error_in_error(400, "INVALID_OBJECT_TYPE", "object_type must be INVOICE")
        invoice_id = _required_text(body, "object_id")
        page_number, page_limit = _page(body)
        with self._lock:
            invoice = self._invoices.get(invoice_id)
            if invoice is None:
                raise error_in_message(404, "INVOICE_NOTFOUND")
            payments = [self._payments[pid] for pid in invoice.payment_ids]
            start = (page_number - 1) * page_limit
            return {
                "count": len(payments),
                "paid_amount": self._paid_sum(invoice),
                "rows": [self._check_row(p) for p in payments[start : start + page_limit]],
            }

    def get_payment(self, payment_id: str) -> dict[str, Any]:
        with self._lock:
            return self._payment_view(self._payment_or_404(payment_id))

    def list_payments(self, body: dict[str, Any]) -> dict[str, Any]:
        object_type = body.get("object_type")
        if object_type not in ("INVOICE", "MERCHANT"):
            raise error_in_error(400, "INVALID_OBJECT_TYPE", "object_type must be INVOICE or MERCHANT")
        start_date = _parse_moment(body.get("start_date"), "start_date", end_of_day=False)
        end_date = _parse_moment(body.get("end_date"), "end_date", end_of_day=True)
        page_number, page_limit = _page(body)
        with self._lock:
            if object_type == "INVOICE":
                invoice = self._invoice_or_404(_required_text(body, "object_id"))
                payments = [self._payments[pid] for pid in invoice.payment_ids]
            else:
                payments = list(self._payments.values())
            payments = [
                p
                for p in payments
                if (start_date is None or p.paid_at >= start_date)
                and (end_date is None or p.paid_at <= end_date)
            ]
            start = (page_number - 1) * page_limit
            return {
                "count": len(payments),
                "rows": [self._payment_view(p) for p in payments[start : start + page_limit]],
            }

    def cancel_card_payment(self, payment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._reverse_card_payment(payment_id, body, "CANCELLED")

    def refund_card_payment(self, payment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._reverse_card_payment(payment_id, body, "REFUNDED")

    def _reverse_card_payment(self, payment_id: str, body: dict[str, Any], new_status: str) -> dict[str, Any]:
        _optional_text(body, "callback_url")
        _optional_text(body, "note")
        with self._lock:
            payment = self._payment_or_404(payment_id)
            if payment.payment_type != "CARD":
                # The code is the simulator's choice: QPay documents these endpoints as card-only.
                raise error_in_error(
                    400, "PAYMENT_NOT_CARD", "Only card payments can be cancelled or refunded"
                )
            if payment.status != "PAID":
                raise error_in_error(400, "PAYMENT_NOT_PAID", f"Payment is {payment.status}")
            payment.status = new_status
        logger.info("payment %s %s", payment_id, new_status.lower())
        return {}

    def _payment_or_404(self, payment_id: str) -> Payment:
        payment = self._payments.get(payment_id)
        if payment is None:
            raise error_in_error(404, "PAYMENT_NOTFOUND", "Payment not found")
        return payment

    def _check_row(self, payment: Payment) -> dict[str, Any]:
        date = _iso(payment.paid_at)
        settled = {"amount": _money(payment.amount), "currency": "MNT", "settlement_status": "SETTLED"}
        p2p = [
            {
                "id": payment.payment_id,
                "transaction_bank_code": "050000",
                "account_bank_code": "050000",
                "account_bank_name": payment.wallet,
                "account_number": "5000000000",
                "status": "SUCCESS",
                **settled,
            }
        ]
        card = [{"card_type": "VISA", "is_cross_border": False, "date": date, "status": "SUCCESS", **settled}]
        return {
            "payment_id": payment.payment_id,
            "payment_status": payment.status,
            "payment_amount": _money(payment.amount),
            "trx_fee": "0.00",
            "payment_currency": "MNT",
            "payment_wallet": payment.wallet,
            "payment_type": payment.payment_type,
            "payment_date": date,
            "card_transactions": card if payment.payment_type == "CARD" else [],
            "p2p_transactions": p2p if payment.payment_type == "P2P" else [],
        }

    def _payment_view(self, payment: Payment) -> dict[str, Any]:
        return {
            "payment_id": payment.payment_id,
            "payment_status": payment.status,
            "payment_amount": _money(payment.amount),
            "payment_fee": "0.00",  # named trx_fee in payment/check rows: a real QPay inconsistency
            "payment_currency": "MNT",
            "payment_date": _iso(payment.paid_at),
            "payment_wallet": payment.wallet,
            "object_type": "INVOICE",
            "object_id": payment.invoice_id,
            "transaction_type": payment.payment_type,
        }

    # Ebarimt 3.0

    def create_ebarimt(self, body: dict[str, Any]) -> dict[str, Any]:
        payment_id = _required_text(body, "payment_id")
        receiver_type = body.get("ebarimt_receiver_type")
        if receiver_type not in _RECEIVER_TYPES:
            # The code is the simulator's choice; "83"/"84"/"INDIVIDUAL" from some docs are refused here.
            raise error_in_error(
                400, "INVALID_RECEIVER_TYPE", "ebarimt_receiver_type must be CITIZEN or COMPANY"
            )
        receiver = _optional_text(body, "ebarimt_receiver")
        if receiver_type == "COMPANY" and not receiver:
            raise _invalid("ebarimt_receiver (company register number) is required for COMPANY")
        district_code = _optional_text(body, "district_code")
        _optional_text(body, "classification_code")
        with self._lock:
            if not self._ebarimt_registered:
                raise error_in_error(400, "EBARIMT_NOT_REGISTERED", "Merchant is not registered for ebarimt")
            payment = self._payment_or_404(payment_id)
            existing = self._receipts.get(payment_id)
            if existing is not None and existing["barimt_status"] == "REGISTERED":
                return dict(existing)
            if payment.status != "PAID":
                raise error_in_error(400, "PAYMENT_NOT_PAID", f"Payment is {payment.status}")
            now = _iso(datetime.now(UTC))
            receipt = {
                "id": str(uuid.uuid4()),
                "g_payment_id": payment_id,
                "ebarimt_by": "QPAY",
                "ebarimt_receiver_type": receiver_type,
                "ebarimt_receiver": receiver or "",
                "ebarimt_district_code": district_code or "",
                "amount": _money(payment.amount),
                # Prices include 10% VAT; the simulator charges no city tax.
                "vat_amount": f"{Decimal(payment.amount) / 11:.2f}",
                "city_tax_amount": "0.00",
                "ebarimt_qr_data": _digits(96),
                "ebarimt_lottery": "".join(secrets.choice(string.ascii_uppercase) for _ in range(2))
                + " "
                + _digits(8),
                "ebarimt_receipt_id": str(10**32 + secrets.randbelow(9 * 10**32)),
                "barimt_status": "REGISTERED",
                "barimt_status_date": now,
                "created_date": now,
                "status": True,
            }
            self._receipts[payment_id] = receipt
        logger.info("ebarimt registered for payment %s", payment_id)
        return dict(receipt)

    def cancel_ebarimt(self, payment_id: str) -> dict[str, Any]:
        with self._lock:
            self._payment_or_404(payment_id)
            receipt = self._receipts.get(payment_id)
            if receipt is None:
                raise error_in_error(404, "EBARIMT_NOTFOUND", "No ebarimt for this payment")
            if receipt["barimt_status"] != "CANCELED":
                receipt["barimt_status"] = "CANCELED"
                receipt["barimt_status_date"] = _iso(datetime.now(UTC))
            return dict(receipt)

    # Control API

    def simulate_payment(self, body: dict[str, Any]) -> SimulatedPayment:
        invoice_id = _required_text(body, "invoice_id")
        amount = _parse_amount(body["amount"]) if body.get("amount") is not None else None
        payment_type = body.get("payment_type", "P2P")
        if payment_type not in _PAYMENT_TYPES:
            raise _invalid("payment_type must be P2P or CARD")
        wants_callback = body.get("callback", True)
        if not isinstance(wants_callback, bool):
            raise _invalid("callback must be a boolean")
        callback_method = str(body.get("callback_method", "GET")).upper()
        if callback_method not in ("GET", "POST"):
            raise _invalid("callback_method must be GET or POST")
        with self._lock:
            invoice = self._invoice_or_404(invoice_id)
            payment = Payment(
                payment_id=self._new_payment_id(),
                invoice_id=invoice_id,
                amount=invoice.amount if amount is None else amount,
                payment_type=payment_type,
                paid_at=datetime.now(UTC),
            )
            self._payments[payment.payment_id] = payment
            invoice.payment_ids.append(payment.payment_id)
            # A CANCELLED invoice stays CANCELLED: the money still arrived and must be honoured.
            if invoice.status == "OPEN" and self._paid_sum(invoice) >= invoice.amount:
                invoice.status = "CLOSED"
            callback_url = invoice.callback_url if wants_callback else None
        logger.info(
            "payment %s of %s MNT recorded on invoice %s", payment.payment_id, payment.amount, invoice_id
        )
        return SimulatedPayment(payment.payment_id, invoice_id, callback_url, callback_method)

    def _new_payment_id(self) -> str:
        # Real payment ids are long numeric strings, unlike invoice ids.
        while True:
            payment_id = str(10**14 + secrets.randbelow(9 * 10**14))
            if payment_id not in self._payments:
                return payment_id

    def record_callback(self, succeeded: bool) -> None:
        with self._lock:
            self._callbacks_attempted += 1
            self._callbacks_succeeded += int(succeeded)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "tokens_issued": self._tokens_issued,
                "invoices": len(self._invoices),
                "payments": len(self._payments),
                "callbacks": {"attempted": self._callbacks_attempted, "succeeded": self._callbacks_succeeded},
            }

    def reset(self) -> dict[str, Any]:
        with self._lock:
            self._forget_everything()
        logger.info("simulator reset")
        return {"ok": True}

    def invoice_view(self, invoice_id: str) -> dict[str, Any]:
        with self._lock:
            invoice = self._invoice_or_404(invoice_id)
            return {
                "invoice_id": invoice.invoice_id,
                "invoice_code": invoice.invoice_code,
                "status": invoice.status,
                "sender_invoice_no": invoice.sender_invoice_no,
                "sender_branch_code": invoice.sender_branch_code,
                "invoice_receiver_code": invoice.invoice_receiver_code,
                "invoice_description": invoice.invoice_description,
                "amount": invoice.amount,
                "paid_amount": self._paid_sum(invoice),
                "callback_url": invoice.callback_url,
                "qr_text": invoice.qr_text,
                "qPay_shortUrl": invoice.short_url,
                "created_at": _iso(invoice.created_at),
                **invoice.full_form,
                "payments": [
                    {
                        "payment_id": p.payment_id,
                        "status": p.status,
                        "amount": p.amount,
                        "payment_type": p.payment_type,
                        "paid_at": _iso(p.paid_at),
                        "ebarimt": self._receipts.get(p.payment_id, {}).get("barimt_status"),
                        # What the merchant asked for (never the receiver: personal data).
                        "ebarimt_receiver_type": self._receipts.get(p.payment_id, {}).get(
                            "ebarimt_receiver_type"
                        ),
                        "ebarimt_district_code": self._receipts.get(p.payment_id, {}).get(
                            "ebarimt_district_code"
                        ),
                    }
                    for p in (self._payments[pid] for pid in invoice.payment_ids)
                ],
            }

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"ebarimt_registered"}
        if unknown:
            raise _invalid(f"unknown config fields: {', '.join(sorted(unknown))}")
        registered = body.get("ebarimt_registered")
        if registered is not None and not isinstance(registered, bool):
            raise _invalid("ebarimt_registered must be a boolean")
        with self._lock:
            if registered is not None:
                self._ebarimt_registered = registered
            return {"ebarimt_registered": self._ebarimt_registered}
