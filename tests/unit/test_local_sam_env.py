"""The env-vars file `make run` writes for `sam local invoke`."""

import json

import pytest

from local.sam_env import env_file_path, sam_env_vars, write_sam_env_file
from local.template import load_template
from tests.support import ROOT, TEMPLATE

pytestmark = pytest.mark.unit


def workers(function):
    return {
        **function.environment,
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000",
        "QPAY_BASE_URL": "http://127.0.0.1:3100/v2",
        "HOME": "/root",  # not declared by the template: SAM would ignore it, so it is left out
    }


def test_only_the_variables_a_function_declares_are_written_with_the_workers_values():
    template = load_template(TEMPLATE)

    files = sam_env_vars(template, workers)

    create = files["CreatePaymentFunction"]
    assert set(create) == set(template.functions["CreatePaymentFunction"].environment)
    assert create["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:8000"
    assert "HOME" not in create


def test_a_container_without_host_networking_gets_the_stacks_addresses_on_its_host():
    template = load_template(TEMPLATE)

    files = sam_env_vars(template, workers, host="host.docker.internal")

    create = files["CreatePaymentFunction"]
    assert create["AWS_ENDPOINT_URL_DYNAMODB"] == "http://host.docker.internal:8000"
    assert create["QPAY_BASE_URL"] == "http://host.docker.internal:3100/v2"
    assert create["POWERTOOLS_SERVICE_NAME"] == "qpay-payments"  # not a URL: unchanged


def test_the_file_is_written_whole_where_configured(tmp_path):
    target = tmp_path / "nested" / "sam-env.json"

    write_sam_env_file(target, {"CreatePaymentFunction": {"A": "1"}})

    assert json.loads(target.read_text()) == {"CreatePaymentFunction": {"A": "1"}}
    assert env_file_path(ROOT, {}) == ROOT / ".local" / "sam-env.json"
    assert env_file_path(ROOT, {"LOCAL_SAM_ENV_FILE": str(target)}) == target
