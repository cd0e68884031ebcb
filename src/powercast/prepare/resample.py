"""Readings on their own clock → a regular UTC grid of bucket means, with a per-bucket reading count.

A bucket whose count of real (non-null) readings is below ``min_coverage`` of the readings it
should hold is missing (NaN): an hourly mean of a handful of minutes is not an hourly mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from powercast.core.errors import ConfigError, DataPreparationError
from powercast.core.schemas import TIMESTAMP_COLUMN


@dataclass(frozen=True, eq=False)
class ResampledReadings:
    """Bucket means on a regular UTC grid.

    Attributes
    ----------
    frame : pd.DataFrame
        Index: the UTC grid (``freq`` steps); one float64 column per resampled column, NaN where
        the bucket held too few real readings of that column.
    counts : dict[str, np.ndarray]
        Column name → int64 [T] number of real readings in each bucket.
    readings_per_bucket : int
        Readings a full bucket holds (``freq`` divided by the readings' own interval).
    """

    frame: pd.DataFrame
    counts: dict[str, np.ndarray]
    readings_per_bucket: int


def freq_timedelta(freq: str) -> pd.Timedelta:
    """Return the fixed length of a pandas frequency alias such as ``'1h'`` or ``'1min'``."""
    try:
        step = pd.Timedelta(to_offset(freq))
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"prepare.freq {freq!r} is not a fixed-length pandas frequency: use e.g. '1h', '15min' or '1min'"
        ) from exc
    if step <= pd.Timedelta(0):
        raise ConfigError(f"prepare.freq {freq!r} must be a positive duration")
    return step


def utc_timestamps_ns(frame: pd.DataFrame) -> np.ndarray:
    """Return the ``timestamp`` column as int64 nanoseconds since the epoch (UTC)."""
    if TIMESTAMP_COLUMN not in frame.columns:
        raise DataPreparationError(
            f"readings have no {TIMESTAMP_COLUMN!r} column (columns: {list(frame.columns)}); pass rows read from the store"
        )
    stamps = frame[TIMESTAMP_COLUMN]
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        raise DataPreparationError(
            f"readings column {TIMESTAMP_COLUMN!r} has dtype {stamps.dtype}; it must be timezone-aware (UTC)"
        )
    return stamps.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()


def reading_interval_ns(timestamps_ns: np.ndarray) -> int:
    """Return the readings' own sampling interval: the median step between distinct timestamps."""
    steps = np.diff(timestamps_ns)
    if (steps < 0).any():
        steps = np.diff(np.sort(timestamps_ns))
    steps = steps[steps > 0]
    if steps.size == 0:
        raise DataPreparationError(
            f"readings hold {len(timestamps_ns)} row(s) but fewer than two distinct timestamps; at least two are needed"
        )
    return int(np.median(steps))


def resample_readings(
    readings: pd.DataFrame,
    freq: str,
    min_coverage: float,
    columns: Sequence[str],
    grid_end_utc: pd.Timestamp | None = None,
) -> ResampledReadings:
    """Return bucket means of ``columns`` on a UTC grid at ``freq``, missing where coverage is too low.

    Parameters
    ----------
    readings : pd.DataFrame
        A ``timestamp`` column (timezone-aware) and the measured ``columns``; nulls are missing readings.
    freq : str
        Pandas frequency alias of the grid (``'1h'``, ``'1min'``); must be a multiple of the readings' interval.
    min_coverage : float
        Fraction (0, 1] of a full bucket's readings needed for the bucket to count.
    columns : Sequence[str]
        Columns to average.
    grid_end_utc : pd.Timestamp, optional
        Extend the grid with missing buckets up to this time (exclusive).

    Returns
    -------
    ResampledReadings
        The grid frame, per-column reading counts and the readings a full bucket holds.
    """
    if not 0 < min_coverage <= 1:
        raise ConfigError(f"prepare.min_coverage {min_coverage} must be in (0, 1]")
    missing = [name for name in columns if name not in readings.columns]
    if missing:
        raise DataPreparationError(
            f"readings lack column(s) {missing}; available: {list(readings.columns)}; check prepare.extra_features"
        )
    if len(readings) == 0:
        raise DataPreparationError("no readings to resample: the store holds no rows for this meter and range")
    step_ns = freq_timedelta(freq).value
    stamps_ns = utc_timestamps_ns(readings)
    interval_ns = reading_interval_ns(stamps_ns)
    if step_ns % interval_ns:
        raise ConfigError(
            f"prepare.freq {freq!r} is not a whole multiple of the readings' interval "
            f"({pd.Timedelta(interval_ns, unit='ns')}); choose a coarser or matching frequency"
        )
    readings_per_bucket = step_ns // interval_ns
    first_ns = (int(stamps_ns.min()) // step_ns) * step_ns
    end_ns = (int(stamps_ns.max()) // step_ns + 1) * step_ns
    if grid_end_utc is not None:
        end_ns = max(end_ns, -(-pd.Timestamp(grid_end_utc).tz_convert("UTC").value // step_ns) * step_ns)
    n_buckets = (end_ns - first_ns) // step_ns
    bucket = (stamps_ns - first_ns) // step_ns
    needed = min_coverage * readings_per_bucket
    means: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for name in columns:
        values = readings[name].to_numpy(dtype=np.float64, na_value=np.nan)
        real = ~np.isnan(values)
        count = np.bincount(bucket[real], minlength=n_buckets).astype(np.int64)
        total = np.bincount(bucket[real], weights=values[real], minlength=n_buckets)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        mean[count < needed] = np.nan
        means[name] = mean
        counts[name] = count
    index = pd.DatetimeIndex(pd.to_datetime(first_ns + step_ns * np.arange(n_buckets), unit="ns", utc=True), freq=freq)
    return ResampledReadings(
        frame=pd.DataFrame(means, index=index), counts=counts, readings_per_bucket=int(readings_per_bucket)
    )
