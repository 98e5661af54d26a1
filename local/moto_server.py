"""`python -m local.moto_server`: moto's server, with the clock of its SQS backend made cheap.

moto re-derives the visibility of every message in a queue on each SQS call (several times per
message sent, received or deleted), each time through datetime arithmetic (~30 us a message).
With a few hundred messages queued, one SendMessageBatch took 100-200 ms, and the reconcile
queues of a backlog were worked at the speed of moto, not of the handlers. The same epoch
milliseconds from time.time() cost a twentieth of that; nothing else changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import moto.sqs.models as sqs_models
from moto.server import main


def _now_from_time_time(original: Callable[..., float], scale: float) -> Callable[..., float]:
    def now(dt: Any = None) -> float:
        return time.time() * scale if dt is None else original(dt)

    return now


def patch_sqs_clock() -> None:
    sqs_models.unix_time = _now_from_time_time(sqs_models.unix_time, 1.0)  # type: ignore[assignment]
    sqs_models.unix_time_millis = _now_from_time_time(sqs_models.unix_time_millis, 1000.0)  # type: ignore[assignment]


if __name__ == "__main__":
    patch_sqs_clock()
    main()
