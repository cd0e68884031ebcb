"""Model input features: the target history, extra measured columns, the missing-value mask and known inputs.

Calendar features are known in advance for any future time, so they are computed from the grid
in the local timezone (hour of day and day of week as points on a circle, so 23:00 sits next to
00:00 and Sunday next to Monday; with ``prepare.day_of_year_features`` the day of the year too,
so 31 December sits next to 1 January). Public holidays (``prepare.holiday_features``) are known
in advance as well: the column at row ``t`` says whether the local day of ``t + horizon`` is a
holiday, so the last ``horizon`` rows of an input window flag exactly the steps it forecasts (a
window only ever reads rows before its origin).

The meter's typical week (``prepare.profile_features``) is known in advance the same way: the
column at row ``t`` is the meter's mean load over its training rows at the local hour of the
week of ``t + horizon``, in the meter's own scaled units. Every meter is standardised by its own
training statistics, so without it a global network tells meters apart only by the shape of
their recent readings; with it the last ``horizon`` rows of a window carry the meter's usual
shape of exactly the day being forecast.
"""

from __future__ import annotations

from datetime import tzinfo

import numpy as np
import pandas as pd

from powercast.core.config import PrepareConfig
from powercast.core.errors import ConfigError, DataPreparationError
from powercast.core.schemas import MEASURED_COLUMNS, TARGET_COLUMN

CALENDAR_FEATURES: tuple[str, ...] = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")
DAY_OF_YEAR_FEATURES: tuple[str, ...] = ("doy_sin", "doy_cos")
# 1.0 where the local day one horizon after the row is a public holiday (see the module note).
HOLIDAY_FEATURE = "holiday_ahead"
# 1.0 where a measured input of the row was missing and has been filled (prepare.missing_mask).
MISSING_MASK_FEATURE = "input_missing"
# The meter's mean scaled load at the local hour of the week one horizon after the row (see the module note).
PROFILE_FEATURE = "profile_ahead"
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 7 * HOURS_PER_DAY
# The switches of optional input columns, and the columns each adds: a model card's feature list
# says which were on when the model was trained (cards written before a switch existed lack it).
OPTIONAL_FEATURES: dict[str, tuple[str, ...]] = {
    "missing_mask": (MISSING_MASK_FEATURE,),
    "calendar_features": CALENDAR_FEATURES,
    "day_of_year_features": DAY_OF_YEAR_FEATURES,
    "holiday_features": (HOLIDAY_FEATURE,),
    "profile_features": (PROFILE_FEATURE,),
}
DAYS_PER_YEAR = 365.2425  # mean Gregorian year: the day-of-year circle closes on leap years too
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
    """Return every model input name in column order: measured columns, the mask, then known inputs."""
    optional = [names for switch, names in OPTIONAL_FEATURES.items() if getattr(config, switch)]
    return (*measured_feature_names(config), *(name for names in optional for name in names))


def config_for_features(config: PrepareConfig, names: tuple[str, ...]) -> PrepareConfig:
    """Return ``config`` with each optional-feature switch set to whether ``names`` holds its columns.

    A model card stores its prepare config and its feature list. A card written before a switch
    existed lacks that key, so the config would take today's default; its feature list is the
    truth about what the model reads. Raises ``ConfigError`` when no setting of the switches
    reproduces ``names`` (the card is damaged or from an unknown version).
    """
    switches = {switch: all(name in names for name in columns) for switch, columns in OPTIONAL_FEATURES.items()}
    aligned = config.model_copy(update=switches)
    if feature_names(aligned) != tuple(names):
        raise ConfigError(
            f"the model's input columns {list(names)} cannot be rebuilt by this powercast's prepare settings "
            f"(closest: {list(feature_names(aligned))}); retrain the model"
        )
    return aligned


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


def day_of_year_features(index_utc: pd.DatetimeIndex, local_tz: tzinfo) -> np.ndarray:
    """Return float32 [T, 2] (``DAY_OF_YEAR_FEATURES`` order): the local time of year as a point on a circle."""
    local = index_utc.tz_convert(local_tz)
    day_fraction = (local.hour.to_numpy() + local.minute.to_numpy() / 60.0) / 24.0
    angle = 2.0 * np.pi * (local.day_of_year.to_numpy() - 1 + day_fraction) / DAYS_PER_YEAR
    return np.stack((np.sin(angle), np.cos(angle)), axis=1).astype(np.float32)  # [T, 2]


def holiday_calendar(country: str, years: range, setting: str) -> object:
    """Return the ``holidays`` calendar of ``country`` (``"FR"``, or ``"FR-<subdivision>"``) for ``years``.

    ``setting`` names the configuration key the country came from, for the error message.
    """
    import holidays  # imported when holidays are asked for: the package builds its calendars lazily

    code, _, subdivision = country.partition("-")
    try:
        return holidays.country_holidays(code, subdiv=subdivision or None, years=years)
    except NotImplementedError as exc:  # how holidays refuses a country or subdivision it has no calendar for
        raise ConfigError(
            f"{setting} {country!r} is not a country (or 'COUNTRY-subdivision') the holidays package knows: {exc}"
        ) from exc


def holiday_ahead_feature(
    index_utc: pd.DatetimeIndex, local_tz: tzinfo, horizon_steps: int, country: str, setting: str
) -> np.ndarray:
    """Return float32 [T, 1]: 1.0 where the local day of ``index_utc[t] + horizon_steps`` steps is a public holiday.

    Known in advance, so it is computed for times after the last reading too (the rows just
    before an issue time flag the forecast day).
    """
    if len(index_utc) < 2:
        raise DataPreparationError(f"holiday features need a grid of at least 2 steps, got {len(index_utc)}")
    step = index_utc[1] - index_utc[0]
    ahead = (index_utc + horizon_steps * step).tz_convert(local_tz)
    calendar = holiday_calendar(country, range(ahead[0].year, ahead[-1].year + 1), setting)
    days, day_of_row = np.unique(ahead.normalize().tz_localize(None).date, return_inverse=True)
    is_holiday = np.array([day in calendar for day in days], dtype=np.float32)  # one look-up per day, not per row
    return is_holiday[day_of_row][:, None]  # [T, 1]


def hour_of_week(index_utc: pd.DatetimeIndex, local_tz: tzinfo) -> np.ndarray:
    """Return int64 [T]: the local hour of the week of each time, 0 (Monday 00:00-00:59) to 167."""
    local = index_utc.tz_convert(local_tz)
    return (local.day_of_week.to_numpy() * HOURS_PER_DAY + local.hour.to_numpy()).astype(np.int64)


def weekly_profile_kw(index_utc: pd.DatetimeIndex, target_kw: np.ndarray, local_tz: tzinfo) -> np.ndarray:
    """Return float64 [168]: the mean of the real (non-NaN) ``target_kw`` per local hour of the week.

    Pass training rows only: the profile is a known input of validation and test windows too.
    An hour of the week with no real reading (a short history, or a long gap on that weekday)
    takes the mean of its hour of the day over the whole week, and an hour of the day with no
    reading at all takes the overall mean, so that no slot is NaN and a network still reads a
    plausible level there.
    """
    values = np.asarray(target_kw, dtype=np.float64)
    real = ~np.isnan(values)
    if not real.any():
        raise DataPreparationError("the weekly profile needs at least one real reading in the training rows")
    slots = hour_of_week(index_utc, local_tz)[real]
    sums = np.bincount(slots, weights=values[real], minlength=HOURS_PER_WEEK)
    counts = np.bincount(slots, minlength=HOURS_PER_WEEK).astype(np.float64)
    day_sums = sums.reshape(7, HOURS_PER_DAY).sum(axis=0)  # [24] over the seven weekdays
    day_counts = counts.reshape(7, HOURS_PER_DAY).sum(axis=0)
    overall_kw = values[real].mean()
    hour_of_day_kw = np.where(day_counts > 0, day_sums / np.maximum(day_counts, 1.0), overall_kw)  # [24]
    fallback_kw = np.tile(hour_of_day_kw, 7)  # [168]
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), fallback_kw)


def profile_ahead_feature(
    index_utc: pd.DatetimeIndex, local_tz: tzinfo, horizon_steps: int, profile_scaled: np.ndarray
) -> np.ndarray:
    """Return float32 [T, 1]: ``profile_scaled`` [168] at the local hour of the week of ``index_utc[t] + horizon_steps`` steps.

    Known in advance, so it is computed for times after the last reading too, like ``holiday_ahead_feature``.
    """
    if len(index_utc) < 2:
        raise DataPreparationError(f"profile features need a grid of at least 2 steps, got {len(index_utc)}")
    if np.shape(profile_scaled) != (HOURS_PER_WEEK,):
        raise DataPreparationError(f"a weekly profile has {HOURS_PER_WEEK} hours, got shape {np.shape(profile_scaled)}")
    step = index_utc[1] - index_utc[0]
    ahead = index_utc + horizon_steps * step
    return np.asarray(profile_scaled, dtype=np.float32)[hour_of_week(ahead, local_tz)][:, None]  # [T, 1]


def fill_missing_inputs(scaled: np.ndarray, steps_per_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (``scaled`` [T, M] with NaN filled, float32 [T, 1] mask: 1.0 where any column of the row was missing).

    A missing value takes the same column's value at the same time of the previous day (itself
    filled when that was missing too, so a gap of several days repeats the last real day), and
    0.0 (the training mean, in scaled units) where there is no earlier day. Why not 0 everywhere:
    the network's linear shortcut reads the last day of the target directly, and a flat mean day
    there would forecast a flat day; the previous day keeps the daily shape, the seasonal-naive
    guess, while the mask column tells the network which values are guesses.
    """
    if steps_per_day < 1:
        raise DataPreparationError(f"steps_per_day must be >= 1, got {steps_per_day}")
    missing = np.isnan(scaled)  # [T, M]
    filled = scaled.copy()
    for column in range(filled.shape[1]):
        values = filled[:, column]  # a view: filled in place
        while True:  # one pass per day of the longest gap
            rows = np.flatnonzero(np.isnan(values))
            rows = rows[rows >= steps_per_day]
            source = values[rows - steps_per_day]
            known = ~np.isnan(source)
            if not known.any():
                break
            values[rows[known]] = source[known]
    filled[np.isnan(filled)] = 0.0
    return filled, missing.any(axis=1, keepdims=True).astype(np.float32)


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
