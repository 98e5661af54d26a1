"""The QPay client and the simulator as a merchant's developer installs them: both distributions
into a fresh virtual environment, from this checkout (dependencies from the package index), then
the README's standalone example run against `qpay-simulator`."""

import json
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
import requests

from tests.support import ROOT

pytestmark = pytest.mark.integration

INSTALL_TIMEOUT_SECONDS = 600


def readme_standalone_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The QPay client, outside Lambda too") :]
    return section[
        section.index("```python\n") + len("```python\n") : section.index(
            "```", section.index("```python") + 9
        )
    ]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A virtual environment with only the two distributions and what they depend on. They are
    built from copies, so the checkout gets no build/ or egg-info folders."""
    root = tmp_path_factory.mktemp("distributions")
    sources = []
    for relative in ("layers/qpay_common", "local/qpay_simulator"):
        target = root / "src" / relative.replace("/", "-")
        shutil.copytree(
            ROOT / relative, target, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
        )
        sources.append(str(target))
    environment = root / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *sources],
        check=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    return environment


def test_both_distributions_install_alone_and_the_readme_example_runs_against_the_simulator(fresh_venv):
    python = fresh_venv / "bin" / "python"
    # Given the installed simulator, started by its console script on a free port
    simulator = subprocess.Popen(
        [str(fresh_venv / "bin" / "qpay-simulator"), "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        banner = simulator.stdout.readline()
        base = re.search(r"on (http://127\.0\.0\.1:\d+)/v2", banner)
        assert base, banner
        sim = base.group(1)
        # When the README's example runs in that environment, pointed at the simulator (QPay's
        # documented base, without /v2, and the simulator's default merchant)
        example = (
            readme_standalone_example()
            .replace('"https://merchant.qpay.mn"', repr(sim))
            .replace('"MY_CLIENT_ID"', '"TEST_MERCHANT"')
            .replace('"my-secret"', '"local-sim-secret"')
            .replace('"MY_INVOICE_CODE"', '"TEST_INVOICE"')
        )
        script = (
            example + "\nimport json\nprint(json.dumps({'invoice_id': invoice.invoice_id, 'paid': paid}))\n"
        )
        first = subprocess.run(
            [str(python), "-c", script], capture_output=True, text=True, timeout=60, cwd="/"
        )
        assert first.returncode == 0, first.stderr
        created = json.loads(first.stdout.strip().splitlines()[-1])

        # Then the invoice exists at the simulator, unpaid, and a payment shows in the client's check
        assert created["paid"] == 0
        invoice = requests.get(f"{sim}/_sim/invoices/{created['invoice_id']}", timeout=10).json()
        assert invoice["amount"] == 15000
        requests.post(
            f"{sim}/_sim/pay", json={"invoice_id": created["invoice_id"], "callback": False}, timeout=10
        ).raise_for_status()
        check = subprocess.run(
            [
                str(python),
                "-c",
                "import sys\n"
                "from qpay_common.adapters.qpay.standalone import standalone_client\n"
                f"qpay = standalone_client({sim!r}, 'TEST_MERCHANT', 'local-sim-secret')\n"
                "print(qpay.check_payment(sys.argv[1]).total_paid)",
                created["invoice_id"],
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert check.returncode == 0, check.stderr
        assert check.stdout.strip() == "15000"
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


def test_the_installed_client_needs_neither_dynamodb_nor_the_checkout(fresh_venv):
    python = fresh_venv / "bin" / "python"
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    installed = {package["name"].lower() for package in json.loads(listing.stdout)}

    assert {"qpay-common", "qpay-simulator"} <= installed
    assert "pynamodb" not in installed
    # The package is typed for the merchant's own mypy
    found = subprocess.run(
        [str(python), "-c", "import qpay_common, pathlib; print(pathlib.Path(qpay_common.__file__).parent)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert (Path(found.stdout.strip()) / "py.typed").is_file()
