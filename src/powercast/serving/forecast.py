"""A forecast batch for one meter and one issue time: the champion's, or a baseline fallback.

The champion reads the input window that ends just before the issue time, scaled with its own
scaler, and predicts the whole horizon at once; its split-conformal offsets (learned on the
validation residuals when it was trained) turn the point forecast into an interval. When the
meter has no champion yet, or that input window touches a gap longer than the interpolation
policy allows, the batch comes from the best baseline on the recent days instead (the value 24 h
or 168 h earlier, or the same hour's mean or median over the last 7 days); the ``model`` column
(``seasonal_naive`` / ``same_hour``) and the batch notes say so. The exception: a network champion
trained with ``prepare.missing_mask`` reads filled inputs and a mask column saying which steps were
missing (it learned from such windows), so it forecasts through a gap as long as its window holds
``prepare.min_real_input_steps`` real steps.

Fallback intervals: the baseline learns nothing, so any past window is out-of-sample for it.
Its offsets are split-conformal quantiles of its own residuals on the windows whose targets lie
in the ``forecast.baseline_calibration_days`` before the issue time (every hourly origin, not
only midnights, so that even a month with outages has enough windows). The same windows rank
the baselines by MAE; that MAE is the batch's ``validation_mae_kw``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np
import pandas as pd
import pyarrow as pa

from powercast.core.config import (
    RECURRENT_CELLS,
    ForecastConfig,
    PowercastConfig,
    PrepareConfig,
    SplitConfig,
    parse_timezone,
)
from powercast.core.errors import DataPreparationError, ForecastError, RegistryError
from powercast.core.schemas import FORECAST_SCHEMA
from powercast.models.baselines import BASELINES, steps_per_day
from powercast.models.combination import CombinedForecaster
from powercast.models.conformal import ConformalIntervals
from powercast.models.registry import LoadedModel, load_champion
from powercast.models.rnn import RNNForecaster
from powercast.prepare.features import MISSING_MASK_FEATURE, interval_slots_of
from powercast.prepare.gaps import find_gaps
from powercast.prepare.resample import freq_timedelta
from powercast.prepare.series import PreparedSeries, input_window, prepare_meter
from powercast.serving.contract import ForecastBatch, iso_utc, to_utc_timestamp

# Every baseline may serve as the fallback (the one with the lowest MAE over the calibration
# days); the contract's `model` column names its family, `model_version` the baseline.
FALLBACK_FAMILY: dict[str, str] = {
    "seasonal_naive_24h": "seasonal_naive",
    "seasonal_naive_168h": "seasonal_naive",
    "same_hour_mean_7d": "same_hour",
    "same_hour_median_7d": "same_hour",
}
FALLBACK_BASELINES: tuple[str, ...] = tuple(FALLBACK_FAMILY)


@dataclass(frozen=True)
class BaselineForecast:
    """The fallback forecast at one origin and how its interval was calibrated."""

    name: str
    yhat_kw: np.ndarray  # [H]
    lo_kw: np.ndarray  # [H]
    hi_kw: np.ndarray  # [H]
    validation_mae_kw: float
    calibration_windows: int
    calibrated_at_issue_time: bool  # offsets from windows issued at the same time of day (else all windows)


def default_issue_time(config: PowercastConfig, meter_id: str) -> pd.Timestamp:
    """Return the default issue time (UTC): the local midnight that ends the latest complete day of data.

    The last stored reading's bucket (at ``prepare.freq``) must be over, so a store whose last
    reading is 23:59 local issues at the next midnight, and one that stops at 21:02 issues at
    that day's own midnight (its input window is then complete, the day is partly observed).
    Readings from the future (see ``ingest.future_tolerance_h``) never set it.
    """
    from powercast.store.readings import future_cutoff_utc, store_time_range

    _, last_utc = store_time_range(config.root, meter_id, future_cutoff_utc(config.ingest.future_tolerance_h))
    local_tz = parse_timezone(config.prepare.local_timezone)
    data_end = pd.Timestamp(last_utc).tz_convert("UTC") + freq_timedelta(config.prepare.freq)
    return data_end.tz_convert(local_tz).normalize().tz_convert("UTC")


def grid_row(prepared: PreparedSeries, origin_utc: pd.Timestamp) -> int:
    """Return the row of ``origin_utc`` on the prepared grid (may equal its length: the grid's end)."""
    step = prepared.index_utc[1] - prepared.index_utc[0]
    offset = to_utc_timestamp(origin_utc, "issued_at") - prepared.index_utc[0]
    if offset % step != pd.Timedelta(0) or offset < pd.Timedelta(0):
        raise ForecastError(
            f"issue time {iso_utc(pd.Timestamp(origin_utc))} is not on meter {prepared.meter_id}'s {step} grid "
            f"starting {iso_utc(prepared.index_utc[0])}; issue at a whole step (e.g. local midnight)"
        )
    return int(offset // step)


def gap_networks(champion: LoadedModel) -> list[tuple[str, RNNForecaster]]:
    """Return (version, network) of each part of ``champion`` that learned from windows with gaps.

    A network whose card lists the mask column was trained on such windows; so were the network
    members of a combination prepared with it. hgb was not: measured on the sample, the trees then
    lose to the same-hour mean, so hgb's share of a combination is left out on a day with a gap,
    and an hgb champion keeps the baseline fallback.
    """
    if MISSING_MASK_FEATURE not in champion.feature_names:
        return []
    if champion.cell in RECURRENT_CELLS and isinstance(champion.module, RNNForecaster):
        return [(champion.version, champion.module)]
    if isinstance(champion.module, CombinedForecaster):
        pairs = zip(champion.module.member_versions, champion.module.members, strict=False)
        return [(version, member) for version, member in pairs if isinstance(member, RNNForecaster)]
    return []


def gap_interval_kw(
    champion: LoadedModel, versions: list[str], yhat_kw: np.ndarray, issued: pd.Timestamp, window: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """Return the ``(lower, upper)`` ``[H]`` kW bounds when the network members ``versions`` of the combination
    ``champion`` serve its forecast through a gap, and the words saying whose interval that is.

    Every member serving: the combination's own interval. Otherwise the serving members' own
    intervals (each calibrated on its own held-out residuals) around the served forecast, the
    widest of them at each step: the mean of part of a combination was never calibrated, and the
    combination's interval, calibrated with the other members in the mean, is too narrow for it
    (one network under the combination's offsets covered 73-77 % on 2010's gap days,
    docs/accuracy.md). One member serving is simply its own interval. Cards from before interval
    scales keep the combination's, as they did.
    """
    serving = [member for member in champion.members if member.version in versions]
    whole = len(versions) == len(champion.members)
    if whole or not champion.members_keep_their_intervals or len(serving) != len(versions):
        lower_kw, upper_kw = champion.interval_kw(yhat_kw, issued, window)
        return lower_kw, upper_kw, f"the interval of {champion.version}"
    bounds = [member.interval_kw(yhat_kw, issued, window) for member in serving]
    lower_kw = np.min([lower for lower, _ in bounds], axis=0)
    upper_kw = np.max([upper for _, upper in bounds], axis=0)
    if len(serving) == 1:
        return lower_kw, upper_kw, f"the interval of {serving[0].version}"
    return lower_kw, upper_kw, f"the widest of the intervals of {', '.join(member.version for member in serving)}"


def reads_through_gaps(champion: LoadedModel) -> bool:
    """Return whether ``champion`` (or a network inside it) forecasts windows with missing input."""
    return bool(gap_networks(champion))


def champion_window(prepared: PreparedSeries, champion: LoadedModel, issued_utc: pd.Timestamp) -> np.ndarray | None:
    """Return the champion's [L, F] input window ending before ``issued_utc``, or None when it must not forecast.

    None when the window leaves the grid, or holds missing input the champion was not trained to
    read (see ``reads_through_gaps``), or fewer real steps than its ``prepare.min_real_input_steps``.
    """
    window = input_window(prepared, issued_utc)
    if window is None or MISSING_MASK_FEATURE not in prepared.feature_names:
        return window  # without the mask, input_window already refused any missing step
    missing_steps = int((window[:, prepared.feature_names.index(MISSING_MASK_FEATURE)] > 0).sum())
    if missing_steps == 0:
        return window
    if not reads_through_gaps(champion):
        return None
    real_steps = len(window) - missing_steps
    return window if real_steps >= champion.prepare_config.real_input_steps_needed else None


def _window_gap_reason(prepared: PreparedSeries, origin_row: int, max_gap_steps: int, champion: LoadedModel) -> str:
    start = max(origin_row - prepared.lookback_steps, 0)
    missing = np.isnan(prepared.target_kw[start:origin_row])
    _, gap_lengths = find_gaps(missing)
    longest = int(gap_lengths.max()) if gap_lengths.size else 0
    if reads_through_gaps(champion):
        policy = f"fewer than prepare.min_real_input_steps={champion.prepare_config.real_input_steps_needed} real steps"
    else:
        policy = f"at most {max_gap_steps} are interpolated"
    return (
        f"the {prepared.lookback_steps}-step input window before the issue time has {int(missing.sum())} missing "
        f"steps (longest gap {longest} steps; {policy})"
        + ("" if origin_row - prepared.lookback_steps >= 0 else " and reaches before the first reading")
    )


def baseline_per_window(name: str, prepared: PreparedSeries, starts: np.ndarray) -> np.ndarray:
    """Return ``[N, H]`` forecasts of one baseline; rows whose history lies in a long gap are NaN."""
    function = BASELINES[name]
    try:
        return function(prepared, starts)
    except DataPreparationError:
        # Some windows have no history to repeat; score the others one by one.
        rows = np.full((starts.size, prepared.horizon_steps), np.nan, dtype=np.float32)
        for position, start in enumerate(starts):
            try:
                rows[position] = function(prepared, start[None])[0]
            except DataPreparationError:
                continue  # this window stays NaN and is left out of calibration
        return rows


def baseline_forecast(
    prepared: PreparedSeries, origin_row: int, coverage: float, calibration_days: int, local_tz: tzinfo
) -> BaselineForecast:
    """Return the best baseline forecast at ``origin_row`` (lowest MAE on the calibration days) with split-conformal offsets.

    The offsets are those of calibration windows issued at the same local time of day (pooled
    over all of them when that time has too few), as for a champion's intervals.

    Parameters
    ----------
    prepared : PreparedSeries
        The meter's grid; only rows before ``origin_row`` are read.
    origin_row : int
        Grid row of the issue time.
    coverage : float
        Nominal interval coverage.
    calibration_days : int
        Windows whose targets end in this many days before the issue time calibrate the interval.
    local_tz : tzinfo
        Timezone whose wall clock defines the issue time of day.
    """
    lookback, horizon = prepared.lookback_steps, prepared.horizon_steps
    per_day = steps_per_day(prepared)
    origins = np.arange(max(origin_row - calibration_days * per_day, 0), origin_row - horizon + 1, dtype=np.int64)
    targets = np.lib.stride_tricks.sliding_window_view(prepared.target_kw, horizon)[origins]  # [N, H]
    complete = np.isfinite(targets).all(axis=1)
    origins, truth = origins[complete], targets[complete]
    step = prepared.index_utc[1] - prepared.index_utc[0]
    slots, n_slots = interval_slots_of(prepared.index_utc[origins], local_tz, step)  # [N]
    issue_slot, _ = interval_slots_of(pd.DatetimeIndex([prepared.index_utc[0] + origin_row * step]), local_tz, step)
    problems: list[str] = []
    candidates: list[BaselineForecast] = []
    for name in FALLBACK_BASELINES:
        try:
            yhat = BASELINES[name](prepared, np.array([origin_row - lookback]))[0]
        except DataPreparationError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if not origins.size:
            problems.append(f"{name}: no complete window in the {calibration_days} days before the issue time")
            continue
        calibration = baseline_per_window(name, prepared, origins - lookback)
        usable = np.isfinite(calibration).all(axis=1)
        try:
            intervals = ConformalIntervals(coverage).fit(truth[usable], calibration[usable], slots[usable], n_slots)
        except DataPreparationError as exc:
            problems.append(f"{name}: {exc}")
            continue
        lo, hi = intervals.interval_kw(yhat[None], issue_slot)
        at_issue_time = n_slots > 1 and not intervals.pooled_[issue_slot[0]]
        same_time = usable & (slots == issue_slot[0])
        candidates.append(
            BaselineForecast(
                name=name,
                yhat_kw=yhat.astype(np.float32),
                lo_kw=lo[0],
                hi_kw=hi[0],
                validation_mae_kw=float(np.abs(truth[usable] - calibration[usable]).mean()),
                calibration_windows=int((same_time.sum() if at_issue_time else usable.sum())),
                calibrated_at_issue_time=at_issue_time,
            )
        )
    if not candidates:
        raise ForecastError(
            f"meter {prepared.meter_id}: no baseline fallback is possible at {iso_utc(_row_time(prepared, origin_row))}: "
            + "; ".join(problems)
            + ". Ingest the missing readings or issue at a later time"
        )
    return min(candidates, key=lambda candidate: candidate.validation_mae_kw)


def _row_time(prepared: PreparedSeries, row: int) -> pd.Timestamp:
    step = prepared.index_utc[1] - prepared.index_utc[0]
    return prepared.index_utc[0] + row * step


def contract_table(
    meter_id: str,
    issued_at_utc: pd.Timestamp,
    step: pd.Timedelta,
    yhat_kw: np.ndarray,
    lo_kw: np.ndarray,
    hi_kw: np.ndarray,
    model: str,
    model_version: str,
    run_id: str,
) -> pa.Table:
    """Return the ``FORECAST_SCHEMA`` rows of one meter's forecast, clipped at 0 kW (power is not negative)."""
    horizon = len(yhat_kw)
    lower, point, upper = (np.maximum(np.asarray(a, dtype=np.float32), 0.0) for a in (lo_kw, yhat_kw, hi_kw))
    target_times = pd.DatetimeIndex([issued_at_utc + k * step for k in range(horizon)]).as_unit("us")
    return pa.table(
        {
            "meter_id": pa.array([meter_id] * horizon, pa.string()),
            "issued_at": pa.array([issued_at_utc] * horizon, FORECAST_SCHEMA.field("issued_at").type),
            "target_time": pa.array(target_times, FORECAST_SCHEMA.field("target_time").type),
            "horizon_h": pa.array(np.arange(1, horizon + 1, dtype=np.int16)),
            "yhat_kw": pa.array(point),
            "yhat_lo_kw": pa.array(np.minimum(lower, point)),
            "yhat_hi_kw": pa.array(np.maximum(upper, point)),
            "model": pa.array([model] * horizon, pa.string()),
            "model_version": pa.array([model_version] * horizon, pa.string()),
            "run_id": pa.array([run_id] * horizon, pa.string()),
        },
        schema=FORECAST_SCHEMA,
    )


def _champion_batch(
    prepared: PreparedSeries, champion: LoadedModel, window: np.ndarray, issued: pd.Timestamp, run_id: str
) -> ForecastBatch:
    """Return the champion's batch from its [L, F] input window (its network members alone through a gap)."""
    step = prepared.index_utc[1] - prepared.index_utc[0]
    start, end = champion.training_range_utc
    filled_steps = (
        int((window[:, prepared.feature_names.index(MISSING_MASK_FEATURE)] > 0).sum())
        if MISSING_MASK_FEATURE in prepared.feature_names
        else 0
    )
    # Consumers must be able to tell a forecast read through filled inputs (an outage, or readings
    # that have not arrived yet) from one read from real readings only.
    filled = (
        f"the input window has {filled_steps} of {len(window)} steps missing, filled from the day before and "
        "flagged to the model (intervals are calibrated on complete windows)"
    )
    networks = gap_networks(champion) if filled_steps else []
    if not networks or champion.cell in RECURRENT_CELLS:
        yhat = champion.predict_kw(window[None])[0]  # [H]
        lower_kw, upper_kw = champion.interval_kw(yhat, issued, window)
        table = contract_table(
            prepared.meter_id, issued, step, yhat, lower_kw, upper_kw, champion.cell, champion.version, run_id
        )
        notes = (f"{filled}: forecast by {champion.cell} {champion.version}",) if filled_steps else ()
        return ForecastBatch(table, champion.interval_coverage, start, end, champion.validation_mae_kw, notes=notes)
    # A combination through a gap: the mean of its networks, with their own intervals' widest (one
    # network: its card's) or, when every member is a network, the combination's; scaled offsets
    # multiply this window's input load, filled steps included, as for any window.
    scaled = np.mean([network.forecast_scaled(window[None]) for _, network in networks], axis=0)
    yhat = champion.scaler.inverse_target_kw(scaled)[0]  # [H]
    versions = [version for version, _ in networks]
    lower_kw, upper_kw, interval_source = gap_interval_kw(champion, versions, yhat, issued, window)
    # One network member is that model; two or more stay the combination (of its networks only).
    cell, version = (str(networks[0][1].hparams.cell), versions[0]) if len(networks) == 1 else (
        champion.cell, champion.version
    )
    table = contract_table(prepared.meter_id, issued, step, yhat, lower_kw, upper_kw, cell, version, run_id)
    note = (
        f"{filled}: {champion.cell} {champion.version} served by its network member(s) "
        f"{', '.join(versions)} alone (its other members never learned from windows with gaps), "
        f"with {interval_source}"
    )
    return ForecastBatch(table, champion.interval_coverage, start, end, champion.validation_mae_kw, notes=(note,))


def forecast_at(
    prepared: PreparedSeries,
    champion: LoadedModel | None,
    issued_at_utc: pd.Timestamp,
    run_id: str,
    forecast_config: ForecastConfig,
    max_gap_steps: int,
    local_tz: tzinfo,
    no_champion_reason: str | None = None,
) -> ForecastBatch:
    """Return the batch for one issue time on an already prepared grid (champion, else fallback).

    Only grid rows before the issue time are read, so a backtest can prepare once and call this
    for every day.

    Parameters
    ----------
    prepared : PreparedSeries
        The meter's grid, prepared with the champion's prepare config and scaler when there is one.
    champion : LoadedModel or None
        The model to use; None forces the baseline.
    issued_at_utc : pd.Timestamp
        Issue time (tz-aware), on the grid.
    run_id : str
        Written in every row.
    forecast_config : ForecastConfig
        Coverage and calibration length of fallback intervals.
    max_gap_steps : int
        The interpolation limit, quoted when explaining a fallback.
    local_tz : tzinfo
        Timezone whose wall clock defines the issue time of day (fallback intervals).
    no_champion_reason : str, optional
        Why ``champion`` is None (e.g. its files are damaged), quoted in the fallback's note.
    """
    issued = to_utc_timestamp(issued_at_utc, "issued_at")
    origin_row = grid_row(prepared, issued)
    step = prepared.index_utc[1] - prepared.index_utc[0]
    window = champion_window(prepared, champion, issued) if champion is not None else None
    if champion is not None and window is not None:
        return _champion_batch(prepared, champion, window, issued, run_id)
    if champion is None:
        reason = no_champion_reason or f"meter {prepared.meter_id} has no champion model yet"
    else:
        reason = f"champion {champion.cell} {champion.version} not used: " + _window_gap_reason(
            prepared, origin_row, max_gap_steps, champion
        )
    fallback = baseline_forecast(
        prepared, origin_row, forecast_config.interval_coverage, forecast_config.baseline_calibration_days, local_tz
    )
    table = contract_table(
        prepared.meter_id, issued, step, fallback.yhat_kw, fallback.lo_kw, fallback.hi_kw,
        FALLBACK_FAMILY[fallback.name], fallback.name, run_id,
    )
    note = (
        f"fallback to {fallback.name} ({reason}); interval from its residuals on "
        f"{fallback.calibration_windows} windows "
        + ("issued at the same time of day " if fallback.calibrated_at_issue_time else "")
        + f"in the {forecast_config.baseline_calibration_days} days before"
    )
    return ForecastBatch(
        table, forecast_config.interval_coverage, None, None, fallback.validation_mae_kw, notes=(note,)
    )


def serving_prepare_config(config: PowercastConfig, champion: LoadedModel | None) -> PrepareConfig:
    """Return how to prepare a meter for serving: the champion's way, else the configured one for the fallback."""
    if champion is not None:
        return champion.prepare_config
    # The fallback reads only target_kw; inputs still need a scaler, and a one-day trailing
    # validation keeps its training split non-empty however short the history is.
    return config.prepare.model_copy(update={"split": SplitConfig(mode="trailing", val_days=1)})


def make_forecast_batch(
    config: PowercastConfig, meter_id: str, issued_at_utc: datetime | None, run_id: str
) -> ForecastBatch:
    """Return the forecast batch of one meter at ``issued_at_utc`` (default: see ``default_issue_time``).

    Loads the champion, prepares the meter's readings before the issue time with the champion's
    prepare config and scaler, and forecasts the horizon in kW with conformal intervals; falls
    back to the best baseline when there is no champion or the input window has a
    long gap (``ForecastBatch.notes`` says why).

    Parameters
    ----------
    config : PowercastConfig
        Data root, preparation (used when there is no champion) and forecast settings.
    meter_id : str
        The meter to forecast.
    issued_at_utc : datetime or None
        Issue time, tz-aware and on the ``prepare.freq`` grid; None for the default.
    run_id : str
        Written in every row.
    """
    try:
        champion, no_champion_reason = load_champion(config.root, meter_id), None
    except RegistryError as exc:
        # A damaged champion must not cost the meter its forecast: the fallback serves and says why.
        champion, no_champion_reason = None, f"the champion cannot be loaded: {exc}"
    issued = default_issue_time(config, meter_id) if issued_at_utc is None else to_utc_timestamp(issued_at_utc, "issued_at")
    prepare_config = serving_prepare_config(config, champion)
    run_config = config.model_copy(update={"prepare": prepare_config})
    try:
        prepared = prepare_meter(run_config, meter_id, end_utc=issued, scaler=None if champion is None else champion.scaler)
    except DataPreparationError as exc:
        raise ForecastError(f"cannot forecast meter {meter_id!r} at {iso_utc(issued)}: {exc}") from exc
    return forecast_at(
        prepared, champion, issued, run_id, config.forecast, prepare_config.max_interpolate_gap_steps,
        parse_timezone(prepare_config.local_timezone), no_champion_reason,
    )
