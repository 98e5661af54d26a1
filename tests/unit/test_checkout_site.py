"""The checkout function: the right file with the right type, caching and security headers, a
strict CSP, compression, 304s, and nothing outside its fixed set of files. (How the page behaves
is tested in a real browser: tests/e2e/test_checkout_page.py.)"""

import base64
import copy
import gzip
import json
import subprocess
import sys

import pytest

from functions.checkout.app import STATIC_FOLDER
from qpay_common.domain.errors import ConfigurationError
from qpay_common.http.checkout_site import CONTENT_TYPES, CheckoutSettings, CheckoutSite, openapi_paths
from tests.support import ROOT, LambdaContext, sample_event

pytestmark = pytest.mark.unit


def site(origins=""):
    return CheckoutSite(STATIC_FOLDER, CheckoutSettings.from_environ({"CHECKOUT_SHOP_ORIGINS": origins}))


def page_event(session_id="ps_0123456789abcdef0123456789abcdef", **headers):
    event = copy.deepcopy(sample_event("checkout"))
    event["pathParameters"] = {"session_id": session_id}
    event["headers"] = {"host": "api.example", **headers}
    return event


def asset_event(file, **headers):
    event = copy.deepcopy(sample_event("checkout_asset"))
    event["pathParameters"] = {"file": file}
    event["headers"] = {"host": "api.example", **headers}
    return event


def body_of(response):
    raw = response["body"]
    data = base64.b64decode(raw) if response["isBase64Encoded"] else raw.encode()
    if response["headers"].get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    return data


def test_the_page_is_html_with_a_strict_csp_and_is_revalidated_every_time():
    response = site().respond(page_event())

    headers = response["headers"]
    assert response["statusCode"] == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["ETag"].startswith('"')
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in headers["Content-Security-Policy"]
    assert b"<qpay-checkout" in body_of(response)


def test_assets_have_their_content_type_a_short_cache_and_may_be_imported_cross_origin():
    served = site()

    script = served.respond(asset_event("qpay-checkout.js"))
    style = served.respond(asset_event("checkout-page.css"))

    assert script["statusCode"] == style["statusCode"] == 200
    assert script["headers"]["Content-Type"] == "text/javascript; charset=utf-8"
    assert style["headers"]["Content-Type"] == "text/css; charset=utf-8"
    assert script["headers"]["Cache-Control"] == "public, max-age=300, stale-while-revalidate=86400"
    assert script["headers"]["Access-Control-Allow-Origin"] == "*"
    assert b"customElements.define" in body_of(script)


def test_every_static_file_is_served():
    served = site()
    files = [path for path in (STATIC_FOLDER / "assets").iterdir() if path.is_file()]

    assert {path.suffix for path in files} <= set(CONTENT_TYPES)
    for path in files:
        response = served.respond(asset_event(path.name))
        assert response["statusCode"] == 200, path.name
        assert body_of(response) == path.read_bytes()


def test_gzip_only_for_clients_that_accept_it_with_its_own_etag():
    served = site()

    plain = served.respond(asset_event("qpay-checkout.js"))
    zipped = served.respond(asset_event("qpay-checkout.js", **{"accept-encoding": "gzip, br"}))
    refused = served.respond(asset_event("qpay-checkout.js", **{"accept-encoding": "gzip;q=0"}))

    assert "Content-Encoding" not in plain["headers"]
    assert "Content-Encoding" not in refused["headers"]
    assert zipped["headers"]["Content-Encoding"] == "gzip"
    assert zipped["isBase64Encoded"] is True
    assert len(base64.b64decode(zipped["body"])) < len(plain["body"]) / 2
    assert body_of(zipped) == body_of(plain)
    assert zipped["headers"]["ETag"] != plain["headers"]["ETag"]
    assert plain["headers"]["Vary"] == zipped["headers"]["Vary"] == "Accept-Encoding"


def test_a_matching_if_none_match_is_304_without_a_body():
    served = site()
    etag = served.respond(page_event())["headers"]["ETag"]

    again = served.respond(page_event(**{"if-none-match": etag}))
    other = served.respond(page_event(**{"if-none-match": '"something-else"'}))

    assert again["statusCode"] == 304
    assert again["body"] == ""
    assert again["headers"]["ETag"] == etag
    assert other["statusCode"] == 200


@pytest.mark.parametrize("name", ["missing.js", "../app.py", "..", "checkout.html", "", "qpay-checkout.js/"])
def test_anything_but_a_listed_asset_is_404_in_the_error_shape(name):
    response = site().respond(asset_event(name))

    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "NOT_FOUND"
    assert response["headers"]["Cache-Control"] == "no-store"


@pytest.mark.parametrize("session_id", ["", "a" * 65, "ps_1.html", "ps 1", "<script>"])
def test_a_page_for_something_that_is_not_a_session_id_is_404(session_id):
    response = site().respond(page_event(session_id))

    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "NOT_FOUND"


def test_configured_shop_origins_may_frame_the_page_and_reach_it():
    response = site("https://shop.example, http://127.0.0.1:8080").respond(page_event())

    policy = response["headers"]["Content-Security-Policy"]
    assert "frame-ancestors https://shop.example http://127.0.0.1:8080;" in policy
    assert b'content="https://shop.example http://127.0.0.1:8080"' in body_of(response)


@pytest.mark.parametrize("origins", ["shop.example", "https://shop.example/cart", "javascript:alert(1)", "*"])
def test_a_shop_origin_that_is_not_an_origin_fails_fast(origins):
    with pytest.raises(ConfigurationError, match="CHECKOUT_SHOP_ORIGINS"):
        CheckoutSettings.from_environ({"CHECKOUT_SHOP_ORIGINS": origins})


def test_the_lambda_handler_serves_the_sample_events():
    from functions.checkout import app

    page = app.lambda_handler(sample_event("checkout"), LambdaContext())
    asset = app.lambda_handler(sample_event("checkout_asset"), LambdaContext())

    assert (page["statusCode"], asset["statusCode"]) == (200, 200)
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert asset["headers"]["Content-Encoding"] == "gzip"


def test_the_handler_imports_neither_powertools_nor_pydantic():
    # A shopper waits on this function's cold start.
    probe = (
        "import sys; import functions.checkout.app; "
        "heavy = {'aws_lambda_powertools', 'pydantic', 'boto3'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'qpay_common'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip() == "[]"


def test_the_documented_checkout_responses_are_what_the_handler_answers():
    paths = openapi_paths()
    served = site()

    page = paths["/checkout/{session_id}"]["get"]
    asset = paths["/checkout/assets/{file}"]["get"]

    assert page["security"] == asset["security"] == []
    assert (
        served.respond(page_event())["headers"]["Content-Type"].split(";")[0]
        in page["responses"]["200"]["content"]
    )
    script = served.respond(asset_event("qpay-checkout.js"))
    assert script["headers"]["Content-Type"].split(";")[0] in asset["responses"]["200"]["content"]
    assert {"200", "304", "404"} == set(page["responses"]) == set(asset["responses"])
