"""Cold start of each Lambda function in template.yaml: import of the handler module plus its
first invocation, in a fresh interpreter (as a new execution environment would), against
DynamoDB Local and the QPay simulator.

The floor is the least any function here can start in: import boto3, build a DynamoDB client
and make one GetItem. Floor and functions run alternately, round after round, and the ratio is
taken between medians, so a machine that is loaded by other work slows both sides alike.

Besides wall-clock time, each probe reports its own CPU time, which other work on the machine
sways less. The probes use the repo's compiled bytecode, as `make build` ships it.

The QPay token is already in the cache table (another environment fetched it), as it is for
nearly every cold start of a deployed function.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.infra import LAYER, Backends
from bench.report import Row
from local.template import FunctionSpec

GOAL_RATIO = 1.3

# Runs in the child. Prints one JSON line: import and first-invocation milliseconds.
PROBE = """
import json, sys, time
started, cpu_started = time.perf_counter(), time.process_time()
sys.path[:0] = [{layer!r}, {code!r}]
import importlib.util
spec = importlib.util.spec_from_file_location("handler", {module!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported = time.perf_counter()
class Context:
    function_name = {name!r}
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + {name!r}
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 60_000
with open({event!r}) as source:
    event = json.load(source)
result = getattr(module, {attribute!r})(event, Context())
done, cpu_done = time.perf_counter(), time.process_time()
status = result.get("statusCode", 0) if isinstance(result, dict) else 0
print(json.dumps({{"import_ms": (imported - started) * 1000, "total_ms": (done - started) * 1000,
                  "cpu_ms": (cpu_done - cpu_started) * 1000, "status": status}}))
"""

# A SnapStart function's restored environment: the snapshot initialises (import, before-snapshot
# hooks) and forks; the child resumes with the snapshot's random state, runs the after-restore
# hooks and its first invocation. Prints the child's time from the fork to its answer.
RESTORED = PROBE.replace(
    "result = getattr(module, {attribute!r})(event, Context())",
    """import os, random, snapshot_restore_py
for hook, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
    hook(*args, **kwargs)
state = random.getstate()
read, write = os.pipe()
forked = time.perf_counter()
if os.fork() == 0:
    random.setstate(state)
    for hook, args, kwargs in snapshot_restore_py.get_after_restore():
        hook(*args, **kwargs)
    getattr(module, {attribute!r})(event, Context())
    os.write(write, str((time.perf_counter() - forked) * 1000).encode())
    os._exit(0)
os.close(write)
restored_ms = float(os.read(read, 64).decode())
os.wait()
result = {{"statusCode": 200}}
imported = time.perf_counter() - restored_ms / 1000
started = time.perf_counter() - restored_ms / 1000""",
)

FLOOR = """
import json, os, time
started, cpu_started = time.perf_counter(), time.process_time()
import boto3
client = boto3.client("dynamodb")
imported = time.perf_counter()
client.get_item(TableName=os.environ["SESSIONS_TABLE"], Key={"session_id": {"S": "ps_floor"}})
done, cpu_done = time.perf_counter(), time.process_time()
print(json.dumps({"import_ms": (imported - started) * 1000, "total_ms": (done - started) * 1000,
                  "cpu_ms": (cpu_done - cpu_started) * 1000, "status": 200}))
"""


def module_file_for(function: FunctionSpec) -> Path:
    module, _ = function.module_and_attribute
    return function.code_uri.joinpath(*module.split(".")).with_suffix(".py")


@dataclass
class Sample:
    import_ms: float
    total_ms: float
    # This process's CPU time: less swayed by other work on the machine than the wall clock.
    cpu_ms: float
    status: int


def run_probe(script: str, env: dict[str, str]) -> Sample:
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    if finished.returncode != 0:
        raise RuntimeError(f"cold-start probe failed:\n{finished.stderr[-2000:]}")
    # Powertools logs JSON lines to stdout too: ours is the last line.
    line = finished.stdout.strip().splitlines()[-1]
    values = json.loads(line)
    return Sample(values["import_ms"], values["total_ms"], values["cpu_ms"], values["status"])


def function_probe(function: FunctionSpec, event_file: Path, *, restored: bool = False) -> str:
    _, attribute = function.module_and_attribute
    return (RESTORED if restored else PROBE).format(
        layer=str(LAYER),
        code=str(function.code_uri),
        module=str(module_file_for(function)),
        name=function.logical_id,
        attribute=attribute,
        event=str(event_file),
    )


def measure(
    backends: Backends,
    events: dict[str, Callable[[], dict[str, Any]]],
    rounds: int,
    progress: Callable[[str], None],
) -> list[Row]:
    """`events` maps each function's logical id to a maker of its first event (a fresh session
    where the function changes one)."""
    floor_env = backends.environment("GetPaymentFunction")
    floor: list[Sample] = []
    samples: dict[str, list[Sample]] = {name: [] for name in events}
    restored: dict[str, list[Sample]] = {name: [] for name in events if backends.function(name).snap_start}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(rounds):
            names = list(events)
            random.Random(round_number).shuffle(names)
            floor.append(run_probe(FLOOR, floor_env))
            for index, name in enumerate(names):
                function = backends.function(name)
                event_file = Path(folder) / f"{name}-{round_number}.json"
                event_file.write_text(json.dumps(events[name]()))
                probe = function_probe(function, event_file)
                samples[name].append(run_probe(probe, backends.environment(name)))
                if name in restored:
                    event_file.write_text(json.dumps(events[name]()))
                    restore = function_probe(function, event_file, restored=True)
                    restored[name].append(run_probe(restore, backends.environment(name)))
                if index == len(names) // 2:
                    floor.append(run_probe(FLOOR, floor_env))
            progress(f"cold start: round {round_number + 1}/{rounds}")
        floor.append(run_probe(FLOOR, floor_env))

    floor_import = statistics.median(sample.import_ms for sample in floor)
    floor_total = statistics.median(sample.total_ms for sample in floor)
    floor_cpu = statistics.median(sample.cpu_ms for sample in floor)
    rows = [
        Row(
            section="Cold start",
            name="floor: import boto3 + DynamoDB client + 1 GetItem",
            value=round(floor_total),
            unit="ms",
            reference=f"import {floor_import:.0f} ms; CPU {floor_cpu:.0f} ms",
            detail={
                "samples": len(floor),
                "import_ms": floor_import,
                "total_ms": floor_total,
                "cpu_ms": floor_cpu,
            },
        )
    ]
    for name in sorted(samples):
        runs = samples[name]
        import_ms = statistics.median(sample.import_ms for sample in runs)
        total_ms = statistics.median(sample.total_ms for sample in runs)
        cpu_ms = statistics.median(sample.cpu_ms for sample in runs)
        statuses = sorted({sample.status for sample in runs})
        ratio = total_ms / floor_total
        rows.append(
            Row(
                section="Cold start",
                name=f"{name} (import + first invocation)",
                value=round(total_ms),
                unit="ms",
                reference=f"floor {floor_total:.0f} ms; import alone {import_ms:.0f} ms "
                f"= {import_ms / floor_import:.2f}x floor import; CPU {cpu_ms / floor_cpu:.2f}x floor CPU",
                ratio=round(ratio, 2),
                goal=f"<= {GOAL_RATIO}x",
                met=ratio <= GOAL_RATIO,
                detail={
                    "import_ms": import_ms,
                    "total_ms": total_ms,
                    "import_ratio": import_ms / floor_import,
                    "cpu_ms": cpu_ms,
                    "cpu_ratio": cpu_ms / floor_cpu,
                    "statuses": statuses,
                    "samples": len(runs),
                },
            )
        )
        if name in restored:
            restore_ms = statistics.median(sample.total_ms for sample in restored[name])
            rows.append(
                Row(
                    section="Cold start",
                    name=f"{name} (SnapStart: restored, after-restore hooks + first invocation)",
                    value=round(restore_ms),
                    unit="ms",
                    reference=f"full init + first invocation {total_ms:.0f} ms; the snapshot's own load "
                    "time in AWS is not in it",
                    detail={"total_ms": restore_ms, "samples": len(restored[name])},
                )
            )
    return rows
