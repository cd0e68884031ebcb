"""prepare.missing_mask on the real sample: filled inputs, the mask column, and which windows train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from uci_readings import read_uci_readings

from powercast.core.config import PrepareConfig
from powercast.core.errors import ConfigError
from powercast.prepare.datamodule import WindowDataModule
from powercast.prepare.features import MISSING_MASK_FEATURE, fill_missing_inputs
from powercast.prepare.series import PreparedSeries, input_window, prepare_series

METER = "sceaux_household"


@pytest.fixture(scope="module")
def sample_readings(sample_path: Path) -> pd.DataFrame:
    return read_uci_readings(sample_path)


@pytest.fixture(scope="module")
def masked(sample_readings: pd.DataFrame) -> PreparedSeries:
    return prepare_series(sample_readings, PrepareConfig(missing_mask=True), METER)


@pytest.fixture(scope="module")
def unmasked(sample_readings: pd.DataFrame) -> PreparedSeries:
    return prepare_series(sample_readings, PrepareConfig(missing_mask=False), METER)


def test_mask_column_marks_exactly_the_missing_target_steps_and_nothing_stays_nan(masked: PreparedSeries) -> None:
    mask = masked.inputs[:, masked.feature_names.index(MISSING_MASK_FEATURE)]
    assert masked.feature_names[:2] == ("active_power_kw", MISSING_MASK_FEATURE)
    assert np.isfinite(masked.inputs).all()
    np.testing.assert_array_equal(mask == 1.0, np.isnan(masked.target_kw))  # target_kw keeps its NaN
    assert np.isnan(masked.target_kw).sum() > 24  # the sample's real outages are there


def test_scoring_windows_are_the_complete_ones_with_or_without_the_mask(masked, unmasked) -> None:
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(masked.window_starts[split], unmasked.window_starts[split])
        np.testing.assert_array_equal(masked.origin_starts[split], unmasked.origin_starts[split])
    assert all(not starts.size for starts in unmasked.gap_window_starts.values())


def test_windows_with_gaps_in_their_input_train_and_their_targets_are_real(masked: PreparedSeries) -> None:
    gap_starts = masked.gap_window_starts["train"]
    lookback, horizon = masked.lookback_steps, masked.horizon_steps
    assert gap_starts.size > 100  # the sample's August outage alone leaves a week of such origins
    mask = masked.inputs[:, masked.feature_names.index(MISSING_MASK_FEATURE)]
    for start in gap_starts:
        assert np.isfinite(masked.target_kw[start + lookback : start + lookback + horizon]).all()
        missing_inputs = int(mask[start : start + lookback].sum())
        assert missing_inputs > 0 and lookback - missing_inputs >= 24
    data = WindowDataModule(masked, batch_size=64)
    assert len(data.datasets["train"]) == masked.window_starts["train"].size + gap_starts.size
    assert len(data.datasets["val"]) == masked.window_starts["val"].size  # early stopping: complete windows only


def test_a_window_whose_target_has_a_missing_step_is_never_used(masked: PreparedSeries) -> None:
    lookback, horizon = masked.lookback_steps, masked.horizon_steps
    used = np.concatenate([masked.training_starts(split) for split in ("train", "val", "test")])
    targets = masked.target_kw[used[:, None] + lookback + np.arange(horizon)]
    assert np.isfinite(targets).all()
    missing = np.flatnonzero(np.isnan(masked.target_kw))
    with_missing_target = {int(row - lookback - k) for row in missing for k in range(horizon)}
    assert not with_missing_target & set(used.tolist())


def test_min_real_input_steps_leaves_out_windows_with_too_little_real_input(sample_readings) -> None:
    strict = prepare_series(sample_readings, PrepareConfig(missing_mask=True, min_real_input_steps=160), METER)
    loose = prepare_series(sample_readings, PrepareConfig(missing_mask=True, min_real_input_steps=1), METER)
    assert strict.gap_window_starts["train"].size < loose.gap_window_starts["train"].size
    assert set(strict.gap_window_starts["train"].tolist()) <= set(loose.gap_window_starts["train"].tolist())


def test_min_real_input_steps_longer_than_the_lookback_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="min_real_input_steps 200 exceeds lookback_steps 168"):
        PrepareConfig(missing_mask=True, min_real_input_steps=200)


def test_the_default_minimum_under_a_short_lookback_or_an_old_card_is_the_whole_lookback() -> None:
    """Only an explicit value is refused: a card without the key, or the default under lookback 12, still loads."""
    short = PrepareConfig.model_validate({"lookback_steps": 12})
    assert short.min_real_input_steps == 24 and short.real_input_steps_needed == 12
    assert PrepareConfig(missing_mask=True, min_real_input_steps=6, lookback_steps=12).real_input_steps_needed == 6


def test_input_window_through_a_gap_is_finite_with_the_mask(masked: PreparedSeries) -> None:
    start = int(masked.gap_window_starts["train"][0])
    origin = masked.index_utc[start + masked.lookback_steps]
    window = input_window(masked, origin)
    assert window is not None and np.isfinite(window).all()
    assert window[:, masked.feature_names.index(MISSING_MASK_FEATURE)].sum() > 0


def test_fill_repeats_the_same_step_of_the_last_real_day_and_zero_before_any() -> None:
    day = np.arange(4, dtype=np.float32)
    values = np.concatenate([[np.nan] * 2, day[2:], day, [np.nan] * 8, day])[:, None]  # 2 days gap after day 1
    filled, mask = fill_missing_inputs(values, steps_per_day=4)
    np.testing.assert_array_equal(filled[:2, 0], [0.0, 0.0])  # nothing a day earlier: the scaled mean
    np.testing.assert_array_equal(filled[8:16, 0], np.tile(day, 2))  # the last real day, repeated
    np.testing.assert_array_equal(mask[:, 0], np.isnan(values[:, 0]).astype(np.float32))


def test_fill_rejects_a_day_of_no_steps() -> None:
    with pytest.raises(Exception, match="steps_per_day"):
        fill_missing_inputs(np.zeros((4, 1), dtype=np.float32), steps_per_day=0)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)  # pydantic reports it with the setting's name
