"""SnapStart runtime hooks (the HTTP functions run with SnapStart on their published versions).

Before Lambda takes the snapshot, the function builds what every restored environment may share:
the use cases its routes depend on, with their adapters and the SDK clients those use (so a
restored environment's first request builds none). No call is made and no secret is read: a
snapshot must hold no connection and nothing that goes stale.

After a restore, each environment makes its own what it would otherwise share with every other
environment restored from the same snapshot: Python's global `random` state (botocore's retry
jitter draws from it) is reseeded from the OS, and the values the graph re-reads on a timer are
due again (their timer was started before the snapshot).

`snapshot_restore_py` is part of Lambda's managed Python runtime (and of the local runtime); where
it is absent (tests, the QPay client used on its own) there is no snapshot and nothing to hook.
"""

import random
from collections.abc import Callable

from qpay_common import composition
from qpay_common.domain.errors import ConfigurationError
from qpay_common.observability import logger

try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # not in Lambda's managed runtime: no snapshot is ever taken
    register_after_restore = register_before_snapshot = None


def register(use_cases: list[Callable[[], object]]) -> None:
    """Hook this environment into SnapStart, building `use_cases` (composition functions) before
    the snapshot."""
    if register_before_snapshot is None or register_after_restore is None:
        return
    register_before_snapshot(before_snapshot, use_cases)
    register_after_restore(after_restore)


def before_snapshot(use_cases: list[Callable[[], object]]) -> None:
    try:
        composition.build_for_snapshot(use_cases)
    except ConfigurationError:
        # A misconfigured function still starts: its requests then answer the configuration
        # error as they would without a snapshot, instead of the version failing to publish.
        logger.exception("Could not build the service graph before the snapshot")


def after_restore() -> None:
    random.seed()
    composition.after_restore()
