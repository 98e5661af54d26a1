"""The HTTP API resolver every function uses: validation on, the contract's error shape, the
64 KB body limit, hostile bodies refused before parsing, and the caller's identity from the JWT
authorizer. Every guard against what a client sends lives here, not in a handler."""

import inspect
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Annotated, Any, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Depends, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, Router
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common import composition, snapstart
from qpay_common.domain.errors import ConfigurationError, Forbidden, PaymentError, Unauthorized
from qpay_common.domain.session import SESSION_ID_PATTERN
from qpay_common.http.error_responses import error_body, lambda_error_response, status_for, validation_details
from qpay_common.http.request_body import (
    BodyRejected,
    UnsupportedMediaType,
    body_text,
    check_json_media_type,
    parse_json,
)
from qpay_common.lambda_entry import LambdaHandler, lambda_entry
from qpay_common.observability import logger

# The JWT scope of the operators' /admin routes (template.yaml AuthorizationScopes on each).
ADMIN_SCOPE = "payments/admin"

MAX_BODY_BYTES = 64 * 1024

# A value that is not a session id names no session: 404, like an unknown or someone else's id.
SessionIdPath = Annotated[
    str, Path(pattern=SESSION_ID_PATTERN, description="A session id (`ps_` and 32 hex digits)")
]


class _ContractRequestValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, but a body is UTF-8 JSON within request_body's limits, or
    refused (415 for another media type: no form or multipart parsing). Runs only for routes
    that take a body, so a webhook POST with a body we ignore is never refused for it."""

    def _get_body(self, app: Any) -> Any:
        event = app.current_event
        try:
            check_json_media_type(event.headers.get("content-type"))
            text = body_text(event.body, event.is_base64_encoded)
            return None if text is None else parse_json(text)
        except UnsupportedMediaType:
            raise RequestUnsupportedContentType(
                "Unsupported content type",
                errors=[{"type": "unsupported_content_type", "loc": ("body",), "msg": "not JSON"}],
            ) from None
        except BodyRejected as rejected:
            raise RequestValidationError(
                [{"type": rejected.kind, "loc": ("body",), "msg": rejected.message, "input": {}, "ctx": {}}]
            ) from None


def _json_error(
    status: HTTPStatus, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response[Any]:
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message, details or []),
    )


class PaymentsResolver(APIGatewayHttpResolver):
    def __init__(self) -> None:
        super().__init__(enable_validation=True)
        self._request_validation_middleware = _ContractRequestValidation()

    def resolve(self, event: Any, context: LambdaContext) -> dict[str, Any]:
        # Checked before routing, so an oversized body is never parsed.
        if _body_size(event) > MAX_BODY_BYTES:
            return lambda_error_response(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                f"request body exceeds {MAX_BODY_BYTES} bytes",
            )
        return super().resolve(event, context)


def _body_size(event: Any) -> int:
    body = event.get("body") if isinstance(event, dict) else None
    if not body:
        return 0
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode("utf-8"))


def build_resolver(
    *routers: Router, allowed_methods: Callable[[str], Sequence[str]] | None = None
) -> PaymentsResolver:
    """A resolver serving `routers`. Routes live on Routers so the OpenAPI function can gather
    every function's routes into one document.

    `allowed_methods` maps a route path (`/payments/{session_id}`) to the methods the API serves
    there: a request the gateway routed here (an `ANY` route) with another method is then a 405
    with `Allow`, as RFC 9110 asks, instead of a 404. OPTIONS is the exception: an `ANY` route
    receives the browsers' CORS preflights too (API Gateway routes a preflight that a route
    matches to it, and adds the CorsConfiguration's headers to the answer), and a preflight needs
    a 2xx, so OPTIONS is answered 204 with the same `Allow` (RFC 9110 section 9.3.7)."""
    app = PaymentsResolver()
    for router in routers:
        app.include_router(router)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response[Any]:
        details = validation_details(exc.errors())
        if details and all(detail["loc"][:1] == ["path"] for detail in details):
            # Path parameters are session ids; one that cannot exist is simply not found.
            return _json_error(HTTPStatus.NOT_FOUND, "NOT_FOUND", "payment session not found")
        body_errors = [
            detail for detail in details if detail["loc"] == ["body"] and detail["type"] != "missing"
        ]
        if body_errors:
            # The body could not be read at all: say why, once.
            return _json_error(HTTPStatus.BAD_REQUEST, "VALIDATION_ERROR", body_errors[0]["msg"], body_errors)
        return _json_error(HTTPStatus.BAD_REQUEST, "VALIDATION_ERROR", "request is invalid", details)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_type(exc: RequestUnsupportedContentType) -> Response[Any]:
        return _json_error(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json"
        )

    @app.exception_handler(PaymentError)
    def _payment_error(exc: PaymentError) -> Response[Any]:
        response = _json_error(status_for(exc), exc.code, exc.message, exc.details)
        retry_after = getattr(exc, "retry_after_seconds", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(ConfigurationError)
    def _misconfigured(exc: ConfigurationError) -> Response[Any]:
        logger.error("Function misconfigured", extra={"error": str(exc)})
        return _json_error(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "the service is misconfigured")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[Any]:
        logger.exception("Unhandled error")
        return _json_error(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "internal error")

    @app.not_found
    def _no_route(exc: Exception) -> Response[Any]:
        event = app.current_event
        route_path = (event.route_key or "").partition(" ")[2]
        allowed = list(allowed_methods(route_path)) if allowed_methods and route_path else []
        if allowed and event.request_context.http.method == "OPTIONS":
            return Response(status_code=int(HTTPStatus.NO_CONTENT), headers={"Allow": ", ".join(allowed)})
        if allowed:
            return Response(
                status_code=int(HTTPStatus.METHOD_NOT_ALLOWED),
                content_type=content_types.APPLICATION_JSON,
                body=error_body("METHOD_NOT_ALLOWED", f"this path serves only {', '.join(allowed)}"),
                headers={"Allow": ", ".join(allowed)},
            )
        return _json_error(HTTPStatus.NOT_FOUND, "NOT_FOUND", "no such route")

    return app


def http_handler(*routers: Router) -> LambdaHandler:
    """The Lambda entry point of an HTTP function: its routers behind one resolver, with the
    shared logging context and metrics flushing, and its SnapStart hooks (snapstart.py), which
    build the use cases its routes depend on before the snapshot."""
    app = build_resolver(*routers)
    snapstart.register(composition_dependencies(*routers))
    lambda_handler = lambda_entry(app.resolve)
    # Tests reach the resolver to override a use case: `resolver.dependency_overrides[...]`.
    lambda_handler.resolver = app  # type: ignore[attr-defined]
    return lambda_handler


def composition_dependencies(*routers: Router) -> list[Callable[[], object]]:
    """The composition functions the routes take with `Depends(...)`, once each, in route order."""
    found: list[Callable[[], object]] = []
    for router in routers:
        for route in router._routes.values():
            for parameter in inspect.signature(route).parameters.values():
                for marker in getattr(parameter.annotation, "__metadata__", ()):
                    dependency = marker.dependency if isinstance(marker, Depends) else None
                    ours = getattr(dependency, "__module__", None) == composition.__name__
                    if dependency is not None and ours and dependency not in found:
                        found.append(dependency)
    return found


def caller_user_id(app: BaseRouter) -> str:
    """The `sub` claim the JWT authorizer verified."""
    event = cast(APIGatewayProxyEventV2, app.current_event)
    claims = event.request_context.authorizer.jwt_claim or {}
    user_id = claims.get("sub")
    if not user_id:
        raise Unauthorized("missing caller identity")
    return str(user_id)


def public_base_url(app: BaseRouter, configured: str | None) -> str:
    """Where QPay should call back: the configured URL, else this API's own address."""
    if configured:
        return configured.rstrip("/")
    domain = cast(APIGatewayProxyEventV2, app.current_event).request_context.domain_name
    return f"https://{domain}"


def caller_scopes(app: BaseRouter) -> set[str]:
    """The token's scopes: the authorizer's list, or the `scope` (space separated) or `scp` claim
    (a list, which API Gateway hands over as "[a b]")."""
    authorizer = cast(APIGatewayProxyEventV2, app.current_event).request_context.authorizer
    scopes = {str(scope) for scope in authorizer.jwt_scopes or []}
    claims = authorizer.jwt_claim or {}
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            scopes.update(value.strip().strip("[]").split())
        elif isinstance(value, list):
            scopes.update(str(scope) for scope in value)
    return scopes


def caller_admin_id(app: BaseRouter) -> str:
    """The operator's id. API Gateway already refuses tokens without the admin scope; checking it
    again here keeps a route that lost its AuthorizationScopes from serving everyone."""
    user_id = caller_user_id(app)
    if ADMIN_SCOPE not in caller_scopes(app):
        raise Forbidden(f"this route needs the {ADMIN_SCOPE} scope")
    return user_id
