"""The gap policy: short gaps are interpolated linearly, longer ones stay missing. Never filled with 0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from powercast.core.errors import ConfigError, DataPreparationError


@dataclass(frozen=True)
class GapReport:
    """What the gap policy did to one series.

    Attributes
    ----------
    missing_steps : int
        Missing steps before interpolation.
    interpolated_steps : int
        Steps filled by linear interpolation (inside gaps of at most ``max_gap_steps``).
    long_gaps : int
        Gaps left missing: longer than ``max_gap_steps``, or at the start or end of the series.
    long_gap_steps : int
        Steps inside those gaps.
    longest_gap_steps : int
        Length of the longest gap of any kind (0 when nothing is missing).
    """

    missing_steps: int
    interpolated_steps: int
    long_gaps: int
    long_gap_steps: int
    longest_gap_steps: int


def find_gaps(missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (start index, length) int64 arrays of every run of ``True`` in a boolean [T] mask."""
    flags = np.concatenate(([False], np.asarray(missing, dtype=bool), [False]))
    edges = np.flatnonzero(flags[1:] != flags[:-1])
    starts, stops = edges[0::2], edges[1::2]
    return starts.astype(np.int64), (stops - starts).astype(np.int64)


def interpolate_short_gaps(values: np.ndarray, max_gap_steps: int) -> tuple[np.ndarray, GapReport]:
    """Return a copy of a [T] series with interior gaps of ≤ ``max_gap_steps`` linearly interpolated.

    Gaps longer than ``max_gap_steps``, and gaps touching either end of the series (nothing to
    interpolate towards), stay NaN.

    Parameters
    ----------
    values : np.ndarray
        float [T] series, NaN where missing.
    max_gap_steps : int
        Longest gap (in steps) that is interpolated; 0 interpolates nothing.

    Returns
    -------
    tuple[np.ndarray, GapReport]
        The filled float64 series and what was done.
    """
    if max_gap_steps < 0:
        raise ConfigError(f"prepare.max_interpolate_gap_steps {max_gap_steps} must be >= 0")
    series = np.asarray(values, dtype=np.float64)
    if series.ndim != 1:
        raise DataPreparationError(f"interpolate_short_gaps expects a 1-D series, got shape {series.shape}")
    filled = series.copy()
    missing = np.isnan(series)
    starts, lengths = find_gaps(missing)
    interior = (starts > 0) & (starts + lengths < series.size)
    short = interior & (lengths <= max_gap_steps)
    for start, length in zip(starts[short], lengths[short], strict=True):
        left, right = series[start - 1], series[start + length]
        fraction = np.arange(1, length + 1) / (length + 1)
        filled[start : start + length] = left + (right - left) * fraction
    report = GapReport(
        missing_steps=int(missing.sum()),
        interpolated_steps=int(lengths[short].sum()),
        long_gaps=int((~short).sum()),
        long_gap_steps=int(lengths[~short].sum()),
        longest_gap_steps=int(lengths.max()) if lengths.size else 0,
    )
    return filled, report
