"""What the QPay client raises: QPay answered with a failure, or did not answer. The use cases
decide on these (a code such as INVOICE_PAID changes what happens); none reaches a client of the
payments API, which sees domain errors only (QPayUnavailable)."""


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
