"""Stored readings → ``PreparedSeries``: the one object models, baselines and forecasts consume.

The steps, in order: resample to ``config.freq`` (a bucket with too few readings is missing),
interpolate short gaps (long ones stay missing, nothing becomes 0), split by time, fit the scaler
on training rows only (with ``prepare.profile_features`` also the target's weekly profile), add
calendar and other known features, and index the windows that are usable per split.

With ``prepare.missing_mask`` the long gaps of the model inputs are filled (``target_kw`` keeps
its NaN) and a mask column marks them: windows whose input holds a gap but whose targets are all
real readings, with at least ``prepare.min_real_input_steps`` real input steps, become training
windows (``gap_window_starts``). Scoring windows stay the complete ones, so figures with and
without the mask are measured on the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

import numpy as np
import pandas as pd
import pyarrow as pa

from powercast.core.config import PowercastConfig, PrepareConfig, parse_timezone
from powercast.core.errors import DataPreparationError, PowercastError
from powercast.core.schemas import TARGET_COLUMN, TIMESTAMP_COLUMN
from powercast.prepare.features import (
    MISSING_MASK_FEATURE,
    calendar_features,
    day_of_year_features,
    feature_names,
    fill_missing_inputs,
    holiday_ahead_feature,
    measured_feature_names,
    profile_ahead_feature,
    weekly_profile_kw,
)
from powercast.prepare.gaps import GapReport, interpolate_short_gaps
from powercast.prepare.resample import freq_timedelta, resample_readings
from powercast.prepare.scaling import FeatureScaler
from powercast.prepare.splits import (
    SPLIT_NAMES,
    split_bounds_utc,
    split_row_ranges,
    split_window_starts,
)
from powercast.prepare.windows import midnight_origin_starts, window_has_invalid
from powercast.store.readings import future_cutoff_utc, iter_fleet_readings, read_readings

# Why a window was left out; each excluded window is counted once, under the first reason that applies.
EXCLUDED_CROSSES_SPLIT = "crosses_split"
EXCLUDED_LONG_GAP = "long_gap"
EXCLUDED_MISSING_INPUT = "missing_input"
EXCLUSION_REASONS: tuple[str, ...] = (EXCLUDED_CROSSES_SPLIT, EXCLUDED_LONG_GAP, EXCLUDED_MISSING_INPUT)


@dataclass(frozen=True, eq=False)
class PreparedSeries:
    """One meter's model-ready series on a regular grid, with its usable windows per split.

    A window starting at ``s`` reads ``inputs[s:s+L]`` and predicts ``target_kw[s+L:s+L+H]``.

    Attributes
    ----------
    meter_id : str
    index_utc : pd.DatetimeIndex
        Regular grid at ``config.freq``, tz=UTC, length T.
    target_kw : np.ndarray
        float32 [T] kW after short-gap interpolation; NaN inside long gaps.
    inputs : np.ndarray
        float32 [T, F] scaled model inputs; column 0 is the scaled target; rows are NaN where
        ``target_kw`` is NaN, unless ``prepare.missing_mask`` filled them (then nothing is NaN
        and the ``input_missing`` column is 1.0 on those rows).
    feature_names : tuple[str, ...]
        The F input names in column order (first ``"active_power_kw"``).
    lookback_steps, horizon_steps : int
        L and H.
    window_starts : dict[str, np.ndarray]
        ``"train"``/``"val"``/``"test"`` → int64 starts of windows with no NaN in ``[s, s+L+H)``
        whose targets all lie inside the split.
    origin_starts : dict[str, np.ndarray]
        The subset of ``window_starts`` whose origin ``s+L`` is local midnight (day-ahead scoring).
    scaler : FeatureScaler
        Fit on training rows only.
    exclusions : dict[str, dict[str, int]]
        Split → reason (``EXCLUSION_REASONS``) → windows left out.
    split_bounds_utc : dict[str, tuple[pd.Timestamp, pd.Timestamp]]
        Split → [start, end) in UTC.
    gap_report : GapReport
        What the gap policy did to the target.
    gap_window_starts : dict[str, np.ndarray]
        Split → starts of windows whose input holds filled (missing) steps but whose targets are
        all real readings, with enough real input; trained on beside ``window_starts`` (networks
        only), never scored. Empty unless ``prepare.missing_mask``.
    """

    meter_id: str
    index_utc: pd.DatetimeIndex
    target_kw: np.ndarray
    inputs: np.ndarray
    feature_names: tuple[str, ...]
    lookback_steps: int
    horizon_steps: int
    window_starts: dict[str, np.ndarray]
    origin_starts: dict[str, np.ndarray]
    scaler: FeatureScaler
    exclusions: dict[str, dict[str, int]]
    split_bounds_utc: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
    gap_report: GapReport
    gap_window_starts: dict[str, np.ndarray] = field(default_factory=dict)

    def training_starts(self, split: str) -> np.ndarray:
        """Return the starts a network trains on in ``split``: complete windows, then those through a gap."""
        gap = self.gap_window_starts.get(split)
        return self.window_starts[split] if gap is None or not gap.size else np.concatenate([self.window_starts[split], gap])

    @property
    def reads_missing_mask(self) -> bool:
        """Return whether the inputs carry the missing-value mask (long gaps filled)."""
        return MISSING_MASK_FEATURE in self.feature_names

    def summary(self) -> SeriesSummary:
        """Return what the series holds in a few numbers (for run reports; cheap to send between processes)."""
        return SeriesSummary(
            meter_id=self.meter_id,
            steps=len(self.index_utc),
            first_utc=self.index_utc[0],
            last_utc=self.index_utc[-1],
            missing_steps=int(np.isnan(self.target_kw).sum()),
            windows_excluded={split: sum(reasons.values()) for split, reasons in self.exclusions.items()},
        )


@dataclass(frozen=True)
class SeriesSummary:
    """A prepared series in a few numbers: its grid, what stayed missing, and windows left out per split."""

    meter_id: str
    steps: int
    first_utc: pd.Timestamp
    last_utc: pd.Timestamp
    missing_steps: int  # still missing after short-gap interpolation (long gaps)
    windows_excluded: dict[str, int]


def _readings_frame(readings: pa.Table | pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    if isinstance(readings, pa.Table):
        missing = [name for name in (TIMESTAMP_COLUMN, *columns) if name not in readings.column_names]
        if missing:
            raise DataPreparationError(
                f"readings table lacks column(s) {missing}; columns present: {readings.column_names}"
            )
        return readings.select([TIMESTAMP_COLUMN, *columns]).to_pandas()
    if not isinstance(readings, pd.DataFrame):
        raise DataPreparationError(f"readings must be a pyarrow Table or pandas DataFrame, got {type(readings).__name__}")
    return readings


def _usable_windows(
    missing_rows: np.ndarray,
    target_missing: np.ndarray,
    rows: dict[str, tuple[int, int]],
    config: PrepareConfig,
    index_utc: pd.DatetimeIndex,
    local_tz: tzinfo,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, dict[str, int]], dict[str, np.ndarray]]:
    """Return per split: complete window starts, those issued at local midnight, exclusions by reason, gap windows.

    ``missing_rows`` [T] is True where any measured input is missing, ``target_missing`` [T] where
    the target is. Gap windows (only with ``config.missing_mask``) are the excluded windows whose
    targets are all real and whose lookback holds at least ``config.min_real_input_steps`` real steps.
    """
    lookback_steps, horizon_steps = config.lookback_steps, config.horizon_steps
    window_steps = lookback_steps + horizon_steps
    touches_gap = window_has_invalid(target_missing, window_steps)
    touches_missing_input = window_has_invalid(missing_rows, window_steps)
    gap_trainable = _gap_trainable(missing_rows, target_missing, config) if config.missing_mask else None
    window_starts: dict[str, np.ndarray] = {}
    origin_starts: dict[str, np.ndarray] = {}
    exclusions: dict[str, dict[str, int]] = {}
    gap_starts: dict[str, np.ndarray] = {}
    for split in SPLIT_NAMES:
        inside, crossing = split_window_starts(rows[split], len(missing_rows), lookback_steps, horizon_steps)
        gap = touches_gap[inside]
        other = touches_missing_input[inside] & ~gap
        kept = inside[~(gap | other)]
        window_starts[split] = kept
        origin_starts[split] = midnight_origin_starts(kept, lookback_steps, index_utc, local_tz)
        excluded = inside[gap | other]
        gap_starts[split] = excluded[gap_trainable[excluded]] if gap_trainable is not None else excluded[:0]
        exclusions[split] = {
            EXCLUDED_CROSSES_SPLIT: int(crossing.size),
            EXCLUDED_LONG_GAP: int(gap.sum()),
            EXCLUDED_MISSING_INPUT: int(other.sum()),
        }
    return window_starts, origin_starts, exclusions, gap_starts


def _gap_trainable(missing_rows: np.ndarray, target_missing: np.ndarray, config: PrepareConfig) -> np.ndarray:
    """Return bool [T - L - H + 1]: targets all real and at least ``min_real_input_steps`` real input steps."""
    lookback_steps, horizon_steps = config.lookback_steps, config.horizon_steps
    n_windows = len(missing_rows) - lookback_steps - horizon_steps + 1
    targets_real = ~window_has_invalid(target_missing, horizon_steps)[lookback_steps : lookback_steps + n_windows]
    prefix = np.concatenate(([0], np.cumsum(missing_rows, dtype=np.int64)))
    missing_inputs = prefix[lookback_steps : lookback_steps + n_windows] - prefix[:n_windows]
    return targets_real & (lookback_steps - missing_inputs >= config.real_input_steps_needed)


def _check_scaler_columns(scaler: FeatureScaler | None, measured: tuple[str, ...]) -> None:
    """Raise ``DataPreparationError`` when a given scaler scales other columns than the config asks for."""
    if scaler is not None and scaler.columns != measured:
        raise DataPreparationError(
            f"the given scaler scales {list(scaler.columns)} but prepare.extra_features asks for {list(measured)}: "
            "prepare with the model's own prepare config"
        )


def _check_holds_one_window(meter_id: str, n_rows: int, config: PrepareConfig) -> None:
    """Raise ``DataPreparationError`` when a grid of ``n_rows`` steps is shorter than one window."""
    lookback, horizon = config.lookback_steps, config.horizon_steps
    if n_rows < lookback + horizon:
        raise DataPreparationError(
            f"meter {meter_id!r}: {n_rows} steps at {config.freq} are fewer than one window "
            f"(lookback {lookback} + horizon {horizon}); read a longer range or shorten the window"
        )


def _fill_short_gaps(
    grid: pd.DataFrame, measured: tuple[str, ...], max_gap_steps: int
) -> tuple[pd.DataFrame, dict[str, GapReport]]:
    """Return the measured columns with short gaps interpolated, and each column's gap report."""
    filled: dict[str, np.ndarray] = {}
    gap_reports: dict[str, GapReport] = {}
    for name in measured:
        filled[name], gap_reports[name] = interpolate_short_gaps(grid[name].to_numpy(), max_gap_steps)
    return pd.DataFrame(filled, index=grid.index), gap_reports


def _split_rows(
    meter_id: str, index_utc: pd.DatetimeIndex, target_kw: np.ndarray, config: PrepareConfig, local_tz: tzinfo
) -> tuple[dict[str, tuple[pd.Timestamp, pd.Timestamp]], dict[str, tuple[int, int]]]:
    """Return each split's [start, end) in UTC and its [first, end) grid rows."""
    real_target = np.flatnonzero(~np.isnan(target_kw))
    if real_target.size == 0:
        raise DataPreparationError(f"meter {meter_id!r}: no bucket has enough readings (prepare.min_coverage)")
    # A trailing split counts back from the last real reading, not from missing steps padded after it.
    data_end_utc = index_utc[real_target[-1]] + freq_timedelta(config.freq)
    grid_end_utc = index_utc[-1] + freq_timedelta(config.freq)
    bounds = split_bounds_utc(config.split, index_utc[0], grid_end_utc, data_end_utc, local_tz)
    return bounds, split_row_ranges(bounds, index_utc)


def _fit_training_scaler(
    meter_id: str,
    grid: pd.DataFrame,
    measured: tuple[str, ...],
    train_rows: tuple[int, int],
    val_start_utc: pd.Timestamp,
    freq: str,
) -> FeatureScaler:
    """Return a scaler fit on the training rows' real readings (``grid`` before gap interpolation)."""
    train_first, train_end = train_rows
    if train_end - train_first == 0:
        grid_end_utc = grid.index[-1] + freq_timedelta(freq)
        raise DataPreparationError(
            f"meter {meter_id!r}: the training split is empty (readings span {grid.index[0]} to {grid_end_utc}, "
            f"validation starts {val_start_utc}); use split mode 'trailing' or ingest earlier readings"
        )
    # real readings only (NaN is ignored): a short gap at the end of training is interpolated
    # towards the first validation reading, which must not shape the scaler
    return FeatureScaler(measured).fit(grid[list(measured)].iloc[train_first:train_end])


def _fit_weekly_profile(
    scaler: FeatureScaler, grid: pd.DataFrame, train_rows: tuple[int, int], local_tz: tzinfo
) -> FeatureScaler:
    """Return ``scaler`` holding the target's weekly profile over the rows it was fit on (``grid`` before interpolation)."""
    train_first, train_end = train_rows
    training = grid.iloc[train_first:train_end]
    return scaler.with_weekly_profile(
        weekly_profile_kw(training.index, training[TARGET_COLUMN].to_numpy(dtype=np.float64), local_tz)
    )


def _model_inputs(
    scaler: FeatureScaler,
    measured_frame: pd.DataFrame,
    target_kw: np.ndarray,
    config: PrepareConfig,
    local_tz: tzinfo,
    meter_id: str,
) -> np.ndarray:
    """Return the float32 [T, F] model inputs in ``feature_names(config)`` order.

    Scaled measured columns (NaN-filled, with the mask column, under ``config.missing_mask``),
    then the known inputs that are switched on: calendar, day of year, holiday ahead, profile ahead
    (from the scaler's weekly profile, so a model's own scaler gives the same column at serving).
    """
    index = measured_frame.index
    measured = scaler.transform(measured_frame)  # [T, 1 + E]
    if not config.missing_mask:
        measured[np.isnan(target_kw)] = np.nan  # a row without its target is not an input
        parts = [measured]
    else:
        parts = list(fill_missing_inputs(measured, round(pd.Timedelta(days=1) / freq_timedelta(config.freq))))
    if config.calendar_features:
        parts.append(calendar_features(index, local_tz))  # [T, 4]
    if config.day_of_year_features:
        parts.append(day_of_year_features(index, local_tz))  # [T, 2]
    if config.holiday_features:
        country = config.holiday_country_of(meter_id)
        setting = (
            f"prepare.holiday_country_by_meter[{meter_id!r}]"
            if meter_id in config.holiday_country_by_meter
            else "prepare.holiday_country"
        )
        parts.append(holiday_ahead_feature(index, local_tz, config.horizon_steps, country, setting))  # [T, 1]
    if config.profile_features:
        parts.append(profile_ahead_feature(index, local_tz, config.horizon_steps, scaler.weekly_profile_scaled()))  # [T, 1]
    inputs = np.concatenate(parts, axis=1).astype(np.float32)  # [T, F]
    if not config.missing_mask:
        inputs[np.isnan(target_kw)] = np.nan  # column 0 (scaled target) is NaN exactly where target_kw is
    return inputs


def prepare_series(
    readings: pa.Table | pd.DataFrame,
    config: PrepareConfig,
    meter_id: str,
    scaler: FeatureScaler | None = None,
    grid_end_utc: pd.Timestamp | None = None,
) -> PreparedSeries:
    """Return one meter's readings as a ``PreparedSeries`` (grid, scaled inputs, usable windows per split).

    Parameters
    ----------
    readings : pa.Table | pd.DataFrame
        Rows of one meter with a UTC ``timestamp`` and the measured columns (``READINGS_SCHEMA``).
    config : PrepareConfig
        Frequency, coverage, gap policy, features, window lengths and split.
    meter_id : str
        Recorded on the result.
    scaler : FeatureScaler, optional
        None fits a new scaler on the training split; a fitted one (from a model) is used as is.
    grid_end_utc : pd.Timestamp, optional
        Extend the grid with missing steps up to this time (exclusive), so that the window ending
        just before an issue time exists even when the last readings are late.
    """
    measured = measured_feature_names(config)
    local_tz = parse_timezone(config.local_timezone)
    _check_scaler_columns(scaler, measured)
    resampled = resample_readings(
        _readings_frame(readings, measured), config.freq, config.min_coverage, measured, grid_end_utc
    )
    index_utc = resampled.frame.index
    _check_holds_one_window(meter_id, len(index_utc), config)
    measured_frame, gap_reports = _fill_short_gaps(resampled.frame, measured, config.max_interpolate_gap_steps)
    target_kw = measured_frame[TARGET_COLUMN].to_numpy(dtype=np.float32)
    bounds, rows = _split_rows(meter_id, index_utc, target_kw, config, local_tz)
    if scaler is None:
        scaler = _fit_training_scaler(meter_id, resampled.frame, measured, rows["train"], bounds["val"][0], config.freq)
        if config.profile_features:
            scaler = _fit_weekly_profile(scaler, resampled.frame, rows["train"], local_tz)
    inputs = _model_inputs(scaler, measured_frame, target_kw, config, local_tz, meter_id)
    missing_rows = measured_frame.isna().to_numpy().any(axis=1)
    window_starts, origin_starts, exclusions, gap_starts = _usable_windows(
        missing_rows, np.isnan(target_kw), rows, config, index_utc, local_tz
    )
    return PreparedSeries(
        meter_id=meter_id,
        index_utc=index_utc,
        target_kw=target_kw,
        inputs=inputs,
        feature_names=feature_names(config),
        lookback_steps=config.lookback_steps,
        horizon_steps=config.horizon_steps,
        window_starts=window_starts,
        origin_starts=origin_starts,
        scaler=scaler,
        exclusions=exclusions,
        split_bounds_utc=bounds,
        gap_report=gap_reports[TARGET_COLUMN],
        gap_window_starts=gap_starts,
    )


def input_window(prepared: PreparedSeries, origin_utc: pd.Timestamp) -> np.ndarray | None:
    """Return a float32 [L, F] copy of the inputs ending just before ``origin_utc``, or None.

    None when the window reaches before the grid or past its end, or holds a NaN (a long gap, or
    a missing extra input, in inputs prepared without ``prepare.missing_mask``): the caller then
    falls back to a baseline. With the mask, gaps are filled and flagged, and the serving side
    decides whether its model may read them (``serving.forecast.champion_window``).
    ``origin_utc`` may be the grid's exclusive end.
    """
    origin = pd.Timestamp(origin_utc)
    if origin.tzinfo is None:
        raise DataPreparationError(f"origin {origin_utc!r} must be timezone-aware (UTC)")
    step = prepared.index_utc[1] - prepared.index_utc[0]  # a prepared grid holds at least one window
    offset = origin.tz_convert("UTC") - prepared.index_utc[0]
    if offset % step != pd.Timedelta(0):
        raise DataPreparationError(
            f"origin {origin_utc} is not on the {step} grid starting {prepared.index_utc[0]}; issue at a grid time"
        )
    origin_row = int(offset // step)
    start = origin_row - prepared.lookback_steps
    if start < 0 or origin_row > len(prepared.index_utc):
        return None
    window = prepared.inputs[start:origin_row]
    # Any NaN, in the target or in an extra input (inputs prepared without prepare.missing_mask):
    # no such model was trained on windows with gaps
    # (hgb routes NaN, but measured on the sample it then loses to the same-hour mean: 0.49-0.56
    # against 0.47 kW test MAE, so the fallback serves those days).
    return None if np.isnan(window).any() else window.copy()


def prepare_meter(
    config: PowercastConfig,
    meter_id: str,
    end_utc: datetime | None = None,
    scaler: FeatureScaler | None = None,
) -> PreparedSeries:
    """Return the ``PreparedSeries`` of a stored meter's readings before ``end_utc``.

    ``end_utc`` also ends the grid, so the window ending just before it exists even when the last
    readings are missing (``input_window`` then returns None rather than a stale window). Without
    it, every reading up to now plus ``ingest.future_tolerance_h`` is used: a store written before
    ingest quarantined readings from the future may still hold some, and they are left out.
    """
    table = read_readings(config.root, meter_id, end_utc=_read_end_utc(config, end_utc), columns=_stored_columns(config))
    return prepare_series(table, config.prepare, meter_id, scaler=scaler, grid_end_utc=_grid_end_utc(end_utc))


def prepare_meters(
    config: PowercastConfig, meter_ids: Sequence[str], end_utc: datetime | None = None
) -> tuple[dict[str, PreparedSeries], dict[str, str]]:
    """Return (meter → its ``PreparedSeries``, as ``prepare_meter`` gives it; meter → why it could not be prepared).

    The meters' readings come from one scan of the store (``iter_fleet_readings``), not a
    listing and file opens per meter, and each meter is prepared as soon as its readings are
    read, so only one meter's raw readings are held at a time. A meter that cannot be read or
    prepared is reported and the others are still prepared.
    """
    prepared: dict[str, PreparedSeries] = {}
    failures: dict[str, str] = {}
    readings = iter_fleet_readings(
        config.root, meter_ids, end_utc=_read_end_utc(config, end_utc), columns=_stored_columns(config)
    )
    for meter_id, table, error in readings:
        if table is None:
            failures[meter_id] = error
            continue
        try:
            prepared[meter_id] = prepare_series(table, config.prepare, meter_id, grid_end_utc=_grid_end_utc(end_utc))
        except PowercastError as exc:
            failures[meter_id] = str(exc)
    return prepared, failures


def _stored_columns(config: PowercastConfig) -> list[str]:
    """Return the store columns a meter's preparation reads."""
    return [TIMESTAMP_COLUMN, *measured_feature_names(config.prepare)]


def _read_end_utc(config: PowercastConfig, end_utc: datetime | None) -> datetime:
    """Return where reading stops: ``end_utc``, or now plus ``ingest.future_tolerance_h`` (readings from the future are left out)."""
    return end_utc if end_utc is not None else future_cutoff_utc(config.ingest.future_tolerance_h)


def _grid_end_utc(end_utc: datetime | None) -> pd.Timestamp | None:
    """Return the end of the time grid: ``end_utc`` in UTC, or None (the grid ends at the last reading)."""
    return pd.Timestamp(end_utc).tz_convert("UTC") if end_utc is not None else None
