"""`make openapi` (`python -m local.openapi_document`): regenerate the OpenAPI document that
OpenApiFunction serves (functions/openapi/openapi.json) from the handlers' routers and models.
A build-time tool, kept out of the Lambda module; tests/unit/test_openapi.py fails if the committed
document is stale."""

import json
import sys

from functions.openapi.app import DOCUMENT_FILE, generate_openapi_schema


def write_document() -> None:
    DOCUMENT_FILE.write_text(json.dumps(generate_openapi_schema(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {DOCUMENT_FILE}", file=sys.stderr)


if __name__ == "__main__":
    write_document()
