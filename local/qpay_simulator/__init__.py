"""A QPay merchant API v2 simulator: a real HTTP server for local runs, tests and benchmarks.

It implements `shared/qpay/QPAY_API.md` with QPay's quirks, so a client that works against it
survives the real service:

- `expires_in` of `/v2/auth/token` is an absolute Unix epoch (24 h ahead). A fault rule
  `{"path": "/v2/auth/token", "expires_in": "duration"}` makes it a duration of 3600 s instead;
  `"expires_in": <int>` keeps the epoch form but gives the token that many seconds of life.
- Amounts are strings like `"15000.00"` in responses (`paid_amount` of payment/check is a number).
- The fee is `trx_fee` in payment/check rows but `payment_fee` in `GET /v2/payment/{id}`.
- The error code sits in a different field depending on the endpoint, as observed, so clients
  must read `error`, `message` and `error_code`:
  - `{"error": CODE, "message": text}`: AUTHENTICATION_FAILED, INVOICE_CODE_INVALID,
    VALIDATION_ERROR, SENDER_INVOICE_NO_DUPLICATED, MAX_AMOUNT_ERR, INVALID_OBJECT_TYPE,
    INVOICE_NOTFOUND (invoice GET and DELETE, payment/list), PAYMENT_NOTFOUND, PAYMENT_NOT_CARD,
    PAYMENT_NOT_PAID, INVALID_RECEIVER_TYPE, EBARIMT_NOT_REGISTERED, EBARIMT_NOTFOUND, INVALID_JSON,
    NOT_FOUND (unknown path) and injected faults;
  - `{"message": CODE}`: NO_CREDENDIALS (sic), INVOICE_ALREADY_CANCELED, INVOICE_NOTFOUND
    (payment/check);
  - `{"error_code": CODE, "message": text}`: INVOICE_PAID.

  VALIDATION_ERROR, SENDER_INVOICE_NO_DUPLICATED, PAYMENT_NOT_CARD, INVALID_RECEIVER_TYPE and
  EBARIMT_NOTFOUND are the simulator's choices where public sources show a refusal but no code.

Where public sources are silent the simulator is strict, so a client cannot come to rely on
leniency: `invoice_description` is required, and amounts must be positive whole numbers of MNT
(numbers or numeric strings such as "15000" or "15000.00").

The control API under `/_sim/` is the one of `shared/design/ARCHITECTURE.md` section 8, plus:
`/_sim/pay` also takes `payment_type` (P2P or CARD) and `callback_method` (GET or POST) and
reports the callback's outcome; `POST /_sim/tokens/expire` revokes every access token (with
`{"refresh_tokens": true}`, refresh tokens too); `GET|POST /_sim/config` reads or sets
`ebarimt_registered`; `GET /_sim/health`. Fault rules apply to QPay paths only, and `/_sim/stats`
counts QPay calls only, so driving the simulator does not disturb what it measures.

Start it with `python -m local.qpay_simulator` or, in tests, `start_simulator(port=0)`.
"""

from local.qpay_simulator.server import SimulatorHandle, start_simulator

__all__ = ["SimulatorHandle", "start_simulator"]
