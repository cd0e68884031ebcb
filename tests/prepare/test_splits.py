"""Time splits: reference dates, trailing days, and no window target crossing a boundary."""

from __future__ import annotations

from datetime import date, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from uci_readings import read_uci_readings

from powercast.core.config import PrepareConfig, SplitConfig
from powercast.prepare.series import (
    EXCLUDED_CROSSES_SPLIT,
    PreparedSeries,
    prepare_series,
)
from powercast.prepare.splits import (
    local_midnight_utc,
    split_bounds_utc,
    split_row_ranges,
    split_window_starts,
)

PARIS_WINTER = timezone(timedelta(hours=1))


@pytest.fixture(scope="module")
def prepared_three_splits(sample_path: Path) -> PreparedSeries:
    config = PrepareConfig(split=SplitConfig(mode="trailing", val_days=21, test_days=14))
    return prepare_series(read_uci_readings(sample_path), config, "sceaux_household")


def test_reference_split_falls_on_local_midnight_of_its_dates() -> None:
    grid = (pd.Timestamp("2006-12-16", tz="UTC"), pd.Timestamp("2010-11-27", tz="UTC"))
    bounds = split_bounds_utc(SplitConfig.reference(), *grid, data_end_utc=grid[1], local_tz=PARIS_WINTER)
    assert bounds["train"] == (grid[0], pd.Timestamp("2009-06-30 23:00", tz="UTC"))
    assert bounds["val"] == (pd.Timestamp("2009-06-30 23:00", tz="UTC"), pd.Timestamp("2009-12-31 23:00", tz="UTC"))
    assert bounds["test"] == (pd.Timestamp("2009-12-31 23:00", tz="UTC"), grid[1])


def test_trailing_split_takes_the_last_local_days() -> None:
    start, end = pd.Timestamp("2010-01-01 00:00", tz="UTC"), pd.Timestamp("2010-03-01 23:00", tz="UTC")
    bounds = split_bounds_utc(SplitConfig(val_days=28, test_days=7), start, end, end, PARIS_WINTER)
    # data ends at local midnight starting 2010-03-02, so the last whole local day is 2010-03-01
    assert bounds["test"] == (local_midnight_utc(date(2010, 2, 23), PARIS_WINTER), end)
    assert bounds["val"] == (local_midnight_utc(date(2010, 1, 26), PARIS_WINTER), bounds["test"][0])
    assert bounds["train"] == (start, bounds["val"][0])


def test_no_test_days_leaves_the_test_split_empty() -> None:
    start, end = pd.Timestamp("2010-01-01", tz="UTC"), pd.Timestamp("2010-03-01 23:00", tz="UTC")
    bounds = split_bounds_utc(SplitConfig(val_days=28, test_days=0), start, end, end, PARIS_WINTER)
    assert bounds["test"][0] == bounds["test"][1] == end


def test_split_before_the_data_is_clipped_to_the_grid() -> None:
    start, end = pd.Timestamp("2010-07-29", tz="UTC"), pd.Timestamp("2010-11-27", tz="UTC")
    bounds = split_bounds_utc(SplitConfig.reference(), start, end, end, PARIS_WINTER)
    assert bounds["train"] == bounds["val"] == (start, start)
    assert bounds["test"] == (start, end)


def test_window_starts_keep_targets_inside_the_split() -> None:
    inside, crossing = split_window_starts((10, 20), n_rows=40, lookback_steps=4, horizon_steps=3)
    assert inside.tolist() == list(range(6, 14))  # first target 10..17, last target ≤ 19
    assert crossing.tolist() == [14, 15]  # first target 18, 19: targets run past row 20


def test_no_window_target_crosses_a_split_boundary(prepared_three_splits: PreparedSeries) -> None:
    prepared = prepared_three_splits
    rows = split_row_ranges(prepared.split_bounds_utc, prepared.index_utc)
    for split, starts in prepared.window_starts.items():
        assert starts.size > 0, split
        first_row, end_row = rows[split]
        targets_first = starts + prepared.lookback_steps
        targets_end = targets_first + prepared.horizon_steps
        assert (targets_first >= first_row).all() and (targets_end <= end_row).all(), split


def test_windows_crossing_a_boundary_are_counted(prepared_three_splits: PreparedSeries) -> None:
    horizon = prepared_three_splits.horizon_steps
    assert prepared_three_splits.exclusions["train"][EXCLUDED_CROSSES_SPLIT] == horizon - 1
    assert prepared_three_splits.exclusions["val"][EXCLUDED_CROSSES_SPLIT] == horizon - 1


def test_splits_are_contiguous_and_cover_the_grid(prepared_three_splits: PreparedSeries) -> None:
    bounds = prepared_three_splits.split_bounds_utc
    assert bounds["train"][0] == prepared_three_splits.index_utc[0]
    assert bounds["train"][1] == bounds["val"][0] and bounds["val"][1] == bounds["test"][0]
    assert bounds["test"][1] == prepared_three_splits.index_utc[-1] + pd.Timedelta("1h")
    assert np.unique(np.concatenate(list(prepared_three_splits.window_starts.values()))).size == sum(
        s.size for s in prepared_three_splits.window_starts.values()
    )
