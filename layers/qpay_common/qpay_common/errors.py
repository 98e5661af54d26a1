"""Domain errors. Each type is one outcome a caller can tell apart; http_errors.py maps them to
HTTP in one place. Messages never carry secrets, tokens or personal data."""

from typing import Any


class ConfigurationError(Exception):
    """A missing or invalid setting: the function cannot work and must fail fast."""


class PaymentError(Exception):
    """Base of the errors a client of the payments API can receive."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidRequest(PaymentError):
    code = "VALIDATION_ERROR"


class InvalidCursor(InvalidRequest):
    # A rule JSON Schema cannot state (which cursors this API issued): named in details[].type.
    detail_type = "cursor_not_issued"

    def __init__(self) -> None:
        message = "cursor is not one this API returned"
        super().__init__(message, [{"loc": ["query", "cursor"], "msg": message, "type": self.detail_type}])


class PayloadTooLarge(PaymentError):
    code = "PAYLOAD_TOO_LARGE"


class Unauthorized(PaymentError):
    code = "UNAUTHORIZED"


class Forbidden(PaymentError):
    """A valid identity without the scope the route needs (the operators' payments/admin)."""

    code = "FORBIDDEN"


class SessionNotFound(PaymentError):
    code = "NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("payment session not found")


class AlreadyPaid(PaymentError):
    code = "ALREADY_PAID"


class SessionExpired(PaymentError):
    code = "EXPIRED"


class NotCancellable(PaymentError):
    code = "NOT_CANCELLABLE"


class NotRefundable(PaymentError):
    """Only a fulfilled (PROCESSED) session can be refunded."""

    code = "NOT_REFUNDABLE"


class RefundNotSupported(PaymentError):
    """QPay refunds card payments only; QR/P2P bank transfers cannot be returned by API."""

    code = "REFUND_NOT_SUPPORTED"


class NoOrder(PaymentError):
    """The session has no order (it was never paid in full), so there is nothing to republish."""

    code = "NO_ORDER"


class EventBusUnavailable(PaymentError):
    """The change was recorded but its event could not be put on the bus; repeating the request
    puts it there (consumers dedupe)."""

    code = "EVENT_BUS_UNAVAILABLE"


class IdempotencyConflict(PaymentError):
    code = "IDEMPOTENCY_CONFLICT"


class QPayUnavailable(PaymentError):
    """QPay failed (after retries, where retrying is safe); nothing was left half-written."""

    code = "QPAY_UNAVAILABLE"


class QPayError(Exception):
    """An answer from QPay that is not a success, or no answer at all."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class QPayAuthError(QPayError):
    """401 from QPay: the token expired or was revoked, or the credentials are wrong."""


class QPayRejected(QPayError):
    """A 4xx with a QPay error code (INVOICE_PAID, PAYMENT_NOTFOUND, ...): retrying the same call
    at once won't help."""


class QPayNoReceipt(QPayRejected):
    """Ebarimt create answered 2xx without a registered receipt (`{}`, a `barimt_status` other
    than REGISTERED, no receipt id). `code` is QPay's error code if the body carries one, else our
    reason (BARIMT_STATUS_MISSING, BARIMT_STATUS_<status>, EBARIMT_RECEIPT_ID_MISSING)."""


class QPayUnexpectedAnswer(QPayError):
    """A 2xx whose body cannot mean what the call asks (no invoice id, a PAID payment without its
    amount, a payment check without rows): nothing of it is believed; a later call may do better."""


class QPayTransportError(QPayError):
    """Timeouts, connection errors, 429 and 5xx that outlasted the retries."""


class StaleSession(Exception):
    """A conditional write lost a race: the session is no longer in the expected state/version."""


class DuplicateSettlement(Exception):
    """A QPay payment id is already settled against another order: needs a human."""
