"""GET /openapi.json: generated from the routers the handlers validate with, valid, and covering
every route of template.yaml with every status code the API answers. The function serves a copy
built with the code (functions/openapi/openapi.json), which must be what the routers generate."""

import json

import pytest
from openapi_spec_validator import validate

from functions.openapi.app import DOCUMENT_FILE, generate_openapi_schema, openapi_schema
from local.template import load_template
from tests.support import TEMPLATE, LambdaContext, sample_event

pytestmark = pytest.mark.unit


def test_the_document_is_valid_openapi():
    validate(openapi_schema())


def test_the_built_document_is_what_the_routers_generate_now():
    built = json.loads(DOCUMENT_FILE.read_text(encoding="utf-8"))

    assert openapi_schema() == built
    assert built == generate_openapi_schema(), (
        "functions/openapi/openapi.json is out of date: run `make openapi` and commit it"
    )


def test_every_route_of_the_template_is_documented_and_every_path_answers_other_methods():
    documented = {
        (method.upper(), path)
        for path, operations in openapi_schema()["paths"].items()
        for method in operations
    }
    routes = load_template(TEMPLATE).routes
    served = {(route.method, route.path) for route in routes if route.method != "ANY"}
    catch_all = {route.path: route.function_id for route in routes if route.method == "ANY"}

    assert served
    assert served <= documented
    # Each documented path has an ANY route, served by the function that answers 405 for it.
    assert catch_all == {path: "OpenApiFunction" for _, path in documented}


def test_the_document_says_which_routes_need_a_jwt_as_the_template_does():
    document = openapi_schema()
    needs_jwt = {
        (method.upper(), path): operation.get("security", document["security"]) != []
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    template = {
        (route.method, route.path): route.auth_required
        for route in load_template(TEMPLATE).routes
        if route.method != "ANY"
    }

    assert needs_jwt == template
    assert needs_jwt[("GET", "/webhooks/qpay")] is False


def test_the_gateways_403_is_documented_exactly_where_the_template_asks_for_a_scope():
    from functions.openapi.app import SCOPED_OPERATIONS

    scoped = {
        (route.method.lower(), route.path)
        for route in load_template(TEMPLATE).routes
        if route.authorization_scopes and route.method != "ANY"
    }
    documented_403 = {
        (method, path)
        for path, operations in openapi_schema()["paths"].items()
        for method, operation in operations.items()
        if "403" in operation["responses"]
    }

    assert scoped == SCOPED_OPERATIONS
    assert documented_403 == scoped


def test_the_authorizers_and_the_gateways_own_answers_are_documented():
    document = openapi_schema()
    paths = document["paths"]
    schemas = document["components"]["schemas"]

    listed = paths["/payments"]["get"]["responses"]
    # The JWT authorizer's 401 ({"message": "Unauthorized"}), besides the handler's own.
    refs = [option["$ref"] for option in listed["401"]["content"]["application/json"]["schema"]["anyOf"]]
    assert refs == ["#/components/schemas/ErrorResponse", "#/components/schemas/GatewayError401"]
    assert schemas["GatewayError401"]["properties"]["message"] == {"const": "Unauthorized"}
    # No authorizer in front of the webhook: its 401 is the handler's alone.
    webhook_401 = paths["/webhooks/qpay"]["get"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert webhook_401 == {"$ref": "#/components/schemas/ErrorResponse"}
    # A path parameter can miss every route: the gateway's 404.
    read_404 = paths["/payments/{session_id}"]["get"]["responses"]["404"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/GatewayError404"} in read_404["schema"]["anyOf"]
    assert "404" not in paths["/openapi.json"]["get"]["responses"]
    # Throttling and integration failures can answer on every route.
    for operations in paths.values():
        for operation in operations.values():
            assert {"413", "429", "500", "503"} <= set(operation["responses"])


def test_an_unserved_method_on_an_api_path_is_405_with_allow():
    from functions.openapi import app

    event = sample_event("openapi")
    event["routeKey"] = event["requestContext"]["routeKey"] = "ANY /payments/{session_id}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/payments/ps_x"
    event["requestContext"]["http"]["method"] = "DELETE"

    response = app.lambda_handler(event, LambdaContext())

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET"
    assert json.loads(response["body"])["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("path", "route", "allowed"),
    [
        ("/payments", "/payments", "GET, POST"),
        ("/payments/ps_x", "/payments/{session_id}", "GET"),
        ("/payments/ps_x/cancel", "/payments/{session_id}/cancel", "POST"),
        ("/admin/payments/ps_x/refund", "/admin/payments/{session_id}/refund", "POST"),
    ],
)
def test_options_through_an_any_route_is_204_with_allow_so_a_cors_preflight_succeeds(path, route, allowed):
    from functions.openapi import app

    # Given a browser's preflight, which API Gateway routes to the ANY route of its path
    event = sample_event("openapi")
    event["routeKey"] = event["requestContext"]["routeKey"] = f"ANY {route}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = "OPTIONS"
    event["headers"].update({"origin": "https://shop.example", "access-control-request-method": "GET"})

    response = app.lambda_handler(event, LambdaContext())

    # Then it is a 2xx (a preflight needs one) naming what the path serves, with no body
    assert response["statusCode"] == 204
    assert response["headers"]["Allow"] == allowed
    assert not response.get("body")


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


def test_the_document_uses_json_schema_keywords_only_and_states_the_models_limits():
    # pydantic writes a bound it cannot place as a raw `ge`/`le`, which no contract tester reads.
    def keys(value):
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from keys(item)
        elif isinstance(value, list):
            for item in value:
                yield from keys(item)

    document = openapi_schema()
    assert not {"ge", "le", "gt", "lt"} & set(keys(document["components"]))
    create = document["components"]["schemas"]["CreatePaymentRequest"]["properties"]
    assert create["amount"]["minimum"] == 1
    items = create["items"]["anyOf"][0]
    assert (items["minItems"], items["maxItems"]) == (1, 100)
    read = document["paths"]["/payments/{session_id}"]["get"]["parameters"][0]
    assert read["schema"]["pattern"] == "^ps_[0-9a-f]{32}$"


ADMIN_ROUTES = {
    ("GET", "/admin/payments"),
    ("GET", "/admin/payments/{session_id}"),
    ("POST", "/admin/payments/{session_id}/reconcile"),
    ("POST", "/admin/payments/{session_id}/republish"),
    ("POST", "/admin/payments/{session_id}/refund"),
    ("POST", "/admin/payments/{session_id}/ebarimt"),
    ("GET", "/admin/summary"),
}


def test_the_admin_routes_need_the_admin_scope_in_the_template_and_the_document():
    from qpay_common.http.resolver import ADMIN_SCOPE

    admin_routes = [r for r in load_template(TEMPLATE).routes if r.path.startswith("/admin")]
    routes = {(r.method, r.path): r for r in admin_routes if r.method != "ANY"}
    # Any other method on an admin path is answered 405 by the OpenAPI function, before any auth.
    assert {r.path for r in admin_routes if r.method == "ANY"} == {path for _, path in ADMIN_ROUTES}
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
