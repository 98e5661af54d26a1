"""Schedule expressions and settings of the local scheduler."""

import pytest

from local.scheduler import ScheduleError, SchedulerSettings, rate_seconds

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_cron_is_not_a_rate():
    assert rate_seconds("cron(0 3 * * ? *)") is None


def test_settings_from_environment():
    assert SchedulerSettings.from_env({}) == SchedulerSettings(enabled=True, speedup=1.0)
    assert SchedulerSettings.from_env({"LOCAL_SCHEDULE_SPEEDUP": "60"}).speedup == 60
    assert not SchedulerSettings.from_env({"LOCAL_SCHEDULES": "off"}).enabled
    with pytest.raises(ScheduleError, match="LOCAL_SCHEDULE_SPEEDUP"):
        SchedulerSettings.from_env({"LOCAL_SCHEDULE_SPEEDUP": "fast"})
    with pytest.raises(ScheduleError):
        SchedulerSettings.from_env({"LOCAL_SCHEDULE_SPEEDUP": "0"})
