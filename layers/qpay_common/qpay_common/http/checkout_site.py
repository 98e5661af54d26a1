"""The hosted checkout page and the `<qpay-checkout>` component, served as static files by a
function behind the HTTP API (`GET /checkout/{session_id}`, `GET /checkout/assets/{file}`).

Standard library only: a shopper waits on this function's cold start, and Powertools and
pydantic would add ~0.3 s to the ~20 ms it needs. There is no input beyond one path segment and
two request headers, and the files are a fixed set read once per container, so nothing a client
sends can name a file outside it.

What the browser is told:
- Content-Security-Policy on the page: only this origin's scripts, styles and API; images from
  this origin or `data:` (the QR code); no frames except the shop origins configured in
  CHECKOUT_SHOP_ORIGINS; Trusted Types on, so no script can be injected through HTML strings.
- Caching: the page revalidates every time (`no-cache` + ETag, 304); the assets are cached for
  five minutes and then revalidated, so a deploy is live everywhere within five minutes.
- Assets carry `Access-Control-Allow-Origin: *`: a shop on another origin imports the component
  as an ES module, which browsers fetch with CORS. They are public files; no credentials.
"""

import base64
import gzip
import hashlib
import html
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from qpay_common.domain.errors import ConfigurationError
from qpay_common.http.error_responses import lambda_error_response

PAGE_ROUTE = "/checkout/{session_id}"
ASSET_ROUTE = "/checkout/assets/{file}"
PAGE_TEMPLATE = "checkout.html"
ASSETS_FOLDER = "assets"
SHOP_ORIGINS_PLACEHOLDER = "{{shop_origins}}"

# Session ids are `ps_` + 32 hex digits; the page accepts any id-like segment and lets the API
# answer 404 for an unknown one, so the page never tells which ids exist.
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ORIGIN_PATTERN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
_COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".json")

PAGE_CACHE_CONTROL = "no-cache"
ASSET_CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def content_security_policy(shop_origins: tuple[str, ...]) -> str:
    frame_ancestors = " ".join(shop_origins) if shop_origins else "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {frame_ancestors}",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        ]
    )


@dataclass(frozen=True)
class CheckoutSettings:
    """CHECKOUT_SHOP_ORIGINS: space- or comma-separated origins (`https://shop.example`) that may
    frame the hosted page, hand it the shopper's token and be returned to."""

    shop_origins: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "CheckoutSettings":
        source = os.environ if environ is None else environ
        raw = source.get("CHECKOUT_SHOP_ORIGINS", "")
        origins = tuple(part.rstrip("/") for part in re.split(r"[\s,]+", raw) if part)
        invalid = [origin for origin in origins if not _ORIGIN_PATTERN.match(origin)]
        if invalid:
            # Origins are not secrets; naming the bad one is the quickest fix.
            raise ConfigurationError(
                f"invalid configuration: CHECKOUT_SHOP_ORIGINS: {invalid[0]!r} is not an origin "
                "like https://shop.example"
            )
        return cls(shop_origins=origins)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    cache_control: str
    etag: str
    gzipped: bytes | None = None

    @classmethod
    def build(cls, body: bytes, suffix: str, cache_control: str) -> "StaticFile":
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        gzipped = gzip.compress(body, mtime=0) if suffix in _COMPRESSIBLE else None
        if gzipped is not None and len(gzipped) >= len(body):
            gzipped = None
        return cls(body, CONTENT_TYPES[suffix], cache_control, etag, gzipped)


class CheckoutSite:
    """Answers the HTTP API events of the checkout routes from a folder read once."""

    def __init__(self, folder: Path, settings: CheckoutSettings):
        page = (folder / PAGE_TEMPLATE).read_text(encoding="utf-8")
        if SHOP_ORIGINS_PLACEHOLDER not in page:
            raise ConfigurationError(f"{PAGE_TEMPLATE} lacks {SHOP_ORIGINS_PLACEHOLDER}")
        page = page.replace(SHOP_ORIGINS_PLACEHOLDER, html.escape(" ".join(settings.shop_origins)))
        self.page = StaticFile.build(page.encode("utf-8"), ".html", PAGE_CACHE_CONTROL)
        self.assets: dict[str, StaticFile] = {}
        for path in sorted((folder / ASSETS_FOLDER).iterdir()):
            if path.is_file() and path.suffix in CONTENT_TYPES:
                self.assets[path.name] = StaticFile.build(path.read_bytes(), path.suffix, ASSET_CACHE_CONTROL)
        self.page_headers = {
            **_SECURITY_HEADERS,
            "Content-Security-Policy": content_security_policy(settings.shop_origins),
        }
        self.asset_headers = {
            **_SECURITY_HEADERS,
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }

    def respond(self, event: Mapping[str, Any]) -> dict[str, Any]:
        route_key = str(event.get("routeKey") or "")
        parameters = event.get("pathParameters") or {}
        if route_key == f"GET {PAGE_ROUTE}":
            if not SESSION_ID_PATTERN.match(str(parameters.get("session_id") or "")):
                return _not_found("no such payment page")
            return _answer(self.page, self.page_headers, _headers(event))
        if route_key == f"GET {ASSET_ROUTE}":
            asset = self.assets.get(str(parameters.get("file") or ""))
            if asset is None:
                return _not_found("no such file")
            return _answer(asset, self.asset_headers, _headers(event))
        return _not_found("no such route")


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}


def _not_found(message: str) -> dict[str, Any]:
    response = lambda_error_response(HTTPStatus.NOT_FOUND, "NOT_FOUND", message)
    response["headers"].update({**_SECURITY_HEADERS, "Cache-Control": "no-store"})
    return response


def _accepts_gzip(request_headers: Mapping[str, str]) -> bool:
    for coding in request_headers.get("accept-encoding", "").split(","):
        name, _, parameters = coding.strip().partition(";")
        if name.strip().lower() in ("gzip", "*") and parameters.replace(" ", "") not in ("q=0", "q=0.0"):
            return True
    return False


def _answer(file: StaticFile, extra: Mapping[str, str], request_headers: Mapping[str, str]) -> dict[str, Any]:
    use_gzip = file.gzipped is not None and _accepts_gzip(request_headers)
    # Each encoding is its own representation, so it gets its own validator.
    etag = file.etag[:-1] + '-gz"' if use_gzip else file.etag
    headers = {
        **extra,
        "Content-Type": file.content_type,
        "Cache-Control": file.cache_control,
        "ETag": etag,
        "Vary": "Accept-Encoding",
    }
    given = {tag.strip() for tag in request_headers.get("if-none-match", "").split(",")}
    if etag in given or f"W/{etag}" in given or "*" in given:
        return {"statusCode": 304, "headers": headers, "body": "", "isBase64Encoded": False}
    if use_gzip:
        assert file.gzipped is not None
        headers["Content-Encoding"] = "gzip"
        body = base64.b64encode(file.gzipped).decode("ascii")
        return {"statusCode": 200, "headers": headers, "body": body, "isBase64Encoded": True}
    if file.content_type.startswith(("text/", "application/json", "image/svg")):
        return {
            "statusCode": 200,
            "headers": headers,
            "body": file.body.decode("utf-8"),
            "isBase64Encoded": False,
        }
    body = base64.b64encode(file.body).decode("ascii")
    return {"statusCode": 200, "headers": headers, "body": body, "isBase64Encoded": True}


def openapi_paths() -> dict[str, Any]:
    """The checkout routes in OpenAPI form, for the API's document (its other routes come from
    the Powertools routers, which this function does not use)."""
    not_found = {
        "description": "Unknown file, or not a session id",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    cached = {"description": "Not modified since the ETag given in If-None-Match"}
    return {
        PAGE_ROUTE: {
            "get": {
                "summary": "The hosted checkout page",
                "description": (
                    "Public. Shows the payment's QR code, bank app links, live status and a cancel "
                    "button. The shopper's JWT goes in the URL fragment (`#token=…`, never sent to a "
                    "server) or comes from the framing shop page by postMessage; `?lang=mn|en` and "
                    "`?return_url=` are optional."
                ),
                "operationId": "checkout_page",
                "security": [],
                "parameters": [
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": SESSION_ID_PATTERN.pattern},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "304": cached,
                    "404": not_found,
                },
            }
        },
        ASSET_ROUTE: {
            "get": {
                "summary": "A static file of the checkout page or the <qpay-checkout> component",
                "description": "Public. `qpay-checkout.js` is the component to import into a shop page.",
                "operationId": "checkout_asset",
                "security": [],
                "parameters": [
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                        },
                    },
                    "304": cached,
                    "404": not_found,
                },
            }
        },
    }
