"""QPay's error answers, in the one form the simulator sends.

Public sources disagree on where QPay puts the error code. The form that public SDKs read, and
the majority of the sources below, is `{"error": CODE, "message": text}`:
- `qpay-client` (PyPI, Amraa1/qpay_client) `utils.handle_error` reads `error`, then `message`;
- `qpay-py` (PyPI, qpay-sdk/qpay-py) `QPayError.from_response` reads `error` and `message`;
- techpartners-asia/qpay-go `QpayGeneralResponse` has `error` and `message`;
- tsetsee/qpay-php-api `ErrorDTO` has `error` and `message`;
- khasbilegt/qpay-python treats a body with `error` as a failure.
Minority forms: `{"message": CODE}` (seen for some endpoints), `{"error_code": ...}` (the
qpay-sdk/qpay-docs pages) and `{"code": ...}` (the `ApiError` schema of the OpenAPI spec captured
from the sandbox in Amraa1/qpay_client `specs/openapi.json`). Clients should read all four; the
simulator sends the majority form (`shared/qpay/QPAY_API.md`, "Errors"), and a fault rule's
`error_form` makes it send one of the others on chosen paths (`in_form`), so a client can be tested
against each.
"""

from __future__ import annotations

from typing import Any

from qpay_common.adapters.qpay.codes import QPayErrorCode


class QPayError(Exception):
    """A refusal, with the HTTP status and the exact error body QPay would send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


# Where each form puts the code: the majority form, the spec's `ApiError`, the qpay-docs pages, and
# the code alone in `message` (its text is lost in that form).
ERROR_FORMS = ("error", "code", "error_code", "message")


def in_form(body: dict[str, Any], form: str) -> dict[str, Any]:
    """An error body of the majority form `{"error": CODE, "message": text}` in another form."""
    code = body.get("error")
    if form == "error" or not isinstance(code, str):
        return body
    if form == "message":
        return {"message": code}
    return {form: code, "message": body.get("message", "")}


def qpay_error(status: int, code: QPayErrorCode | str, message: str) -> QPayError:
    return QPayError(status, {"error": str(code), "message": message})


def object_data_error(message: str) -> QPayError:
    """A request field QPay cannot use: OBJECT_DATA_ERROR is in QPay's documented code list."""
    return qpay_error(400, QPayErrorCode.OBJECT_DATA_ERROR, message)


def invalid_amount(message: str) -> QPayError:
    return qpay_error(400, QPayErrorCode.INVALID_AMOUNT, message)


def control_error(message: str) -> QPayError:
    """A refusal of the simulator's own control API (`/_sim/...`), which is not part of QPay."""
    return qpay_error(400, "VALIDATION_ERROR", message)
