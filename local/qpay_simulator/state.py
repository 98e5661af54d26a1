"""The simulated QPay merchant: invoices, payments, tokens, e-receipts, faults and call statistics.

Everything lives behind one lock. Critical sections are short and never sleep or do I/O, so the HTTP
layer can deliver a callback whose handler calls straight back into the simulator. Methods take the
parsed JSON body of a request and return the JSON payload of the response (shaped by `shapes`); a
refusal is raised as `QPayError` carrying QPay's status and error body.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import random
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from qpay_common.adapters.qpay.codes import QPayErrorCode

from . import shapes
from .errors import ERROR_FORMS, QPayError, control_error, object_data_error, qpay_error
from .invoice_form import (
    parse_moment,
    parse_tax_type,
    parse_terms,
    shown_back,
    whole_amount,
)
from .qr import bank_app_links, build_qr_text, qr_png_base64
from .records import Invoice, Payment, Receipt, cents

logger = logging.getLogger("qpay_simulator")

DEFAULT_CLIENT_ID = "TEST_MERCHANT"
DEFAULT_CLIENT_SECRET = "local-sim-secret"
DEFAULT_INVOICE_CODE = "TEST_INVOICE"
# Ebarimt 3.0 invoices use a second invoice code issued by QPay; the sandbox example's is this one.
DEFAULT_EBARIMT_INVOICE_CODE = "TEST_EB_INVOICE"

TOKEN_LIFETIME_S = 24 * 3600
DURATION_FORM_LIFETIME_S = 3600
REFRESH_LIFETIME_S = 48 * 3600
SENDER_INVOICE_NO_MAX = 45
RECEIVER_CODE_MAX = 45
DESCRIPTION_MAX = 255
CALLBACK_URL_MAX = 255

_FAULT_RULE_FIELDS = {
    "path",
    "method",
    "status",
    "error",
    "error_form",
    "body",
    "barimt_status",
    "delay_ms",
    "expires_in",
    "times",
    "rate",
}
_PAYMENT_TYPES = ("P2P", "CARD")
_FAULT_DRAWS = random.SystemRandom()
_RECEIVER_TYPES = ("CITIZEN", "COMPANY")
_LIST_OBJECT_TYPES = ("INVOICE", "MERCHANT", "QR")


def _invalid(message: str) -> QPayError:
    return control_error(message)


def _digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _jwt_like(claims: dict[str, Any]) -> str:
    """Looks like QPay's tokens (HS256 JWTs in the captured sandbox answer) so clients that log or
    size-check tokens behave; never verified."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{_b64url(secrets.token_bytes(32))}"


def _required_text(body: dict[str, Any], name: str, max_length: int | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise object_data_error(f"{name} is required")
    if max_length is not None and len(value) > max_length:
        raise object_data_error(f"{name} must be at most {max_length} characters")
    return value


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise object_data_error(f"{name} must be a string")
    return value


def _positive_int(value: Any, name: str, error: Any = object_data_error) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{name} must be a positive integer")
    return value


def _page(body: dict[str, Any]) -> tuple[int, int]:
    offset = body.get("offset") or {}
    if not isinstance(offset, dict):
        raise object_data_error("offset must be an object")
    return (
        _positive_int(offset.get("page_number", 1), "offset.page_number"),
        _positive_int(offset.get("page_limit", 100), "offset.page_limit"),
    )


@dataclass(frozen=True)
class TokenPolicy:
    """How long a new access token lives and whether `expires_in` is sent as a duration or an epoch."""

    lifetime_s: int = TOKEN_LIFETIME_S
    as_duration: bool = False


@dataclass
class FaultRule:
    """One injected behaviour on matching QPay paths; each use spends one of `times`.

    `status` (+ `error`) answers an error instead of the endpoint; `body` answers exactly that JSON
    object (with `status`, default 200), e.g. `{}` from Ebarimt create; `error_form` sends every
    error of the path, injected or real, in another of QPay's forms (`errors.in_form`);
    `barimt_status` makes Ebarimt create answer its receipt with that status and no receipt id,
    registering nothing; `delay_ms` and `expires_in` as before.
    """

    path: str
    method: str | None = None
    status: int | None = None
    error: str | None = None
    error_form: str | None = None
    body: dict[str, Any] | None = None
    barimt_status: str | None = None
    delay_ms: int = 0
    expires_in: str | int | None = None
    times: int | None = None
    # The share of matching calls the rule applies to (a brownout rather than an outage).
    rate: float = 1.0

    @property
    def answers(self) -> bool:
        return self.status is not None or self.body is not None

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        matched = path.startswith(self.path[:-1]) if self.path.endswith("*") else path == self.path
        return matched and (self.rate >= 1 or _FAULT_DRAWS.random() < self.rate)

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
        error_form = raw.get("error_form")
        if error_form is not None and error_form not in ERROR_FORMS:
            raise _invalid(f"rule.error_form must be one of {', '.join(ERROR_FORMS)}")
        body = raw.get("body")
        if body is not None and not isinstance(body, dict):
            raise _invalid("rule.body must be a JSON object")
        barimt_status = raw.get("barimt_status")
        if barimt_status is not None and (not isinstance(barimt_status, str) or not barimt_status.strip()):
            raise _invalid("rule.barimt_status must be a non-empty string")
        delay_ms = raw.get("delay_ms", 0)
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int | float) or delay_ms < 0:
            raise _invalid("rule.delay_ms must be a non-negative number")
        expires_in = raw.get("expires_in")
        if expires_in is not None and expires_in != "duration":
            expires_in = _positive_int(expires_in, "rule.expires_in", _invalid)
        times = raw.get("times")
        if times is not None:
            times = _positive_int(times, "rule.times", _invalid)
        rate = raw.get("rate", 1)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise _invalid("rule.rate must be a number above 0 and at most 1")
        if (status, body, error_form, barimt_status, expires_in) == (None,) * 5 and not delay_ms:
            raise _invalid("a rule needs status, body, error_form, barimt_status, delay_ms or expires_in")
        return cls(
            path=path,
            method=method.upper() if method else None,
            status=status,
            error=error,
            error_form=error_form,
            body=body,
            barimt_status=barimt_status.strip().upper() if barimt_status else None,
            delay_ms=int(delay_ms),
            expires_in=expires_in,
            times=times,
            rate=float(rate),
        )


@dataclass(frozen=True)
class FaultDecision:
    """What the injected faults make of one request."""

    delay_s: float = 0.0
    status: int | None = None
    error: str | None = None
    body: dict[str, Any] | None = None
    error_form: str | None = None
    barimt_status: str | None = None
    token_policy: TokenPolicy = field(default_factory=TokenPolicy)


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
        ebarimt_invoice_code: str = DEFAULT_EBARIMT_INVOICE_CODE,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.invoice_code = invoice_code
        self.ebarimt_invoice_code = ebarimt_invoice_code
        self._lock = threading.Lock()
        self._forget_everything()

    def _forget_everything(self) -> None:
        self._invoices: dict[str, Invoice] = {}
        self._sender_invoice_nos: set[str] = set()
        self._payments: dict[str, Payment] = {}
        self._receipts: dict[str, Receipt] = {}
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
        answer: FaultRule | None = None
        error_form: str | None = None
        barimt_status: str | None = None
        policy: TokenPolicy | None = None
        with self._lock:
            self._calls[call_key] += 1
            matching = [rule for rule in self._faults if rule.matches(method, path)]
            answer = next((rule for rule in matching if rule.answers), None)
            for rule in matching:
                applied = rule is answer
                if rule.delay_ms:
                    delay_ms += rule.delay_ms
                    applied = True
                # A verbatim body replaces the endpoint: nothing else shapes that answer.
                if (
                    rule.error_form is not None
                    and error_form is None
                    and (answer is None or answer.body is None)
                ):
                    error_form = rule.error_form
                    applied = True
                if rule.barimt_status is not None and barimt_status is None and answer is None:
                    barimt_status = rule.barimt_status
                    applied = True
                if rule.expires_in is not None and issues_tokens and policy is None:
                    policy = rule.token_policy()
                    applied = True
                if applied and rule.times is not None:
                    rule.times -= 1
        return FaultDecision(
            delay_s=delay_ms / 1000,
            status=None if answer is None else (200 if answer.status is None else answer.status),
            error=None if answer is None else answer.error,
            body=None if answer is None or answer.body is None else dict(answer.body),
            error_form=error_form,
            barimt_status=barimt_status,
            token_policy=policy or TokenPolicy(),
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
            raise qpay_error(401, QPayErrorCode.AUTHENTICATION_FAILED, "Invalid client credentials")

    def issue_token(self, policy: TokenPolicy) -> dict[str, Any]:
        now = time.time()
        expires_at = now + policy.lifetime_s
        refresh_expires_at = now + REFRESH_LIFETIME_S
        session_state = str(uuid.uuid4())
        # Claim names as in the captured sandbox tokens; the values are the simulator's.
        access_token = _jwt_like(
            {
                "client_id": self.client_id,
                "merchant_id": self.client_id,
                "session_id": session_state,
                "jti": str(uuid.uuid4()),
                "iat": int(now),
                "exp": int(expires_at),
            }
        )
        refresh_token = _jwt_like(
            {
                "id": str(uuid.uuid4()),
                "session_id": session_state,
                "iat": int(now),
                "exp": int(refresh_expires_at),
            }
        )
        with self._lock:
            self._access_tokens[access_token] = expires_at
            self._refresh_tokens[refresh_token] = refresh_expires_at
            self._tokens_issued += 1
        return {
            "token_type": "bearer",
            "access_token": access_token,
            # Epochs by default, as the captured sandbox answer [spec] and most SDKs show (the qpay-sdk
            # docs call it a duration of 600 s); durations when a fault asks.
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
            raise qpay_error(401, QPayErrorCode.AUTHENTICATION_FAILED, "Refresh token is invalid or expired")
        return self.issue_token(policy)

    def require_access_token(self, access_token: str | None) -> None:
        with self._lock:
            expires_at = self._access_tokens.get(access_token or "")
        if expires_at is None or expires_at <= time.time():
            raise qpay_error(
                401, QPayErrorCode.AUTHENTICATION_FAILED, "Access token is missing, invalid or expired"
            )

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
        invoice_code = body.get("invoice_code")
        if invoice_code not in (self.invoice_code, self.ebarimt_invoice_code):
            raise qpay_error(400, QPayErrorCode.INVOICE_CODE_INVALID, "Invoice code is invalid")
        is_ebarimt = invoice_code == self.ebarimt_invoice_code
        sender_invoice_no = _required_text(body, "sender_invoice_no", SENDER_INVOICE_NO_MAX)
        receiver_code = _required_text(body, "invoice_receiver_code", RECEIVER_CODE_MAX)
        description = _required_text(body, "invoice_description", DESCRIPTION_MAX)
        callback_url = _required_text(body, "callback_url", CALLBACK_URL_MAX)
        if not callback_url.startswith(("http://", "https://")):
            raise object_data_error("callback_url must be an http(s) URL")
        branch_code = _optional_text(body, "sender_branch_code")
        if body.get("invoice_receiver_data") is not None and not isinstance(
            body["invoice_receiver_data"], dict
        ):
            raise object_data_error("invoice_receiver_data must be an object")
        terms = parse_terms(body, lines_required=is_ebarimt)
        district_code = _optional_text(body, "district_code")
        if is_ebarimt and not district_code:
            raise object_data_error("district_code is required on an Ebarimt 3.0 invoice")

        invoice_id = str(uuid.uuid4())
        qr_text = build_qr_text(invoice_id, shapes.number(terms.total))
        invoice = Invoice(
            invoice_id=invoice_id,
            invoice_code=invoice_code,
            sender_invoice_no=sender_invoice_no,
            invoice_receiver_code=receiver_code,
            invoice_description=description,
            terms=terms,
            callback_url=callback_url,
            qr_text=qr_text,
            short_url=f"https://s.qpay.mn/{secrets.token_urlsafe(8)}",
            created_at=datetime.now(UTC),
            sender_branch_code=branch_code,
            shown_back=shown_back(body),
            tax_type=parse_tax_type(body),
            district_code=district_code,
            is_ebarimt=is_ebarimt,
        )
        with self._lock:
            if sender_invoice_no in self._sender_invoice_nos:
                # The code is the simulator's choice: public sources show the refusal, not its code.
                raise qpay_error(
                    400, "SENDER_INVOICE_NO_DUPLICATED", "sender_invoice_no is already used by this merchant"
                )
            self._sender_invoice_nos.add(sender_invoice_no)
            self._invoices[invoice_id] = invoice
        logger.info("invoice %s created for %s MNT", invoice_id, terms.total)
        # PNG rendering is the slow part; it runs outside the lock.
        return shapes.invoice_created(invoice, qr_png_base64(qr_text), bank_app_links(qr_text))

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self._lock:
            invoice = self._invoice_or_404(invoice_id)
            return shapes.invoice_details(invoice, self._payments_of(invoice))

    def cancel_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self._lock:
            invoice = self._invoice_or_404(invoice_id)
            if invoice.status == "CANCELLED":
                raise qpay_error(400, QPayErrorCode.INVOICE_ALREADY_CANCELED, "Invoice is already cancelled")
            if invoice.status == "CLOSED":
                raise qpay_error(400, QPayErrorCode.INVOICE_PAID, "Invoice is paid and cannot be cancelled")
            invoice.status = "CANCELLED"
        logger.info("invoice %s cancelled", invoice_id)
        return {}

    def _invoice_or_404(self, invoice_id: str) -> Invoice:
        invoice = self._invoices.get(invoice_id)
        if invoice is None:
            raise qpay_error(404, QPayErrorCode.INVOICE_NOTFOUND, "Invoice not found")
        return invoice

    def _payments_of(self, invoice: Invoice) -> list[Payment]:
        return [self._payments[pid] for pid in invoice.payment_ids]

    def _paid_sum(self, invoice: Invoice) -> Decimal:
        return sum((p.amount for p in self._payments_of(invoice) if p.status == "PAID"), Decimal(0))

    # Payments

    def check_payments(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("object_type") != "INVOICE":
            raise qpay_error(400, QPayErrorCode.INVALID_OBJECT_TYPE, "object_type must be INVOICE")
        invoice_id = _required_text(body, "object_id")
        page_number, page_limit = _page(body)
        with self._lock:
            invoice = self._invoice_or_404(invoice_id)
            payments = self._payments_of(invoice)
            start = (page_number - 1) * page_limit
            return {
                "count": len(payments),
                # A number, 0 before anything is paid, as the qpay-sdk docs' "no payment yet" answer
                # shows (qpay-client and tsetsee type it as nullable).
                "paid_amount": shapes.number(self._paid_sum(invoice)),
                "rows": [shapes.check_row(p) for p in payments[start : start + page_limit]],
            }

    def get_payment(self, payment_id: str) -> dict[str, Any]:
        with self._lock:
            return shapes.payment_details(self._payment_or_404(payment_id))

    def list_payments(self, body: dict[str, Any]) -> dict[str, Any]:
        object_type = body.get("object_type")
        if object_type not in _LIST_OBJECT_TYPES:
            raise qpay_error(
                400, QPayErrorCode.INVALID_OBJECT_TYPE, "object_type must be INVOICE, MERCHANT or QR"
            )
        start_date = parse_moment(body.get("start_date"), "start_date", end_of_day=False)
        end_date = parse_moment(body.get("end_date"), "end_date", end_of_day=True)
        page_number, page_limit = _page(body)
        with self._lock:
            payments = self._listed_payments(object_type, body)
            payments = [
                p
                for p in payments
                if (start_date is None or p.paid_at >= start_date)
                and (end_date is None or p.paid_at <= end_date)
            ]
            start = (page_number - 1) * page_limit
            return {
                "count": len(payments),
                "rows": [
                    shapes.list_row(p, self._invoices[p.invoice_id])
                    for p in payments[start : start + page_limit]
                ],
            }

    def _listed_payments(self, object_type: str, body: dict[str, Any]) -> list[Payment]:
        if object_type == "MERCHANT":
            return list(self._payments.values())
        object_id = _required_text(body, "object_id")
        if object_type == "QR":
            invoices = [i for i in self._invoices.values() if i.qr_text == object_id]
        elif object_id in (self.invoice_code, self.ebarimt_invoice_code):
            # With INVOICE, the object id is the invoice code: the captured spec's example and
            # qpay-client's live test send "TEST_INVOICE". One doc page sends an invoice id; the
            # simulator takes that too.
            invoices = [i for i in self._invoices.values() if i.invoice_code == object_id]
        else:
            invoices = [self._invoice_or_404(object_id)]
        return sorted(
            (p for invoice in invoices for p in self._payments_of(invoice)), key=lambda p: p.paid_at
        )

    def cancel_card_payment(self, payment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._reverse_card_payment(payment_id, body, "CANCELLED")

    def refund_card_payment(self, payment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        # REFUNDED as tsetsee, techpartners-asia and the qpay-sdk docs write it (qpay-client: REFUND).
        return self._reverse_card_payment(payment_id, body, "REFUNDED")

    def _reverse_card_payment(self, payment_id: str, body: dict[str, Any], new_status: str) -> dict[str, Any]:
        _optional_text(body, "callback_url")
        _optional_text(body, "note")
        with self._lock:
            payment = self._payment_or_404(payment_id)
            if payment.payment_type != "CARD":
                # The code is the simulator's choice: QPay documents these endpoints as card-only.
                raise qpay_error(
                    400, QPayErrorCode.PAYMENT_NOT_CARD, "Only card payments can be cancelled or refunded"
                )
            if payment.status in ("CANCELLED", "REFUNDED"):
                raise qpay_error(
                    400, QPayErrorCode.PAYMENT_ALREADY_CANCELED, f"Payment is already {payment.status}"
                )
            if payment.status != "PAID":
                raise qpay_error(400, QPayErrorCode.PAYMENT_NOT_PAID, f"Payment is {payment.status}")
            payment.status = new_status
            payment.status_changed_at = datetime.now(UTC)
        logger.info("payment %s %s", payment_id, new_status.lower())
        return {}

    def _payment_or_404(self, payment_id: str) -> Payment:
        payment = self._payments.get(payment_id)
        if payment is None:
            raise qpay_error(404, QPayErrorCode.PAYMENT_NOTFOUND, "Payment not found")
        return payment

    # Ebarimt 3.0

    def create_ebarimt(self, body: dict[str, Any], barimt_status: str | None = None) -> dict[str, Any]:
        return self._register_receipt(body, shapes.receipt_v3, barimt_status)

    def create_legacy_ebarimt(self, body: dict[str, Any], barimt_status: str | None = None) -> dict[str, Any]:
        """`POST /v2/ebarimt/create`, which the captured spec still lists and qpay-client calls."""
        _optional_text(body, "callback_url")
        return self._register_receipt(body, shapes.receipt_legacy, barimt_status)

    def get_legacy_ebarimt(self, receipt_or_payment_id: str) -> dict[str, Any]:
        with self._lock:
            receipt = self._receipts.get(receipt_or_payment_id) or next(
                (r for r in self._receipts.values() if r.id == receipt_or_payment_id), None
            )
            if receipt is None:
                # The code is the simulator's choice: the spec lists this endpoint without its errors.
                raise qpay_error(404, QPayErrorCode.EBARIMT_NOTFOUND, "No ebarimt with this id")
            return shapes.receipt_legacy(receipt, self.client_id)

    def _register_receipt(
        self,
        body: dict[str, Any],
        render: Callable[[Receipt, str], dict[str, Any]],
        barimt_status: str | None = None,
    ) -> dict[str, Any]:
        """Registers (once per payment) and renders the receipt under the lock: a cancel may change it.

        With a `barimt_status` other than REGISTERED (a fault rule's), the receipt is answered in
        that status with no receipt id and nothing is registered, so a later call registers it.
        """
        payment_id = body.get("payment_id")
        if isinstance(payment_id, int) and not isinstance(payment_id, bool):
            payment_id = str(payment_id)  # some SDKs send the numeric id as a number
        if not isinstance(payment_id, str) or not payment_id.strip():
            raise object_data_error("payment_id is required")
        receiver_type = body.get("ebarimt_receiver_type")
        if receiver_type not in _RECEIVER_TYPES:
            # "83"/"84"/"INDIVIDUAL" from some docs are refused here, as QPAY_API.md records.
            raise object_data_error("ebarimt_receiver_type must be CITIZEN or COMPANY")
        receiver = _optional_text(body, "ebarimt_receiver") or None
        if receiver_type == "COMPANY" and not receiver:
            raise object_data_error("ebarimt_receiver (company register number) is required for COMPANY")
        district_code = _optional_text(body, "district_code")
        classification_code = _optional_text(body, "classification_code")
        with self._lock:
            if not self._ebarimt_registered:
                raise qpay_error(
                    400, QPayErrorCode.EBARIMT_NOT_REGISTERED, "Merchant is not registered for ebarimt"
                )
            payment = self._payment_or_404(payment_id)
            existing = self._receipts.get(payment_id)
            if existing is not None and existing.status == "REGISTERED":
                return render(existing, self.client_id)
            if payment.status != "PAID":
                raise qpay_error(400, QPayErrorCode.PAYMENT_NOT_PAID, f"Payment is {payment.status}")
            invoice = self._invoices[payment.invoice_id]
            status = barimt_status or "REGISTERED"
            receipt = self._new_receipt(
                payment,
                invoice,
                receiver_type,
                receiver,
                district_code or invoice.district_code or "",
                classification_code,
                status,
            )
            if status == "REGISTERED":
                self._receipts[payment_id] = receipt
            answer = render(receipt, self.client_id)
        logger.info("ebarimt %s for payment %s", status.lower(), payment_id)
        return answer

    def _new_receipt(
        self,
        payment: Payment,
        invoice: Invoice,
        receiver_type: str,
        receiver: str | None,
        district_code: str,
        classification_code: str | None,
        status: str = "REGISTERED",
    ) -> Receipt:
        now = datetime.now(UTC)
        receipt_uuid = str(uuid.uuid4())
        # Prices include 10% VAT when the invoice's tax type is 1; a tax type 2 recording shows 0.00.
        vat = cents(payment.amount / 11) if invoice.tax_type == "1" else Decimal(0)
        receipt = Receipt(
            id=receipt_uuid,
            payment_id=payment.payment_id,
            invoice_id=invoice.invoice_id,
            paid_by=payment.payment_type,
            receiver_type=receiver_type,
            receiver=receiver,
            district_code=district_code,
            classification_code=classification_code,
            tax_type=invoice.tax_type,
            amount=payment.amount,
            vat_amount=vat,
            city_tax_amount=Decimal(0),
            qr_data=_digits(96),
            lottery="".join(secrets.choice(string.ascii_uppercase) for _ in range(2)) + " " + _digits(8),
            # The 33-digit id the tax authority gives a registered receipt; none before that.
            receipt_id="0" + shapes.MERCHANT_TIN + _digits(21) if status == "REGISTERED" else None,
            created_at=now,
            status=status,
        )
        receipt.items = self._receipt_items(receipt, invoice)
        receipt.histories = [self._receipt_history(receipt)]
        return receipt

    def _receipt_items(self, receipt: Receipt, invoice: Invoice) -> list[dict[str, Any]]:
        """Receipt lines: the invoice's lines, or one line for the whole amount ([qsdk] `EbarimtItem`)."""
        lines = invoice.terms.lines or [
            {
                "line_description": invoice.invoice_description,
                "line_quantity": "1.00",
                "line_unit_price": shapes.money(receipt.amount),
            }
        ]
        created = shapes.iso(receipt.created_at)
        items = []
        for line in lines:
            amount = Decimal(line["line_quantity"]) * Decimal(line["line_unit_price"])
            items.append(
                {
                    "id": str(uuid.uuid4()),
                    "barimt_id": receipt.id,
                    "merchant_product_code": line.get("sender_product_code"),
                    "tax_product_code": line.get("tax_product_code") or receipt.classification_code,
                    "bar_code": line.get("barcode"),
                    "name": line["line_description"],
                    "unit_price": line["line_unit_price"],
                    "quantity": line["line_quantity"],
                    "amount": shapes.money(amount),
                    "city_tax_amount": "0.00",
                    "vat_amount": shapes.money(amount / 11) if receipt.tax_type == "1" else "0.00",
                    "note": line.get("note"),
                    "created_by": "1",
                    "created_date": created,
                    "updated_by": "1",
                    "updated_date": created,
                    "status": True,
                }
            )
        return items

    def _receipt_history(self, receipt: Receipt) -> dict[str, Any]:
        """One status change, with the fields [qsdk] `EbarimtHistory` and [tpa] `QPayEbarimtEvent` type."""
        moment = shapes.iso(receipt.status_at or receipt.created_at)
        return {
            "id": str(uuid.uuid4()),
            "barimt_id": receipt.id,
            "ebarimt_receiver_type": receipt.receiver_type,
            "ebarimt_receiver": receipt.receiver,
            "ebarimt_register_no": receipt.receiver if receipt.receiver_type == "COMPANY" else None,
            "ebarimt_bill_id": receipt.receipt_id,
            "ebarimt_date": moment,
            "ebarimt_mac_address": None,
            "ebarimt_internal_code": None,
            "ebarimt_bill_type": "1" if receipt.receiver_type == "CITIZEN" else "3",
            "ebarimt_qr_data": receipt.qr_data,
            "ebarimt_lottery": receipt.lottery,
            "ebarimt_lottery_msg": None,
            "ebarimt_error_code": None,
            "ebarimt_error_msg": None,
            "ebarimt_response_code": None,
            "ebarimt_response_msg": None,
            "note": None,
            "barimt_status": receipt.status,
            "barimt_status_date": moment,
            "ebarimt_sent_email": None,
            "ebarimt_receiver_phone": None,
            "tax_type": receipt.tax_type,
            "created_by": "1",
            "created_date": moment,
            "updated_by": "1",
            "updated_date": moment,
            "status": True,
        }

    def cancel_ebarimt(self, payment_id: str) -> dict[str, Any]:
        with self._lock:
            self._payment_or_404(payment_id)
            receipt = self._receipts.get(payment_id)
            if receipt is None:
                # As the qpay-sdk docs list it for a payment without a receipt.
                raise qpay_error(400, QPayErrorCode.EBARIMT_NOT_REGISTERED, "No ebarimt for this payment")
            if receipt.status != "CANCELED":
                receipt.status = "CANCELED"  # one L, as the recorded cancel answer spells it
                receipt.status_at = datetime.now(UTC)
                receipt.histories.append(self._receipt_history(receipt))
            return shapes.receipt_v3(receipt, self.client_id)

    # Control API

    def simulate_payment(self, body: dict[str, Any]) -> SimulatedPayment:
        invoice_id = body.get("invoice_id")
        if not isinstance(invoice_id, str) or not invoice_id.strip():
            raise _invalid("invoice_id is required")
        amount = None
        if body.get("amount") is not None:
            try:
                amount = whole_amount(body["amount"])
            except QPayError:
                raise _invalid("amount must be a positive whole number") from None
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
            paid = self._paid_sum(invoice)
            amount = invoice.amount if amount is None else amount
            self._check_payment_allowed(invoice, paid, amount)
            payment = Payment(
                payment_id=self._new_payment_id(payment_type),
                invoice_id=invoice_id,
                amount=amount,
                payment_type=payment_type,
                paid_at=datetime.now(UTC),
            )
            self._payments[payment.payment_id] = payment
            invoice.payment_ids.append(payment.payment_id)
            # A CANCELLED invoice stays CANCELLED: the money still arrived and must be honoured.
            if invoice.status == "OPEN" and paid + amount >= invoice.amount:
                invoice.status = "CLOSED"
            callback_url = invoice.callback_url if wants_callback else None
        logger.info("payment %s of %s MNT recorded on invoice %s", payment.payment_id, amount, invoice_id)
        return SimulatedPayment(payment.payment_id, invoice_id, callback_url, callback_method)

    @staticmethod
    def _check_payment_allowed(invoice: Invoice, paid: Decimal, amount: Decimal) -> None:
        """The limits a bank app enforces for the invoice's terms; QPay's codes where it has them."""
        terms = invoice.terms
        if terms.expires_at is not None and datetime.now(UTC) > terms.expires_at:
            # The code is the simulator's: this is the customer's bank app refusing, not a QPay answer.
            raise qpay_error(400, QPayErrorCode.INVOICE_EXPIRED, "The invoice expired at its expiry_date")
        remaining = max(invoice.amount - paid, Decimal(0))
        if terms.allow_partial:
            if terms.minimum_amount is not None and amount < min(terms.minimum_amount, remaining):
                raise qpay_error(400, QPayErrorCode.MIN_AMOUNT_ERR, f"Pay at least {terms.minimum_amount}")
        elif terms.partial_stated and amount < remaining:
            raise qpay_error(400, QPayErrorCode.MIN_AMOUNT_ERR, "This invoice does not allow partial payment")
        if terms.allow_exceed:
            if terms.maximum_amount is not None and paid + amount > terms.maximum_amount:
                raise qpay_error(
                    400, QPayErrorCode.MAX_AMOUNT_ERR, f"Pay at most {terms.maximum_amount} in total"
                )
        elif terms.exceed_stated and amount > remaining:
            raise qpay_error(
                400, QPayErrorCode.MAX_AMOUNT_ERR, "This invoice does not allow paying more than it asks"
            )

    def _new_payment_id(self, payment_type: str) -> str:
        # P2P payment ids are long numeric strings; the recorded card payment's is a UUID.
        while True:
            if payment_type == "CARD":
                payment_id = str(uuid.uuid4())
            else:
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
            terms = invoice.terms
            return {
                "invoice_id": invoice.invoice_id,
                "invoice_code": invoice.invoice_code,
                "status": invoice.status,
                "sender_invoice_no": invoice.sender_invoice_no,
                "sender_branch_code": invoice.sender_branch_code,
                "invoice_receiver_code": invoice.invoice_receiver_code,
                "invoice_description": invoice.invoice_description,
                "amount": shapes.number(invoice.amount),
                "paid_amount": shapes.number(self._paid_sum(invoice)),
                "callback_url": invoice.callback_url,
                "qr_text": invoice.qr_text,
                "qPay_shortUrl": invoice.short_url,
                "created_at": shapes.iso(invoice.created_at),
                "tax_type": invoice.tax_type,
                "district_code": invoice.district_code,
                "allow_partial": terms.allow_partial,
                "allow_exceed": terms.allow_exceed,
                "expires_at": shapes.iso(terms.expires_at) if terms.expires_at else None,
                "lines": terms.lines,
                "payments": [self._payment_view(p) for p in self._payments_of(invoice)],
            }

    def _payment_view(self, payment: Payment) -> dict[str, Any]:
        receipt = self._receipts.get(payment.payment_id)
        return {
            "payment_id": payment.payment_id,
            "status": payment.status,
            "amount": shapes.number(payment.amount),
            "payment_type": payment.payment_type,
            "paid_at": shapes.iso(payment.paid_at),
            "ebarimt": receipt.status if receipt else None,
            # What the merchant asked for (never the receiver: personal data).
            "ebarimt_receiver_type": receipt.receiver_type if receipt else None,
            "ebarimt_district_code": receipt.district_code if receipt else None,
            # What the shopper is shown: a test compares them with the merchant's record.
            "ebarimt_lottery": receipt.lottery if receipt else None,
            "ebarimt_qr_data": receipt.qr_data if receipt else None,
        }

    def list_invoices(self, limit: int = 100) -> dict[str, Any]:
        """The newest invoices, for the bank app page: what a customer could still pay."""
        with self._lock:
            newest = sorted(self._invoices.values(), key=lambda invoice: invoice.created_at, reverse=True)
            return {
                "invoices": [
                    {
                        "invoice_id": invoice.invoice_id,
                        "status": invoice.status,
                        "sender_invoice_no": invoice.sender_invoice_no,
                        "invoice_description": invoice.invoice_description,
                        "amount": shapes.number(invoice.amount),
                        "paid_amount": shapes.number(self._paid_sum(invoice)),
                        "created_at": shapes.iso(invoice.created_at),
                    }
                    for invoice in newest[:limit]
                ]
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
