"""Zero-copy sliding windows over one array, and the index of window starts that are usable.

Nothing here copies windows: ``sliding_windows`` is a strided view, and validity is decided with
a prefix sum over the rows, so memory stays O(series length) whatever the window length.
"""

from __future__ import annotations

from datetime import tzinfo

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from powercast.core.errors import DataPreparationError


def sliding_windows(values: np.ndarray, window_steps: int) -> np.ndarray:
    """Return a read-only view [T - W + 1, W, ...] whose row ``s`` is ``values[s:s+W]`` (no copy).

    Parameters
    ----------
    values : np.ndarray
        Base array [T] or [T, F].
    window_steps : int
        Window length W (1 ≤ W ≤ T).
    """
    if not 1 <= window_steps <= len(values):
        raise DataPreparationError(
            f"window of {window_steps} steps does not fit a series of {len(values)} steps; "
            "shorten prepare.lookback_steps/horizon_steps or read a longer range"
        )
    view = sliding_window_view(values, window_steps, axis=0)  # [N, F, W] for 2-D input
    return np.moveaxis(view, -1, 1) if values.ndim > 1 else view  # [N, W, F] / [N, W]


def window_has_invalid(invalid_rows: np.ndarray, window_steps: int) -> np.ndarray:
    """Return bool [T - W + 1]: whether the window starting at each row holds any invalid row."""
    flags = np.asarray(invalid_rows, dtype=bool)
    if not 1 <= window_steps <= flags.size:
        raise DataPreparationError(f"window of {window_steps} steps does not fit a series of {flags.size} steps")
    prefix = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return (prefix[window_steps:] - prefix[: flags.size - window_steps + 1]) > 0


def local_midnight_rows(index_utc: pd.DatetimeIndex, local_tz: tzinfo) -> np.ndarray:
    """Return bool [T]: whether each grid time is 00:00 on the local wall clock."""
    local = index_utc.tz_convert(local_tz)
    return (local.hour == 0) & (local.minute == 0) & (local.second == 0) & (local.nanosecond == 0)


def midnight_origin_starts(
    starts: np.ndarray, lookback_steps: int, index_utc: pd.DatetimeIndex, local_tz: tzinfo
) -> np.ndarray:
    """Return the subset of ``starts`` whose forecast origin ``s + L`` is local midnight."""
    midnight = local_midnight_rows(index_utc, local_tz)
    return starts[midnight[starts + lookback_steps]]
