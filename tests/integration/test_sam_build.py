"""`make build` as a merchant runs it before deploying: SAM CLI builds every function and the
layer from template.yaml (its Fn::ForEach loops included) for python3.13, and the build ships
compiled bytecode. Built into a temporary folder, so the checkout's own .aws-sam is untouched."""

import subprocess

import pytest

from local.template import load_template, load_yaml
from tests.support import ROOT

pytestmark = pytest.mark.integration

BUILD_TIMEOUT_SECONDS = 300


def test_make_build_builds_every_function_and_the_layer_with_compiled_bytecode(tmp_path):
    build_dir = tmp_path / "build"

    result = subprocess.run(
        ["make", "--no-print-directory", "build", f"BUILD_DIR={build_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    functions = load_template(ROOT / "template.yaml").functions
    built = {path.name for path in build_dir.iterdir() if path.is_dir()}
    assert set(functions) <= built
    assert (build_dir / "QpayCommonLayer" / "python" / "qpay_common" / "composition.py").is_file()
    compiled = list((build_dir / "QpayCommonLayer" / "python" / "qpay_common").rglob("*.cpython-313.pyc"))
    assert compiled, "the layer is shipped without python3.13 bytecode"
    # The built template still carries the loops: CloudFormation expands them at deploy time.
    built_template = load_yaml(build_dir / "template.yaml", expand=False)
    assert any(key.startswith("Fn::ForEach::") for key in built_template["Resources"])
