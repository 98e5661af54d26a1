"""A QPay merchant API v2 simulator: a real HTTP server for local runs, tests and benchmarks.

It answers in QPay's own shapes, as public sources show them (`shared/qpay/QPAY_API.md`; the field
set of every answer and its sources are in `shapes`), with QPay's quirks, so a client that works
against it survives the real service and any merchant's QPay SDK can be tested against it:

- `expires_in` of `/v2/auth/token` is an absolute Unix epoch (24 h ahead). A fault rule
  `{"path": "/v2/auth/token", "expires_in": "duration"}` makes it a duration of 3600 s instead;
  `"expires_in": <int>` keeps the epoch form but gives the token that many seconds of life.
- Amounts are strings like `"15000.00"` in answers (`paid_amount` of payment/check is a number).
- The fee is `trx_fee` in payment/check rows but `payment_fee` in payment get and list; the type is
  `payment_type` in check rows, `transaction_type` in payment get and `paid_by` in list rows.
- P2P payments have 15-digit ids, a 1% fee and a transfer amount net of it; card payments have
  UUID ids and a PENDING settlement. Check rows carry no `payment_date`.
- Full-form invoices may omit `amount`: the total comes from the lines (`invoice_form`). Limits the
  invoice states (`allow_partial`, `allow_exceed`, `enable_expiry`) are enforced on `/_sim/pay`.
- Ebarimt 3.0 invoices use a second invoice code (`TEST_EB_INVOICE`); receipts answer with
  `barimt_status` REGISTERED or CANCELED; the legacy `/v2/ebarimt/create` adds the older names.
- Every error is `{"error": CODE, "message": text}`, the majority form (`errors`); a fault rule's
  `error_form` sends a path's errors in one of the minority forms instead. Codes are QPay's
  documented ones where QPay has one (OBJECT_DATA_ERROR for malformed fields, INVALID_AMOUNT,
  MIN_AMOUNT_ERR, MAX_AMOUNT_ERR, INVOICE_LINE_REQUIRED, PAYMENT_ALREADY_CANCELED, ...). The
  simulator's own choices, where public sources show a refusal but no code:
  SENDER_INVOICE_NO_DUPLICATED, PAYMENT_NOT_CARD, EBARIMT_NOTFOUND (legacy get), INVOICE_EXPIRED
  (on `/_sim/pay`), VALIDATION_ERROR (control API) and NOT_FOUND (unknown path).

Where public sources are silent the simulator is strict, so a client cannot come to rely on
leniency: `invoice_description` is required, and `amount` must be a positive whole number of MNT
(a number or a numeric string such as "15000" or "15000.00").

The control API under `/_sim/` is the one of `shared/design/ARCHITECTURE.md` section 8, plus:
`/_sim/pay` also takes `payment_type` (P2P or CARD) and `callback_method` (GET or POST) and
reports the callback's outcome; `POST /_sim/tokens/expire` revokes every access token (with
`{"refresh_tokens": true}`, refresh tokens too); `GET|POST /_sim/config` reads or sets
`ebarimt_registered`; `GET /_sim/health`. Fault rules can also answer a verbatim `body` (e.g. `{}`
from Ebarimt create), reword errors (`error_form`) and make Ebarimt create answer a receipt that is
not registered (`barimt_status`): see `state.FaultRule`. Fault rules apply to QPay paths only, and
`/_sim/stats` counts QPay calls only, so driving the simulator does not disturb what it measures.

Start it with `make simulator` / `python -m local.qpay_simulator` or, in tests,
`start_simulator(port=0)`. The README section "The QPay simulator on its own" is its user guide.
"""

from .server import SimulatorHandle, start_simulator

__all__ = ["SimulatorHandle", "start_simulator"]
