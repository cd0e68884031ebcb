"""The scaler: fit on training rows only, JSON round trip, inverse to kW."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from uci_readings import read_uci_readings

from powercast.core.config import PrepareConfig, SplitConfig
from powercast.core.errors import DataPreparationError, RegistryError
from powercast.core.schemas import MEASURED_COLUMNS, TARGET_COLUMN
from powercast.prepare.scaling import FeatureScaler
from powercast.prepare.series import prepare_series

SPLIT = SplitConfig(mode="trailing", val_days=21, test_days=14)
COLUMNS = (TARGET_COLUMN, "voltage_v")


@pytest.fixture()
def sample_readings(sample_path: Path) -> pd.DataFrame:
    return read_uci_readings(sample_path)


def test_scaler_learns_nothing_from_validation_and_test(sample_readings: pd.DataFrame) -> None:
    config = PrepareConfig(split=SPLIT, extra_features=["voltage_v"])
    honest = prepare_series(sample_readings, config, "m")
    val_start = honest.split_bounds_utc["val"][0]
    later = sample_readings.timestamp >= val_start
    changed = sample_readings.copy()
    for name in MEASURED_COLUMNS:
        changed.loc[later, name] = changed.loc[later, name] * 10 + 3
    tampered = prepare_series(changed, config, "m")
    assert not np.allclose(honest.target_kw[-100:], tampered.target_kw[-100:], equal_nan=True)
    assert tampered.scaler.to_dict() == honest.scaler.to_dict()


def test_gap_interpolated_towards_validation_does_not_reach_the_scaler(sample_readings: pd.DataFrame) -> None:
    config = PrepareConfig(split=SPLIT)
    val_start = prepare_series(sample_readings, config, "m").split_bounds_utc["val"][0]
    # the last two training hours are missing: a short gap, interpolated towards the first validation hour
    holed = sample_readings.copy()
    hole = (holed.timestamp >= val_start - pd.Timedelta(hours=2)) & (holed.timestamp < val_start)
    holed.loc[hole, list(MEASURED_COLUMNS)] = np.nan
    honest = prepare_series(holed, config, "m")
    tampered_readings = holed.copy()
    later = tampered_readings.timestamp >= val_start
    tampered_readings.loc[later, TARGET_COLUMN] = tampered_readings.loc[later, TARGET_COLUMN] * 10 + 3
    tampered = prepare_series(tampered_readings, config, "m")
    boundary = honest.index_utc.searchsorted(val_start)
    assert tampered.target_kw[boundary - 1] != honest.target_kw[boundary - 1]  # the fill did borrow from validation
    assert tampered.scaler.to_dict() == honest.scaler.to_dict()


def test_scaler_is_fit_on_the_training_rows(sample_readings: pd.DataFrame) -> None:
    prepared = prepare_series(sample_readings, PrepareConfig(split=SPLIT), "m")
    train_end = prepared.index_utc.searchsorted(prepared.split_bounds_utc["train"][1])
    train_kw = prepared.target_kw[:train_end]
    assert prepared.scaler.scaler_.mean_[0] == pytest.approx(np.nanmean(train_kw), rel=1e-5)
    assert prepared.scaler.n_rows_fit_ == train_end


def test_scaled_training_target_has_zero_mean_and_unit_variance(sample_readings: pd.DataFrame) -> None:
    prepared = prepare_series(sample_readings, PrepareConfig(split=SPLIT), "m")
    train_end = prepared.index_utc.searchsorted(prepared.split_bounds_utc["train"][1])
    real = ~np.isnan(prepared.target_kw[:train_end])  # filled gaps (prepare.missing_mask) are not readings
    scaled = prepared.inputs[:train_end, 0][real]
    assert np.nanmean(scaled) == pytest.approx(0.0, abs=1e-4)
    assert np.nanstd(scaled) == pytest.approx(1.0, abs=1e-4)


def test_inverse_target_returns_kilowatts() -> None:
    frame = pd.DataFrame({TARGET_COLUMN: [0.5, 1.5, 2.5, np.nan], "voltage_v": [230.0, 240.0, 235.0, 238.0]})
    scaler = FeatureScaler(COLUMNS).fit(frame)
    scaled = scaler.transform(frame)
    assert scaled.dtype == np.float32 and scaled.shape == (4, 2)
    assert np.isnan(scaled[3, 0])
    np.testing.assert_allclose(scaler.inverse_target_kw(scaled[:3, 0].reshape(1, 3)), [[0.5, 1.5, 2.5]], rtol=1e-6)


def test_scaler_round_trips_through_json() -> None:
    frame = pd.DataFrame({TARGET_COLUMN: [0.5, 1.5, 2.5], "voltage_v": [230.0, 240.0, 235.0]})
    scaler = FeatureScaler(COLUMNS).fit(frame)
    restored = FeatureScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored.columns == COLUMNS
    np.testing.assert_array_equal(restored.transform(frame), scaler.transform(frame))
    assert restored.to_dict() == scaler.to_dict()


def test_unfitted_scaler_says_how_to_fit_it() -> None:
    with pytest.raises(DataPreparationError, match="not fitted"):
        FeatureScaler(COLUMNS).inverse_target_kw(np.zeros(3))


def test_column_without_training_values_is_rejected() -> None:
    frame = pd.DataFrame({TARGET_COLUMN: [0.5, 1.5], "voltage_v": [np.nan, np.nan]})
    with pytest.raises(DataPreparationError, match="voltage_v"):
        FeatureScaler(COLUMNS).fit(frame)


def test_state_of_another_format_is_rejected() -> None:
    with pytest.raises(RegistryError, match="retrain"):
        FeatureScaler.from_dict({"format": "minmax/0", "columns": [TARGET_COLUMN]})
