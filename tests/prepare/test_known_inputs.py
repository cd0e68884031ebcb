"""Known inputs: day of year and public holidays, computed in the local timezone, also for future times."""

from __future__ import annotations

from datetime import timezone

import numpy as np
import pandas as pd
import pytest

from powercast.core.config import PowercastConfig, PrepareConfig
from powercast.core.errors import ConfigError
from powercast.prepare.features import (
    CALENDAR_FEATURES,
    DAY_OF_YEAR_FEATURES,
    HOLIDAY_FEATURE,
    MISSING_MASK_FEATURE,
    PROFILE_FEATURE,
    config_for_features,
    day_of_year_features,
    feature_names,
    holiday_ahead_feature,
)
from powercast.prepare.series import input_window, prepare_meter

PARIS_WINTER = timezone(pd.Timedelta(hours=1).to_pytimedelta())
METER = "sceaux_household"


def test_day_of_year_is_a_circle_that_closes_at_new_year() -> None:
    index = pd.DatetimeIndex(["2009-12-31T22:00Z", "2009-12-31T23:00Z", "2010-07-02T11:00Z"])
    encoded = day_of_year_features(index, PARIS_WINTER)
    assert encoded.shape == (3, 2) and encoded.dtype == np.float32
    np.testing.assert_allclose(encoded[1], [0.0, 1.0], atol=1e-6)  # local midnight of 1 January
    assert np.linalg.norm(encoded[0] - encoded[1]) < 0.01  # the last hour of the year sits next to it
    assert encoded[2, 1] < -0.99  # early July: the far side of the circle


def test_holiday_ahead_flags_the_local_day_one_horizon_later() -> None:
    index = pd.date_range("2010-11-09T23:00Z", periods=72, freq="1h")  # local 10, 11, 12 November
    flags = holiday_ahead_feature(index, PARIS_WINTER, 24, "FR", "prepare.holiday_country")[:, 0]
    local_target_day = (index + pd.Timedelta(hours=24)).tz_convert(PARIS_WINTER).day
    np.testing.assert_array_equal(flags == 1.0, local_target_day == 11)  # 11 November, Armistice Day
    assert flags[:24].all()  # the rows of 10 November flag the day they forecast


def test_holiday_country_is_per_meter() -> None:
    config = PrepareConfig(holiday_country="FR", holiday_country_by_meter={"berlin_flat": "DE", "metz": "FR-57"})
    assert [config.holiday_country_of(m) for m in ("sceaux_household", "berlin_flat", "metz")] == ["FR", "DE", "FR-57"]
    index = pd.date_range("2010-10-02T00:00Z", periods=24, freq="1h")  # rows of 2 October UTC → 3 October
    germany = holiday_ahead_feature(index, timezone.utc, 24, "DE", "x")[:, 0]
    france = holiday_ahead_feature(index, timezone.utc, 24, "FR", "x")[:, 0]
    assert germany.all() and not france.any()  # German Unity Day
    good_friday = pd.date_range("2010-04-01T00:00Z", periods=24, freq="1h")  # → 2 April 2010
    moselle = holiday_ahead_feature(good_friday, timezone.utc, 24, "FR-57", "x")[:, 0]
    assert moselle.all() and not holiday_ahead_feature(good_friday, timezone.utc, 24, "FR", "x").any()


def test_unknown_holiday_country_names_the_setting() -> None:
    index = pd.date_range("2010-01-01T00:00Z", periods=24, freq="1h")
    with pytest.raises(ConfigError, match=r"prepare.holiday_country_by_meter\['m'\] 'XX'"):
        holiday_ahead_feature(index, timezone.utc, 24, "XX", "prepare.holiday_country_by_meter['m']")
    with pytest.raises(ConfigError, match=r"prepare.holiday_country 'FR-99' is not a country .*subdivision 99"):
        holiday_ahead_feature(index, timezone.utc, 24, "FR-99", "prepare.holiday_country")


def test_feature_order_and_old_cards_feature_lists() -> None:
    everything = PrepareConfig(missing_mask=True, day_of_year_features=True, holiday_features=True)
    names = feature_names(everything)
    assert names == (
        "active_power_kw", MISSING_MASK_FEATURE, *CALENDAR_FEATURES, *DAY_OF_YEAR_FEATURES, HOLIDAY_FEATURE, PROFILE_FEATURE
    )
    old_card_names = ("active_power_kw", *CALENDAR_FEATURES)  # a card written before these switches
    aligned = config_for_features(everything, old_card_names)
    assert not (aligned.missing_mask or aligned.day_of_year_features or aligned.holiday_features or aligned.profile_features)
    assert feature_names(aligned) == old_card_names
    with pytest.raises(ConfigError, match="cannot be rebuilt"):
        config_for_features(everything, ("active_power_kw", "mystery"))


def test_known_inputs_reach_past_the_last_reading(ingested_sample_root: str) -> None:
    """Issued after the readings stop, the window's last rows still flag the forecast day's holiday."""
    config = PowercastConfig(root=ingested_sample_root).with_overrides(
        {"prepare.holiday_features": True, "prepare.day_of_year_features": True, "prepare.missing_mask": True,
         "prepare.split": {"mode": "trailing", "val_days": 7}}
    )
    issued = pd.Timestamp("2010-11-11T00:00+01:00").tz_convert("UTC")
    prepared = prepare_meter(config, METER, end_utc=issued)
    window = input_window(prepared, issued)
    assert window is not None
    holiday = window[:, prepared.feature_names.index(HOLIDAY_FEATURE)]
    np.testing.assert_array_equal(holiday[-24:], np.ones(24))  # 11 November, the day it forecasts
    assert not holiday[:-24].any()
    assert np.isfinite(window).all()
