"""`make bench` (`python -m bench`): every benchmark, one table, as Markdown on stdout and, with
--markdown/--json, into files (JSON for comparing runs).

    python -m bench [--quick] [--only cold,warm,calls,token,jobs,e2e] [--json F] [--markdown F]

Progress goes to stderr; the handlers' own log lines go nowhere (they would drown the table).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from bench.infra import ensure_import_paths

SECTIONS = ("cold", "warm", "calls", "token", "jobs", "e2e")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sessions (a smoke run)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = chosen - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    ensure_import_paths()
    # A job run with nothing due flushes no metrics, and Powertools says so every time.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "qpay-payments")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "QPayPayments")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

    from bench import cold_start, end_to_end, in_process
    from bench.infra import backends, function_environment
    from bench.report import Row, as_json, machine, markdown

    def progress(message: str) -> None:
        print(f"[bench {time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    about = machine()
    started = time.monotonic()
    rows = []
    real_stdout = sys.stdout
    failures: list[str] = []

    def section(name: str, measure: Callable[[], list[Row]]) -> None:
        """Run one section; one that fails is a row saying so, and the others still run."""
        try:
            rows.extend(measure())
        except Exception as exc:  # noqa: BLE001 - reported in the table and the exit status
            failures.append(name)
            traceback.print_exc()
            rows.append(
                Row(
                    section=name,
                    name="FAILED",
                    value=type(exc).__name__,
                    unit="",
                    reference=str(exc)[:300],
                    met=False,
                )
            )

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        if chosen - {"e2e"}:
            with backends() as running:
                progress("DynamoDB Local, moto and the simulator are up")
                with function_environment(running, "CreatePaymentFunction") as env:
                    if "calls" in chosen:
                        section("Calls per operation", lambda: in_process.calls_per_operation(running))
                        progress("calls per operation")
                    if "cold" in chosen:
                        section(
                            "Cold start",
                            lambda: cold_start.measure(
                                running,
                                in_process.first_invocation_events(running),
                                3 if args.quick else 7,
                                progress,
                            ),
                        )
                    if "warm" in chosen:
                        section(
                            "Warm latency",
                            lambda: in_process.warm_latency(running, 20 if args.quick else 100, progress),
                        )
                    if "token" in chosen:
                        section("Token cache", lambda: in_process.token_cache(running, env))
                        progress("token cache")
                    if "jobs" in chosen:
                        section(
                            "Scheduled jobs",
                            lambda: in_process.job_throughput(
                                running, (100, 300), 48 if args.quick else 240, progress
                            ),
                        )
        if "e2e" in chosen:
            section(
                "End to end",
                lambda: end_to_end.throughput(4 if args.quick else 8, 3 if args.quick else 10, progress),
            )
    about["seconds"] = round(time.monotonic() - started)
    about["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    table = markdown(rows, about)
    real_stdout.write(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(as_json(rows, about))
    failed = [row for row in rows if row.met is False]
    print(f"{len(rows)} figures, {len(failed)} below their goal, in {about['seconds']} s", file=sys.stderr)
    if failures:
        print(f"sections that failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
