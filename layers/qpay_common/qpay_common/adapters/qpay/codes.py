"""QPay's error codes that change what we do, in one place: the client reads them, the use cases
and Ebarimt act on them, and the simulator answers with them."""

from enum import StrEnum


class QPayErrorCode(StrEnum):
    """Codes QPay answers with, as public sources show them (shared/qpay/QPAY_API.md)."""

    # Cancelling an invoice that was paid meanwhile: money arrived, settle it (policy A).
    INVOICE_PAID = "INVOICE_PAID"
    INVOICE_NOTFOUND = "INVOICE_NOTFOUND"
    INVOICE_ALREADY_CANCELED = "INVOICE_ALREADY_CANCELED"
    INVOICE_ALREADY_CANCELLED = "INVOICE_ALREADY_CANCELLED"
    INVOICE_CODE_INVALID = "INVOICE_CODE_INVALID"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    MIN_AMOUNT_ERR = "MIN_AMOUNT_ERR"
    OBJECT_DATA_ERROR = "OBJECT_DATA_ERROR"
    INVOICE_LINE_REQUIRED = "INVOICE_LINE_REQUIRED"
    # Not seen in public sources: the simulator's answer to paying an invoice past its expiry.
    INVOICE_EXPIRED = "INVOICE_EXPIRED"
    SENDER_INVOICE_NO_DUPLICATED = "SENDER_INVOICE_NO_DUPLICATED"
    PAYMENT_NOTFOUND = "PAYMENT_NOTFOUND"
    PAYMENT_NOT_PAID = "PAYMENT_NOT_PAID"
    PAYMENT_NOT_CARD = "PAYMENT_NOT_CARD"
    PAYMENT_ALREADY_CANCELED = "PAYMENT_ALREADY_CANCELED"
    INVALID_OBJECT_TYPE = "INVALID_OBJECT_TYPE"
    MAX_AMOUNT_ERR = "MAX_AMOUNT_ERR"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    # Spelled so by QPay.
    NO_CREDENDIALS = "NO_CREDENDIALS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    EBARIMT_NOT_REGISTERED = "EBARIMT_NOT_REGISTERED"
    EBARIMT_NOTFOUND = "EBARIMT_NOTFOUND"
    # Spelled so in QPay's documented code list.
    EBARIMT_CANCEL_NOTSUPPERDED = "EBARIMT_CANCEL_NOTSUPPERDED"
    INVALID_RECEIVER_TYPE = "INVALID_RECEIVER_TYPE"


# Answers to an invoice cancel that mean "nothing left to cancel".
INVOICE_ALREADY_GONE = frozenset(
    {
        QPayErrorCode.INVOICE_NOTFOUND,
        QPayErrorCode.INVOICE_ALREADY_CANCELED,
        QPayErrorCode.INVOICE_ALREADY_CANCELLED,
    }
)
# Ebarimt answers that no retry can change: the merchant is not enabled for Ebarimt, or QPay's
# validation refused the request (receiver type, receiver, district or classification code). The
# receipt is REJECTED at once; an operator re-queues it, perhaps with corrected receiver data. Any
# other failure (network, 5xx, 429, other codes) is retried until the window closes.
EBARIMT_PERMANENT = frozenset(
    {
        QPayErrorCode.EBARIMT_NOT_REGISTERED,
        QPayErrorCode.INVALID_RECEIVER_TYPE,
        QPayErrorCode.OBJECT_DATA_ERROR,
    }
)
# Answers to an Ebarimt cancel that mean "QPay holds no receipt for this payment".
EBARIMT_RECEIPT_ABSENT = frozenset({QPayErrorCode.EBARIMT_NOT_REGISTERED, QPayErrorCode.EBARIMT_NOTFOUND})
# Ebarimt cancel answers that no retry can change: a person cancels the receipt with the tax office.
EBARIMT_CANCEL_PERMANENT = frozenset({QPayErrorCode.EBARIMT_CANCEL_NOTSUPPERDED})
