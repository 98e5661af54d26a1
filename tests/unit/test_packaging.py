"""The two distributions (the QPay client layer and the simulator) say what they need, agree with
what the SAM layer ships, and install what their README sections promise."""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "qpay_common"
SIMULATOR = ROOT / "local" / "qpay_simulator"


def project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]


def layer_pins() -> dict[str, Requirement]:
    lines = (LAYER / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {requirement.name: requirement for requirement in requirements}


def pinned_version(requirement: Requirement) -> Version:
    [specifier] = list(requirement.specifier)
    return Version(specifier.version.replace(".*", ".0"))


def test_the_layers_distribution_admits_exactly_what_the_sam_layer_ships():
    # Given what the SAM layer installs (requirements.txt) and what the distribution declares
    pins = layer_pins()
    distribution = project(LAYER)
    declared = [Requirement(text) for text in distribution["dependencies"]]
    declared += [Requirement(text) for text in distribution["optional-dependencies"]["lambda"]]

    # Then every shipped package is declared, and each declared range admits the shipped pin
    assert {requirement.name for requirement in declared} == set(pins)
    for requirement in declared:
        assert requirement.specifier.contains(pinned_version(pins[requirement.name])), requirement


def test_the_client_alone_needs_no_dynamodb_and_is_typed():
    distribution = project(LAYER)
    names = {Requirement(text).name for text in distribution["dependencies"]}

    assert names == {"aws-lambda-powertools", "pydantic", "requests"}
    assert (LAYER / "qpay_common" / "py.typed").is_file()
    assert distribution["version"]


def test_the_simulator_is_its_own_distribution_with_a_console_script_on_the_client():
    distribution = project(SIMULATOR)

    assert distribution["name"] == "qpay-simulator"
    assert distribution["scripts"]["qpay-simulator"] == "qpay_simulator.__main__:main"
    assert "qpay-common" in {Requirement(text).name for text in distribution["dependencies"]}
