"""Train / validation / test boundaries in time: by dates (the reference split) or by trailing days.

Boundaries fall at local midnight. A window belongs to the split holding its first target step,
and it is only used when all of its targets lie inside that split (``split_window_starts``).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

import numpy as np
import pandas as pd

from powercast.core.config import SplitConfig
from powercast.core.errors import ConfigError

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def local_midnight_utc(day: date, local_tz: tzinfo) -> pd.Timestamp:
    """Return 00:00 local time of ``day`` as a UTC timestamp."""
    return pd.Timestamp(datetime.combine(day, time(), tzinfo=local_tz)).tz_convert("UTC")


def split_bounds_utc(
    config: SplitConfig,
    grid_start_utc: pd.Timestamp,
    grid_end_utc: pd.Timestamp,
    data_end_utc: pd.Timestamp,
    local_tz: tzinfo,
) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """Return split name → [start, end) in UTC; contiguous, covering the grid, possibly empty.

    Parameters
    ----------
    config : SplitConfig
        ``mode='dates'``: train before ``train_end``, validation before ``val_end``, test after.
        ``mode='trailing'``: test is the last ``test_days`` local days up to the one holding the
        last reading, validation the ``val_days`` before them, train everything earlier.
    grid_start_utc, grid_end_utc : pd.Timestamp
        The grid's first step and its exclusive end.
    data_end_utc : pd.Timestamp
        Exclusive end of the last real reading (the trailing split counts back from here).
    local_tz : tzinfo
        Timezone of the midnights the boundaries fall on.
    """
    if config.mode == "dates":
        if config.train_end is None or config.val_end is None:
            raise ConfigError("prepare.split mode 'dates' needs both train_end and val_end")
        val_start = local_midnight_utc(config.train_end, local_tz)
        test_start = local_midnight_utc(config.val_end, local_tz)
    else:
        # A partial last local day counts as one of the trailing days.
        last_local = (data_end_utc - pd.Timedelta(1, unit="ns")).tz_convert(local_tz)
        anchor_day = last_local.date() + timedelta(days=1)
        test_start = local_midnight_utc(anchor_day - timedelta(days=config.test_days), local_tz)
        val_start = local_midnight_utc(anchor_day - timedelta(days=config.test_days + config.val_days), local_tz)
    cuts = [grid_start_utc, val_start, test_start, grid_end_utc]
    clipped = [min(max(cut, grid_start_utc), grid_end_utc) for cut in cuts]
    return {name: (clipped[i], clipped[i + 1]) for i, name in enumerate(SPLIT_NAMES)}


def split_row_ranges(
    bounds_utc: dict[str, tuple[pd.Timestamp, pd.Timestamp]], index_utc: pd.DatetimeIndex
) -> dict[str, tuple[int, int]]:
    """Return split name → [first row, end row) of the grid rows inside each split."""
    return {
        name: (int(index_utc.searchsorted(start)), int(index_utc.searchsorted(end)))
        for name, (start, end) in bounds_utc.items()
    }


def split_window_starts(
    row_range: tuple[int, int], n_rows: int, lookback_steps: int, horizon_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (starts whose targets all lie in the split, starts whose targets cross its end).

    A window starting at ``s`` reads inputs ``[s, s+L)`` and targets ``[s+L, s+L+H)``. It belongs
    to the split holding its first target ``s+L``; inputs may reach back into an earlier split
    (that history is known at forecast time), targets may not leave the split.
    """
    first_row, end_row = row_range
    last_start = n_rows - lookback_steps - horizon_steps  # the last window that fits the grid
    lo = max(first_row - lookback_steps, 0)
    hi = min(end_row - lookback_steps, last_start + 1)
    starts = np.arange(lo, max(hi, lo), dtype=np.int64)
    inside = starts + lookback_steps + horizon_steps <= end_row
    return starts[inside], starts[~inside]
