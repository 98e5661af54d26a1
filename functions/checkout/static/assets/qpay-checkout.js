// <qpay-checkout>: the customer's side of a QPay payment, as a custom element for any web page.
// Plain ES module: no build step, no framework, no third-party requests.
//
//   <script type="module" src="https://API/checkout/assets/qpay-checkout.js"></script>
//   <qpay-checkout api-base="https://API" session-id="ps_..." return-url="/cart"></qpay-checkout>
//   <script type="module">document.querySelector("qpay-checkout").getToken = () => shopperJwt();</script>
//
// Attributes: session-id, api-base (default: this page's origin), lang (mn | en; default: the
// nearest lang attribute, else Mongolian), return-url ("back to cart"), poll-interval (ms, 3000),
// receipt-wait (ms, 150000: how long after the payment it keeps asking for the Ebarimt receipt).
// Properties: getToken (a function, may be async, called with {refresh: true} after a 401) or
// token (a string). Events (bubbling, composed): qpay:status on every status change, then one of
// qpay:paid, qpay:cancelled, qpay:expired, qpay:failed; qpay:error (detail.fatal says whether it
// gave up); qpay:back (cancelable) when the shopper follows the return link; qpay:receipt when
// the Ebarimt e-receipt is registered (detail.ebarimt: receipt_id, lottery, qr_data).
// Theme: CSS custom properties --qpay-accent, --qpay-accent-contrast, --qpay-bg, --qpay-fg,
// --qpay-muted, --qpay-surface, --qpay-border, --qpay-radius, --qpay-font, --qpay-success,
// --qpay-danger, --qpay-warning, --qpay-focus, --qpay-qr-size, --qpay-max-width; ::part(panel),
// ::part(amount), ::part(status), ::part(bank), ::part(qr), ::part(cancel), ::part(back),
// ::part(receipt), ::part(receipt-qr), ::part(lottery).

import { qrcode } from "./qrcode-generator.js";

const DEFAULT_POLL_MS = 3000;
const MIN_POLL_MS = 1000;
const MAX_BACKOFF_MS = 30000;
const REQUEST_TIMEOUT_MS = 10000;
// After the payment the Ebarimt job (every 2 minutes) registers the e-receipt: the page asks a
// little longer, at a slower pace, then says it will follow (the shop can send it later).
const DEFAULT_RECEIPT_WAIT_MS = 150000;
const RECEIPT_POLL_FACTOR = 2;
// Receipt states worth waiting for; REJECTED and GAVE_UP wait for an operator (the receipt will
// follow); any other means none is coming to this page (SKIPPED: the shop issues none).
const RECEIPT_COMING = new Set(["NONE", "PENDING", "ERROR"]);
const RECEIPT_LATER = new Set(["REJECTED", "GAVE_UP"]);
// PAID means QPay confirmed the money; the server finishes the order on its own (PAID is durable
// and reconcile completes it), so the shopper's part is over and the page stops asking.
const SUCCESS = new Set(["PAID", "PROCESSED"]);
const TERMINAL = new Set(["PAID", "PROCESSED", "CANCELLED", "EXPIRED", "FAILED"]);
const FATAL_HTTP = new Set([400, 401, 403, 404]);
const EVENT_FOR_STATUS = {
  PAID: "qpay:paid",
  PROCESSED: "qpay:paid",
  CANCELLED: "qpay:cancelled",
  EXPIRED: "qpay:expired",
  FAILED: "qpay:failed",
};

export const MESSAGES = {
  mn: {
    title: "QPay-ээр төлөх",
    amountDue: "Төлөх дүн",
    paidSoFar: "Төлсөн дүн",
    loading: "Төлбөрийн мэдээллийг ачаалж байна…",
    pending: "Төлбөр хүлээж байна",
    paid: "Төлбөр амжилттай төлөгдлөө. Баярлалаа!",
    cancelled: "Төлбөр цуцлагдлаа.",
    expired: "Төлбөрийн хугацаа дууссан. Шинэ төлбөр үүсгэнэ үү.",
    failed: "Төлсөн дүн дутуу байна. Дэлгүүртэй холбогдоно уу.",
    cancelling: "Төлбөрийг цуцалж байна…",
    cancelFailed: "Төлбөрийг цуцалж чадсангүй. Дахин оролдоно уу.",
    offline: "Холболт тасарлаа. Дахин оролдож байна…",
    unauthorized: "Нэвтрэлтийн хугацаа дууссан. Дэлгүүр рүүгээ буцаж дахин нэвтэрнэ үү.",
    notFound: "Төлбөр олдсонгүй.",
    banksTitle: "Банкны аппликейшнээр төлөх",
    banksHint: "Утсан дээрээ банкаа сонгоно уу.",
    qrTitle: "QR кодыг уншуулах",
    qrHint: "Банкны аппликейшнээрээ QR кодыг уншуулна уу.",
    qrAlt: "{amount} төлөх QPay QR код",
    qrText: "QR кодын текст",
    copy: "Хуулах",
    copied: "QR кодын текстийг хуулсан.",
    copyFailed: "Хуулж чадсангүй. Текстийг сонгоод хуулна уу.",
    expiresIn: "Хүчинтэй хугацаа",
    cancel: "Төлбөр цуцлах",
    confirmTitle: "Төлбөрийг цуцлах уу?",
    confirmText: "Цуцалсны дараа энэ QR кодоор төлөх боломжгүй.",
    confirmYes: "Тийм, цуцлах",
    confirmNo: "Үгүй, үргэлжлүүлэх",
    back: "Сагс руу буцах",
    receiptTitle: "И-баримт",
    receiptHint: "И-баримт аппликейшнээр QR кодыг уншуулна уу.",
    receiptAlt: "И-баримтын QR код",
    lottery: "Сугалааны дугаар",
    receiptPending: "И-баримтыг бэлтгэж байна…",
    receiptLater: "И-баримт дараа ирнэ. Дэлгүүрээс лавлана уу.",
  },
  en: {
    title: "Pay with QPay",
    amountDue: "Amount due",
    paidSoFar: "Paid so far",
    loading: "Loading the payment…",
    pending: "Waiting for your payment",
    paid: "Payment received. Thank you!",
    cancelled: "The payment was cancelled.",
    expired: "This payment has expired. Please start a new one.",
    failed: "The amount paid is less than the amount due. Please contact the shop.",
    cancelling: "Cancelling the payment…",
    cancelFailed: "The payment could not be cancelled. Please try again.",
    offline: "Connection lost. Retrying…",
    unauthorized: "Your sign-in has expired. Go back to the shop and sign in again.",
    notFound: "Payment not found.",
    banksTitle: "Pay in your bank app",
    banksHint: "On your phone, choose your bank.",
    qrTitle: "Scan the QR code",
    qrHint: "Scan the QR code with your bank app.",
    qrAlt: "QPay QR code to pay {amount}",
    qrText: "QR code text",
    copy: "Copy",
    copied: "QR code text copied.",
    copyFailed: "Could not copy. Select the text and copy it.",
    expiresIn: "Expires in",
    cancel: "Cancel payment",
    confirmTitle: "Cancel this payment?",
    confirmText: "You will not be able to pay with this QR code afterwards.",
    confirmYes: "Yes, cancel",
    confirmNo: "No, keep paying",
    back: "Back to cart",
    receiptTitle: "E-receipt (e-barimt)",
    receiptHint: "Scan the QR code with the e-barimt app.",
    receiptAlt: "E-receipt QR code",
    lottery: "Lottery number",
    receiptPending: "Preparing your e-receipt…",
    receiptLater: "Your e-receipt will follow. Ask the shop for it.",
  },
};

const STYLES = `
:host {
  display: block;
  container-type: inline-size;
  font-family: var(--qpay-font, system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif);
  color: var(--qpay-fg, #17202a);
  line-height: 1.45;
  --_accent: var(--qpay-accent, #0b5cc4);
  --_border: var(--qpay-border, #cfd6de);
  --_muted: var(--qpay-muted, #56616d);
  --_surface: var(--qpay-surface, #f3f6f9);
  --_radius: var(--qpay-radius, 12px);
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.panel {
  background: var(--qpay-bg, #ffffff);
  border: 1px solid var(--_border);
  border-radius: var(--_radius);
  padding: 16px;
  max-width: var(--qpay-max-width, 820px);
  margin: 0 auto;
  overflow-wrap: break-word;
}
h2 { font-size: 1.2rem; margin: 0 0 12px; }
h3 { font-size: 1rem; margin: 0 0 4px; }
p { margin: 0; }
.summary { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 4px 16px; }
.label { color: var(--_muted); font-size: 0.875rem; }
.amount { font-size: 1.9rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.paid-so-far { font-size: 0.95rem; }
.description { margin-top: 4px; }
.status { display: flex; align-items: center; gap: 8px; margin: 14px 0 4px; font-weight: 600; }
.status::before {
  content: ""; flex: none; width: 10px; height: 10px; border-radius: 50%;
  background: var(--qpay-warning, #b26b00);
}
.status[data-tone="busy"]::before { animation: qpay-pulse 1.2s ease-in-out infinite; }
.status[data-tone="success"]::before { background: var(--qpay-success, #1a7f37); }
.status[data-tone="danger"]::before { background: var(--qpay-danger, #c62828); }
.status[data-tone="neutral"]::before { background: var(--_muted); }
@keyframes qpay-pulse { 50% { opacity: 0.3; } }
@media (prefers-reduced-motion: reduce) { .status[data-tone="busy"]::before { animation: none; } }
.notice { color: var(--qpay-danger, #c62828); font-size: 0.9rem; }
.countdown { color: var(--_muted); font-size: 0.9rem; font-variant-numeric: tabular-nums; }
.countdown time { font-weight: 600; color: var(--qpay-fg, #17202a); }
.pay { display: grid; gap: 20px; margin-top: 16px; grid-template-columns: minmax(0, 1fr); grid-template-areas: "banks" "qr"; }
.banks { grid-area: banks; }
.qr { grid-area: qr; display: flex; flex-direction: column; align-items: center; text-align: center; gap: 8px; }
.hint { color: var(--_muted); font-size: 0.875rem; margin-bottom: 8px; }
.bank-list {
  list-style: none; margin: 0; padding: 0; display: grid; gap: 8px;
  grid-template-columns: repeat(auto-fill, minmax(min(128px, 100%), 1fr));
}
.bank {
  display: flex; align-items: center; gap: 10px; min-height: 52px; padding: 8px 12px;
  border: 1px solid var(--_border); border-radius: calc(var(--_radius) - 2px);
  background: var(--_surface); color: inherit; text-decoration: none; font-weight: 600;
  font-size: 0.95rem; hyphens: auto; min-width: 0;
}
.bank:hover { border-color: var(--_accent); }
.bank-initial {
  flex: none; display: grid; place-items: center; width: 30px; height: 30px; border-radius: 50%;
  background: var(--_accent); color: var(--qpay-accent-contrast, #ffffff); font-size: 0.9rem;
}
.qr-image {
  width: var(--qpay-qr-size, 232px); max-width: 100%; height: auto; aspect-ratio: 1;
  image-rendering: pixelated; background: #ffffff; border: 1px solid var(--_border); border-radius: 8px;
}
.qr-text { width: 100%; max-width: 360px; text-align: start; }
.copy-row { display: flex; gap: 8px; margin-top: 4px; }
.copy-row input {
  flex: 1; min-width: 0; font: inherit; font-family: ui-monospace, Menlo, Consolas, monospace;
  font-size: 0.8rem; padding: 8px; border: 1px solid var(--_border); border-radius: 8px;
  background: var(--_surface); color: inherit;
}
button, .back {
  font: inherit; min-height: 44px; padding: 8px 16px; border-radius: calc(var(--_radius) - 2px);
  cursor: pointer; display: inline-flex; align-items: center; justify-content: center; text-decoration: none;
}
.primary { background: var(--_accent); color: var(--qpay-accent-contrast, #ffffff); border: 1px solid var(--_accent); }
.secondary { background: transparent; color: inherit; border: 1px solid var(--_border); }
button:disabled { opacity: 0.6; cursor: progress; }
a:focus-visible, button:focus-visible, input:focus-visible {
  outline: 3px solid var(--qpay-focus, #f5a623); outline-offset: 2px;
}
.result {
  margin-top: 16px; padding: 16px; border-radius: calc(var(--_radius) - 2px); background: var(--_surface);
  font-size: 1.1rem; font-weight: 600; border-inline-start: 6px solid var(--_muted);
}
.result[data-tone="success"] { border-color: var(--qpay-success, #1a7f37); }
.result[data-tone="danger"] { border-color: var(--qpay-danger, #c62828); }
.result:focus { outline: none; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 20px; }
.actions .back { color: var(--_accent); border: 1px solid transparent; padding-inline: 4px; }
dialog {
  border: 1px solid var(--_border); border-radius: var(--_radius); padding: 20px;
  max-width: min(420px, calc(100vw - 32px)); color: var(--qpay-fg, #17202a); background: var(--qpay-bg, #ffffff);
}
dialog::backdrop { background: rgb(0 0 0 / 0.45); }
.dialog-actions { display: flex; flex-wrap: wrap; justify-content: flex-end; gap: 8px; margin-top: 16px; }
.receipt {
  margin-top: 16px; display: flex; flex-direction: column; align-items: center; text-align: center; gap: 8px;
  padding: 16px; border: 1px solid var(--_border); border-radius: calc(var(--_radius) - 2px);
}
.receipt-qr { width: var(--qpay-qr-size, 232px); max-width: 100%; height: auto; aspect-ratio: 1; }
.lottery { font-size: 1.3rem; font-weight: 700; font-variant-numeric: tabular-nums; letter-spacing: 0.04em; }
.visually-hidden {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
@container (max-width: 359px) {
  .panel { padding: 12px; }
  .bank { padding: 8px; gap: 8px; }
  .bank-initial { width: 26px; height: 26px; }
}
@container (min-width: 600px) {
  .panel { padding: 24px; }
  .pay { grid-template-columns: minmax(240px, auto) minmax(0, 1fr); grid-template-areas: "qr banks"; align-items: start; }
  .bank-list { grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); }
  .bank { min-height: 44px; font-weight: 500; }
}
`;

let sharedSheet = null;
function styleSheet() {
  // A constructed stylesheet needs no inline <style>, so it works under a strict CSP.
  if (!sharedSheet) {
    sharedSheet = new CSSStyleSheet();
    sharedSheet.replaceSync(STYLES);
  }
  return sharedSheet;
}

function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

// Deep links open bank apps (khanbank://...), so any scheme is fine except those that run code
// or read local data in this page.
const UNSAFE_SCHEMES = new Set(["javascript:", "data:", "vbscript:", "file:", "blob:"]);
function safeLink(link) {
  try {
    const url = new URL(String(link));
    return UNSAFE_SCHEMES.has(url.protocol) ? null : url.href;
  } catch {
    return null;
  }
}

function safeReturnUrl(value) {
  if (!value) return null;
  try {
    const url = new URL(value, document.baseURI);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

// The receipt's QR code as an SVG built node by node (no HTML strings: Trusted Types stay on).
// Ebarimt QR data is digits, which QR's numeric mode packs densest.
function receiptQr(data, label) {
  const code = qrcode(0, "M");
  code.addData(data, /^[0-9]+$/.test(data) ? "Numeric" : "Byte");
  code.make();
  const count = code.getModuleCount();
  const quiet = 4;
  const size = count + quiet * 2;
  let path = "";
  for (let row = 0; row < count; row += 1) {
    for (let column = 0; column < count; column += 1) {
      if (code.isDark(row, column)) path += `M${column + quiet} ${row + quiet}h1v1h-1z`;
    }
  }
  const svg = document.createElementNS(SVG_NS, "svg");
  for (const [name, value] of Object.entries({
    class: "receipt-qr", part: "receipt-qr", viewBox: `0 0 ${size} ${size}`, role: "img",
    "aria-label": label, "shape-rendering": "crispEdges",
  })) svg.setAttribute(name, value);
  const background = document.createElementNS(SVG_NS, "rect");
  background.setAttribute("width", String(size));
  background.setAttribute("height", String(size));
  background.setAttribute("fill", "#ffffff");
  const modules = document.createElementNS(SVG_NS, "path");
  modules.setAttribute("d", path);
  modules.setAttribute("fill", "#000000");
  svg.append(background, modules);
  return svg;
}

class CheckoutError extends Error {
  constructor(code, status = 0, retryAfterMs = 0) {
    super(code);
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

function retryAfterMs(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, MAX_BACKOFF_MS * 4) : 0;
}

export class QPayCheckoutElement extends HTMLElement {
  static observedAttributes = ["session-id", "api-base", "lang", "return-url", "poll-interval", "receipt-wait"];

  #ui = null;
  #getToken = null;
  #token = null;
  #payment = null;
  #options = null; // QR and deep links: asked for once, with ?include=qr
  #terminal = null;
  #running = false;
  #cancelling = false;
  #inFlight = false;
  #generation = 0; // bumped whenever polling stops, so late answers are ignored
  #timer = null;
  #countdown = null;
  #abort = null;
  #failures = 0;
  #clockSkewMs = 0;
  #expiryPolled = false;
  #announced = "";
  // The receipt phase, after a successful payment: "waiting", "shown", "later" or null (none).
  #receipt = null;
  #receiptTimer = null;
  #receiptUntil = 0;
  #receiptKey = "";

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this.shadowRoot.adoptedStyleSheets = [styleSheet()];
    this.onVisibilityChange = this.onVisibilityChange.bind(this);
  }

  // Properties set before this module loaded sit on the instance and hide the accessors.
  #upgradeProperty(name) {
    if (Object.prototype.hasOwnProperty.call(this, name)) {
      const value = this[name];
      delete this[name];
      this[name] = value;
    }
  }

  get getToken() {
    return this.#getToken;
  }

  set getToken(callback) {
    this.#getToken = typeof callback === "function" ? callback : null;
    this.#start();
  }

  get token() {
    return this.#token;
  }

  set token(value) {
    this.#token = value ? String(value) : null;
    this.#start();
  }

  get sessionId() {
    return this.getAttribute("session-id") || "";
  }

  set sessionId(value) {
    this.setAttribute("session-id", value);
  }

  get apiBase() {
    const base = this.getAttribute("api-base") || "";
    return base.replace(/\/+$/, "");
  }

  get pollInterval() {
    const value = Number(this.getAttribute("poll-interval"));
    return Number.isFinite(value) && value >= MIN_POLL_MS ? value : DEFAULT_POLL_MS;
  }

  get receiptWait() {
    const attribute = this.getAttribute("receipt-wait");
    const value = attribute === null || attribute.trim() === "" ? NaN : Number(attribute);
    return Number.isFinite(value) && value >= 0 ? value : DEFAULT_RECEIPT_WAIT_MS;
  }

  get language() {
    const own = this.getAttribute("lang");
    const inherited = own || this.closest("[lang]")?.getAttribute("lang") || document.documentElement.lang;
    return String(inherited || "mn").toLowerCase().startsWith("en") ? "en" : "mn";
  }

  /** The last payment view the API returned (null before the first answer). */
  get payment() {
    return this.#payment;
  }

  get status() {
    return this.#payment?.status ?? null;
  }

  connectedCallback() {
    this.#upgradeProperty("getToken");
    this.#upgradeProperty("token");
    if (!this.#ui) this.#build();
    this.#render();
    this.#start();
  }

  disconnectedCallback() {
    this.#stop();
    this.#stopReceipt();
  }

  attributeChangedCallback(name, previous, value) {
    if (previous === value || !this.#ui) return;
    if (name === "session-id") {
      this.#stop();
      this.#stopReceipt();
      this.#receipt = null;
      this.#payment = null;
      this.#options = null;
      this.#terminal = null;
      this.#failures = 0;
      this.#render();
      this.#start();
    } else {
      this.#render();
    }
  }

  /** Ask for the status now (e.g. after the shop learned of a payment another way). */
  refresh() {
    if (this.#running && !this.#inFlight) this.#schedule(0);
  }

  #t(key) {
    return MESSAGES[this.language][key];
  }

  #formatAmount(amount) {
    const locale = this.language === "en" ? "en-US" : "mn-MN";
    return `${new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }).format(amount)} ₮`;
  }

  // Polling: one request at a time; the next is scheduled only when the last has answered.

  #start() {
    if (!this.isConnected || !this.#ui || this.#running || this.#terminal) return;
    if (!this.sessionId || !(this.#getToken || this.#token)) return;
    this.#running = true;
    this.#generation += 1;
    document.addEventListener("visibilitychange", this.onVisibilityChange);
    this.#countdown = setInterval(() => this.#tick(), 1000);
    this.#schedule(0);
  }

  #stop() {
    this.#running = false;
    this.#pausePolling();
    clearInterval(this.#countdown);
    this.#countdown = null;
    document.removeEventListener("visibilitychange", this.onVisibilityChange);
  }

  #pausePolling() {
    this.#generation += 1;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort?.abort("stopped");
    this.#abort = null;
    this.#inFlight = false;
  }

  #schedule(delayMs) {
    clearTimeout(this.#timer);
    this.#timer = null;
    // While the tab is hidden nothing is scheduled; becoming visible asks at once.
    if (!this.#running || this.#cancelling || document.hidden) return;
    this.#timer = setTimeout(() => this.#poll(), delayMs);
  }

  onVisibilityChange() {
    if (document.hidden) {
      clearTimeout(this.#timer);
      this.#timer = null;
    } else if (this.#running && !this.#inFlight && !this.#timer) {
      this.#schedule(0);
    }
  }

  async #poll() {
    this.#timer = null;
    if (!this.#running || this.#cancelling || this.#inFlight) return;
    const generation = this.#generation;
    this.#inFlight = true;
    let nextDelay = this.pollInterval;
    try {
      const query = this.#options ? "" : "?include=qr";
      const payment = await this.#request("GET", `/payments/${encodeURIComponent(this.sessionId)}${query}`);
      if (generation !== this.#generation) return;
      this.#failures = 0;
      this.#apply(payment);
    } catch (error) {
      if (generation !== this.#generation) return;
      nextDelay = this.#onPollError(error);
    } finally {
      if (generation === this.#generation) {
        this.#inFlight = false;
        if (nextDelay !== null && this.#running && !this.#terminal) this.#schedule(nextDelay);
      }
    }
  }

  #onPollError(error) {
    if (FATAL_HTTP.has(error.status)) {
      this.#fail(error);
      return null;
    }
    this.#failures += 1;
    if (this.#failures === 1) this.#emit("qpay:error", { code: error.code, status: error.status, fatal: false });
    this.#ui.notice.hidden = false;
    this.#ui.notice.textContent = this.#t("offline");
    const backoff = Math.min(MAX_BACKOFF_MS, this.pollInterval * 2 ** this.#failures);
    const jittered = backoff * (0.8 + Math.random() * 0.4);
    return Math.max(jittered, error.retryAfterMs || 0);
  }

  #fail(error) {
    this.#stop();
    const key = error.status === 401 || error.status === 403 ? "unauthorized" : "notFound";
    this.#ui.notice.hidden = false;
    this.#ui.notice.textContent = this.#t(key);
    this.#announce(this.#t(key));
    this.#emit("qpay:error", { code: error.code, status: error.status, fatal: true });
  }

  async #tokenFor(refresh) {
    if (this.#getToken) {
      const value = await this.#getToken({ refresh });
      return value ? String(value) : null;
    }
    return this.#token;
  }

  async #request(method, path) {
    for (let attempt = 0; ; attempt += 1) {
      const token = await this.#tokenFor(attempt > 0);
      if (!token) throw new CheckoutError("UNAUTHORIZED", 401);
      const controller = new AbortController();
      this.#abort = controller;
      const timeout = setTimeout(() => controller.abort("timeout"), REQUEST_TIMEOUT_MS);
      let response;
      let body = null;
      try {
        response = await fetch(`${this.apiBase}${path}`, {
          method,
          headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
          signal: controller.signal,
          cache: "no-store",
          credentials: "omit",
          referrerPolicy: "no-referrer",
        });
        body = await response.json().catch(() => null);
      } catch {
        throw new CheckoutError(controller.signal.reason === "timeout" ? "TIMEOUT" : "NETWORK");
      } finally {
        clearTimeout(timeout);
        if (this.#abort === controller) this.#abort = null;
      }
      // One fresh token after a 401: the shop's token may just have expired.
      if (response.status === 401 && attempt === 0 && this.#getToken) continue;
      if (!response.ok) {
        throw new CheckoutError(body?.error?.code || `HTTP_${response.status}`, response.status, retryAfterMs(response));
      }
      this.#noteServerClock(response);
      return body;
    }
  }

  #noteServerClock(response) {
    // The countdown follows the server's clock; the Date header is readable on the same origin.
    const date = Date.parse(response.headers.get("Date") || "");
    if (Number.isFinite(date)) this.#clockSkewMs = date - Date.now();
  }

  #apply(payment) {
    if (!payment || typeof payment.status !== "string") return;
    const previous = this.#payment?.status;
    if (payment.qr_text || payment.qr_image || payment.status !== "PENDING") {
      this.#options = {
        qr_text: payment.qr_text || this.#options?.qr_text || "",
        qr_image: payment.qr_image || this.#options?.qr_image || "",
        deeplinks: payment.deeplinks || this.#options?.deeplinks || [],
      };
    }
    this.#payment = { ...this.#payment, ...payment };
    this.#ui.notice.hidden = true;
    this.#render();
    if (payment.status !== previous) {
      this.#announce(this.#statusText());
      this.#emit("qpay:status", { status: payment.status, payment: this.#payment });
      if (TERMINAL.has(payment.status)) this.#finish(payment.status);
    }
  }

  #finish(status) {
    if (this.#terminal) return;
    this.#terminal = status;
    this.#stop();
    this.#render();
    this.#emit(EVENT_FOR_STATUS[status], { status, payment: this.#payment });
    this.#ui.result.focus({ preventScroll: true });
    if (SUCCESS.has(status)) this.#startReceipt();
  }

  // The receipt phase: bounded, one request at a time, at RECEIPT_POLL_FACTOR x the poll interval.

  #receiptState() {
    const ebarimt = this.#payment?.ebarimt;
    if (ebarimt?.status === "REGISTERED" && ebarimt.qr_data) return "shown";
    // A PAID session's receipt is queued once its order is finished: worth waiting for.
    const status = ebarimt?.status || "NONE";
    if (RECEIPT_COMING.has(status)) return "waiting";
    return RECEIPT_LATER.has(status) ? "later" : null;
  }

  #startReceipt() {
    this.#receipt = this.#receiptState();
    if (this.#receipt === "waiting") {
      this.#receiptUntil = Date.now() + this.receiptWait;
      this.#scheduleReceipt();
    }
    this.#renderReceipt();
    if (this.#receipt === "shown") this.#receiptShown();
  }

  #scheduleReceipt() {
    clearTimeout(this.#receiptTimer);
    const delay = this.pollInterval * RECEIPT_POLL_FACTOR;
    if (Date.now() + delay > this.#receiptUntil) {
      this.#receiptTimer = setTimeout(() => this.#receiptLater(), Math.max(0, this.#receiptUntil - Date.now()));
      return;
    }
    this.#receiptTimer = setTimeout(() => this.#pollReceipt(), delay);
  }

  #stopReceipt() {
    clearTimeout(this.#receiptTimer);
    this.#receiptTimer = null;
  }

  async #pollReceipt() {
    this.#receiptTimer = null;
    if (this.#receipt !== "waiting" || !this.isConnected) return;
    try {
      const payment = await this.#request("GET", `/payments/${encodeURIComponent(this.sessionId)}`);
      if (payment && typeof payment.status === "string") this.#payment = { ...this.#payment, ...payment };
    } catch (error) {
      if (FATAL_HTTP.has(error.status)) {
        this.#receiptLater();
        return;
      }
      // A network hiccup: the next ask is still within the bound.
    }
    if (this.#receipt !== "waiting") return;
    const state = this.#receiptState();
    if (state === "shown") {
      this.#receipt = "shown";
      this.#renderReceipt();
      this.#receiptShown();
    } else if (state === "later") {
      this.#receiptLater();
    } else if (state === null) {
      this.#receipt = null; // none is coming (Ebarimt off): nothing to show
      this.#renderReceipt();
    } else {
      this.#scheduleReceipt();
    }
  }

  #receiptShown() {
    this.#stopReceipt();
    this.#announced = "";
    this.#announce(`${this.#t("receiptTitle")}. ${this.#t("lottery")}: ${this.#payment.ebarimt.lottery || ""}`);
    this.#emit("qpay:receipt", { ebarimt: this.#payment.ebarimt, payment: this.#payment });
  }

  #receiptLater() {
    this.#stopReceipt();
    if (this.#receipt !== "waiting") return;
    this.#receipt = "later";
    this.#renderReceipt();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  #announce(text) {
    // Same text twice would not be re-read; a status change always has new text.
    if (!text || text === this.#announced) return;
    this.#announced = text;
    this.#ui.live.textContent = text;
  }

  // Cancel: confirmation first; 409 ALREADY_PAID means the shopper paid, which is good news.

  #askToCancel() {
    if (this.#terminal || this.#cancelling) return;
    this.#ui.dialog.returnValue = "";
    this.#ui.dialog.showModal();
  }

  async #cancel() {
    if (this.#terminal || this.#cancelling) return;
    this.#cancelling = true;
    this.#pausePolling();
    this.#render();
    this.#announce(this.#t("cancelling"));
    const id = encodeURIComponent(this.sessionId);
    try {
      this.#apply(await this.#request("POST", `/payments/${id}/cancel`));
    } catch (error) {
      if (["ALREADY_PAID", "EXPIRED", "NOT_CANCELLABLE"].includes(error.code)) {
        await this.#settleAfterRefusedCancel(error.code);
      } else if (FATAL_HTTP.has(error.status) && error.code !== "VALIDATION_ERROR") {
        this.#fail(error);
      } else {
        this.#ui.notice.hidden = false;
        this.#ui.notice.textContent = this.#t("cancelFailed");
        this.#announce(this.#t("cancelFailed"));
      }
    } finally {
      this.#cancelling = false;
      this.#render();
      if (this.#running && !this.#terminal) {
        this.#generation += 1;
        this.#schedule(this.pollInterval);
      }
    }
  }

  async #settleAfterRefusedCancel(code) {
    // The session's own view says what happened (order id included); the 409 alone if that fails.
    try {
      const payment = await this.#request("GET", `/payments/${encodeURIComponent(this.sessionId)}`);
      if (TERMINAL.has(payment?.status)) {
        this.#apply(payment);
        return;
      }
    } catch {
      // fall through to what the 409 said
    }
    const status = { ALREADY_PAID: "PAID", EXPIRED: "EXPIRED", NOT_CANCELLABLE: "FAILED" }[code];
    this.#apply({ ...this.#payment, status });
  }

  async #copyQrText() {
    const text = this.#options?.qr_text || "";
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch {
      this.#ui.qrTextInput.select();
      copied = document.execCommand?.("copy") ?? false;
    }
    const message = this.#t(copied ? "copied" : "copyFailed");
    this.#ui.copyStatus.textContent = message;
    this.#announced = "";
    this.#announce(message);
  }

  #tick() {
    this.#renderCountdown();
    const remaining = this.#remainingMs();
    // At expiry ask once at once: the server expires the session on that read.
    if (remaining !== null && remaining <= 0 && !this.#expiryPolled && !this.#inFlight && this.#running) {
      this.#expiryPolled = true;
      this.#schedule(0);
    }
  }

  #remainingMs() {
    const expires = Date.parse(this.#payment?.expires_at || "");
    if (!Number.isFinite(expires)) return null;
    return expires - (Date.now() + this.#clockSkewMs);
  }

  // Rendering: the DOM is built once; renders change text, attributes and visibility only.

  #build() {
    const ui = {};
    ui.title = h("h2", { part: "title", id: "title" });
    ui.amountLabel = h("p", { class: "label" });
    ui.amount = h("p", { class: "amount", part: "amount" });
    ui.paidSoFar = h("p", { class: "paid-so-far label", hidden: true });
    ui.description = h("p", { class: "description" });
    ui.status = h("p", { class: "status", part: "status" });
    ui.notice = h("p", { class: "notice", hidden: true });
    ui.countdownLabel = h("span");
    ui.countdownTime = h("time");
    ui.countdown = h("p", { class: "countdown", role: "timer" }, ui.countdownLabel, " ", ui.countdownTime);

    ui.banksTitle = h("h3", { id: "banks-title" });
    ui.banksHint = h("p", { class: "hint" });
    ui.bankList = h("ul", { class: "bank-list" });
    ui.banks = h("section", { class: "banks", "aria-labelledby": "banks-title" }, ui.banksTitle, ui.banksHint, ui.bankList);

    ui.qrTitle = h("h3", { id: "qr-title" });
    ui.qrHint = h("p", { class: "hint" });
    ui.qrImage = h("img", { class: "qr-image", part: "qr", width: 232, height: 232, decoding: "async" });
    ui.qrTextLabel = h("label", { for: "qr-text", class: "label" });
    ui.qrTextInput = h("input", { id: "qr-text", type: "text", readonly: true, spellcheck: "false", autocomplete: "off" });
    ui.copyButton = h("button", { type: "button", class: "secondary copy", part: "copy" });
    ui.copyStatus = h("p", { class: "label copy-status" });
    ui.qrText = h(
      "div",
      { class: "qr-text" },
      ui.qrTextLabel,
      h("div", { class: "copy-row" }, ui.qrTextInput, ui.copyButton),
      ui.copyStatus,
    );
    ui.qr = h("section", { class: "qr", "aria-labelledby": "qr-title" }, ui.qrTitle, ui.qrHint, ui.qrImage, ui.qrText);
    ui.pay = h("div", { class: "pay" }, ui.banks, ui.qr);

    ui.result = h("p", { class: "result", tabindex: "-1", hidden: true });
    ui.receiptTitle = h("h3", { id: "receipt-title" });
    ui.receiptQr = h("div", { class: "receipt-code" });
    ui.receiptHint = h("p", { class: "hint receipt-hint" });
    ui.lotteryLabel = h("span", { class: "label" });
    ui.lotteryValue = h("span", { class: "lottery", part: "lottery" });
    ui.lottery = h("p", { class: "lottery-row" }, ui.lotteryLabel, h("br"), ui.lotteryValue);
    ui.receiptNote = h("p", { class: "receipt-note label" });
    ui.receipt = h(
      "section",
      { class: "receipt", part: "receipt", "aria-labelledby": "receipt-title", hidden: true },
      ui.receiptTitle,
      ui.receiptQr,
      ui.receiptHint,
      ui.lottery,
      ui.receiptNote,
    );
    ui.cancelButton = h("button", { type: "button", class: "secondary cancel", part: "cancel" });
    ui.backLink = h("a", { class: "back", part: "back", hidden: true });
    ui.actions = h("div", { class: "actions" }, ui.cancelButton, ui.backLink);
    ui.live = h("p", { class: "visually-hidden live", role: "status", "aria-live": "polite", "aria-atomic": "true" });

    ui.dialogTitle = h("h3", { id: "confirm-title" });
    ui.dialogText = h("p", { id: "confirm-text" });
    ui.confirmNo = h("button", { type: "button", class: "secondary confirm-no", autofocus: true });
    ui.confirmYes = h("button", { type: "button", class: "primary confirm-yes" });
    ui.dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
      ui.dialogTitle,
      ui.dialogText,
      h("div", { class: "dialog-actions" }, ui.confirmNo, ui.confirmYes),
    );

    ui.panel = h(
      "section",
      { class: "panel", part: "panel", "aria-labelledby": "title" },
      ui.title,
      h("div", { class: "summary" }, h("div", {}, ui.amountLabel, ui.amount), ui.paidSoFar),
      ui.description,
      ui.status,
      ui.notice,
      ui.countdown,
      ui.pay,
      ui.result,
      ui.receipt,
      ui.actions,
      ui.live,
      ui.dialog,
    );
    this.shadowRoot.append(ui.panel);

    ui.cancelButton.addEventListener("click", () => this.#askToCancel());
    ui.confirmNo.addEventListener("click", () => ui.dialog.close("dismiss"));
    ui.confirmYes.addEventListener("click", () => ui.dialog.close("confirm"));
    // Escape and "No" both close with something other than "confirm": nothing happens.
    ui.dialog.addEventListener("close", () => {
      if (ui.dialog.returnValue === "confirm") this.#cancel();
    });
    ui.copyButton.addEventListener("click", () => this.#copyQrText());
    ui.backLink.addEventListener("click", (event) => {
      const proceed = this.dispatchEvent(
        new CustomEvent("qpay:back", { detail: { status: this.status }, bubbles: true, composed: true, cancelable: true }),
      );
      if (!proceed) event.preventDefault();
    });
    this.#ui = ui;
  }

  #statusText() {
    const status = this.#payment?.status;
    if (this.#cancelling) return this.#t("cancelling");
    if (!status) return this.#t("loading");
    if (SUCCESS.has(status)) return this.#t("paid");
    return this.#t({ CANCELLED: "cancelled", EXPIRED: "expired", FAILED: "failed" }[status] || "pending");
  }

  #tone() {
    const status = this.#payment?.status;
    if (SUCCESS.has(status)) return "success";
    if (status === "FAILED") return "danger";
    if (status === "CANCELLED" || status === "EXPIRED") return "neutral";
    return "busy";
  }

  #render() {
    const ui = this.#ui;
    if (!ui) return;
    const payment = this.#payment;
    const status = payment?.status;
    const open = status === "PENDING" && !this.#terminal;
    this.shadowRoot.host.dataset.status = status ? status.toLowerCase() : "loading";

    ui.title.textContent = this.#t("title");
    ui.amountLabel.textContent = this.#t("amountDue");
    ui.amount.textContent = payment ? this.#formatAmount(payment.amount) : "…";
    const partlyPaid = payment && payment.paid_amount > 0 && payment.paid_amount < payment.amount;
    ui.paidSoFar.hidden = !partlyPaid;
    if (partlyPaid) ui.paidSoFar.textContent = `${this.#t("paidSoFar")}: ${this.#formatAmount(payment.paid_amount)}`;
    ui.description.textContent = payment?.description || "";
    ui.description.hidden = !payment?.description;

    // In a final state the result box says it all; the status line would repeat it.
    ui.status.hidden = Boolean(this.#terminal);
    ui.status.textContent = this.#statusText();
    ui.status.dataset.tone = this.#tone();

    ui.banksTitle.textContent = this.#t("banksTitle");
    ui.banksHint.textContent = this.#t("banksHint");
    ui.qrTitle.textContent = this.#t("qrTitle");
    ui.qrHint.textContent = this.#t("qrHint");
    ui.qrTextLabel.textContent = this.#t("qrText");
    ui.copyButton.textContent = this.#t("copy");
    ui.cancelButton.textContent = this.#t("cancel");
    ui.dialogTitle.textContent = this.#t("confirmTitle");
    ui.dialogText.textContent = this.#t("confirmText");
    ui.confirmYes.textContent = this.#t("confirmYes");
    ui.confirmNo.textContent = this.#t("confirmNo");

    const options = this.#options;
    ui.pay.hidden = !(open && options);
    if (open && options) this.#renderOptions(options, payment);
    ui.countdown.hidden = !open || this.#remainingMs() === null;
    this.#renderCountdown();

    ui.result.hidden = !this.#terminal;
    ui.result.textContent = this.#terminal ? this.#statusText() : "";
    ui.result.dataset.tone = this.#tone();
    ui.cancelButton.hidden = !open;
    ui.cancelButton.disabled = this.#cancelling;

    this.#renderReceipt();

    const returnUrl = safeReturnUrl(this.getAttribute("return-url"));
    ui.backLink.hidden = !returnUrl;
    if (returnUrl) ui.backLink.href = returnUrl;
    ui.backLink.textContent = this.#t("back");
  }

  #renderOptions(options, payment) {
    const ui = this.#ui;
    const image = /^[A-Za-z0-9+/=\s]+$/.test(options.qr_image) ? options.qr_image.replace(/\s/g, "") : "";
    const source = image ? `data:image/png;base64,${image}` : "";
    if (ui.qrImage.getAttribute("src") !== source) {
      if (source) ui.qrImage.src = source;
      else ui.qrImage.removeAttribute("src");
    }
    ui.qrImage.hidden = !source;
    ui.qrImage.alt = this.#t("qrAlt").replace("{amount}", this.#formatAmount(payment.amount));
    ui.qrTextInput.value = options.qr_text;
    ui.qrText.hidden = !options.qr_text;

    // Names only: the logos QPay lists live on its servers, and this page loads nothing third-party.
    const links = (options.deeplinks || [])
      .map((bank) => ({ bank, href: safeLink(bank.link) }))
      .filter(({ href }) => href);
    ui.banks.hidden = links.length === 0;
    const key = `${this.language}|${links.map(({ href }) => href).join("|")}`;
    if (ui.bankList.dataset.key === key) return;
    ui.bankList.dataset.key = key;
    ui.bankList.replaceChildren(
      ...links.map(({ bank, href }) => {
        const label = (this.language === "mn" && bank.description) || bank.name || bank.description || href;
        return h(
          "li",
          {},
          h(
            "a",
            { class: "bank", part: "bank", href, rel: "noopener noreferrer" },
            h("span", { class: "bank-initial", "aria-hidden": "true" }, label.trim().charAt(0).toUpperCase()),
            h("span", {}, label),
          ),
        );
      }),
    );
  }

  #renderReceipt() {
    const ui = this.#ui;
    if (!ui) return;
    const state = this.#receipt;
    ui.receipt.hidden = !state;
    ui.receipt.dataset.state = state || "none";
    if (!state) return;
    ui.receiptTitle.textContent = this.#t("receiptTitle");
    const shown = state === "shown";
    ui.receiptQr.hidden = !shown;
    ui.receiptHint.hidden = !shown;
    ui.lottery.hidden = !shown || !this.#payment.ebarimt.lottery;
    ui.receiptNote.hidden = shown;
    ui.receiptNote.textContent = state === "waiting" ? this.#t("receiptPending") : this.#t("receiptLater");
    if (!shown) return;
    const ebarimt = this.#payment.ebarimt;
    ui.receiptHint.textContent = this.#t("receiptHint");
    ui.lotteryLabel.textContent = this.#t("lottery");
    ui.lotteryValue.textContent = ebarimt.lottery || "";
    // Drawn once per receipt and language (the label is read out by screen readers).
    const key = `${this.language}|${ebarimt.qr_data}`;
    if (this.#receiptKey !== key) {
      this.#receiptKey = key;
      ui.receiptQr.replaceChildren(receiptQr(String(ebarimt.qr_data), this.#t("receiptAlt")));
    }
  }

  #renderCountdown() {
    const ui = this.#ui;
    const remaining = this.#remainingMs();
    if (remaining === null) return;
    const total = Math.max(0, Math.ceil(remaining / 1000));
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = String(total % 60).padStart(2, "0");
    const text = hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
    ui.countdownLabel.textContent = `${this.#t("expiresIn")}:`;
    if (ui.countdownTime.textContent !== text) {
      ui.countdownTime.textContent = text;
      ui.countdownTime.dateTime = `PT${total}S`;
    }
  }
}

if (!customElements.get("qpay-checkout")) {
  customElements.define("qpay-checkout", QPayCheckoutElement);
}
