"""`make bench` must keep working as the code under it changes."""

import json
from pathlib import Path

import pytest

from bench.cold_start import module_file_for
from bench.report import Row, as_json, markdown
from local.template import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_finds_every_handler_module_of_the_template():
    template = load_template(ROOT / "template.yaml")

    files = [module_file_for(function) for function in template.functions.values()]

    assert files
    assert all(path.is_file() for path in files)


def test_every_function_of_the_template_has_a_first_invocation_for_the_cold_start_bench():
    from types import SimpleNamespace

    from bench.in_process import first_invocation_events

    template = load_template(ROOT / "template.yaml")

    # No event is made here (that needs the local engines): only which functions have one.
    events = first_invocation_events(SimpleNamespace(template=template))

    assert set(events) == set(template.functions)


def test_the_table_shows_each_figure_with_its_reference_and_marks_a_missed_goal():
    rows = [
        Row(
            "Cold start",
            "CreatePaymentFunction",
            900,
            "ms",
            "floor 450 ms",
            ratio=2.0,
            goal="<= 1.3x",
            met=False,
        ),
        Row("Token cache", "fetches", 1, "fetches", "50 callers", goal="1", met=True),
        Row("Warm", "GET a|b", "1.0 / 2.0", "ms"),
    ]
    about = {"cpu": "test cpu", "cores": 2, "python": "3.11", "load_average_1_5_15": [1.5, 1.0, 0.5]}

    table = markdown(rows, about).splitlines()

    assert "test cpu, 2 cores" in table[0]
    assert "load average 1.5, 1.0, 0.5" in table[0]
    assert table[2].startswith("| Section | Figure | Value | Compared with | Ratio | Goal | Met |")
    assert table[4] == "| Cold start | CreatePaymentFunction | 900 ms | floor 450 ms | 2 | <= 1.3x | **no** |"
    assert table[5].endswith("| 1 | yes |")
    assert "GET a\\|b" in table[6]
    parsed = json.loads(as_json(rows, about))
    assert parsed["machine"]["cores"] == 2
    assert [row["met"] for row in parsed["rows"]] == [False, True, None]
