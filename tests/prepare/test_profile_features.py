"""The weekly-profile known input (``prepare.profile_features``): learned on training rows, carried by the scaler."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from uci_readings import read_uci_readings

from powercast.core.config import PowercastConfig, PrepareConfig
from powercast.core.errors import DataPreparationError
from powercast.prepare.features import (
    CALENDAR_FEATURES,
    HOLIDAY_FEATURE,
    MISSING_MASK_FEATURE,
    PROFILE_FEATURE,
    config_for_features,
    feature_names,
    profile_ahead_feature,
    weekly_profile_kw,
)
from powercast.prepare.scaling import FeatureScaler
from powercast.prepare.series import prepare_meter, prepare_series
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters
from powercast.training.fleet import fit_global_models
from powercast.training.pipeline import window_inputs

PARIS_WINTER = timezone(pd.Timedelta(hours=1).to_pytimedelta())
METER = "sceaux_household"
# The sample's last 120 days: 21 days of validation and 14 of test after about 85 days of training.
TRAILING = {"mode": "trailing", "val_days": 21, "test_days": 14}


def _prepare_config(**update: object) -> PrepareConfig:
    return PrepareConfig(**{"profile_features": True, "split": TRAILING, **update})


def _profile_column(prepared) -> np.ndarray:
    return prepared.inputs[:, prepared.feature_names.index(PROFILE_FEATURE)]


def test_the_profile_is_the_last_known_input_and_old_cards_lack_it() -> None:
    names = feature_names(PrepareConfig(profile_features=True))
    assert names == ("active_power_kw", MISSING_MASK_FEATURE, *CALENDAR_FEATURES, HOLIDAY_FEATURE, PROFILE_FEATURE)
    card_before_the_switch = ("active_power_kw", MISSING_MASK_FEATURE, *CALENDAR_FEATURES, HOLIDAY_FEATURE)
    aligned = config_for_features(PrepareConfig(profile_features=True), card_before_the_switch)
    assert not aligned.profile_features and feature_names(aligned) == card_before_the_switch


def test_the_profile_comes_from_training_rows_only(sample_path: Path) -> None:
    """Changing every validation and test reading changes the scaled target there, not the profile column."""
    readings = read_uci_readings(sample_path)
    prepared = prepare_series(readings, _prepare_config(), METER)
    val_start_utc = prepared.split_bounds_utc["val"][0]
    later = readings["timestamp"] >= val_start_utc
    readings.loc[later, "active_power_kw"] *= 3.0
    changed = prepare_series(readings, _prepare_config(), METER)
    np.testing.assert_array_equal(_profile_column(changed), _profile_column(prepared))
    assert changed.scaler.to_dict() == prepared.scaler.to_dict()
    after = prepared.index_utc >= val_start_utc
    assert not np.allclose(changed.inputs[after, 0], prepared.inputs[after, 0], equal_nan=True)


def test_the_profile_equals_the_hand_computed_mean_of_the_training_hours(sample_path: Path) -> None:
    """Row t holds the mean scaled load of the training rows at the local weekday and hour of t + 24 h."""
    # No interpolation, so target_kw is exactly the hourly readings the scaler and the profile are fit on.
    config = _prepare_config(max_interpolate_gap_steps=0)
    prepared = prepare_series(read_uci_readings(sample_path), config, METER)
    local = prepared.index_utc.tz_convert(PARIS_WINTER)
    training = pd.Series(prepared.target_kw, index=local)[prepared.index_utc < prepared.split_bounds_utc["val"][0]]
    hand_kw = training.groupby([training.index.day_of_week, training.index.hour]).mean()  # NaN skipped
    mean_kw, scale_kw = prepared.scaler.scaler_.mean_[0], prepared.scaler.scaler_.scale_[0]
    column = _profile_column(prepared)
    for row in (0, len(column) - 200, len(column) - 1):  # a training, a test and the last row
        ahead = local[row] + pd.Timedelta(hours=24)
        expected = (hand_kw[(ahead.day_of_week, ahead.hour)] - mean_kw) / scale_kw
        assert column[row] == pytest.approx(expected, rel=1e-5)


def test_an_hour_of_the_week_without_training_readings_takes_its_hour_of_day_mean() -> None:
    index = pd.date_range("2010-01-04T00:00+01:00", periods=2 * 168, freq="1h").tz_convert("UTC")  # two Mondays on
    target_kw = np.arange(len(index), dtype=np.float64)
    target_kw[(index.tz_convert(PARIS_WINTER).day_of_week == 2) & (index.tz_convert(PARIS_WINTER).hour == 5)] = np.nan
    profile = weekly_profile_kw(index, target_kw, PARIS_WINTER)
    assert profile.shape == (168,) and np.isfinite(profile).all()
    wednesday_5h = 2 * 24 + 5
    other_days_5h = [day * 24 + 5 for day in range(7) if day != 2]
    assert profile[wednesday_5h] == pytest.approx(np.mean([target_kw[s] + off for s in other_days_5h for off in (0, 168)]))
    with pytest.raises(DataPreparationError, match="at least one real reading"):
        weekly_profile_kw(index, np.full(len(index), np.nan), PARIS_WINTER)


def test_serving_takes_the_profile_from_the_model_scaler(sample_path: Path) -> None:
    """Prepared later with a longer history, the model's own scaler gives the column it was trained with."""
    readings = read_uci_readings(sample_path)
    trained = prepare_series(readings, _prepare_config(), METER)
    card_scaler = FeatureScaler.from_dict(trained.scaler.to_dict())
    served_config = _prepare_config(split={"mode": "trailing", "val_days": 2})  # today's training rows differ
    served = prepare_series(readings, served_config, METER, scaler=card_scaler)
    refit = prepare_series(readings, served_config, METER)
    np.testing.assert_array_equal(_profile_column(served), _profile_column(trained))
    assert not np.array_equal(_profile_column(refit), _profile_column(trained))
    unswitched = PrepareConfig(split=TRAILING, profile_features=False)
    without = FeatureScaler.from_dict(prepare_series(readings, unswitched, METER).scaler.to_dict())
    assert "weekly_profile_kw" not in without.to_dict()  # a scaler fit without the switch writes what it always did
    with pytest.raises(DataPreparationError, match="no weekly profile"):
        prepare_series(readings, served_config, METER, scaler=without)


def test_old_cards_prepare_exactly_as_before(ingested_sample_root: str) -> None:
    """A card without the column (written before the switch) prepares the same inputs with the switch aligned off."""
    config = PowercastConfig(root=ingested_sample_root).with_overrides(
        {"prepare.split": TRAILING, "prepare.profile_features": False}
    )
    before = prepare_meter(config, METER)
    aligned = config_for_features(config.prepare.model_copy(update={"profile_features": True}), before.feature_names)
    after = prepare_meter(config.model_copy(update={"prepare": aligned}), METER, scaler=before.scaler)
    assert PROFILE_FEATURE not in before.feature_names and after.feature_names == before.feature_names
    np.testing.assert_array_equal(after.inputs, before.inputs)


def test_a_global_network_over_two_meters_reads_the_profile(sample_path: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    ingest_paths(
        [sample_path], PowercastConfig(root=root).with_overrides({"ingest.channel_meters": ["total", "kitchen"]}),
        run_id="ingest", progress=False,
    )
    config = PowercastConfig(root=root).with_overrides({
        "prepare.profile_features": True,
        "prepare.lookback_steps": 48,
        "prepare.split": {"mode": "trailing", "val_days": 14, "test_days": 0},
        "train.cells": ["gru"],
        "train.scope": "global",
        "train.hidden_sizes": [8],
        "train.ensemble_members": 1,
        "train.max_epochs": 2,
        "train.global_steps_per_epoch": 10,
        "train.global_val_windows": 200,
        "train.refit_on_validation": False,
        "train.accelerator": "cpu",
        "train.cpu_threads": 1,
    })
    series = [prepare_meter(config, meter_id) for meter_id in list_meters(root)]
    assert len(series) == 2 and all(PROFILE_FEATURE in item.feature_names for item in series)
    profiles = [item.scaler.weekly_profile_scaled() for item in series]
    assert not np.allclose(profiles[0], profiles[1])  # each meter its own shape
    [trained] = fit_global_models(config, series, run_id="profile", progress=False).values()
    windows = window_inputs(series[0], series[0].window_starts["val"][:32])
    column = series[0].feature_names.index(PROFILE_FEATURE)
    other_meter = windows.copy()
    other_meter[:, :, column] = profiles[1][0]  # the same readings under another meter's (flat) profile
    module = trained.fit.module
    assert module.hparams.n_features == len(series[0].feature_names)
    assert not np.allclose(module.forecast_scaled(windows), module.forecast_scaled(other_meter))


@pytest.mark.parametrize("freq", ["1h", "15min"])
def test_profile_ahead_follows_the_local_hour_of_the_week_across_both_dst_changes(freq: str) -> None:
    # Europe/Paris: 2010-03-28 02:00 local does not exist, 2010-10-31 02:00 happens twice.
    paris = ZoneInfo("Europe/Paris")
    profile = np.arange(168, dtype=np.float64)  # slot k holds k: the value names the slot read
    for start in ("2010-03-26", "2010-10-29"):
        index = pd.date_range(f"{start} 00:00", periods=4 * 24 * 4, freq=freq, tz="UTC")
        horizon_steps = 24 * (4 if freq == "15min" else 1)  # one day ahead
        column = profile_ahead_feature(index, paris, horizon_steps, profile)[:, 0]
        ahead = [(stamp + pd.Timedelta(days=1)).to_pydatetime().astimezone(paris) for stamp in index]
        expected = [moment.weekday() * 24 + moment.hour for moment in ahead]
        np.testing.assert_array_equal(column, np.asarray(expected, dtype=np.float32))
    if freq == "15min":  # per hour of the week: the four quarter-hours of an hour share one value
        assert (column.reshape(-1, 4) == column.reshape(-1, 4)[:, :1]).all()
