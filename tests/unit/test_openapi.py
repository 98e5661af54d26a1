"""GET /openapi.json: generated from the routers the handlers validate with, valid, and covering
every route of template.yaml with every status code the API answers."""

import json

import pytest
from openapi_spec_validator import validate

from functions.openapi.app import openapi_schema
from local.template import load_template
from tests.support import TEMPLATE, LambdaContext, sample_event

pytestmark = pytest.mark.unit


def test_the_document_is_valid_openapi():
    validate(openapi_schema())


def test_every_route_of_the_template_is_documented():
    documented = {
        (method.upper(), path)
        for path, operations in openapi_schema()["paths"].items()
        for method in operations
    }
    routes = {(route.method, route.path) for route in load_template(TEMPLATE).routes}

    assert routes
    assert routes <= documented


def test_error_answers_are_documented_in_the_contract_shape_and_422_is_not():
    paths = openapi_schema()["paths"]
    create = paths["/payments"]["post"]["responses"]

    assert {"201", "200", "400", "401", "409", "413", "415", "502"} <= set(create)
    assert all("422" not in operation["responses"] for ops in paths.values() for operation in ops.values())
    error_schema = create["400"]["content"]["application/json"]["schema"]
    assert error_schema["$ref"].endswith("/ErrorResponse")


def test_the_handler_serves_the_document():
    from functions.openapi import app

    response = app.lambda_handler(sample_event("openapi"), LambdaContext())

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["info"]["title"] == "QPay payments API"


def test_every_function_has_a_sample_event():
    from tests.support import EVENTS

    for function in load_template(TEMPLATE).functions.values():
        handler_dir = function.code_uri.name if function.code_uri.name != "functions" else "openapi"
        assert (EVENTS / f"{handler_dir}.json").exists() or (EVENTS / f"{handler_dir}_get.json").exists(), (
            handler_dir
        )


ADMIN_ROUTES = {
    ("GET", "/admin/payments"),
    ("GET", "/admin/payments/{session_id}"),
    ("POST", "/admin/payments/{session_id}/reconcile"),
    ("POST", "/admin/payments/{session_id}/republish"),
    ("POST", "/admin/payments/{session_id}/refund"),
    ("GET", "/admin/summary"),
}


def test_the_admin_routes_need_the_admin_scope_in_the_template_and_the_document():
    from qpay_common.api import ADMIN_SCOPE

    routes = {(r.method, r.path): r for r in load_template(TEMPLATE).routes if r.path.startswith("/admin")}
    documented = {
        (method.upper(), path): operation
        for path, operations in openapi_schema()["paths"].items()
        if path.startswith("/admin")
        for method, operation in operations.items()
    }

    assert set(routes) == set(documented) == ADMIN_ROUTES
    for route in routes.values():
        assert route.authorizer == "JwtAuthorizer"
        assert route.authorization_scopes == (ADMIN_SCOPE,)
    for operation in documented.values():
        assert operation["security"] == [{"jwt": [ADMIN_SCOPE]}]
        assert ADMIN_SCOPE in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])
