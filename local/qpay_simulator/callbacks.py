"""Delivering a payment callback to the merchant's callback_url the way QPay does."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

logger = logging.getLogger("qpay_simulator")

CALLBACK_TIMEOUT_S = 30.0
_BODY_PREVIEW_CHARS = 200
# Callbacks go to local merchants: a proxy from the environment must not intercept them.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def with_payment_id(callback_url: str, payment_id: str) -> str:
    """QPay appends `qpay_payment_id` to whatever query the merchant registered."""
    parts = urlsplit(callback_url)
    extra = urlencode({"qpay_payment_id": payment_id})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _loggable(url: str) -> str:
    # The query carries the merchant's callback secret.
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def deliver_callback(callback_url: str, payment_id: str, invoice_id: str, method: str) -> dict[str, Any]:
    """Calls the merchant and reports what happened; failures are reported, never raised."""
    if method == "POST":
        request = urllib.request.Request(
            callback_url,
            data=json.dumps({"payment_id": payment_id, "invoice_id": invoice_id}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
    else:
        request = urllib.request.Request(with_payment_id(callback_url, payment_id), method="GET")
    request.add_header("User-Agent", "QPay-Simulator/1.0")

    status: int | None = None
    raw = b""
    error: str | None = None
    try:
        with _OPENER.open(request, timeout=CALLBACK_TIMEOUT_S) as response:
            status, raw = response.status, response.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(64 * 1024)
    except urllib.error.URLError as exc:
        error = f"{type(exc.reason).__name__}: {exc.reason}"
    except ValueError as exc:
        # Its message quotes the URL, and with it the merchant's secret.
        error = f"{type(exc).__name__}: invalid callback URL"
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"

    logger.info(
        "callback %s %s for payment %s -> %s", method, _loggable(callback_url), payment_id, status or error
    )
    return {
        "status": status,
        "body": raw.decode("utf-8", errors="replace")[:_BODY_PREVIEW_CHARS] if status is not None else None,
        "error": error,
    }
