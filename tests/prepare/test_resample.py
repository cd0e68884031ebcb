"""Resampling readings onto the configured grid, with per-bucket coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from uci_readings import read_uci_readings

from powercast.core.errors import ConfigError, DataPreparationError
from powercast.core.schemas import TARGET_COLUMN
from powercast.prepare.resample import resample_readings


@pytest.fixture()
def sample_readings(sample_path: Path) -> pd.DataFrame:
    return read_uci_readings(sample_path)


def minute_readings(start: str, values: list[float]) -> pd.DataFrame:
    stamps = pd.date_range(start, periods=len(values), freq="1min", tz="UTC")
    return pd.DataFrame({"timestamp": stamps, TARGET_COLUMN: np.asarray(values, dtype=np.float32)})


def test_hourly_bucket_is_mean_of_its_minute_readings(sample_readings: pd.DataFrame) -> None:
    resampled = resample_readings(sample_readings, "1h", 0.5, [TARGET_COLUMN])
    hour = resampled.frame.index[10]
    in_hour = sample_readings[(sample_readings.timestamp >= hour) & (sample_readings.timestamp < hour + pd.Timedelta("1h"))]
    assert resampled.frame[TARGET_COLUMN].iloc[10] == pytest.approx(in_hour[TARGET_COLUMN].mean(), rel=1e-6)
    assert resampled.counts[TARGET_COLUMN][10] == in_hour[TARGET_COLUMN].notna().sum()


def test_bucket_with_too_few_readings_is_missing() -> None:
    values = [1.0] * 20 + [np.nan] * 40 + [2.0] * 30 + [np.nan] * 30 + [3.0] * 60
    resampled = resample_readings(minute_readings("2010-01-01", values), "1h", 0.5, [TARGET_COLUMN])
    assert np.isnan(resampled.frame[TARGET_COLUMN].iloc[0])  # 20 of 60 readings
    assert resampled.frame[TARGET_COLUMN].iloc[1] == pytest.approx(2.0)  # 30 of 60 readings
    assert resampled.frame[TARGET_COLUMN].iloc[2] == pytest.approx(3.0)
    assert resampled.counts[TARGET_COLUMN].tolist() == [20, 30, 60]
    assert resampled.readings_per_bucket == 60


def test_sample_hours_inside_an_outage_are_missing_not_zero(sample_readings: pd.DataFrame) -> None:
    resampled = resample_readings(sample_readings, "1h", 0.5, [TARGET_COLUMN])
    counts = resampled.counts[TARGET_COLUMN]
    assert (counts == 0).any(), "the sample holds a multi-day outage"
    assert np.isnan(resampled.frame[TARGET_COLUMN].to_numpy()[counts < 30]).all()
    assert (resampled.frame[TARGET_COLUMN].dropna() > 0).all()


def test_minute_frequency_keeps_every_reading(sample_readings: pd.DataFrame) -> None:
    resampled = resample_readings(sample_readings, "1min", 0.5, [TARGET_COLUMN])
    assert resampled.readings_per_bucket == 1
    assert len(resampled.frame) == len(sample_readings)
    np.testing.assert_array_equal(
        resampled.frame[TARGET_COLUMN].to_numpy(), sample_readings[TARGET_COLUMN].to_numpy(dtype=np.float64)
    )


def test_grid_is_regular_utc_at_the_configured_frequency(sample_readings: pd.DataFrame) -> None:
    index = resample_readings(sample_readings, "15min", 0.5, [TARGET_COLUMN]).frame.index
    assert str(index.tz) == "UTC"
    assert (np.diff(index.asi8) == pd.Timedelta("15min").value).all()


def test_grid_end_extends_the_grid_with_missing_buckets() -> None:
    readings = minute_readings("2010-01-01", [1.0] * 120)
    resampled = resample_readings(readings, "1h", 0.5, [TARGET_COLUMN], grid_end_utc=pd.Timestamp("2010-01-01 05:00", tz="UTC"))
    assert len(resampled.frame) == 5
    assert np.isnan(resampled.frame[TARGET_COLUMN].to_numpy()[2:]).all()


def test_frequency_finer_than_the_readings_is_rejected() -> None:
    with pytest.raises(ConfigError, match="prepare.freq"):
        resample_readings(minute_readings("2010-01-01", [1.0] * 10), "30s", 0.5, [TARGET_COLUMN])


def test_missing_column_is_named_in_the_error() -> None:
    with pytest.raises(DataPreparationError, match="voltage_v"):
        resample_readings(minute_readings("2010-01-01", [1.0] * 10), "1h", 0.5, [TARGET_COLUMN, "voltage_v"])


def test_naive_timestamps_are_rejected() -> None:
    readings = minute_readings("2010-01-01", [1.0] * 10)
    readings["timestamp"] = readings["timestamp"].dt.tz_localize(None)
    with pytest.raises(DataPreparationError, match="timezone-aware"):
        resample_readings(readings, "1h", 0.5, [TARGET_COLUMN])


def test_unsorted_readings_resample_like_sorted(sample_readings: pd.DataFrame) -> None:
    shuffled = sample_readings.sample(frac=1.0, random_state=0)
    expected = resample_readings(sample_readings, "1h", 0.5, [TARGET_COLUMN]).frame
    pd.testing.assert_frame_equal(resample_readings(shuffled, "1h", 0.5, [TARGET_COLUMN]).frame, expected)
