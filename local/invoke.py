"""`make invoke FUNCTION=CreatePaymentFunction EVENT=events/create_payment.json`: one invocation of
a function of the running local stack, through its Lambda invoke API (the same call `sam local
invoke` makes, for machines without a container engine). Prints the function's answer; exits 1
if the function failed, 2 for a bad command line or no stack to talk to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import requests

from local.endpoints import LocalPorts

INVOKE_TIMEOUT_SECONDS = 960  # longer than any function's Timeout (reconcile's 900 s)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0] or not argv[1]:
        print("usage: make invoke FUNCTION=<logical id> EVENT=<event file>", file=sys.stderr)
        return 2
    function, event_file = argv
    try:
        event = json.loads(Path(event_file).read_text())
    except (OSError, ValueError) as error:
        print(f"cannot read the event {event_file}: {error}", file=sys.stderr)
        return 2
    url = f"{LocalPorts.from_env().invoke_url}/2015-03-31/functions/{function}/invocations"
    try:
        response = requests.post(url, json=event, timeout=INVOKE_TIMEOUT_SECONDS)
    except requests.ConnectionError:
        print(f"no local stack answers at {url}: start it with `make run`", file=sys.stderr)
        return 2
    if response.status_code == 404:
        print(f"the template has no function {function}", file=sys.stderr)
        return 2
    print(response.text)
    # The invoke API answers 200 with X-Amz-Function-Error when the function itself failed.
    return 1 if response.headers.get("X-Amz-Function-Error") or response.status_code >= 400 else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
