"""HTTP layer of the QPay simulator: routing, auth headers, injected faults and callbacks."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from qpay_common.adapters.qpay.codes import QPayErrorCode

from .bank_app_page import PageAsset, find_asset
from .callbacks import deliver_callback
from .errors import QPayError, in_form, qpay_error
from .state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_EBARIMT_INVOICE_CODE,
    DEFAULT_INVOICE_CODE,
    FaultDecision,
    SimulatorState,
    TokenPolicy,
)

logger = logging.getLogger("qpay_simulator")

CONTROL_PREFIX = "/_sim/"
MAX_BODY_BYTES = 1024 * 1024

Payload = dict[str, Any]


@dataclass(frozen=True)
class Call:
    state: SimulatorState
    params: dict[str, str]
    raw_body: bytes
    headers: Message
    token_policy: TokenPolicy
    barimt_status: str | None = None

    @property
    def id(self) -> str:
        return self.params["id"]

    def json(self) -> Payload:
        if not self.raw_body.strip():
            return {}
        try:
            body = json.loads(self.raw_body)
        except ValueError:
            raise qpay_error(400, QPayErrorCode.OBJECT_DATA_ERROR, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise qpay_error(400, QPayErrorCode.OBJECT_DATA_ERROR, "Request body must be a JSON object")
        return body


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Callable[[Call], Payload]
    needs_bearer: bool = False
    issues_tokens: bool = False
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.escape(self.template).replace(re.escape("{id}"), "(?P<id>[^/]+)")
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


def _authorization(headers: Message, scheme: str) -> str | None:
    given_scheme, _, credentials = (headers.get("Authorization") or "").strip().partition(" ")
    if given_scheme.lower() != scheme or not credentials.strip():
        return None
    return credentials.strip()


def _issue_token(call: Call) -> Payload:
    encoded = _authorization(call.headers, "basic")
    if encoded is None:
        raise qpay_error(
            401, QPayErrorCode.NO_CREDENDIALS, "Basic credentials are required"
        )  # sic, as QPay spells it
    try:
        client_id, _, client_secret = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        client_id, client_secret = "", ""
    call.state.authenticate_client(client_id, client_secret)
    return call.state.issue_token(call.token_policy)


def _refresh_token(call: Call) -> Payload:
    return call.state.refresh_token(_authorization(call.headers, "bearer"), call.token_policy)


def _simulate_payment(call: Call) -> Payload:
    payment = call.state.simulate_payment(call.json())
    callback = None
    # The lock is released here: the merchant's callback handler usually calls payment/check.
    if payment.callback_url is not None:
        callback = deliver_callback(
            payment.callback_url, payment.payment_id, payment.invoice_id, payment.callback_method
        )
        call.state.record_callback(
            succeeded=callback["status"] is not None and 200 <= callback["status"] < 300
        )
    return {"payment_id": payment.payment_id, "invoice_id": payment.invoice_id, "callback": callback}


ROUTES = (
    Route("POST", "/v2/auth/token", _issue_token, issues_tokens=True),
    Route("POST", "/v2/auth/refresh", _refresh_token, issues_tokens=True),
    Route("POST", "/v2/invoice", lambda c: c.state.create_invoice(c.json()), needs_bearer=True),
    Route("GET", "/v2/invoice/{id}", lambda c: c.state.get_invoice(c.id), needs_bearer=True),
    Route("DELETE", "/v2/invoice/{id}", lambda c: c.state.cancel_invoice(c.id), needs_bearer=True),
    Route("POST", "/v2/payment/check", lambda c: c.state.check_payments(c.json()), needs_bearer=True),
    Route("POST", "/v2/payment/list", lambda c: c.state.list_payments(c.json()), needs_bearer=True),
    Route("GET", "/v2/payment/{id}", lambda c: c.state.get_payment(c.id), needs_bearer=True),
    Route(
        "DELETE",
        "/v2/payment/cancel/{id}",
        lambda c: c.state.cancel_card_payment(c.id, c.json()),
        needs_bearer=True,
    ),
    Route(
        "DELETE",
        "/v2/payment/refund/{id}",
        lambda c: c.state.refund_card_payment(c.id, c.json()),
        needs_bearer=True,
    ),
    Route(
        "POST",
        "/v2/ebarimt_v3/create",
        lambda c: c.state.create_ebarimt(c.json(), c.barimt_status),
        needs_bearer=True,
    ),
    Route("DELETE", "/v2/ebarimt_v3/{id}", lambda c: c.state.cancel_ebarimt(c.id), needs_bearer=True),
    Route(
        "POST",
        "/v2/ebarimt/create",
        lambda c: c.state.create_legacy_ebarimt(c.json(), c.barimt_status),
        needs_bearer=True,
    ),
    Route("GET", "/v2/ebarimt/{id}", lambda c: c.state.get_legacy_ebarimt(c.id), needs_bearer=True),
    Route("POST", "/_sim/pay", _simulate_payment),
    Route("POST", "/_sim/faults", lambda c: c.state.add_faults(c.json())),
    Route("GET", "/_sim/faults", lambda c: c.state.list_faults()),
    Route("DELETE", "/_sim/faults", lambda c: c.state.clear_faults()),
    Route("GET", "/_sim/stats", lambda c: c.state.stats()),
    Route("POST", "/_sim/reset", lambda c: c.state.reset()),
    Route("GET", "/_sim/invoices", lambda c: c.state.list_invoices()),
    Route("GET", "/_sim/invoices/{id}", lambda c: c.state.invoice_view(c.id)),
    Route("POST", "/_sim/config", lambda c: c.state.configure(c.json())),
    Route("GET", "/_sim/config", lambda c: c.state.configure({})),
    Route("POST", "/_sim/tokens/expire", lambda c: c.state.expire_tokens(c.json())),
    Route("GET", "/_sim/health", lambda c: {"ok": True}),
)


def _find_route(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        if route.method == method and (match := route.pattern.match(path)):
            return route, match.groupdict()
    return None, {}


def _status_code_name(status: int) -> str:
    """503 -> SERVICE_UNAVAILABLE: the code a QPay-style error body carries when nothing better fits."""
    try:
        return HTTPStatus(status).phrase.upper().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "ERROR"


class _SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    # Bursts of 50+ concurrent clients would overflow the default backlog of 5 and stall on SYN retries.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        super().__init__(address, _RequestHandler)
        self.state = state


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "QPaySimulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections end instead of holding a thread forever
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms to every call.
    disable_nagle_algorithm = True
    server: _SimulatorServer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed requests rejected by http.server get a JSON body too, not its HTML page.
        self.close_connection = True
        self._send_json(code, {"error": _status_code_name(code), "message": message or explain or ""})

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        if (asset := find_asset(self.command, path)) is not None:
            self._send_asset(asset)
            return
        route, params = _find_route(self.command, path)
        decision = FaultDecision()
        if not path.startswith(CONTROL_PREFIX):
            decision = self.server.state.begin_request(
                f"{self.command} {route.template if route else path}",
                self.command,
                path,
                issues_tokens=route is not None and route.issues_tokens,
            )
        # Read the body even when a fault answers: leftover bytes would corrupt the next keep-alive request.
        try:
            raw_body = self._read_body()
        except QPayError as exc:
            self.close_connection = True
            self._answer(decision, exc.status, exc.body)
            return
        if decision.delay_s:
            time.sleep(decision.delay_s)
        if decision.body is not None and decision.status is not None:
            self._send_json(decision.status, decision.body)  # exactly as the rule gives it
            return
        if decision.status is not None:
            code = decision.error or _status_code_name(decision.status)
            self._answer(
                decision, decision.status, {"error": code, "message": "Injected by the QPay simulator"}
            )
            return
        if route is None:
            self._answer(
                decision, 404, {"error": "NOT_FOUND", "message": f"No route for {self.command} {path}"}
            )
            return

        call = Call(
            self.server.state, params, raw_body, self.headers, decision.token_policy, decision.barimt_status
        )
        try:
            if route.needs_bearer:
                self.server.state.require_access_token(_authorization(self.headers, "bearer"))
            status, payload = 200, route.handler(call)
        except QPayError as exc:
            status, payload = exc.status, exc.body
        except Exception:
            logger.exception("unhandled error in %s %s", self.command, route.template)
            status, payload = 500, {"error": "INTERNAL_SERVER_ERROR", "message": "Simulator error"}
        self._answer(decision, status, payload)

    def _answer(self, decision: FaultDecision, status: int, payload: Payload) -> None:
        """Errors go out in the majority form unless a fault rule asks for another (`error_form`)."""
        if status >= 400 and decision.error_form is not None:
            payload = in_form(payload, decision.error_form)
        self._send_json(status, payload)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise qpay_error(411, "LENGTH_REQUIRED", "Send a Content-Length, not a chunked body")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise qpay_error(400, "BAD_REQUEST", "Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise qpay_error(413, "PAYLOAD_TOO_LARGE", f"Body must be at most {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: Payload) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            logger.debug("client went away before the response to %s", self.command)

    def _send_asset(self, asset: PageAsset) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", asset.content_type)
            self.send_header("Content-Length", str(len(asset.body)))
            for name, value in asset.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(asset.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Without the query string: merchants' URLs may carry secrets there.
        # `path` is unset when the request line itself was rejected.
        logger.debug("%s %s -> %s", self.command, urlsplit(getattr(self, "path", "")).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)


class SimulatorHandle:
    """A running simulator; `base_url` has no `/v2` (QPay paths and `/_sim/` hang below it)."""

    def __init__(self, server: _SimulatorServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.state = server.state
        host, port = server.server_address[:2]
        self.port: int = port
        self.base_url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_simulator(
    host: str = "127.0.0.1",
    port: int = 0,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    invoice_code: str = DEFAULT_INVOICE_CODE,
    ebarimt_invoice_code: str = DEFAULT_EBARIMT_INVOICE_CODE,
) -> SimulatorHandle:
    """Serves the simulator from a daemon thread; port 0 picks a free port (see `handle.port`)."""
    state = SimulatorState(
        client_id=client_id,
        client_secret=client_secret,
        invoice_code=invoice_code,
        ebarimt_invoice_code=ebarimt_invoice_code,
    )
    server = _SimulatorServer((host, port), state)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="qpay-simulator", daemon=True
    )
    thread.start()
    handle = SimulatorHandle(server, thread)
    logger.info("QPay simulator serving on %s", handle.base_url)
    return handle
