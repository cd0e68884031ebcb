"""The gap policy: interpolate only short gaps, never fill with 0."""

from __future__ import annotations

import numpy as np
import pytest

from powercast.core.errors import ConfigError
from powercast.prepare.gaps import find_gaps, interpolate_short_gaps

nan = np.nan


def test_find_gaps_returns_each_run_of_missing_steps() -> None:
    starts, lengths = find_gaps(np.array([True, False, False, True, True, False, True]))
    assert starts.tolist() == [0, 3, 6]
    assert lengths.tolist() == [1, 2, 1]


def test_short_gap_is_interpolated_linearly() -> None:
    filled, report = interpolate_short_gaps(np.array([1.0, nan, nan, 4.0]), max_gap_steps=2)
    np.testing.assert_allclose(filled, [1.0, 2.0, 3.0, 4.0])
    assert report.interpolated_steps == 2


def test_gap_longer_than_the_limit_stays_missing() -> None:
    filled, report = interpolate_short_gaps(np.array([1.0, nan, nan, nan, 5.0, nan, 7.0]), max_gap_steps=2)
    assert np.isnan(filled[1:4]).all()
    assert filled[5] == pytest.approx(6.0)
    assert (report.long_gaps, report.long_gap_steps, report.longest_gap_steps) == (1, 3, 3)


def test_gaps_at_the_edges_are_not_extrapolated() -> None:
    filled, report = interpolate_short_gaps(np.array([nan, 2.0, 3.0, nan]), max_gap_steps=5)
    assert np.isnan(filled[[0, 3]]).all()
    assert report.interpolated_steps == 0
    assert report.long_gaps == 2


def test_zero_limit_interpolates_nothing() -> None:
    filled, report = interpolate_short_gaps(np.array([1.0, nan, 3.0]), max_gap_steps=0)
    assert np.isnan(filled[1])
    assert report.missing_steps == 1


def test_input_series_is_left_unchanged() -> None:
    series = np.array([1.0, nan, 3.0])
    interpolate_short_gaps(series, max_gap_steps=1)
    assert np.isnan(series[1])


def test_negative_limit_is_rejected() -> None:
    with pytest.raises(ConfigError, match="max_interpolate_gap_steps"):
        interpolate_short_gaps(np.array([1.0]), max_gap_steps=-1)
