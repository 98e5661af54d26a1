"""GET /checkout/{session_id} and GET /checkout/assets/{file}: the hosted checkout page and the
<qpay-checkout> component, as static files (qpay_common.http.checkout_site says how they are served)."""

from functools import cache
from pathlib import Path
from typing import Any

from qpay_common.http.checkout_site import CheckoutSettings, CheckoutSite

STATIC_FOLDER = Path(__file__).resolve().parent / "static"


@cache
def site() -> CheckoutSite:
    # Once per container: the files and the settings do not change while it lives.
    return CheckoutSite(STATIC_FOLDER, CheckoutSettings.from_environ())


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return site().respond(event)
