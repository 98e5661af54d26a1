"""`make iam-unused`: per function, the actions its IAM policy grants that no test used.

The local runtime writes the calls each function was allowed when it stops, into
LOCAL_IAM_USAGE_DIR (the e2e and contract suites set it to .iam-usage/; `make test` empties it
first). This reads them all and lists, per function of template.yaml, each (action, resource) its
template policy grants that no recorded call matched: a grant to remove, or a flow no test drives.
What the Lambda service does with the role itself is left out: logs and X-Ray, and sending a
failed asynchronous event to the dead-letter queue.

    python -m local.iam_report [--usage-dir .iam-usage] [--template template.yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from local.iam import granted_actions, used_by
from local.iam_policy import SERVICE_ONLY_POLICIES
from local.template import load_template

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_ONLY_PREFIXES = ("logs:", "xray:")


def recorded_calls(usage_dir: Path) -> dict[str, set[tuple[str, str]]]:
    calls: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(usage_dir.glob("usage-*.json")):
        for function_id, pairs in json.loads(path.read_text())["calls"].items():
            calls.setdefault(function_id, set()).update((action, resource) for action, resource in pairs)
    return calls


def unused_grants(template_path: Path, usage_dir: Path) -> dict[str, list[tuple[str, str, str]]]:
    template = load_template(template_path)
    calls = recorded_calls(usage_dir)
    report = {}
    for function_id, function in sorted(template.functions.items()):
        if function.policy is None:
            continue
        statements = [
            statement
            for statement in function.policy.statements
            if statement.source.removeprefix("managed:") not in SERVICE_ONLY_POLICIES
            and statement.source != "DeadLetterQueue"
        ]
        used = calls.get(function_id, set())
        report[function_id] = [
            grant
            for grant in granted_actions(statements)
            if not grant[0].startswith(SERVICE_ONLY_PREFIXES) and not used_by(grant, used)
        ]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iam_report", description=__doc__.splitlines()[0])
    parser.add_argument("--usage-dir", type=Path, default=REPO_ROOT / ".iam-usage")
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    args = parser.parse_args(argv)
    if not list(args.usage_dir.glob("usage-*.json")):
        print(f"no recorded calls in {args.usage_dir}: run `make e2e contract` first", file=sys.stderr)
        return 1
    report = unused_grants(args.template, args.usage_dir)
    for function_id, grants in report.items():
        if not grants:
            print(f"{function_id}: every grant used")
            continue
        print(f"{function_id}: {len(grants)} granted, never used by a test")
        for action, resource, source in grants:
            print(f"  {action:<34} {resource}  ({source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
