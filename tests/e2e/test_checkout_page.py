"""The hosted checkout page and <qpay-checkout>, in a real headless Chromium against the local stack.

Each test leaves a screenshot of every page it opened in test-output/browser/.
"""

# The page speaks Mongolian Cyrillic on purpose.
# ruff: noqa: RUF001

import io
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from urllib.parse import urlsplit

import pytest
import requests
import zxingcpp
from PIL import Image

from local.endpoints import free_port
from tests.e2e.browser import DESKTOP, PHONE, SHOP_ORIGIN, SHOP_PORT
from tests.support import ROOT

pytestmark = pytest.mark.e2e

POLL_S = 3
# Long enough for one more poll, had the component not stopped.
QUIET_S = POLL_S + 1.5


def create(stack, amount=15000, description="Order #123"):
    response = stack.create({"amount": amount, "description": description})
    assert response.status_code == 201, response.text
    return response.json()


def checkout_url(stack, session_id, *, query="", token=True):
    """token: True for a fresh one, False for none, or the token to use."""
    if token is True:
        token = stack.token()
    fragment = f"#token={token}" if token else ""
    return f"{stack.api}/checkout/{session_id}{query}{fragment}"


def api_status(stack, session_id):
    return requests.get(f"{stack.api}/payments/{session_id}", headers=stack.headers(), timeout=30).json()[
        "status"
    ]


def text(page, selector):
    return page.page.locator(f"qpay-checkout {selector}").inner_text()


def digits(value):
    return re.sub(r"\D", "", value)


def hold_status_checks(stack, session_id, seconds=120):
    """Time control: status reads of this session are throttled for a while, so the page cannot
    learn of a payment by itself (only the webhook or a cancel would)."""
    stack.dynamodb_client().put_item(
        TableName="CacheTable",
        Item={
            "pk": {"S": f"poll#{session_id}"},
            "data": {"M": {}},
            "expires_at": {"N": str(int(time.time()) + seconds)},
        },
    )


def let_expire(stack, session_id):
    """Time travel: expires_at has passed, and so has the status-check throttle."""
    stack.dynamodb_client().update_item(
        TableName="SessionsTable",
        Key={"session_id": {"S": session_id}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2026-01-01T00:00:00.000Z"}},
    )
    stack.dynamodb_client().delete_item(TableName="CacheTable", Key={"pk": {"S": f"poll#{session_id}"}})


def assert_clean(page, stack):
    """Nothing blocked by the CSP, nothing loaded from anywhere but the API, no script errors."""
    assert page.violations() == []
    assert page.third_party_requests({stack.api}) == []
    assert page.page_errors == []


def assert_polling_stopped(page, session_id):
    before = len(page.status_requests(session_id))
    page.pause(QUIET_S)
    assert len(page.status_requests(session_id)) == before


def test_a_paid_payment_shows_success_within_5_s_fires_qpay_paid_and_stops_polling(stack, open_page):
    created = create(stack)
    session_id = created["session_id"]
    token = stack.token()
    page = open_page(checkout_url(stack, session_id, token=token))
    page.wait_for_status("PENDING")

    # The page shows the amount, the description and a QR code that scans to the invoice's text.
    assert digits(text(page, ".amount")) == "15000"
    assert "₮" in text(page, ".amount")
    assert text(page, ".description") == "Order #123"
    qr = page.page.locator("qpay-checkout img.qr-image")
    assert "15,000" in qr.get_attribute("alt")
    scanned = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))
    assert [code.text for code in scanned] == [created["qr_text"]]
    assert page.page.locator("qpay-checkout input#qr-text").input_value() == created["qr_text"]
    assert re.fullmatch(r"Хүчинтэй хугацаа: \d+:\d\d", text(page, ".countdown"))
    # The token left the address bar (it stays out of history and screenshots); a reload of this
    # tab still finds it, until the payment is over.
    assert "token=" not in page.page.url
    assert page.page.evaluate(f"() => sessionStorage.getItem('qpay-checkout-token:{session_id}')") == token

    stack.pay(created["invoice_id"])
    paid_at = time.monotonic()
    page.wait_for_event("qpay:paid", timeout_s=5)
    shown_after_s = time.monotonic() - paid_at
    requests_when_paid = len(page.status_requests(session_id))

    assert shown_after_s < 5
    assert "Төлбөр амжилттай төлөгдлөө" in text(page, ".result")
    assert page.page.locator("qpay-checkout [role=status][aria-live=polite]").inner_text() == (
        "Төлбөр амжилттай төлөгдлөө. Баярлалаа!"
    )
    assert not page.page.locator("qpay-checkout .cancel").is_visible()
    assert not page.page.locator("qpay-checkout .qr-image").is_visible()
    page.pause(QUIET_S)
    assert len(page.status_requests(session_id)) == requests_when_paid
    paid_event_at = page.events("qpay:paid")[0]["at"]
    assert [start for start, _ in page.status_timings(session_id) if start > paid_event_at] == []
    assert [event["type"] for event in page.events() if event["type"] != "qpay:status"] == ["qpay:paid"]
    assert page.page.evaluate(f"() => sessionStorage.getItem('qpay-checkout-token:{session_id}')") is None
    assert_clean(page, stack)


def test_polls_every_3_s_one_at_a_time_pauses_while_hidden_and_stops_when_removed(stack, open_page):
    session_id = create(stack)["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")
    page.pause(2 * POLL_S + 0.5)

    timings = page.status_timings(session_id)
    assert len(timings) >= 3
    gaps = [later[0] - earlier[0] for earlier, later in pairwise(timings)]
    assert all(gap >= POLL_S * 1000 - 50 for gap in gaps), gaps
    # setTimeout after each answer: a request never starts before the previous one ended.
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(timings))

    # The tab goes to the background: no requests; back to the front: one at once.
    page.page.evaluate(
        "() => { Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    assert_polling_stopped(page, session_id)
    before = len(page.status_requests(session_id))
    page.page.evaluate(
        "() => { Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    page.pause(1)
    assert len(page.status_requests(session_id)) == before + 1

    page.page.evaluate("() => document.querySelector('qpay-checkout').remove()")
    assert_polling_stopped(page, session_id)


def test_errors_back_off_show_a_notice_and_recover(stack, open_page):
    session_id = create(stack)["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")
    status_path = re.compile(rf"/payments/{session_id}$")
    page.page.route(
        status_path, lambda route: route.fulfill(status=503, json={"message": "Service Unavailable"})
    )

    notice = page.page.locator("qpay-checkout .notice")
    notice.wait_for(timeout=2 * POLL_S * 1000)
    failed = page.status_requests(session_id)[-1]
    page.page.unroute(status_path)

    assert notice.inner_text() == "Холболт тасарлаа. Дахин оролдож байна…"
    assert page.events("qpay:error")[0]["fatal"] is False
    notice.wait_for(state="hidden", timeout=3 * POLL_S * 1000)
    retried = page.status_requests(session_id)[-1]
    # Backed off: twice the interval (+-20% jitter), not the usual 3 s.
    assert retried.at - failed.at >= 0.8 * 2 * POLL_S
    assert page.page.locator("qpay-checkout").evaluate("element => element.status") == "PENDING"


def test_cancel_asks_first_dismissing_does_nothing_confirming_cancels(stack, open_page):
    session_id = create(stack)["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")
    dialog = page.page.locator("qpay-checkout dialog")

    page.page.locator("qpay-checkout .cancel").click()
    assert dialog.is_visible()
    assert page.page.evaluate(
        "() => document.querySelector('qpay-checkout').shadowRoot.activeElement.className"
    ) == ("secondary confirm-no")
    page.page.locator("qpay-checkout .confirm-no").click()
    page.page.locator("qpay-checkout .cancel").click()
    page.page.keyboard.press("Escape")
    page.pause(1)

    assert not dialog.is_visible()
    assert page.cancel_requests(session_id) == []
    assert api_status(stack, session_id) == "PENDING"
    assert page.page.locator("qpay-checkout .cancel").is_visible()

    page.page.locator("qpay-checkout .cancel").click()
    page.page.locator("qpay-checkout .confirm-yes").click()
    page.wait_for_event("qpay:cancelled")

    assert len(page.cancel_requests(session_id)) == 1
    assert text(page, ".result") == "Төлбөр цуцлагдлаа."
    assert api_status(stack, session_id) == "CANCELLED"
    assert_polling_stopped(page, session_id)
    assert_clean(page, stack)


def test_cancelling_a_payment_that_was_already_paid_shows_success(stack, open_page):
    created = create(stack)
    session_id = created["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")
    hold_status_checks(stack, session_id)
    stack.pay(created["invoice_id"], callback=False)  # paid in the bank app; the page has not seen it

    page.page.locator("qpay-checkout .cancel").click()
    page.page.locator("qpay-checkout .confirm-yes").click()
    page.wait_for_event("qpay:paid")

    assert len(page.cancel_requests(session_id)) == 1
    assert "Төлбөр амжилттай төлөгдлөө" in text(page, ".result")
    assert page.events("qpay:error") == []
    assert page.events("qpay:cancelled") == []
    assert api_status(stack, session_id) == "PROCESSED"
    assert_polling_stopped(page, session_id)


def test_an_expiring_session_shows_the_expired_state(stack, open_page):
    session_id = create(stack)["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")

    let_expire(stack, session_id)
    page.wait_for_event("qpay:expired", timeout_s=3 * POLL_S)

    assert text(page, ".result") == "Төлбөрийн хугацаа дууссан. Шинэ төлбөр үүсгэнэ үү."
    assert not page.page.locator("qpay-checkout .cancel").is_visible()
    assert not page.page.locator("qpay-checkout .countdown").is_visible()
    assert_polling_stopped(page, session_id)


def test_an_under_paid_session_shows_the_failed_message(stack, open_page):
    created = create(stack, amount=20000)
    session_id = created["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")

    stack.pay(created["invoice_id"], amount=5000)
    page.wait_for_event("qpay:failed")

    assert text(page, ".result") == "Төлсөн дүн дутуу байна. Дэлгүүртэй холбогдоно уу."
    assert digits(text(page, ".paid-so-far")) == "5000"
    assert_polling_stopped(page, session_id)


def test_english_by_query_and_by_the_language_switch(stack, open_page):
    session_id = create(stack, description="Tea for two")["session_id"]
    page = open_page(checkout_url(stack, session_id, query="?lang=en&return_url=/checkout/cart"))
    page.wait_for_status("PENDING")

    assert page.page.evaluate("document.documentElement.lang") == "en"
    assert page.page.title() == "QPay payment"
    assert text(page, "h2") == "Pay with QPay"
    assert text(page, ".status") == "Waiting for your payment"
    assert text(page, ".cancel") == "Cancel payment"
    assert text(page, ".banks h3") == "Pay in your bank app"
    assert "QPay QR code to pay 15,000" in page.page.locator("qpay-checkout img.qr-image").get_attribute(
        "alt"
    )
    assert text(page, ".countdown").startswith("Expires in: ")
    back = page.page.locator("qpay-checkout a.back")
    assert back.inner_text() == "Back to cart"
    assert back.get_attribute("href") == f"{stack.api}/checkout/cart"

    page.page.locator(".lang-switch").click()

    assert page.page.evaluate("document.documentElement.lang") == "mn"
    assert text(page, "h2") == "QPay-ээр төлөх"
    assert text(page, ".status") == "Төлбөр хүлээж байна"
    assert text(page, ".cancel") == "Төлбөр цуцлах"
    assert back.inner_text() == "Сагс руу буцах"
    assert page.page.locator(".lang-switch").inner_text() == "English"


def test_a_return_url_on_a_foreign_origin_is_not_offered(stack, open_page):
    session_id = create(stack)["session_id"]
    page = open_page(checkout_url(stack, session_id, query="?return_url=https://evil.example/cart"))
    page.wait_for_status("PENDING")

    assert not page.page.locator("qpay-checkout a.back").is_visible()


def sticking_out(page):
    """Elements of the component that reach past the right edge of its panel."""
    return page.page.evaluate(
        """() => {
          const root = document.querySelector('qpay-checkout').shadowRoot;
          const edge = root.querySelector('.panel').getBoundingClientRect().right;
          return [...root.querySelectorAll('.panel *')]
            .filter(node => node.getClientRects().length && node.getBoundingClientRect().right > edge + 0.5)
            .map(node => node.className || node.tagName);
        }"""
    )


def test_a_phone_shows_the_bank_app_links_first_and_nothing_overflows(stack, open_page):
    created = create(stack)
    phone = open_page(
        checkout_url(stack, created["session_id"]), viewport=PHONE, is_mobile=True, has_touch=True
    )
    phone.wait_for_status("PENDING")

    banks = phone.page.locator("qpay-checkout a.bank")
    assert banks.count() == len(created["deeplinks"])
    first = banks.first.bounding_box()
    qr = phone.page.locator("qpay-checkout img.qr-image").bounding_box()
    assert banks.first.is_visible()
    assert first["y"] + first["height"] <= PHONE["height"]  # on screen without scrolling
    assert first["height"] >= 44  # a comfortable touch target
    assert first["y"] < qr["y"]
    assert banks.first.get_attribute("href") == created["deeplinks"][0]["link"]
    assert phone.page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    assert sticking_out(phone) == []
    phone.page.set_viewport_size({"width": 320, "height": 640})
    assert phone.page.evaluate("document.scrollingElement.scrollWidth") <= 320
    assert sticking_out(phone) == []

    desktop = open_page(checkout_url(stack, created["session_id"]), viewport=DESKTOP)
    desktop.wait_for_status("PENDING")
    desktop_qr = desktop.page.locator("qpay-checkout img.qr-image").bounding_box()
    desktop_bank = desktop.page.locator("qpay-checkout a.bank").first.bounding_box()
    assert desktop_qr["x"] < desktop_bank["x"]  # side by side: the QR first


def test_the_page_has_a_strict_csp_and_loads_nothing_third_party(stack, open_page):
    session_id = create(stack)["session_id"]
    page = open_page(checkout_url(stack, session_id))
    page.wait_for_status("PENDING")
    page.pause(1)

    policy = page.response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors" in policy
    assert page.response.headers["x-content-type-options"] == "nosniff"
    assert page.requests, "the page made no requests at all"
    assert {f"{urlsplit(r.url).scheme}://{urlsplit(r.url).netloc}" for r in page.requests} == {stack.api}
    assert_clean(page, stack)
    # Enforced, not decorative: no script from a string (Trusted Types), no image from elsewhere.
    refused = page.page.evaluate(
        "() => { try { document.createElement('script').textContent = 'window.__ran = 1'; return null; }"
        " catch (error) { return error.name; } }"
    )
    assert refused == "TypeError"
    page.page.evaluate(
        "() => { const image = document.createElement('img'); image.src = 'https://cdn.example/pixel.png';"
        " document.body.append(image); }"
    )
    page.pause(0.5)
    assert [r.failure for r in page.requests if r.url.startswith("https://cdn.example/")] == ["csp"]
    assert page.violations() == [
        "require-trusted-types-for trusted-types-sink",
        "img-src https://cdn.example/pixel.png",
    ]
    assert page.third_party_requests({stack.api}) == []


def test_a_missing_token_says_so_and_stops(stack, open_page):
    session_id = create(stack)["session_id"]
    page = open_page(checkout_url(stack, session_id, token=False))

    error = page.wait_for_event("qpay:error")

    assert error["fatal"] is True
    assert "Нэвтрэлтийн хугацаа дууссан" in text(page, ".notice")
    assert page.status_requests(session_id) == []


def test_the_walkthrough_of_make_run_prints_a_checkout_link_that_works(stack, open_page):
    banner = "\n".join(stack.output)
    walkthrough = banner.split("Try it, in another terminal in this folder:")[1]
    steps = walkthrough.split("\n  4. ")[0]
    script = "\n".join(
        re.sub(r"^\s*\d+\. ", "", line).split("   # ")[0] for line in steps.splitlines() if line.strip()
    )
    assert "/checkout/$SESSION_ID#token=$TOKEN" in script

    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    printed = ran.stdout.splitlines()
    link = next(line for line in printed if "/checkout/ps_" in line)
    page = open_page(link)
    page.wait_for_status("PENDING")

    assert link.startswith(f"{stack.api}/checkout/ps_")
    assert digits(text(page, ".amount")) == "15000"
    assert text(page, ".description") == "Order #123"
    assert_clean(page, stack)


def test_the_simulators_bank_app_page_pays_less_and_pays_without_callback(stack, open_page):
    created = create(stack, amount=8000, description="Walkthrough by hand")
    session_id = created["session_id"]
    checkout = open_page(checkout_url(stack, session_id))
    checkout.wait_for_status("PENDING")
    bank = open_page(f"{stack.sim}/_sim/bank")
    row = bank.page.locator(f"tr[data-session-id='{session_id}']")
    row.wait_for()

    assert "Walkthrough by hand" in row.inner_text()
    row.get_by_role("button", name="Pay less: Walkthrough by hand").click()
    checkout.wait_for_event("qpay:failed")
    assert digits(checkout.page.locator("qpay-checkout .paid-so-far").inner_text()) == "4000"
    assert bank.violations() == []

    # The rest, paid without a callback: only a status read can find it.
    second = create(stack, amount=3000, description="No callback")
    page = open_page(checkout_url(stack, second["session_id"]))
    page.wait_for_status("PENDING")
    row = bank.page.locator(f"tr[data-session-id='{second['session_id']}']")
    row.wait_for()
    row.get_by_role("button", name="Pay without callback: No callback").click()
    page.wait_for_event("qpay:paid", timeout_s=15)
    assert "no callback was sent" in bank.page.locator("#result").inner_text()
    assert stack.sim_invoice(second["invoice_id"])["status"] == "CLOSED"


class _HtmlPage(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve_html():
    """serve_html(port, html) -> the URL of a page on that port (another origin than the API)."""
    servers = []

    def serve(port, html):
        handler = type("Page", (_HtmlPage,), {"body": html.encode()})
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{port}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_shop_page_frames_the_checkout_and_hands_it_the_token(stack, open_page, serve_html):
    created = create(stack)
    session_id = created["session_id"]
    shop = serve_html(
        SHOP_PORT,
        f"""<!doctype html><html lang="en"><body><h1>Tea shop</h1>
<iframe id="checkout" title="QPay" src="{stack.api}/checkout/{session_id}?lang=en"
        width="420" height="900"></iframe>
<script>
window.received = [];
window.addEventListener("message", (event) => {{
  if (event.origin !== "{stack.api}") return;
  window.received.push(event.data.type);
  if (event.data.type === "qpay:token-request") {{
    event.source.postMessage({{type: "qpay:token", token: "{stack.token()}"}}, event.origin);
  }}
}});
</script></body></html>""",
    )
    assert shop == f"{SHOP_ORIGIN}/"

    page = open_page(shop)
    frame = page.page.frame_locator("#checkout")
    frame.locator("qpay-checkout .cancel").wait_for()
    stack.pay(created["invoice_id"])
    page.page.wait_for_function("() => window.received.includes('qpay:paid')", timeout=10_000)

    assert "Payment received" in frame.locator("qpay-checkout .result").inner_text()
    assert page.page.evaluate("window.received")[0] == "qpay:token-request"


def test_a_site_that_is_not_a_shop_origin_cannot_frame_the_checkout(stack, open_page, serve_html):
    session_id = create(stack)["session_id"]
    foreign = serve_html(
        free_port(), f'<!doctype html><iframe id="checkout" src="{stack.api}/checkout/{session_id}"></iframe>'
    )

    page = open_page(foreign)
    page.pause(2)

    (child,) = [frame for frame in page.page.frames if frame is not page.page.main_frame]
    assert not child.url.startswith(stack.api)  # Chromium replaced it with its error page
    assert page.status_requests(session_id) == []


def readme_snippet():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- embed-snippet -->", 1)[1].split("```html\n", 1)[1].split("```", 1)[0]
    return block.strip()


def test_the_readme_snippet_embeds_the_component_in_a_shop_page(stack, open_page, serve_html):
    created = create(stack, description="Snippet")
    snippet = readme_snippet()
    assert len(snippet.splitlines()) == 3
    html = snippet.replace("https://API", stack.api).replace("ps_…", created["session_id"])
    shop = serve_html(
        SHOP_PORT,
        f"""<!doctype html><html lang="en"><body><h1>Tea shop</h1>
<script>function shopperJwt() {{ return "{stack.token()}"; }}</script>
{html}</body></html>""",
    )
    context_page = open_page("about:blank")
    shop_origin = shop.rstrip("/")

    # The stack runs with CHECKOUT_SHOP_ORIGINS (template ShopOrigins) naming this shop, so its
    # front door answers CORS for it the way API Gateway does: no help from the test.
    context_page.page.goto(shop)
    context_page.wait_for_status("PENDING")

    assert text(context_page, ".description") == "Snippet"
    assert text(context_page, "h2") == "Pay with QPay"  # from the shop page's lang
    assert context_page.page.locator("qpay-checkout a.back").get_attribute("href") == f"{shop_origin}/cart"
    stack.pay(created["invoice_id"])
    context_page.wait_for_event("qpay:paid")
    assert "Payment received" in text(context_page, ".result")


def test_a_shop_page_on_its_own_origin_creates_polls_and_cancels_a_payment_through_the_api(
    stack, open_page, serve_html
):
    # Given the README snippet on a shop page of another origin, whose own script creates the
    # payment (POST /payments with the shopper's JWT: a CORS preflight first, as for every call
    # the component then makes)
    script_line, element_line, token_line = readme_snippet().splitlines()
    element = element_line.replace("https://API", stack.api).replace('"ps_…"', '"${created.session_id}"')
    token_code = token_line.split(">", 1)[1].rsplit("</script>", 1)[0]
    shop = serve_html(
        SHOP_PORT,
        f"""<!doctype html><html lang="en"><body><h1>Tea shop</h1>
<script>function shopperJwt() {{ return "{stack.token()}"; }}</script>
{script_line.replace("https://API", stack.api)}
<script type="module">
const response = await fetch("{stack.api}/payments", {{
  method: "POST",
  headers: {{"authorization": `Bearer ${{shopperJwt()}}`, "content-type": "application/json",
             "idempotency-key": "cart-cross-origin"}},
  body: JSON.stringify({{amount: 4200, description: "Cross-origin tea"}}),
}});
const created = await response.json();
window.created = {{status: response.status, session_id: created.session_id}};
document.body.insertAdjacentHTML("beforeend", `{element}`);
{token_code}
</script></body></html>""",
    )

    answered_by_function = len(function_reports(stack, "OpenApiFunction"))

    # When the shopper waits for the QR code, then cancels
    page = open_page(shop)
    page.wait_for_status("PENDING")
    created = page.page.evaluate("window.created")
    session_id = created["session_id"]
    page.page.locator("qpay-checkout .cancel").click()
    page.page.locator("qpay-checkout .confirm-yes").click()
    page.wait_for_event("qpay:cancelled")

    # Then every call crossed origins: created (201), polled and cancelled in the API itself
    assert created["status"] == 201
    assert text(page, ".description") == "Cross-origin tea"
    assert "cancelled" in text(page, ".result").lower()
    assert len(page.cancel_requests(session_id)) == 1
    assert api_status(stack, session_id) == "CANCELLED"
    assert page.page_errors == []
    # And each preflight went through the ANY route of its path (the function behind it answered,
    # as in AWS) and got a 2xx
    for path in ("/payments", f"/payments/{session_id}", f"/payments/{session_id}/cancel"):
        assert f"OPTIONS {path} -> 204" in "\n".join(stack.output), path
    assert len(function_reports(stack, "OpenApiFunction")) >= answered_by_function + 3


def function_reports(stack, function_id):
    return [line for line in stack.output if f"{function_id} REPORT RequestId:" in line]
