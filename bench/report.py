"""One table for every figure `make bench` takes: each row a value next to what it is compared
with, as Markdown (for people and the README) and JSON (for comparing runs)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Row:
    section: str
    name: str
    value: float | int | str
    unit: str
    reference: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    """What the figures were taken on, and how busy it was (other work skews absolute times)."""
    load: tuple[float, ...] = ()
    with contextlib.suppress(OSError):
        load = os.getloadavg()
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "")
    except OSError:
        pass
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "load_average_1_5_15": [round(value, 2) for value in load],
        "commit": _commit(),
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def markdown(rows: list[Row], about: dict[str, Any]) -> str:
    load = ", ".join(str(value) for value in about.get("load_average_1_5_15", []))
    lines = [
        f"Machine: {about.get('cpu')}, {about.get('cores')} cores, Python {about.get('python')}; "
        f"load average {load} (1, 5, 15 min) at the start; commit {about.get('commit')}; "
        f"{about.get('when')}; total {about.get('seconds', '?')} s.",
        "",
        "| Section | Figure | Value | Compared with | Ratio | Goal | Met |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        ratio = "" if row.ratio is None else f"{row.ratio:g}"
        lines.append(
            f"| {_cell(row.section)} | {_cell(row.name)} | {_cell(row.value)} {_cell(row.unit)} "
            f"| {_cell(row.reference)} | {ratio} | {_cell(row.goal)} | {met} |"
        )
    return "\n".join(lines) + "\n"


def as_json(rows: list[Row], about: dict[str, Any]) -> str:
    return json.dumps({"machine": about, "rows": [asdict(row) for row in rows]}, indent=2, default=str) + "\n"
