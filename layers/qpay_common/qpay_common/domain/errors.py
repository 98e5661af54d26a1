"""Domain errors. Each type is one outcome a caller can tell apart; http/error_responses.py maps
them to HTTP in one place. Messages never carry secrets, tokens or personal data."""

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


class InvertedWindow(InvalidRequest):
    # A rule across two query parameters, which JSON Schema cannot state: named in details[].type.
    detail_type = "from_after_to"

    def __init__(self) -> None:
        message = "`from` must not be after `to`"
        super().__init__(message, [{"loc": ["query", "from"], "msg": message, "type": self.detail_type}])


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


class NotRequeueable(PaymentError):
    """Only an ERROR, REJECTED or GAVE_UP receipt of a PROCESSED session is queued again."""

    code = "EBARIMT_NOT_REQUEUEABLE"


class EbarimtAlreadyRegistered(NotRequeueable):
    """The receipt is REGISTERED: queueing it again would issue a second one."""

    code = "EBARIMT_ALREADY_REGISTERED"


class EbarimtDisabled(NotRequeueable):
    """EBARIMT_ENABLED is off on this stack: a queued receipt would only be SKIPPED."""

    code = "EBARIMT_DISABLED"


class EventBusUnavailable(PaymentError):
    """The change was recorded but its event could not be put on the bus; repeating the request
    puts it there (consumers dedupe)."""

    code = "EVENT_BUS_UNAVAILABLE"


class IdempotencyConflict(PaymentError):
    code = "IDEMPOTENCY_CONFLICT"

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        # Set while the first request could still be running: when to try again (Retry-After).
        self.retry_after_seconds = retry_after_seconds


class QPayUnavailable(PaymentError):
    """QPay failed (after retries, where retrying is safe); nothing was left half-written."""

    code = "QPAY_UNAVAILABLE"


class StorageUnavailable(PaymentError):
    """DynamoDB throttled, failed or timed out after the SDK's own retries: nothing was decided,
    the same request may be repeated (503 with Retry-After)."""

    code = "SERVICE_UNAVAILABLE"
    retry_after_seconds = 1

    def __init__(self, message: str = "storage is busy; repeat the request") -> None:
        super().__init__(message)


class StaleSession(Exception):
    """A conditional write lost a race: the session is no longer in the expected state/version,
    or (`in_flight`) another write, a DynamoDB transaction, held it at that moment."""

    def __init__(self, session_id: str = "", *, in_flight: bool = False) -> None:
        super().__init__(session_id)
        self.in_flight = in_flight


class DuplicateSettlement(Exception):
    """A QPay payment id is already settled against another order: needs a human."""


class EventPublishError(Exception):
    """The event bus did not take an event (the publisher port's one failure)."""
