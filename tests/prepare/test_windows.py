"""Zero-copy sliding windows, the valid-start index, and midnight origins."""

from __future__ import annotations

from datetime import timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from powercast.core.errors import DataPreparationError
from powercast.prepare.windows import (
    local_midnight_rows,
    midnight_origin_starts,
    sliding_windows,
    window_has_invalid,
)

PARIS_WINTER = timezone(timedelta(hours=1))


def test_windows_share_memory_with_the_base_array() -> None:
    base = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    windows = sliding_windows(base, 10)
    assert np.shares_memory(windows, base)
    assert windows.base is not None and windows.nbytes > base.nbytes  # a view: bigger than its memory


def test_window_rows_are_slices_of_the_base_array() -> None:
    base = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    windows = sliding_windows(base, 10)  # [N, W, F]
    assert windows.shape == (41, 10, 3)
    np.testing.assert_array_equal(windows[7], base[7:17])


def test_windows_of_a_1d_series_have_shape_n_by_w() -> None:
    assert sliding_windows(np.arange(5.0), 2).shape == (4, 2)


def test_window_longer_than_the_series_is_rejected() -> None:
    with pytest.raises(DataPreparationError, match="lookback"):
        sliding_windows(np.zeros((5, 2)), 6)


def test_every_window_touching_an_invalid_row_is_flagged() -> None:
    invalid = np.zeros(20, dtype=bool)
    invalid[10] = True
    flagged = window_has_invalid(invalid, 4)
    assert flagged.shape == (17,)
    assert np.flatnonzero(flagged).tolist() == [7, 8, 9, 10]


def test_local_midnight_rows_follow_the_local_clock() -> None:
    index = pd.date_range("2010-01-04 20:00", periods=8, freq="1h", tz="UTC")
    assert index[local_midnight_rows(index, PARIS_WINTER)].tolist() == [pd.Timestamp("2010-01-04 23:00", tz="UTC")]


def test_origin_starts_keep_windows_whose_origin_is_local_midnight() -> None:
    index = pd.date_range("2010-01-01 00:00", periods=24 * 5, freq="1h", tz="UTC")
    starts = np.arange(0, 24 * 5 - 30, dtype=np.int64)
    origins = midnight_origin_starts(starts, 6, index, PARIS_WINTER)
    # origins s + 6 at rows 23, 47, 71, 95: 23:00 UTC is local midnight at +01:00
    assert origins.tolist() == [17, 41, 65, 89]
