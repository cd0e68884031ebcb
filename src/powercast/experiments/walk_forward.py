"""Walk-forward backtest: retrain every N days as the nightly run would have, and replay the days between.

``powercast backtest`` without a refit replays one frozen champion over a whole range, although
the nightly run retrains every night: by the end of 2010 the frozen model has not seen eleven
months of readings the nightly one would have learned from. A walk-forward replay measures what
retraining serves. At each refit day ``d`` (``start``, ``start + N``, ...):

1. the meter is prepared from the readings before local midnight of ``d`` only;
2. the night's training runs on it (``train_meter``: held-out fits, selection against the
   baselines and the previous refit's champion, refit, intervals, registration), with a
   ``dates`` split moved so that its validation ends at the night, its lengths kept (a
   ``trailing`` split is relative to the data's end already). With ``train.scope`` global or
   both the night trains every meter of the store (``train_fleet``), as the nightly run does:
   the global networks learn from the whole fleet, and each meter selects on its own windows;
3. the champion after that night forecasts the days from ``d`` up to the next refit, each day
   published and scored as ``run_backtest`` does.

A night that fails (no validation window after an outage, a NaN loss) keeps the champion it had,
as a live night does; before any champion, the best baseline serves its days, as it would live.

Nothing it does touches the live registry or forecasts: it trains into its own scratch data
root, ``<root>/backtests/<meter>/walk-forward/<run_id>/``, whose ``store`` is a link to the live
store (which it only reads), so a local data root is required. Re-running a run id replaces what it wrote.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from powercast.core.config import PowercastConfig, SplitConfig, parse_timezone
from powercast.core.errors import ConfigError, DataPreparationError, ForecastError, RegistryError, TrainingError
from powercast.io import layout
from powercast.io.atomic import atomic_write_json, is_uri
from powercast.models.registry import load_champion
from powercast.prepare.series import prepare_meter
from powercast.prepare.splits import local_midnight_utc
from powercast.serving.backtest import BacktestReport, Replay, issue_days, replay_days
from powercast.store.readings import list_meters
from powercast.training.fleet import train_fleet, trains_global
from powercast.training.pipeline import train_meter

logger = logging.getLogger(__name__)
REPORT_NAME = "walk_forward.json"


@dataclass(frozen=True)
class Refit:
    """One night of a walk-forward replay: what it trained on and what then served.

    Attributes
    ----------
    as_of : date
        Local day whose midnight ends the readings the night trained on (its first issue day).
    run_id : str
        The night's run id (its versions are ``<run_id>-<cell>``).
    split : SplitConfig
        The split the night trained and selected with.
    decision : str
        The night's decision, as the training report words it.
    champion_version : str | None
        The champion that forecast the days up to the next refit (None: none yet, the best
        baseline served them, as it would live).
    train_s : float
        Training wall-clock seconds of the night (every challenger, held-out fit and refit).
    """

    as_of: date
    run_id: str
    split: SplitConfig
    decision: str
    champion_version: str | None
    train_s: float


@dataclass(frozen=True)
class WalkForwardReport:
    """The replay's scores over every day (``backtest``), the nights behind them and where it all lies."""

    backtest: BacktestReport
    refits: tuple[Refit, ...]
    work_root: str

    def to_dict(self) -> dict[str, object]:
        """Return the report as JSON-able values."""
        refits = [
            {**refit.__dict__, "as_of": refit.as_of.isoformat(), "split": refit.split.model_dump(mode="json")}
            for refit in self.refits
        ]
        return {"backtest": self.backtest.to_dict(), "refits": refits, "work_root": self.work_root}


def refit_days(start: date, end: date, refit_every_days: int) -> list[date]:
    """Return the refit days: ``start`` and every ``refit_every_days`` after it up to ``end``."""
    if refit_every_days < 1:
        raise ConfigError(f"--refit-every-days must be at least 1, got {refit_every_days}")
    return issue_days(start, end)[::refit_every_days]


def split_as_of(split: SplitConfig, as_of: date) -> SplitConfig:
    """Return ``split`` for the night of ``as_of``: a dates split moves so that its validation ends at the night.

    Its training and validation lengths are kept; a ``trailing`` split is relative to the data's
    end already. Validation never reaches past the night, and no day between it and the night is
    left out of the refit, as on a live night.
    """
    if split.mode != "dates":
        return split
    assert split.train_end is not None and split.val_end is not None  # SplitConfig checks dates mode has both
    shift = as_of - split.val_end
    return split.model_copy(update={"train_end": split.train_end + shift, "val_end": as_of})


def walk_forward_root(config: PowercastConfig, meter_id: str, run_id: str) -> str:
    """Return a fresh scratch data root for the replay whose ``store`` links to the live one (only read)."""
    if is_uri(config.root):
        raise ConfigError(f"a walk-forward backtest needs a local data root (it links the store), got {config.root!r}")
    work_root = Path(layout.walk_forward_dir(config.root, meter_id, run_id)).absolute()
    if work_root.exists():
        _remove_tree(work_root)  # re-running a run id replaces what it wrote
    work_root.mkdir(parents=True)
    os.symlink(Path(layout.store_dir(config.root)).absolute(), layout.store_dir(str(work_root)))
    return str(work_root)


def _remove_tree(path: Path) -> None:
    """Remove a scratch root without following its ``store`` link into the live store."""
    import shutil

    link = Path(layout.store_dir(str(path)))
    if link.is_symlink():
        link.unlink()
    shutil.rmtree(path)


def run_walk_forward(
    config: PowercastConfig,
    meter_id: str,
    start: date,
    end: date,
    refit_every_days: int,
    run_id: str,
    progress: bool | None = None,
) -> WalkForwardReport:
    """Return the scores of a walk-forward replay: retrain every ``refit_every_days``, forecast the days between.

    Parameters
    ----------
    config : PowercastConfig
        Data root (local), preparation, training, interval and forecast settings of every night.
    meter_id : str
        The meter to replay.
    start, end : date
        First and last issue day (local dates, inclusive); the first night trains as of ``start``.
    refit_every_days : int
        Days between two nights (1 retrains before every day, as the nightly run does).
    run_id : str
        Names the scratch root, each night's run (``<run_id>-<YYYYMMDD>``) and the batches' rows.
    progress : bool, optional
        Training progress bars; None shows them only on a terminal.
    """
    nights = refit_days(start, end, refit_every_days)
    work_root = walk_forward_root(config, meter_id, run_id)
    replay, refits = Replay(), []
    for index, as_of in enumerate(nights):
        last_day = nights[index + 1] - timedelta(days=1) if index + 1 < len(nights) else end
        night = _train_as_of(config.model_copy(update={"root": work_root}), meter_id, as_of, run_id, progress)
        refits.append(night)
        _replay_block(night, config.model_copy(update={"root": work_root}), meter_id, as_of, last_day, run_id, replay)
        logger.info(
            "walk-forward %s: night of %s (%s, %.0f s) served %s to %s",
            run_id, as_of, night.champion_version or "no champion", night.train_s, as_of, last_day,
        )
    batches_root = layout.under(work_root, layout.BACKTESTS, meter_id)  # a data root per champion version
    backtest = replay.report(
        # Many champions (or none: the fallback) served; batches_by_model names each with its days.
        meter_id, f"of each night (walk-forward {run_id})", config.forecast.interval_coverage,
        config.prepare.horizon_steps, batches_root, start, end, overlap_days=0,
    )
    report = WalkForwardReport(backtest=backtest, refits=tuple(refits), work_root=work_root)
    atomic_write_json(f"{work_root}/{REPORT_NAME}", report.to_dict())
    return report


def _train_as_of(config: PowercastConfig, meter_id: str, as_of: date, run_id: str, progress: bool | None) -> Refit:
    """Return the record of one night trained on the readings before local midnight of ``as_of``."""
    split = split_as_of(config.prepare.split, as_of)
    night_config = config.model_copy(update={"prepare": config.prepare.model_copy(update={"split": split})})
    midnight_utc = local_midnight_utc(as_of, parse_timezone(config.prepare.local_timezone))
    night_run_id = f"{run_id}-{as_of:%Y%m%d}"
    started = time.perf_counter()
    try:
        if trains_global(config):
            decision = _train_fleet_as_of(night_config, meter_id, night_run_id, midnight_utc.to_pydatetime(), progress)
        else:
            prepared = prepare_meter(night_config, meter_id, end_utc=midnight_utc.to_pydatetime())
            outcome = train_meter(night_config, meter_id, night_run_id, prepared=prepared, progress=progress)
            decision = outcome.decision.reason
    except (DataPreparationError, TrainingError) as exc:
        # As on a live night: a failed training keeps the champion it had, and the next night comes.
        decision = f"training failed, the champion stays: {exc}"
        logger.warning("walk-forward %s: the night of %s failed: %s", run_id, as_of, exc)
    train_s = time.perf_counter() - started
    try:
        champion = load_champion(config.root, meter_id)
    except RegistryError:
        champion = None  # the block's replay serves the fallback and says why
    return Refit(
        as_of=as_of,
        run_id=night_run_id,
        split=split,
        decision=decision,
        champion_version=champion.version if champion is not None else None,
        train_s=train_s,
    )


def _train_fleet_as_of(
    config: PowercastConfig, meter_id: str, run_id: str, end_utc: datetime, progress: bool | None
) -> str:
    """Train the night of every meter in the store (global models learn from all of them); return ``meter_id``'s decision.

    As the nightly run does with ``train.scope`` global or both: the global networks need the
    fleet, each meter selects on its own windows, and only ``meter_id``'s days are replayed.
    Raises TrainingError when the meter itself failed (the others' failures are its business only
    through the global models they did or did not teach).
    """
    meters = list_meters(config.root)
    if meter_id not in meters:
        raise DataPreparationError(f"meter {meter_id!r} has no readings in the store of {config.root} ({len(meters)} meters)")
    outcome = train_fleet(config, meters, run_id, progress=progress, end_utc=end_utc)
    if outcome.global_failure:  # as live: the meters' own models still competed
        logger.warning("walk-forward %s: the global models failed that night: %s", run_id, outcome.global_failure)
    if meter_id in outcome.failures:
        raise TrainingError(outcome.failures[meter_id])
    others = len(outcome.failures)
    if others:
        logger.warning("walk-forward %s: %d other meter(s) failed that night: %s", run_id, others, sorted(outcome.failures))
    decision = outcome.outcomes[meter_id].decision.reason
    return f"{decision} (the global models failed: {outcome.global_failure})" if outcome.global_failure else decision


def _replay_block(
    night: Refit, config: PowercastConfig, meter_id: str, first_day: date, last_day: date, run_id: str, replay: Replay
) -> None:
    """Forecast ``first_day`` .. ``last_day`` with the night's champion (the best baseline when none, as live)."""
    days = issue_days(first_day, last_day)
    try:
        champion = load_champion(config.root, meter_id)
        reason = None if champion is not None else f"no champion after the night of {night.as_of}: {night.decision}"
    except RegistryError as exc:  # as live: a damaged champion costs the meter its model, not its forecast
        champion, reason = None, f"the champion cannot be loaded: {exc}"
    try:
        replay_days(config, champion, meter_id, days, run_id, replay, reason)
    except ForecastError as exc:  # the block's series cannot be prepared: its days are skipped, the walk goes on
        replay.skipped.update({day.isoformat(): str(exc) for day in days})


def format_walk_forward(report: WalkForwardReport) -> str:
    """Return a plain-text table of the nights, then the replay's scores."""
    from powercast.serving.backtest import format_report

    lines = [f"{'night':<10}  {'train s':>7}  champion after it", "-" * 48]
    lines += [
        f"{refit.as_of.isoformat():<10}  {refit.train_s:>7.0f}  {refit.champion_version or '- (none)'}"
        for refit in report.refits
    ]
    total_s = sum(refit.train_s for refit in report.refits)
    lines += [f"{len(report.refits)} nights, {total_s:.0f} s of training", "", format_report(report.backtest)]
    lines.append(f"report: {report.work_root}/{REPORT_NAME}")
    return "\n".join(lines)
