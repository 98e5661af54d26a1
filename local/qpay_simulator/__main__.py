"""`qpay-simulator` (`python -m local.qpay_simulator` in this repository): serve it until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from .server import start_simulator
from .state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_EBARIMT_INVOICE_CODE,
    DEFAULT_INVOICE_CODE,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qpay-simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100, help="0 picks a free port")
    parser.add_argument("--client-id", default=os.environ.get("QPAY_SIM_CLIENT_ID", DEFAULT_CLIENT_ID))
    parser.add_argument(
        "--client-secret", default=os.environ.get("QPAY_SIM_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    )
    parser.add_argument(
        "--invoice-code", default=os.environ.get("QPAY_SIM_INVOICE_CODE", DEFAULT_INVOICE_CODE)
    )
    parser.add_argument(
        "--ebarimt-invoice-code",
        default=os.environ.get("QPAY_SIM_EBARIMT_INVOICE_CODE", DEFAULT_EBARIMT_INVOICE_CODE),
        help="the second invoice code, for Ebarimt 3.0 invoices",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    try:
        handle = start_simulator(
            host=args.host,
            port=args.port,
            client_id=args.client_id,
            client_secret=args.client_secret,
            invoice_code=args.invoice_code,
            ebarimt_invoice_code=args.ebarimt_invoice_code,
        )
    except OSError as exc:
        parser.exit(1, f"cannot listen on {args.host}:{args.port}: {exc}\n")

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"QPay simulator on {handle.base_url}/v2 (control API {handle.base_url}/_sim/)", flush=True)
    stopping.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
