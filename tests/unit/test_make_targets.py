"""The Makefile's day-to-day targets, as make would run them (dry runs, nothing executed)."""

import os
import subprocess
import time

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.unit


def planned(*arguments: str, stamps) -> str:
    later = time.time() + 3600
    for name in ("venv", "sam", "checkov", "npm", "java", "chromium"):
        (stamps / name).touch()
        os.utime(stamps / name, (later, later))
    return subprocess.run(
        ["make", "-n", *arguments, f"STAMPS={stamps}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_the_first_deploy_of_an_environment_is_guided_and_later_ones_use_samconfig(tmp_path):
    marker = tmp_path / "deployed-prod"

    first = planned("deploy", "ENV=prod", f"DEPLOYED={marker}", stamps=tmp_path)
    assert "sam build" in first
    assert "sam deploy --guided --config-env prod" in first

    marker.touch()
    later = planned("deploy", "ENV=prod", f"DEPLOYED={marker}", stamps=tmp_path)
    assert "sam deploy --config-env prod" in later
    assert "--guided" not in later

    again = planned("deploy", "ENV=prod", "GUIDED=1", f"DEPLOYED={marker}", stamps=tmp_path)
    assert "sam deploy --guided --config-env prod" in again


def test_deploy_defaults_to_dev(tmp_path):
    assert "--config-env dev" in planned("deploy", f"DEPLOYED={tmp_path / 'x'}", stamps=tmp_path)


def test_fmt_formats_and_applies_ruffs_fixes(tmp_path):
    commands = planned("fmt", stamps=tmp_path)

    assert "ruff format ." in commands
    assert "ruff check --fix ." in commands
