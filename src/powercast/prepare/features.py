"""Model input features: the target history, extra measured columns, and calendar encodings.

Calendar features are known in advance for any future time, so they are computed from the grid
in the local timezone (hour of day and day of week as points on a circle, so 23:00 sits next to
00:00 and Sunday next to Monday).
"""

from __future__ import annotations

from datetime import tzinfo

import numpy as np
import pandas as pd

from powercast.core.config import PrepareConfig
from powercast.core.errors import ConfigError
from powercast.core.schemas import MEASURED_COLUMNS, TARGET_COLUMN

CALENDAR_FEATURES: tuple[str, ...] = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")
# Interval offsets are learned per issue slot of the local day up to this many slots (96 = every
# 15 minutes); finer grids share one set of offsets, which keeps model cards small.
MAX_INTERVAL_SLOTS = 96


def measured_feature_names(config: PrepareConfig) -> tuple[str, ...]:
    """Return the measured input columns in order: the target first, then ``config.extra_features``."""
    unknown = [name for name in config.extra_features if name not in MEASURED_COLUMNS]
    if unknown:
        raise ConfigError(
            f"prepare.extra_features has unknown column(s) {unknown}; choose from {list(MEASURED_COLUMNS[1:])}"
        )
    if TARGET_COLUMN in config.extra_features or len(set(config.extra_features)) != len(config.extra_features):
        raise ConfigError(
            f"prepare.extra_features {config.extra_features} must not repeat a column or list the target "
            f"{TARGET_COLUMN!r} (it is always the first input)"
        )
    return (TARGET_COLUMN, *config.extra_features)


def feature_names(config: PrepareConfig) -> tuple[str, ...]:
    """Return every model input name in column order: measured columns, then calendar features."""
    calendar = CALENDAR_FEATURES if config.calendar_features else ()
    return (*measured_feature_names(config), *calendar)


def calendar_features(index_utc: pd.DatetimeIndex, local_tz: tzinfo) -> np.ndarray:
    """Return float32 [T, 4] cyclical encodings (``CALENDAR_FEATURES`` order) of local time of day and weekday.

    Parameters
    ----------
    index_utc : pd.DatetimeIndex
        Timezone-aware grid.
    local_tz : tzinfo
        Timezone whose wall clock defines the hour and the weekday.
    """
    local = index_utc.tz_convert(local_tz)
    hour_fraction = (local.hour.to_numpy() + local.minute.to_numpy() / 60.0) / 24.0
    weekday_fraction = local.day_of_week.to_numpy() / 7.0
    hour_angle = 2.0 * np.pi * hour_fraction
    weekday_angle = 2.0 * np.pi * weekday_fraction
    columns = (np.sin(hour_angle), np.cos(hour_angle), np.sin(weekday_angle), np.cos(weekday_angle))
    return np.stack(columns, axis=1).astype(np.float32)  # [T, 4]


def slot_of_day(times_utc: pd.DatetimeIndex, local_tz: tzinfo, step: pd.Timedelta) -> np.ndarray:
    """Return int64 ``[N]`` positions of ``times_utc`` within their local day, in grid steps (0 = local midnight).

    At 1 h this is the local hour. Interval offsets are learned per slot of the issue time, since
    how wrong a forecast for 19:00 tends to be differs from one for 04:00.
    """
    local = times_utc.tz_convert(local_tz)
    seconds = local.hour.to_numpy() * 3600 + local.minute.to_numpy() * 60 + local.second.to_numpy()
    return (seconds // int(step.total_seconds())).astype(np.int64)


def interval_slots_of(times_utc: pd.DatetimeIndex, local_tz: tzinfo, step: pd.Timedelta) -> tuple[np.ndarray, int]:
    """Return the int64 ``[N]`` interval slots of issue times ``times_utc`` and the number of slots in a day.

    A slot is the issue time's position in its local day in grid steps (``slot_of_day``) when a
    day has at most ``MAX_INTERVAL_SLOTS`` steps; on finer grids every time is slot 0 of 1.
    """
    n_slots = round(pd.Timedelta(days=1) / step)
    if n_slots > MAX_INTERVAL_SLOTS:
        return np.zeros(len(times_utc), dtype=np.int64), 1
    return slot_of_day(times_utc, local_tz, step), n_slots
