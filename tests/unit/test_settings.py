import pytest

from qpay_common.domain.errors import ConfigurationError
from qpay_common.settings import load_settings

pytestmark = pytest.mark.unit

BASE = {
    "SESSIONS_TABLE": "s",
    "ORDERS_TABLE": "o",
    "CACHE_TABLE": "c",
    "EVENT_BUS_NAME": "b",
}


def test_qpay_env_picks_the_base_url_and_an_override_wins():
    assert load_settings({**BASE, "QPAY_ENV": "live"}).qpay_base_url == "https://merchant.qpay.mn/v2"
    assert load_settings(BASE).qpay_base_url == "https://merchant-sandbox.qpay.mn/v2"
    overridden = load_settings({**BASE, "QPAY_BASE_URL": "http://127.0.0.1:3100/v2/"})
    assert overridden.qpay_base_url == "http://127.0.0.1:3100/v2"


def test_empty_cloudformation_parameters_mean_unset():
    settings = load_settings({**BASE, "QPAY_BASE_URL": "", "PUBLIC_BASE_URL": " ", "QPAY_SECRET_ARN": ""})
    assert settings.public_base_url is None
    assert settings.qpay_secret_arn is None


def test_missing_or_bad_settings_fail_fast_naming_the_variable_not_the_value():
    with pytest.raises(ConfigurationError) as error:
        load_settings({"ORDERS_TABLE": "o", "SESSION_EXPIRY_MINUTES": "0", "QPAY_CLIENT_SECRET": "hunter2"})
    message = str(error.value)
    assert "SESSIONS_TABLE" in message
    assert "SESSION_EXPIRY_MINUTES" in message
    assert "hunter2" not in message
