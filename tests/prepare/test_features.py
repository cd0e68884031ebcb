"""Input features: names in order, and calendar encodings on the local clock."""

from __future__ import annotations

from datetime import timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from powercast.core.config import PrepareConfig
from powercast.core.errors import ConfigError
from powercast.prepare.features import (
    CALENDAR_FEATURES,
    calendar_features,
    feature_names,
    slot_of_day,
)

PARIS_WINTER = timezone(timedelta(hours=1))


def test_feature_names_put_target_first_then_extras_then_calendar() -> None:
    names = feature_names(PrepareConfig(extra_features=["voltage_v", "intensity_a"]))
    assert names == (
        "active_power_kw", "voltage_v", "intensity_a", "input_missing", *CALENDAR_FEATURES, "holiday_ahead", "profile_ahead"
    )
    unmasked = feature_names(
        PrepareConfig(extra_features=["voltage_v"], missing_mask=False, holiday_features=False, profile_features=False)
    )
    assert unmasked == ("active_power_kw", "voltage_v", *CALENDAR_FEATURES)


def test_calendar_features_can_be_switched_off() -> None:
    bare = PrepareConfig(calendar_features=False, missing_mask=False, holiday_features=False, profile_features=False)
    assert feature_names(bare) == ("active_power_kw",)


def test_unknown_extra_feature_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="voltage_v"):
        feature_names(PrepareConfig(extra_features=["voltage"]))


def test_target_listed_as_extra_feature_is_rejected() -> None:
    with pytest.raises(ConfigError, match="target"):
        feature_names(PrepareConfig(extra_features=["active_power_kw"]))


def test_calendar_features_follow_the_local_clock() -> None:
    # 2010-11-21 23:00 UTC is Monday 2010-11-22 00:00 at +01:00: hour 0 and weekday 0.
    index = pd.DatetimeIndex([pd.Timestamp("2010-11-21 23:00", tz="UTC")])
    hour_sin, hour_cos, weekday_sin, weekday_cos = calendar_features(index, PARIS_WINTER)[0]
    assert (hour_sin, hour_cos) == pytest.approx((0.0, 1.0), abs=1e-6)
    assert (weekday_sin, weekday_cos) == pytest.approx((0.0, 1.0), abs=1e-6)


def test_hour_encoding_is_cyclical() -> None:
    index = pd.date_range("2010-01-04 22:00", periods=3, freq="1h", tz=PARIS_WINTER).tz_convert("UTC")
    encoded = calendar_features(index, PARIS_WINTER)[:, :2]
    near_midnight = np.linalg.norm(encoded[1] - encoded[2])  # 23:00 → 00:00
    assert near_midnight == pytest.approx(np.linalg.norm(encoded[0] - encoded[1]), rel=1e-5)
    assert calendar_features(index, PARIS_WINTER).dtype == np.float32


def test_slot_of_day_is_the_local_position_in_grid_steps_across_a_dst_change() -> None:
    times_utc = pd.DatetimeIndex(["2010-03-27 23:00", "2010-03-28 05:30", "2010-10-31 00:45"], tz="UTC")
    paris = ZoneInfo("Europe/Paris")  # 2010-03-28 02:00 CET -> 03:00 CEST; 2010-10-31 back to CET
    np.testing.assert_array_equal(slot_of_day(times_utc, paris, pd.Timedelta(hours=1)), [0, 7, 2])
    np.testing.assert_array_equal(slot_of_day(times_utc, paris, pd.Timedelta(minutes=15)), [0, 30, 11])
