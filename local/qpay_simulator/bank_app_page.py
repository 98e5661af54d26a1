"""`GET /_sim/bank`: a small page where a person plays the customer's bank app.

It lists the simulator's open invoices (from `GET /_sim/invoices`) with three buttons each:
"Pay" (the amount due, then QPay's callback), "Pay less" (half of what is due: the merchant sees
an under-payment) and "Pay without callback" (the money arrives but QPay never calls back, so
only a status read or reconcile can find it). The buttons call `POST /_sim/pay`, the same control
API the tests use. Not part of QPay.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE_PATH = "/_sim/bank"
SCRIPT_PATH = "/_sim/bank.js"

_SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>QPay simulator: bank app</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/_sim/bank.css">
<script type="module" src="/_sim/bank.js"></script>
</head>
<body>
<main>
  <h1>QPay simulator: the customer's bank app</h1>
  <p class="hint">Open invoices of the local stack. "Pay less" pays half of what is due;
  "Pay without callback" pays but QPay never calls the merchant back.</p>
  <p id="result" role="status" aria-live="polite"></p>
  <table>
    <caption>Open invoices</caption>
    <thead><tr><th scope="col">Description</th><th scope="col">Due (MNT)</th>
    <th scope="col">Paid (MNT)</th><th scope="col">Created</th><th scope="col">Pay</th></tr></thead>
    <tbody id="invoices"></tbody>
  </table>
  <p id="empty" hidden>No open invoices. Create a payment (POST /payments) and it appears here.</p>
</main>
</body>
</html>
"""

_STYLES = """
body { font-family: system-ui, sans-serif; margin: 0; padding: 16px; color: #17202a; background: #f3f6f9; }
main { max-width: 1000px; margin: 0 auto; }
h1 { font-size: 1.3rem; }
.hint { color: #56616d; }
table { width: 100%; border-collapse: collapse; background: #fff; }
caption { text-align: left; font-weight: 600; padding: 8px 0; }
th, td { text-align: left; padding: 8px; border-bottom: 1px solid #dde3ea; vertical-align: top; }
td.number { font-variant-numeric: tabular-nums; }
.id { display: block; color: #56616d; font-size: 0.8rem; overflow-wrap: anywhere; }
.buttons { display: flex; flex-wrap: wrap; gap: 6px; }
button { font: inherit; min-height: 40px; padding: 6px 12px; border-radius: 8px; border: 1px solid #0b5cc4;
  background: #0b5cc4; color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: #0b5cc4; }
button:disabled { opacity: 0.5; cursor: not-allowed; }
#result { min-height: 1.5em; font-weight: 600; }
@media (max-width: 640px) {
  thead { display: none; }
  tr, td { display: block; }
  td { border: 0; }
  tr { border-bottom: 1px solid #dde3ea; }
}
"""

_SCRIPT = """
const REFRESH_MS = 2000;
const rows = document.getElementById("invoices");
const empty = document.getElementById("empty");
const result = document.getElementById("result");
let timer = null;

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function button(label, name, onClick, secondary) {
  const node = document.createElement("button");
  node.type = "button";
  node.textContent = label;
  node.setAttribute("aria-label", `${label}: ${name}`);
  if (secondary) node.className = "secondary";
  node.addEventListener("click", onClick);
  return node;
}

async function pay(invoice, options) {
  result.textContent = "Paying…";
  try {
    const response = await fetch("/_sim/pay", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ invoice_id: invoice.invoice_id, ...options }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || body.error || response.status);
    const paid = options.amount ?? invoice.amount - invoice.paid_amount;
    const callback = body.callback
      ? `the merchant answered its callback with ${body.callback.status ?? body.callback.error}`
      : "no callback was sent";
    const what = `"${invoice.invoice_description}" (payment ${body.payment_id})`;
    result.textContent = `Paid ${paid} MNT for ${what}; ${callback}.`;
  } catch (error) {
    result.textContent = `Payment failed: ${error.message}`;
  }
  refresh();
}

function render(invoices) {
  const open = invoices.filter((invoice) => invoice.status === "OPEN");
  empty.hidden = open.length > 0;
  rows.replaceChildren(
    ...open.map((invoice) => {
      const due = invoice.amount - invoice.paid_amount;
      const tr = document.createElement("tr");
      tr.dataset.invoiceId = invoice.invoice_id;
      tr.dataset.sessionId = invoice.sender_invoice_no;
      const description = cell(invoice.invoice_description);
      const id = document.createElement("span");
      id.className = "id";
      id.textContent = invoice.sender_invoice_no;
      description.append(id);
      const actions = document.createElement("td");
      const buttons = document.createElement("div");
      buttons.className = "buttons";
      const name = invoice.invoice_description;
      const half = Math.max(1, Math.floor(due / 2));
      const less = button("Pay less", name, () => pay(invoice, { amount: half }), true);
      less.disabled = due < 2;
      buttons.append(
        button("Pay", name, () => pay(invoice, { amount: due })),
        less,
        button("Pay without callback", name, () => pay(invoice, { amount: due, callback: false }), true),
      );
      actions.append(buttons);
      tr.append(
        description,
        cell(String(due), "number"),
        cell(String(invoice.paid_amount), "number"),
        cell(new Date(invoice.created_at).toLocaleTimeString()),
        actions,
      );
      return tr;
    }),
  );
}

async function refresh() {
  clearTimeout(timer);
  try {
    const response = await fetch("/_sim/invoices", { cache: "no-store" });
    render((await response.json()).invoices);
  } catch {
    result.textContent = "The simulator does not answer.";
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

refresh();
"""


@dataclass(frozen=True)
class PageAsset:
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = _SECURITY_HEADERS


ASSETS = {
    PAGE_PATH: PageAsset("text/html; charset=utf-8", _PAGE.encode()),
    SCRIPT_PATH: PageAsset("text/javascript; charset=utf-8", _SCRIPT.encode()),
    "/_sim/bank.css": PageAsset("text/css; charset=utf-8", _STYLES.encode()),
}


def find_asset(method: str, path: str) -> PageAsset | None:
    return ASSETS.get(path) if method == "GET" else None
