"""GET /openapi.json: the API's OpenAPI document, generated from the routers (and so the pydantic
models) the other functions validate with.

This function's code is the whole functions/ folder, so it can import the other handlers.
"""

import importlib
import json
from functools import cache
from types import ModuleType
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.typing import LambdaContext

from qpay_common.api import build_resolver
from qpay_common.api_models import error_responses
from qpay_common.checkout_site import openapi_paths as checkout_paths
from qpay_common.observability import logger

ROUTED_FUNCTIONS = ("create_payment", "list_payments", "get_payment", "cancel_payment", "qpay_webhook")


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
    responses={200: {"description": "OpenAPI 3 document"}, **error_responses(500)},
)
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_schema())


@cache
def openapi_schema() -> dict[str, Any]:
    routers = [_handler_module(name).router for name in ROUTED_FUNCTIONS]
    document_app = build_resolver(*routers, router)
    document: dict[str, Any] = json.loads(
        document_app.get_openapi_json_schema(
            title="QPay payments API",
            version="1.0.0",
            description="Create, read, list and cancel QPay payments; QPay's callback.",
            security_schemes={"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            security=[{"jwt": []}],
        )
    )
    # The checkout page's function serves static files without a resolver; it documents itself.
    document.setdefault("paths", {}).update(checkout_paths())
    # Validation errors are answered 400 in the contract's shape, never Powertools' 422.
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    return document


app = build_resolver(router)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
