"""Readings → PreparedSeries: gap exclusions, NaN rows, origins, inference with a given scaler."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from uci_readings import read_uci_readings

from powercast.cli.main import main
from powercast.core.config import PowercastConfig, PrepareConfig, SplitConfig
from powercast.core.errors import DataPreparationError, StoreError
from powercast.core.schemas import MEASURED_COLUMNS
from powercast.prepare.series import (
    EXCLUDED_LONG_GAP,
    EXCLUDED_MISSING_INPUT,
    PreparedSeries,
    input_window,
    prepare_meter,
    prepare_series,
)

PARIS_WINTER = timezone(timedelta(hours=1))
HOUR = pd.Timedelta("1h")


@pytest.fixture()
def sample_readings(sample_path: Path) -> pd.DataFrame:
    return read_uci_readings(sample_path)


@pytest.fixture()
def prepared_sample(sample_readings: pd.DataFrame) -> PreparedSeries:
    return prepare_series(sample_readings, PrepareConfig(), "sceaux_household")


def punch_hole(readings: pd.DataFrame, start_utc: pd.Timestamp, hours: int) -> pd.DataFrame:
    """Return readings with every measured value missing for ``hours`` from ``start_utc`` (as '?' rows)."""
    holed = readings.copy()
    inside = (holed.timestamp >= start_utc) & (holed.timestamp < start_utc + hours * HOUR)
    holed.loc[inside, list(MEASURED_COLUMNS)] = np.nan
    return holed


def test_prepared_series_has_the_contract_shapes(prepared_sample: PreparedSeries) -> None:
    n_rows = len(prepared_sample.index_utc)
    assert prepared_sample.target_kw.shape == (n_rows,) and prepared_sample.target_kw.dtype == np.float32
    assert prepared_sample.inputs.shape == (n_rows, len(prepared_sample.feature_names))
    assert prepared_sample.inputs.dtype == np.float32
    assert prepared_sample.feature_names[0] == "active_power_kw"
    assert str(prepared_sample.index_utc.tz) == "UTC" and prepared_sample.index_utc.freqstr == "h"
    assert all(starts.dtype == np.int64 for starts in prepared_sample.window_starts.values())


def test_window_touching_a_long_gap_is_excluded_and_counted(sample_readings: pd.DataFrame) -> None:
    config = PrepareConfig()
    before = prepare_series(sample_readings, config, "m")
    hole_row = 1000
    window_steps = config.lookback_steps + config.horizon_steps
    touching = np.arange(hole_row - window_steps + 1, hole_row + 10)
    assert np.isin(touching, before.window_starts["train"]).all(), "pick a hole among usable windows"
    after = prepare_series(punch_hole(sample_readings, before.index_utc[hole_row], 10), config, "m")
    assert np.isnan(after.target_kw[hole_row : hole_row + 10]).all()
    assert not np.isin(touching, after.window_starts["train"]).any()
    gained = after.exclusions["train"][EXCLUDED_LONG_GAP] - before.exclusions["train"][EXCLUDED_LONG_GAP]
    assert gained == touching.size
    assert after.window_starts["train"].size == before.window_starts["train"].size - touching.size


def test_short_gap_is_interpolated_and_its_windows_kept(sample_readings: pd.DataFrame) -> None:
    config = PrepareConfig(max_interpolate_gap_steps=3)
    before = prepare_series(sample_readings, config, "m")
    after = prepare_series(punch_hole(sample_readings, before.index_utc[1000], 3), config, "m")
    assert not np.isnan(after.target_kw[1000:1003]).any()
    assert after.gap_report.interpolated_steps == before.gap_report.interpolated_steps + 3
    np.testing.assert_array_equal(after.window_starts["train"], before.window_starts["train"])


def test_inputs_rows_are_nan_exactly_where_the_target_is_missing(sample_readings: pd.DataFrame) -> None:
    unmasked = prepare_series(sample_readings, PrepareConfig(missing_mask=False), "sceaux_household")
    target_missing = np.isnan(unmasked.target_kw)
    assert target_missing.any(), "the sample has a long outage"
    assert np.isnan(unmasked.inputs[target_missing]).all()
    assert not np.isnan(unmasked.inputs[~target_missing]).any()


def test_no_usable_window_holds_a_nan(prepared_sample: PreparedSeries) -> None:
    window_steps = prepared_sample.lookback_steps + prepared_sample.horizon_steps
    for starts in prepared_sample.window_starts.values():
        rows = starts[:, None] + np.arange(window_steps)
        assert not np.isnan(prepared_sample.inputs[rows]).any()


def test_origin_starts_are_windows_issued_at_local_midnight(prepared_sample: PreparedSeries) -> None:
    for split, origins in prepared_sample.origin_starts.items():
        assert np.isin(origins, prepared_sample.window_starts[split]).all()
        local = prepared_sample.index_utc[origins + prepared_sample.lookback_steps].tz_convert(PARIS_WINTER)
        assert (local.hour == 0).all() and (local.minute == 0).all()
    assert prepared_sample.origin_starts["val"].size >= 20  # about one per day of the 28-day validation


def test_gap_in_an_extra_feature_is_counted_as_missing_input(sample_readings: pd.DataFrame) -> None:
    holed = sample_readings.copy()
    hour = pd.Timestamp("2010-09-01 00:00", tz="UTC")
    holed.loc[(holed.timestamp >= hour) & (holed.timestamp < hour + 10 * HOUR), "voltage_v"] = np.nan
    prepared = prepare_series(holed, PrepareConfig(extra_features=["voltage_v"]), "m")
    assert prepared.exclusions["train"][EXCLUDED_MISSING_INPUT] == 10 + prepared.lookback_steps + prepared.horizon_steps - 1


def test_given_scaler_is_used_as_is(sample_readings: pd.DataFrame, prepared_sample: PreparedSeries) -> None:
    recent = sample_readings[sample_readings.timestamp >= pd.Timestamp("2010-10-01", tz="UTC")]
    reused = prepare_series(recent, PrepareConfig(), "m", scaler=prepared_sample.scaler)
    assert reused.scaler is prepared_sample.scaler
    row = reused.index_utc.get_loc(pd.Timestamp("2010-11-01 00:00", tz="UTC"))
    original_row = prepared_sample.index_utc.get_loc(pd.Timestamp("2010-11-01 00:00", tz="UTC"))
    assert reused.inputs[row, 0] == prepared_sample.inputs[original_row, 0]


def test_input_window_is_the_lookback_before_the_origin(prepared_sample: PreparedSeries) -> None:
    origin_row = int(prepared_sample.origin_starts["val"][-1]) + prepared_sample.lookback_steps
    window = input_window(prepared_sample, prepared_sample.index_utc[origin_row])
    assert window is not None
    np.testing.assert_array_equal(window, prepared_sample.inputs[origin_row - prepared_sample.lookback_steps : origin_row])


def test_input_window_is_none_when_the_last_readings_are_missing(sample_readings: pd.DataFrame) -> None:
    issue = pd.Timestamp("2010-11-28 00:00", tz=PARIS_WINTER).tz_convert("UTC")  # a day after the sample ends
    prepared = prepare_series(sample_readings, PrepareConfig(missing_mask=False), "m", grid_end_utc=issue)
    assert prepared.index_utc[-1] == issue - HOUR
    assert input_window(prepared, issue) is None
    masked = prepare_series(sample_readings, PrepareConfig(), "m", grid_end_utc=issue)
    window = input_window(masked, issue)  # filled, and the mask says which steps (the serving side decides)
    assert window is not None and window[-24:, masked.feature_names.index("input_missing")].all()


def test_input_window_before_the_grid_is_none(prepared_sample: PreparedSeries) -> None:
    assert input_window(prepared_sample, prepared_sample.index_utc[5]) is None


def test_origin_off_the_grid_is_rejected(prepared_sample: PreparedSeries) -> None:
    with pytest.raises(DataPreparationError, match="grid"):
        input_window(prepared_sample, prepared_sample.index_utc[500] + pd.Timedelta("30min"))


def test_minute_frequency_prepares_the_sample(sample_readings: pd.DataFrame) -> None:
    config = PrepareConfig(freq="1min", lookback_steps=120, horizon_steps=60, max_interpolate_gap_steps=5)
    prepared = prepare_series(sample_readings, config, "m")
    assert len(prepared.index_utc) == len(sample_readings)
    assert prepared.window_starts["train"].size > 100_000
    assert prepared.exclusions["train"][EXCLUDED_LONG_GAP] > 0


def test_reference_split_without_training_rows_is_rejected(sample_readings: pd.DataFrame) -> None:
    with pytest.raises(DataPreparationError, match="training split is empty"):
        prepare_series(sample_readings, PrepareConfig(split=SplitConfig.reference()), "m")


def test_series_shorter_than_one_window_is_rejected(sample_readings: pd.DataFrame) -> None:
    with pytest.raises(DataPreparationError, match="fewer than one window"):
        prepare_series(sample_readings.head(60 * 100), PrepareConfig(), "m")


def test_prepare_meter_reads_the_store_like_the_raw_file(
    ingested_config: PowercastConfig, sample_readings: pd.DataFrame
) -> None:
    from_store = prepare_meter(ingested_config, ingested_config.ingest.default_meter_id)
    from_file = prepare_series(sample_readings, ingested_config.prepare, ingested_config.ingest.default_meter_id)
    assert from_store.index_utc.equals(from_file.index_utc)
    np.testing.assert_allclose(from_store.inputs, from_file.inputs, rtol=1e-5, equal_nan=True)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(from_store.window_starts[split], from_file.window_starts[split])
    assert from_store.exclusions == from_file.exclusions


def test_prepare_meter_ends_the_grid_at_end_utc(ingested_config: PowercastConfig) -> None:
    end = pd.Timestamp("2010-11-01 00:00", tz=PARIS_WINTER).tz_convert("UTC")
    prepared = prepare_meter(ingested_config, ingested_config.ingest.default_meter_id, end_utc=end.to_pydatetime())
    assert prepared.index_utc[-1] == end - HOUR
    window = input_window(prepared, end)
    assert window is not None and window.shape == (prepared.lookback_steps, len(prepared.feature_names))


def test_prepare_meter_of_an_unknown_meter_raises_store_error(ingested_config: PowercastConfig) -> None:
    with pytest.raises(StoreError):
        prepare_meter(ingested_config, "no_such_meter")


def test_prepare_command_prints_splits_windows_and_exclusions(
    ingested_sample_root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prepare", "--root", ingested_sample_root, "--lookback-steps", "48"]) == 0
    printed = capsys.readouterr().out
    assert "features     active_power_kw, input_missing, hour_sin" in printed
    assert "lookback 48 steps" in printed
    for heading in ("train", "val", "test", "crosses_split", "long_gap", "missing_input"):
        assert heading in printed


def test_prepare_command_names_an_unknown_meter(ingested_sample_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--root", ingested_sample_root, "--meter", "no_such_meter"]) == 2
    assert "no_such_meter" in capsys.readouterr().err


def test_a_window_with_a_missing_extra_input_is_not_given_to_a_network(sample_readings) -> None:
    prepared = prepare_series(sample_readings, PrepareConfig(extra_features=["voltage_v"], lookback_steps=48), "m")
    start = int(prepared.window_starts["train"][-1])
    origin = prepared.index_utc[start + prepared.lookback_steps]
    assert input_window(prepared, origin) is not None
    prepared.inputs[start + 10, 1] = np.nan  # the target is there, the voltage is not
    assert input_window(prepared, origin) is None
