"""Day-ahead replay with the current champion over a date range: one published batch per day, scored.

No refit: the champion as registered (or any registered version, ``version=``) forecasts every
local midnight from ``start`` to ``end`` (inclusive) from the input window before that midnight,
exactly as the nightly forecast would, including the baseline fallback on days whose input
window has a long gap. Each day's batch is written with ``publish_batch`` under
``<root>/backtests/<meter_id>/<champion version>/`` (its own ``forecasts/`` and ``latest.json``),
so a consumer scores it with the same readers; a re-run publishes the same rows again (identical
rows write no new file). Days whose 24 actual hours are all known are scored: MAE per horizon
step and overall, and the empirical coverage of the interval. A replay that retrains as the
nights go is ``powercast.experiments.walk_forward``, built on ``replay_days`` and ``Replay``.

The series is prepared once up to the last target, with the champion's scaler. Every forecast
reads only rows before its origin, except that a gap of at most ``max_interpolate_gap_steps``
straddling an origin was interpolated using the first reading after it (the live forecast
would see that gap as missing and fall back); this touches few days and is noted here so the
figures are not read as more than they are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from powercast.core.config import PowercastConfig, parse_timezone
from powercast.core.errors import DataPreparationError, ForecastError
from powercast.io import layout
from powercast.io.atomic import atomic_write_json, resolve_filesystem
from powercast.models.metrics import mae_kw, mae_kw_by_step
from powercast.models.registry import LoadedModel, load_champion, load_model
from powercast.prepare.resample import freq_timedelta
from powercast.prepare.series import PreparedSeries, prepare_meter
from powercast.prepare.splits import local_midnight_utc, split_bounds_utc
from powercast.serving.contract import ForecastBatch
from powercast.serving.forecast import (
    FALLBACK_FAMILY,
    baseline_per_window,
    forecast_at,
    grid_row,
    serving_prepare_config,
)
from powercast.serving.publish import publish_batch

REPORT_NAME = "backtest.json"
# The folder of days a replay served with no champion (the fallback): no version is named so.
NO_CHAMPION = "no-champion"
# Scored on the same days for reference: the forecast every model must beat.
REFERENCE_BASELINE = "seasonal_naive_24h"


@dataclass(frozen=True)
class BacktestReport:
    """Scores of a day-ahead replay and where its batches were written.

    Attributes
    ----------
    meter_id, champion_version : str
    root : str
        Data root of the replay's batches (``read_forecasts(root, issued_at=...)`` reads a day); for
        a walk-forward replay, the folder holding one such root per champion version.
    start, end : date
        Local dates of the first and last issue (inclusive).
    batches : int
        Days forecast and published.
    batches_by_model : dict[str, int]
        ``model_version`` → days (the champion's version, or a fallback baseline's name).
    scored_days : int
        Days whose 24 actual hours are all known.
    mae_kw : float
        MAE over every scored day and horizon step (NaN when no day could be scored).
    mae_kw_by_step : tuple[float, ...]
        MAE per horizon step over the scored days.
    champion_mae_kw : float
        MAE over the scored days the champion itself forecast (NaN when none).
    interval_coverage : float
        Fraction of scored actual hours inside ``[yhat_lo_kw, yhat_hi_kw]``.
    nominal_coverage : float
        The coverage the intervals were calibrated for.
    reference_mae_kw : float
        MAE of ``REFERENCE_BASELINE`` on the scored days where its history is complete.
    reference_days : int
        How many scored days that is.
    skipped : dict[str, str]
        Issue day → why no batch could be made (even the fallback failed).
    overlap_days : int
        Issue days before the end of the champion's validation split: their figures are optimistic.
    """

    meter_id: str
    champion_version: str
    root: str
    start: date
    end: date
    batches: int
    batches_by_model: dict[str, int]
    scored_days: int
    mae_kw: float
    mae_kw_by_step: tuple[float, ...]
    champion_mae_kw: float
    interval_coverage: float
    nominal_coverage: float
    reference_mae_kw: float
    reference_days: int
    skipped: dict[str, str]
    overlap_days: int

    def to_dict(self) -> dict[str, object]:
        """Return the report as JSON-able values (dates as ISO text, NaN as None)."""
        raw = asdict(self)
        raw["start"], raw["end"] = self.start.isoformat(), self.end.isoformat()
        for key in ("mae_kw", "champion_mae_kw", "interval_coverage", "reference_mae_kw"):
            raw[key] = None if np.isnan(raw[key]) else raw[key]
        raw["mae_kw_by_step"] = list(self.mae_kw_by_step)
        return raw


def _validation_end_utc(champion: LoadedModel) -> pd.Timestamp:
    """Return where the champion's validation split ended: data before it shaped the model or its choice."""
    grid_start, grid_end = (pd.Timestamp(text) for text in champion.metadata["data_range_utc"])
    config = champion.prepare_config
    bounds = split_bounds_utc(config.split, grid_start, grid_end, grid_end, parse_timezone(config.local_timezone))
    return bounds["val"][1]


def backtest_root(config: PowercastConfig, meter_id: str, version: str) -> str:
    """Return the data root a replay of ``version`` publishes into (separate from live forecasts)."""
    return layout.backtest_dir(config.root, meter_id, version)


def run_backtest(
    config: PowercastConfig, meter_id: str, start: date, end: date, run_id: str, version: str | None = None
) -> BacktestReport:
    """Return the scores of replaying day-ahead forecasts from ``start`` to ``end`` with the champion.

    Parameters
    ----------
    config : PowercastConfig
        Data root and forecast settings (the champion brings its own prepare config).
    meter_id : str
        The meter to replay.
    start, end : date
        First and last issue day (local dates, inclusive).
    run_id : str
        Written in every row of the replay's batches.
    version : str, optional
        Replay this registered version instead of the champion (e.g. a contestant that lost the
        night), served exactly as it would be as champion, fallback included.
    """
    days = issue_days(start, end)
    champion = load_champion(config.root, meter_id) if version is None else load_model(config.root, meter_id, version)
    if champion is None:
        raise ForecastError(f"meter {meter_id!r} has no champion to replay; run `powercast train` first")
    replay = Replay()
    replay_days(config, champion, meter_id, days, run_id, replay)
    local_tz = parse_timezone(champion.prepare_config.local_timezone)
    seen_until = _validation_end_utc(champion)
    overlap_days = sum(local_midnight_utc(day, local_tz) < seen_until for day in days)
    root = backtest_root(config, meter_id, champion.version)
    report = replay.report(
        meter_id, champion.version, champion.interval_coverage, champion.prepare_config.horizon_steps, root, start,
        end, overlap_days=overlap_days,
    )
    filesystem, base = resolve_filesystem(root)
    atomic_write_json(f"{base}/{REPORT_NAME}", report.to_dict(), filesystem)
    return report


def issue_days(start: date, end: date) -> list[date]:
    """Return the local issue days from ``start`` to ``end`` inclusive; ForecastError when ``end`` is before ``start``."""
    if end < start:
        raise ForecastError(f"backtest end {end} is before start {start}; give --start <= --end")
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def replay_days(
    config: PowercastConfig,
    champion: LoadedModel | None,
    meter_id: str,
    days: list[date],
    run_id: str,
    replay: Replay,
    no_champion_reason: str | None = None,
) -> None:
    """Forecast each local midnight of ``days`` with ``champion``, publish each batch and add it to ``replay``.

    Batches go under ``backtest_root(config, meter_id, champion.version)``. With no champion the
    best baseline serves, as on a live night, under ``backtest_root(config, meter_id, NO_CHAMPION)``
    and its note quotes ``no_champion_reason``. A day no batch could be made for (not even the
    fallback) is recorded in ``replay.skipped`` with the reason.
    """
    prepare_config = serving_prepare_config(config, champion)
    local_tz = parse_timezone(prepare_config.local_timezone)
    origins = [local_midnight_utc(day, local_tz) for day in days]
    prepared = _prepared_through(config, champion, meter_id, origins[-1], f"from {days[0]} to {days[-1]}")
    root = backtest_root(config, meter_id, champion.version if champion is not None else NO_CHAMPION)
    for day, origin in zip(days, origins):
        try:
            batch = forecast_at(
                prepared, champion, origin, run_id, config.forecast, prepare_config.max_interpolate_gap_steps,
                local_tz, no_champion_reason,
            )
        except ForecastError as exc:
            replay.skipped[day.isoformat()] = str(exc)
            continue
        publish_batch(root, batch)
        replay.add(prepared, origin, batch)


def _prepared_through(
    config: PowercastConfig, champion: LoadedModel | None, meter_id: str, last_origin_utc: pd.Timestamp, span: str
) -> PreparedSeries:
    """Return the meter's series prepared the champion's way (else the fallback's), up to the last forecast's horizon."""
    prepare_config = serving_prepare_config(config, champion)
    horizon_end = last_origin_utc + prepare_config.horizon_steps * freq_timedelta(prepare_config.freq)
    try:
        return prepare_meter(
            config.model_copy(update={"prepare": prepare_config}),
            meter_id,
            end_utc=horizon_end,
            scaler=champion.scaler if champion is not None else None,
        )
    except DataPreparationError as exc:
        raise ForecastError(f"cannot replay meter {meter_id!r} {span}: {exc}") from exc


@dataclass
class Replay:
    """The replayed days so far: each scored day's actuals, forecasts, interval and reference, and what was skipped.

    Days may come from several prepared series (a walk-forward replay prepares each refit's
    champion its own way): each day's actuals and reference forecast are taken when it is added.
    """

    truths: list[np.ndarray] = field(default_factory=list)
    forecasts: list[np.ndarray] = field(default_factory=list)
    lowers: list[np.ndarray] = field(default_factory=list)
    uppers: list[np.ndarray] = field(default_factory=list)
    references: list[np.ndarray] = field(default_factory=list)
    by_champion: list[bool] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, prepared: PreparedSeries, origin_utc: pd.Timestamp, batch: ForecastBatch) -> None:
        """Count a published batch; score it when every hour of its horizon has a reading."""
        self.versions[batch.model_version] += 1
        row = grid_row(prepared, origin_utc)
        actual_kw = prepared.target_kw[row : row + prepared.horizon_steps]
        if actual_kw.size < prepared.horizon_steps or not np.isfinite(actual_kw).all():
            return
        self.truths.append(actual_kw)
        self.forecasts.append(batch.table["yhat_kw"].to_numpy())
        self.lowers.append(batch.table["yhat_lo_kw"].to_numpy())
        self.uppers.append(batch.table["yhat_hi_kw"].to_numpy())
        self.by_champion.append(batch.model not in FALLBACK_FAMILY.values())
        start = row - prepared.lookback_steps
        self.references.append(
            baseline_per_window(REFERENCE_BASELINE, prepared, np.asarray([start]))[0]
            if start >= 0
            else np.full(prepared.horizon_steps, np.nan)
        )

    def report(
        self,
        meter_id: str,
        champion_version: str,
        nominal_coverage: float,
        horizon_steps: int,
        root: str,
        start: date,
        end: date,
        overlap_days: int,
    ) -> BacktestReport:
        """Return the scores of the replayed days against actuals and the reference baseline."""
        horizon = horizon_steps
        truth = np.asarray(self.truths, dtype=np.float32).reshape(-1, horizon)  # [D, H]
        yhat = np.asarray(self.forecasts, dtype=np.float32).reshape(-1, horizon)  # [D, H]
        reference = np.asarray(self.references, dtype=np.float32).reshape(-1, horizon)  # [D, H]
        champion_rows = np.asarray(self.by_champion, dtype=bool)
        scored = len(self.truths) > 0
        has_reference = np.isfinite(reference).all(axis=1)
        inside = (truth >= np.asarray(self.lowers)) & (truth <= np.asarray(self.uppers)) if scored else None
        return BacktestReport(
            meter_id=meter_id,
            champion_version=champion_version,
            root=root,
            start=start,
            end=end,
            batches=sum(self.versions.values()),
            batches_by_model=dict(sorted(self.versions.items())),
            scored_days=len(self.truths),
            mae_kw=mae_kw(truth, yhat) if scored else float("nan"),
            mae_kw_by_step=tuple(float(v) for v in mae_kw_by_step(truth, yhat)) if scored else (),
            champion_mae_kw=mae_kw(truth[champion_rows], yhat[champion_rows]) if champion_rows.any() else float("nan"),
            interval_coverage=float(inside.mean()) if scored else float("nan"),
            nominal_coverage=nominal_coverage,
            reference_mae_kw=mae_kw(truth[has_reference], reference[has_reference])
            if has_reference.any()
            else float("nan"),
            reference_days=int(has_reference.sum()),
            skipped=self.skipped,
            overlap_days=overlap_days,
        )


def format_report(report: BacktestReport) -> str:
    """Return a plain-text summary: MAE per horizon step, overall MAE, interval coverage, fallbacks."""
    lines = [
        f"backtest of {report.meter_id} champion {report.champion_version}: issue days {report.start} .. {report.end}",
        f"batches      {report.batches} written under {report.root} "
        f"({', '.join(f'{name}: {count}' for name, count in report.batches_by_model.items()) or 'none'})",
        f"scored days  {report.scored_days} (days with all {len(report.mae_kw_by_step) or 'H'} actual hours known)",
    ]
    if report.mae_kw_by_step:
        lines += ["", f"{'horizon_h':>9}  {'MAE kW':>8}"]
        lines += [f"{step:>9}  {value:>8.4f}" for step, value in enumerate(report.mae_kw_by_step, start=1)]
        lines += [
            "",
            f"MAE overall           {report.mae_kw:.4f} kW",
            f"MAE champion days     {report.champion_mae_kw:.4f} kW",
            f"interval coverage     {report.interval_coverage:.1%} (nominal {report.nominal_coverage:.0%})",
            f"{REFERENCE_BASELINE + ' MAE':<21} {report.reference_mae_kw:.4f} kW "
            f"(reference, on {report.reference_days} of the {report.scored_days} scored days)",
        ]
    if report.overlap_days:
        lines.append(
            f"warning: {report.overlap_days} issue day(s) lie inside the champion's training/validation data; "
            "their scores are optimistic"
        )
    for day, reason in report.skipped.items():
        lines.append(f"skipped {day}: {reason}")
    return "\n".join(lines)

