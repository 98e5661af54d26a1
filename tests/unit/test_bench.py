"""`make bench` must keep working as the code under it changes."""

from pathlib import Path

import pytest

from bench.cold_start import module_file_for
from local.template import load_template

pytestmark = pytest.mark.unit


def test_the_benchmark_finds_every_handler_module_of_the_template():
    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")

    files = [module_file_for(function) for function in template.functions.values()]

    assert files
    assert all(path.is_file() for path in files)
