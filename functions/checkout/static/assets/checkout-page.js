// The hosted checkout page: /checkout/{session_id}?lang=mn|en&return_url=...#token=JWT
//
// The shopper's token comes from the URL fragment, which browsers never send to a server; it is
// then removed from the address bar (and kept in this tab's sessionStorage for a reload). Framed
// by a shop page listed in CHECKOUT_SHOP_ORIGINS, the page can instead ask its parent:
//   page -> parent: {type: "qpay:token-request", session_id}
//   parent -> page: {type: "qpay:token", token}
// and it forwards the component's events to that parent as {type: "qpay:paid", status, payment}.
import "./qpay-checkout.js";

const LANGUAGES = { mn: "English", en: "Монгол" }; // the label names the other language
const FORWARDED_EVENTS = ["qpay:status", "qpay:paid", "qpay:cancelled", "qpay:expired", "qpay:failed", "qpay:error", "qpay:back"];
const TOKEN_WAIT_MS = 10000;

const checkout = document.querySelector("qpay-checkout");
const languageSwitch = document.querySelector(".lang-switch");
const shopOrigins = (document.querySelector('meta[name="qpay-shop-origins"]')?.content || "").split(/\s+/).filter(Boolean);
const framed = window.parent !== window;
const query = new URLSearchParams(location.search);
const sessionId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
// The API is this page's own origin and base path: the page lives at <base>/checkout/<id>.
const apiBase = new URL("..", location.href).href.replace(/\/+$/, "");
const storageKey = `qpay-checkout-token:${sessionId}`;

let token = takeTokenFromFragment();
let parentOrigin = null;
let tokenWaiters = [];

function remember(value) {
  try {
    sessionStorage.setItem(storageKey, value);
  } catch {
    // storage disabled: the token lives in memory only
  }
}

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromFragment = fragment.get("token");
  if (fromFragment) {
    remember(fromFragment);
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
    return fromFragment;
  }
  try {
    return sessionStorage.getItem(storageKey);
  } catch {
    return null;
  }
}

function askParentForToken() {
  if (!framed || shopOrigins.length === 0) return Promise.resolve(null);
  return new Promise((resolve) => {
    const waiter = { resolve };
    tokenWaiters.push(waiter);
    setTimeout(() => {
      tokenWaiters = tokenWaiters.filter((other) => other !== waiter);
      resolve(null);
    }, TOKEN_WAIT_MS);
    // Only the parent whose origin matches receives it; the request carries no secret anyway.
    for (const origin of shopOrigins) window.parent.postMessage({ type: "qpay:token-request", session_id: sessionId }, origin);
  });
}

window.addEventListener("message", (event) => {
  if (event.source !== window.parent || !shopOrigins.includes(event.origin)) return;
  const data = event.data;
  if (data?.type !== "qpay:token" || typeof data.token !== "string" || !data.token) return;
  parentOrigin = event.origin;
  token = data.token;
  const waiting = tokenWaiters;
  tokenWaiters = [];
  for (const waiter of waiting) waiter.resolve(token);
});

function allowedReturnUrl(value) {
  if (!value) return null;
  try {
    const url = new URL(value, location.href);
    const allowed = url.origin === location.origin || shopOrigins.includes(url.origin);
    return allowed && (url.protocol === "https:" || url.protocol === "http:") ? url.href : null;
  } catch {
    return null;
  }
}

function setLanguage(language) {
  document.documentElement.lang = language;
  checkout.setAttribute("lang", language);
  document.title = language === "en" ? "QPay payment" : "QPay төлбөр";
  languageSwitch.textContent = LANGUAGES[language];
  languageSwitch.setAttribute("lang", language === "en" ? "mn" : "en");
  languageSwitch.hidden = false;
}

languageSwitch.addEventListener("click", () => setLanguage(checkout.getAttribute("lang") === "en" ? "mn" : "en"));
setLanguage(query.get("lang") === "en" ? "en" : "mn");

const returnUrl = allowedReturnUrl(query.get("return_url"));
if (returnUrl) checkout.setAttribute("return-url", returnUrl);

for (const type of FORWARDED_EVENTS) {
  checkout.addEventListener(type, (event) => {
    if (!framed || !parentOrigin) return;
    if (type === "qpay:back") event.preventDefault(); // the shop page navigates, not this frame
    window.parent.postMessage({ type, status: event.detail?.status ?? null, payment: event.detail?.payment ?? null }, parentOrigin);
  });
}

// Once the payment is over, the token has nothing left to do in this tab.
for (const type of ["qpay:paid", "qpay:cancelled", "qpay:expired", "qpay:failed"]) {
  checkout.addEventListener(type, () => {
    try {
      sessionStorage.removeItem(storageKey);
    } catch {
      // storage disabled: nothing was kept
    }
  });
}

checkout.setAttribute("api-base", apiBase);
checkout.setAttribute("session-id", sessionId);
checkout.getToken = async ({ refresh } = {}) => {
  if (token && !refresh) return token;
  const fresh = await askParentForToken();
  if (fresh) token = fresh;
  return fresh || (refresh ? null : token);
};
