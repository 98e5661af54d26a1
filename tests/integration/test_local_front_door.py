"""The HTTP API front door, called in process with handlers in the local runtime: route matching,
the JWT authorizer, the payload 2.0 event the handler receives, and how the handler's return value
becomes the HTTP response."""

import base64
import json
import re
from pathlib import Path
from typing import Any

import jwt
import pytest

from local.dev_token import mint_token
from local.front_door import FrontDoor, IncomingRequest, Router
from local.functions import FunctionRuntime
from local.jwt_auth import JwtSettings
from local.template import HttpRoute, load_template

pytestmark = pytest.mark.integration

SETTINGS = JwtSettings(secret="unit-secret", issuer="unit-issuer", audience="unit-audience")
OTHER_KEY = JwtSettings(secret="other-secret", issuer="unit-issuer", audience="unit-audience")

ECHO_HANDLER = """\
import json
from pathlib import Path

CALLS = Path({calls!r})


def lambda_handler(event, context):
    with CALLS.open("a") as calls:
        calls.write(event["routeKey"] + "\\n")
    if event.get("rawPath") == "/boom":
        raise RuntimeError("secret detail that must not leak")
    if event.get("rawPath") == "/plain":
        return {{"hello": "world"}}
    if event.get("rawPath") == "/binary":
        return {{
            "statusCode": 200,
            "headers": {{"content-type": "image/png", "x-flag": True}},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "iVBORw0K",
            "isBase64Encoded": True,
        }}
    if event.get("rawPath") == "/bad-status":
        return {{"statusCode": "teapot"}}
    context_view = {{
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }}
    return {{
        "statusCode": 201,
        "headers": {{"content-type": "application/json"}},
        "body": json.dumps({{"event": event, "context": context_view}}),
    }}
"""

TEMPLATE = """\
Globals:
  Function:
    Timeout: 7
    MemorySize: 256
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration: {issuer: x, audience: [y]}
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: handlers/echo/
      Handler: app.lambda_handler
      Events:
        GetThing: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/things/{thing_id}", Method: GET}}
        PostThings: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /things, Method: POST}}
        Public:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /public, Method: ANY, Auth: &none {Authorizer: NONE}}
        Boom: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /boom, Method: GET, Auth: *none}}
        Plain: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /plain, Method: GET, Auth: *none}}
        Binary: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /binary, Method: GET, Auth: *none}}
        BadStatus: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /bad-status, Method: GET, Auth: *none}}
"""


class Door:
    def __init__(self, tmp_path: Path, template_text: str = TEMPLATE):
        self.calls = tmp_path / "calls.txt"
        code = tmp_path / "handlers" / "echo"
        code.mkdir(parents=True)
        (code / "app.py").write_text(ECHO_HANDLER.format(calls=str(self.calls)))
        (tmp_path / "template.yaml").write_text(template_text)
        template = load_template(tmp_path / "template.yaml")
        self.runtime = FunctionRuntime(template)
        self.front_door = FrontDoor(template, self.runtime, jwt_settings=SETTINGS)

    def request(self, method: str, target: str, headers: list[tuple[str, str]] = (), body: bytes = b""):
        request = IncomingRequest(method, target, [("Host", "127.0.0.1:3000"), *headers], body, "10.1.2.3")
        return self.front_door.handle(request)

    def call_count(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0


def token(**overrides: Any) -> str:
    minutes = overrides.pop("minutes", 5)
    return mint_token("alice", minutes, settings=SETTINGS, extra_claims=overrides)


def echoed(response) -> dict[str, Any]:
    return json.loads(response.body)


@pytest.fixture
def door(tmp_path):
    opened = Door(tmp_path)
    yield opened
    opened.runtime.stop()


def test_authorized_request_gets_a_payload_2_0_event(door):
    # Given a valid token and a request with repeated headers, cookies and a repeated query key
    headers = [
        ("Authorization", f"Bearer {token(scope='read write')}"),
        ("X-Multi", "one"),
        ("X-Multi", "two"),
        ("Cookie", "session=abc; theme=dark"),
        ("User-Agent", "curl/8"),
    ]

    # When it reaches a route with a path parameter
    response = door.request("GET", "/things/th%5F1?tag=a&tag=b&empty=", headers)

    # Then the handler ran and saw what API Gateway would have sent
    assert response.status == 201
    event = echoed(response)["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /things/{thing_id}"
    assert event["rawPath"] == "/things/th%5F1"
    assert event["rawQueryString"] == "tag=a&tag=b&empty="
    assert event["pathParameters"] == {"thing_id": "th_1"}
    assert event["queryStringParameters"] == {"tag": "a,b", "empty": ""}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"]["x-multi"] == "one,two"
    assert event["headers"]["user-agent"] == "curl/8"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "local"
    assert context["domainName"] == "127.0.0.1:3000"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /things/{thing_id}"
    assert context["http"] == {
        "method": "GET",
        "path": "/things/th%5F1",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.1.2.3",
        "userAgent": "curl/8",
    }
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)
    assert context["time"].endswith("+0000")
    # And the JWT claims are there, every value a string, like the HTTP API authorizer's
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "alice"
    assert claims["aud"] == "unit-audience"
    assert claims["exp"].isdigit()
    assert context["authorizer"]["jwt"]["scopes"] is None


def test_json_body_is_text_and_binary_body_is_base64(door):
    auth = ("Authorization", f"Bearer {token()}")

    json_event = echoed(
        door.request("POST", "/things", [auth, ("Content-Type", "application/json")], b'{"amount": 15000}')
    )["event"]
    form_event = echoed(
        door.request(
            "POST", "/things", [auth, ("Content-Type", "application/x-www-form-urlencoded")], b"a=1&b=2"
        )
    )["event"]
    binary_event = echoed(
        door.request("POST", "/things", [auth, ("Content-Type", "application/octet-stream")], b"\x00\xff")
    )["event"]

    assert json_event["body"] == '{"amount": 15000}'
    assert json_event["isBase64Encoded"] is False
    assert "queryStringParameters" not in json_event
    assert "pathParameters" not in json_event
    assert "cookies" not in json_event
    assert form_event["isBase64Encoded"] is True
    assert base64.b64decode(form_event["body"]) == b"a=1&b=2"
    assert base64.b64decode(binary_event["body"]) == b"\x00\xff"


def test_the_handler_gets_a_lambda_context(door):
    response = door.request("POST", "/things", [("Authorization", f"Bearer {token()}")])

    context = echoed(response)["context"]
    assert context["function_name"] == "EchoFunction"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"
    assert context["memory_limit_in_mb"] == 256
    assert context["log_group_name"] == "/aws/lambda/EchoFunction"
    assert context["aws_request_id"]
    assert 0 < context["remaining_ms"] <= 7000


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer ",
        "Bearer not-a-jwt",
        f"Bearer {token(minutes=-1)}",
        f"Bearer {mint_token('alice', 5, settings=OTHER_KEY)}",
        f"Bearer {token(aud='someone-else')}",
        f"Bearer {token(iss='https://evil.example.com')}",
        f"Bearer {token(sub='')}",
        f"Basic {base64.b64encode(b'alice:pw').decode()}",
    ],
    ids=[
        "missing",
        "empty",
        "garbage",
        "expired",
        "wrong-signature",
        "wrong-aud",
        "wrong-iss",
        "no-sub",
        "basic",
    ],
)
def test_bad_tokens_get_401_and_the_handler_is_not_called(door, authorization):
    headers = [("Authorization", authorization)] if authorization is not None else []

    response = door.request("POST", "/things", headers, b"{}")

    assert response.status == 401
    assert json.loads(response.body) == {"message": "Unauthorized"}
    assert door.call_count() == 0


def test_token_without_exp_is_rejected(door):
    no_exp = jwt.encode(
        {"sub": "alice", "iss": "unit-issuer", "aud": "unit-audience"}, "unit-secret" * 3, algorithm="HS256"
    )
    response = door.request("POST", "/things", [("Authorization", f"Bearer {no_exp}")])

    assert response.status == 401
    assert door.call_count() == 0


def test_public_route_needs_no_token_and_gets_no_authorizer_context(door):
    response = door.request("DELETE", "/public")

    event = echoed(response)["event"]
    assert response.status == 201
    assert event["routeKey"] == "ANY /public"
    assert "authorizer" not in event["requestContext"]


def test_unknown_route_or_method_is_404_without_calling_a_handler(door):
    assert door.request("GET", "/nowhere").status == 404
    response = door.request("PUT", "/things", [("Authorization", f"Bearer {token()}")])

    assert response.status == 404
    assert json.loads(response.body) == {"message": "Not Found"}
    assert door.call_count() == 0


def test_handler_exception_is_a_bare_500_without_the_traceback(door, capfd):
    response = door.request("GET", "/boom")

    assert response.status == 500
    assert json.loads(response.body) == {"message": "Internal Server Error"}
    assert b"secret detail" not in response.body
    # The traceback is in the function's log (its worker's stderr), as in CloudWatch
    assert "secret detail that must not leak" in capfd.readouterr().err


def test_result_without_status_code_is_200_json(door):
    response = door.request("GET", "/plain")

    assert response.status == 200
    assert ("Content-Type", "application/json") in response.headers
    assert json.loads(response.body) == {"hello": "world"}


def test_base64_body_headers_and_cookies_are_mapped(door):
    response = door.request("GET", "/binary")

    assert response.status == 200
    assert response.body == base64.b64decode("iVBORw0K")
    assert ("content-type", "image/png") in response.headers
    assert ("x-flag", "true") in response.headers
    assert [value for name, value in response.headers if name == "Set-Cookie"] == ["a=1; Path=/", "b=2"]


def test_invalid_status_code_is_a_500(door):
    assert door.request("GET", "/bad-status").status == 500


def route(path: str, method: str = "GET") -> HttpRoute:
    return HttpRoute(method, path, f"{method} {path}", "E", "Api", None)


def test_router_prefers_exact_then_parameter_then_greedy_then_default():
    router = Router(
        [
            route("/payments/{session_id}"),
            route("/payments/latest"),
            route("/{proxy+}"),
            route("/payments/{session_id}", "ANY"),
            route("$default", "ANY"),
            route("/files/{key}/raw"),
        ]
    )

    assert router.match("GET", "/payments/latest").route.path == "/payments/latest"
    by_id = router.match("GET", "/payments/ps_1")
    assert by_id.route.method == "GET"
    assert by_id.path_parameters == {"session_id": "ps_1"}
    assert router.match("POST", "/payments/ps_1").route.method == "ANY"
    greedy = router.match("GET", "/a/b/c")
    assert greedy.route.path == "/{proxy+}"
    assert greedy.path_parameters == {"proxy": "a/b/c"}
    assert router.match("GET", "/files/x/raw").path_parameters == {"key": "x"}
    assert router.match("GET", "/").route.path == "$default"
    assert router.match("GET", "/payments/").route.path == "/{proxy+}"


def test_router_without_default_returns_no_match():
    router = Router([route("/payments")])

    assert router.match("GET", "/payments") is not None
    assert router.match("GET", "/payments/x") is None
    assert router.match("POST", "/payments") is None


def test_template_in_this_repo_routes_are_all_reachable():
    # Every route declared in template.yaml is what the front door selects for its own path.
    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    router = Router(template.routes)
    for declared in template.routes:
        if declared.path == "$default":
            continue
        concrete = re.sub(r"\{[^}]+\}", "x", declared.path)
        # An ANY route serves the methods no other route on its path declares, TRACE among them.
        method = "TRACE" if declared.method == "ANY" else declared.method
        assert router.match(method, concrete).route == declared


SHOP = "https://shop.example"
CORS_TEMPLATE = TEMPLATE.replace(
    "      Auth:\n        DefaultAuthorizer: Jwt",
    "      CorsConfiguration:\n"
    f"        AllowOrigins: [{SHOP}]\n"
    "        AllowMethods: [GET, POST]\n"
    "        AllowHeaders: [authorization, content-type]\n"
    "        ExposeHeaders: [retry-after]\n"
    "        MaxAge: 600\n"
    "      Auth:\n        DefaultAuthorizer: Jwt",
)


@pytest.fixture
def cors_door(tmp_path):
    opened = Door(tmp_path, CORS_TEMPLATE)
    yield opened
    opened.runtime.stop()


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway(cors_door):
    preflight = [("Origin", SHOP), ("Access-Control-Request-Method", "POST")]

    response = cors_door.request(
        "OPTIONS", "/things", [*preflight, ("Access-Control-Request-Headers", "authorization")]
    )

    headers = dict(response.headers)
    assert response.status == 204
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert headers["Access-Control-Allow-Headers"] == "authorization,content-type"
    assert headers["Access-Control-Max-Age"] == "600"
    # No token needed and no function called: the gateway answers preflights itself
    assert cors_door.call_count() == 0


def test_a_preflight_that_an_any_route_matches_is_answered_by_its_function_with_the_cors_headers(cors_door):
    # Given /public, served by an ANY route (no authorizer)
    preflight = [("Origin", SHOP), ("Access-Control-Request-Method", "GET")]

    # When a browser sends its preflight there
    response = cors_door.request("OPTIONS", "/public", preflight)

    # Then the function answered it (its status, its routeKey), and the gateway put the
    # configured preflight headers on that answer, as API Gateway does for an integration
    headers = dict(response.headers)
    assert cors_door.call_count() == 1
    assert cors_door.calls.read_text().splitlines() == ["ANY /public"]
    assert response.status == 201
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert headers["Access-Control-Allow-Headers"] == "authorization,content-type"


def test_a_preflight_that_a_secured_route_matches_meets_its_authorizer(tmp_path):
    # Given an ANY route behind the JWT authorizer (the trap of an ANY /{proxy+} with auth)
    template = CORS_TEMPLATE + (
        "        Secured: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /secured, Method: ANY}}\n"
    )
    opened = Door(tmp_path, template)
    try:
        # When a browser preflights it (browsers never send credentials on a preflight)
        response = opened.request(
            "OPTIONS", "/secured", [("Origin", SHOP), ("Access-Control-Request-Method", "GET")]
        )
    finally:
        opened.runtime.stop()

    # Then the authorizer refuses it before any function runs, and the browser's call fails
    assert response.status == 401
    assert opened.call_count() == 0


def test_a_preflight_from_another_origin_gets_no_cors_headers(cors_door):
    response = cors_door.request(
        "OPTIONS", "/things", [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")]
    )

    assert response.status == 204
    assert not [name for name, _ in response.headers if name.lower().startswith("access-control-")]


def test_responses_to_an_allowed_origin_carry_its_cors_headers(cors_door):
    allowed = cors_door.request("GET", "/public", [("Origin", SHOP)])
    foreign = cors_door.request("GET", "/public", [("Origin", "https://evil.example")])

    assert dict(allowed.headers)["Access-Control-Allow-Origin"] == SHOP
    assert dict(allowed.headers)["Access-Control-Expose-Headers"] == "retry-after"
    assert "Access-Control-Allow-Origin" not in dict(foreign.headers)


def test_without_a_cors_configuration_no_cors_headers_are_added(door):
    response = door.request("GET", "/public", [("Origin", SHOP)])

    assert "Access-Control-Allow-Origin" not in dict(response.headers)
