"""What the front door answers before any function runs, for requests no route serves or too
malformed to route: API Gateway's JSON, never http.server's HTML page or a dropped connection."""

import json
import socket

import pytest

from local.endpoints import free_port
from local.front_door import FrontDoor
from local.template import load_template

pytestmark = pytest.mark.integration

TEMPLATE = """\
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.lambda_handler
      Events:
        Echo: {Type: HttpApi, Properties: {Path: /echo, Method: POST, Auth: {Authorizer: NONE}}}
"""


class NoFunctions:
    """None of these requests may reach a function."""

    def invoke(self, *args, **kwargs):
        raise AssertionError("a function was invoked")


@pytest.fixture(scope="module")
def front_door(tmp_path_factory):
    root = tmp_path_factory.mktemp("front_door")
    (root / "echo").mkdir()
    (root / "template.yaml").write_text(TEMPLATE)
    door = FrontDoor(load_template(root / "template.yaml"), NoFunctions(), port=free_port())
    door.start()
    yield door
    door.stop()


def exchange(front_door, raw_request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", front_door.server.port), timeout=5) as connection:
        connection.sendall(raw_request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "FOO", "QUERY", "GET", "DELETE", "HEAD"])
def test_a_method_no_route_serves_is_the_gateways_json_404(front_door, method):
    status, headers, body = exchange(
        front_door, f"{method} /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )

    assert status == 404
    assert headers["content-type"] == "application/json"
    if method != "HEAD":
        assert json.loads(body) == {"message": "Not Found"}


def test_an_unknown_path_is_the_gateways_json_404(front_door):
    status, _, body = exchange(
        front_door, b"TRACE /nowhere/%ff?x=%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )

    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


MALFORMED = {
    "header line over 64 KB": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        431,
        "Request Header Fields Too Large",
    ),
    "more than 100 headers": (
        b"POST /echo HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(120)) + b"\r\n",
        431,
        "Request Header Fields Too Large",
    ),
    "request line over 64 KB": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "Request-URI Too Long"),
    "unknown protocol version": (b"GET /echo HTTP/7.3\r\nHost: x\r\n\r\n", 505, "HTTP Version Not Supported"),
    "garbage request line": (b"GET /echo HTTP/1.1 extra words\r\nHost: x\r\n\r\n", 400, "Bad Request"),
    "chunk size that is not hexadecimal": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        400,
        "Bad Request",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_request_too_malformed_to_route_gets_json_and_a_closed_connection(front_door, case):
    raw_request, expected_status, message = MALFORMED[case]

    status, headers, body = exchange(front_door, raw_request)

    assert status == expected_status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body) == {"message": message}
