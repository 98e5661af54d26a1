"""GET /openapi.json: the API's OpenAPI document, generated from the routers (and so the pydantic
models) the other functions validate with, plus what API Gateway itself answers in front of them.

It also serves the template's `ANY` routes: a method the API does not serve on one of its paths
is a 405 with `Allow`, read from the same document.

This function's code is the whole functions/ folder, so it can import the other handlers.
"""

import importlib
import json
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common.http.api_models import error_responses
from qpay_common.http.checkout_site import openapi_paths as checkout_paths
from qpay_common.http.resolver import build_resolver
from qpay_common.observability import logger

ROUTED_FUNCTIONS = (
    "create_payment",
    "list_payments",
    "get_payment",
    "cancel_payment",
    "qpay_webhook",
    "admin",
)

# API Gateway's own answers, which never reach a function: (status, message, description, when).
# "secured": routes behind the JWT authorizer; "scoped": those that also require a scope;
# "path": routes with a path parameter (an empty or slash-holding value matches no route);
# "all": every route.
GATEWAY_ANSWERS = (
    (
        "401",
        "Unauthorized",
        "The JWT authorizer refused the token (missing, expired, wrong signature)",
        "secured",
    ),
    ("403", "Forbidden", "The token has none of the route's authorization scopes", "scoped"),
    ("404", "Not Found", "No route matches (for example an empty path parameter)", "path"),
    ("413", "Request Entity Too Large", "Body over API Gateway's 10 MB", "all"),
    ("429", "Too Many Requests", "Throttled by the API's route settings", "all"),
    ("500", "Internal Server Error", "The function failed", "all"),
    ("503", "Service Unavailable", "The function did not answer in time", "all"),
)
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# The routes template.yaml serves without the JWT authorizer (Auth: NONE); a unit test keeps the
# two in step. Powertools drops a route's `security=[]` from the document, so it is set here.
PUBLIC_OPERATIONS = frozenset(
    {
        ("get", "/webhooks/qpay"),
        ("post", "/webhooks/qpay"),
        ("get", "/openapi.json"),
        ("get", "/checkout/{session_id}"),
        ("get", "/checkout/assets/{file}"),
    }
)
# The routes template.yaml gives AuthorizationScopes: the operators' routes.
SCOPED_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("get", "/admin/payments"),
        ("get", "/admin/payments/{session_id}"),
        ("post", "/admin/payments/{session_id}/reconcile"),
        ("post", "/admin/payments/{session_id}/republish"),
        ("post", "/admin/payments/{session_id}/refund"),
        ("post", "/admin/payments/{session_id}/ebarimt"),
        ("get", "/admin/summary"),
    }
)


def _handler_module(name: str) -> ModuleType:
    # `functions.<name>.app` in the repo and the local stack; `<name>.app` inside the Lambda package.
    try:
        return importlib.import_module(f"functions.{name}.app")
    except ModuleNotFoundError:
        return importlib.import_module(f"{name}.app")


router = Router()


@router.get(
    "/openapi.json",
    summary="This API's OpenAPI document",
    security=[],
    responses={
        200: {
            "description": "OpenAPI 3 document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **error_responses(500),
    },
)
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_schema())


# Built with the code (`make openapi`), so a cold start reads one file instead of importing every
# handler and generating the document (~0.4 s here). tests/unit/test_openapi.py fails when it no
# longer matches what the routers generate.
DOCUMENT_FILE = Path(__file__).resolve().parent / "openapi.json"


@cache
def openapi_schema() -> dict[str, Any]:
    """The document: the built file, or generated from the routers where there is none."""
    if DOCUMENT_FILE.is_file():
        document: dict[str, Any] = json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))
        return document
    return generate_openapi_schema()


def generate_openapi_schema() -> dict[str, Any]:
    routers = [_handler_module(name).router for name in ROUTED_FUNCTIONS]
    document_app = build_resolver(*routers, router)
    document: dict[str, Any] = json.loads(
        document_app.get_openapi_json_schema(
            title="QPay payments API",
            version="1.0.0",
            description=(
                "Create, read, list and cancel QPay payments; QPay's callback; the operators' "
                "/admin routes (scope payments/admin)."
            ),
            security_schemes={"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            security=[{"jwt": []}],
        )
    )
    # The checkout page's function serves static files without a resolver; it documents itself.
    document.setdefault("paths", {}).update(checkout_paths())
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for status, message, _, _ in GATEWAY_ANSWERS:
        schemas[_gateway_schema_name(status)] = {
            "type": "object",
            "description": f"API Gateway's own {status} body",
            "properties": {"message": {"const": message}},
            "required": ["message"],
            "additionalProperties": False,
        }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            # Validation errors are answered 400 in the contract's shape, never Powertools' 422.
            responses.pop("422", None)
            secured = (method, path) not in PUBLIC_OPERATIONS
            if not secured:
                operation["security"] = []
            applies = {
                "all": True,
                "secured": secured,
                "scoped": (method, path) in SCOPED_OPERATIONS,
                "path": "{" in path,
            }
            for status, _, description, when in GATEWAY_ANSWERS:
                if applies[when]:
                    _add_gateway_answer(responses, status, description)
    return document


def _gateway_schema_name(status: str) -> str:
    return f"GatewayError{status}"


def _add_gateway_answer(responses: dict[str, Any], status: str, description: str) -> None:
    gateway = {"$ref": f"#/components/schemas/{_gateway_schema_name(status)}"}
    existing = responses.get(status)
    if existing is None:
        responses[status] = {"description": description, "content": {"application/json": {"schema": gateway}}}
        return
    media = existing.setdefault("content", {}).setdefault("application/json", {})
    media["schema"] = {"anyOf": [media["schema"], gateway]} if "schema" in media else gateway
    existing["description"] = f"{existing['description']}; or from API Gateway: {description}"


def documented_methods(route_path: str) -> list[str]:
    operations = openapi_schema()["paths"].get(route_path, {})
    return sorted(method.upper() for method in operations if method in HTTP_METHODS)


app = build_resolver(router, allowed_methods=documented_methods)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
