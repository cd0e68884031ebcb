"""Prefect tasks: one verb each, each a thin call into the ``powercast`` library.

Tasks that touch the file system or an object store retry with exponential backoff, and only
on I/O errors: a bad file or a bad setting fails at once with the library's message. Results
stay in memory (no result persistence, no caching): every run recomputes from the data root.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.tasks import exponential_backoff

import powercast.models.registry
import powercast.prepare.series
import powercast.serving.forecast
import powercast.serving.publish
import powercast.store.ingest
import powercast.store.readings
import powercast.training.fleet
import powercast.training.freshness
import powercast.training.pipeline
from flows.report import GLOBAL_MODELS_FAILURE, RunRecord, window_words
from powercast.core.config import PowercastConfig
from powercast.core.errors import PowercastError, TrainingError, transient_io_cause
from powercast.io import layout
from powercast.io.atomic import is_uri, resolve_filesystem
from powercast.io.locking import PUBLISH_LOCK_NAME, named_lock
from powercast.io.runs import new_run_id
from powercast.prepare.resample import freq_timedelta
from powercast.prepare.series import PreparedSeries
from powercast.reporting.forecast_plot import CONTEXT_STEPS, actual_kw, plot_forecast
from powercast.serving.contract import ForecastBatch, compact_utc
from powercast.serving.publish import PublishedBatch
from powercast.store.ingest import IngestReport
from powercast.training.fleet import GlobalFit
from powercast.training.pipeline import ChallengerFit, TrainingOutcome

IO_RETRIES = 3


def _retry_on_io_error(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only transient I/O failures (a flaky disk or object store), never bad data or bad settings.

    The library raises its own errors with the I/O error as their cause, so the whole chain is read.
    """
    return transient_io_cause(state.result(raise_on_failure=False)) is not None


io_task = task(
    retries=IO_RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_retry_on_io_error,
    cache_policy=NO_CACHE,
)


def current_run_id() -> str:
    """Return this flow run's id for the data root: ``<flow>-<UTC start>-<8 hex of the flow run id>``."""
    started = flow_run.scheduled_start_time or datetime.now(timezone.utc)
    return new_run_id(flow_run.flow_name, pd.Timestamp(started).to_pydatetime(), str(flow_run.id).replace("-", "")[:8])


@io_task
def ingest_new_files(
    config: PowercastConfig, landing_dir: str, run_id: str, lock_timeout_s: float
) -> list[IngestReport]:
    """Ingest every landing file not ingested yet; return one report per file ingested."""
    logger = get_run_logger()
    filesystem, landing_path = resolve_filesystem(landing_dir)
    if filesystem.get_file_info(landing_path).type == pafs.FileType.NotFound:
        # A night with no landing folder yet (nothing has arrived) still forecasts from the store.
        logger.warning("landing folder %s does not exist: nothing to ingest tonight", landing_dir)
        return []
    # ingest_paths holds the ingest lock itself.
    reports = powercast.store.ingest.ingest_paths(
        [landing_dir], config, run_id=run_id, progress=False, lock_timeout_s=lock_timeout_s
    )
    for report in reports:
        logger.info(
            "%s: %d rows stored, %d quarantined, %d replaced (%.1f s)",
            Path(report.source_file).name,
            report.rows_stored,
            report.rows_quarantined,
            report.rows_replaced,
            report.elapsed_s,
        )
    logger.info("ingested %d new file(s) from %s", sum(not r.skipped for r in reports), landing_dir)
    return reports


@io_task
def find_meters(config: PowercastConfig, requested: Sequence[str]) -> list[str]:
    """Return the requested meters, or every meter in the store when none is requested."""
    meters = list(requested) or powercast.store.readings.list_meters(config.root)
    get_run_logger().info("meters: %s", ", ".join(meters) or "none in the store")
    return meters


@io_task
def find_future_readings(config: PowercastConfig, meters: Sequence[str]) -> dict[str, str]:
    """Return, per meter whose store holds readings from the future, why the night ignores them.

    Ingest quarantines such readings (``future_timestamp``); a store written before it did, or
    with a larger ``ingest.future_tolerance_h`` then, may still hold some. Training and the
    default issue time stop before them, so the meter is still trained and forecast. A meter
    whose store cannot be read here is left to its own night, which fails alone and says why.
    """
    future_from = powercast.store.readings.future_cutoff_utc(config.ingest.future_tolerance_h)
    ignored = {}
    for meter_id in meters:
        try:
            count, latest_utc = powercast.store.readings.readings_from(config.root, meter_id, future_from)
        except PowercastError as exc:
            get_run_logger().warning("%s: readings from the future not checked: %s", meter_id, exc)
            continue
        if count:
            ignored[meter_id] = (
                f"{count} stored reading(s) stamped at or after {future_from:%Y-%m-%dT%H:%MZ} (now + "
                f"ingest.future_tolerance_h={config.ingest.future_tolerance_h:g} h), the latest "
                f"{latest_utc:%Y-%m-%dT%H:%MZ}, ignored: a clock that ran ahead"
            )
            get_run_logger().warning("%s: %s", meter_id, ignored[meter_id])
    return ignored


@io_task
def has_new_readings(config: PowercastConfig, meter_id: str, as_of_utc: datetime | None = None) -> bool:
    """Return True when the store holds readings (before ``as_of_utc``) newer than every recorded training saw."""
    freshness = powercast.training.freshness.training_freshness(config, meter_id, as_of_utc)
    get_run_logger().info("%s: %s", meter_id, freshness.reason)
    return freshness.retrain


@io_task
def prepare_training_series(config: PowercastConfig, meter_id: str, as_of_utc: datetime | None) -> PreparedSeries:
    """Return the meter's prepared series (readings before the run's ``as_of_utc``; all when None)."""
    prepared = powercast.prepare.series.prepare_meter(config, meter_id, end_utc=as_of_utc)
    windows = {split: len(starts) for split, starts in prepared.window_starts.items()}
    get_run_logger().info(
        "%s: %d steps, %s", meter_id, len(prepared.index_utc), window_words(windows, config.prepare.split)
    )
    return prepared


@task(cache_policy=NO_CACHE, task_run_name="train-{cell}")
def train_candidate(config: PowercastConfig, prepared: PreparedSeries, cell: str, run_id: str) -> ChallengerFit:
    """Train one cell on the meter's series and forecast its scoring windows; nothing is registered yet."""
    challenger = powercast.training.pipeline.fit_challenger(config, prepared, cell, run_id, progress=False)
    refit = challenger.refit
    get_run_logger().info(
        "%s %s trained on %s in %.1f s (%d epochs, stopped by %s; %s)",
        prepared.meter_id,
        cell,
        challenger.device,
        challenger.elapsed_s,
        challenger.fit.epochs_run,
        challenger.fit.stopped_by,
        f"served model refit on train + validation for {refit.epochs_run} epochs"
        if refit
        else f"no refit: {challenger.refit_skipped}",
    )
    return challenger


def train_candidates(
    config: PowercastConfig, prepared: PreparedSeries, run_id: str, global_models: dict[str, GlobalFit]
) -> tuple[list[ChallengerFit], dict[str, str]]:
    """Return the challengers (local cells trained here, tonight's global models) and (cell → error) of failures.

    Local cells (when ``train.scope`` and ``train.local_meters`` give the meter its own models) are one ``train_candidate`` task each, all
    submitted before any is awaited, so the flow's task runner decides whether they run one after
    the other or side by side. A failed cell is left out and the others still compete; when no
    challenger is left the meter fails with their errors.
    """
    cells = config.train.cells if config.train.trains_local_models_of(prepared.meter_id) else []
    futures = {cell: train_candidate.submit(config, prepared, cell, run_id) for cell in cells}
    for future in futures.values():
        future.wait()
    trained, failed = split_by_outcome({cell: future.state for cell, future in futures.items()})
    challengers = list(trained.values()) + [
        powercast.training.fleet.global_challenger(fit, cell, prepared) for cell, fit in global_models.items()
    ]
    if not challengers:
        detail = "; ".join(f"{cell}: {error}" for cell, error in failed.items()) or "no global model was trained tonight"
        raise TrainingError(f"meter {prepared.meter_id!r}: no challenger to select from ({detail})")
    return challengers, failed


@task(cache_policy=NO_CACHE, task_run_name="train-global-models")
def train_global_models(
    config: PowercastConfig, meters: Sequence[str], run_id: str, as_of_utc: datetime | None, only_with_news: bool
) -> dict[str, GlobalFit]:
    """Train one network per cell on every meter's windows (``train.scope`` global or both); return cell → GlobalFit.

    With ``only_with_news`` (a night not forced to retrain) nothing is trained when none of the
    meters the models would learn from has readings newer than its last training: no meter would
    retrain to use them (a meter that cannot be prepared is left out, so it cannot force one).
    """
    powercast.training.fleet.check_global_devices(config)  # before reading the fleet, not after
    logger = get_run_logger()
    absent = powercast.training.fleet.local_meters_without_readings(config)
    if absent:
        logger.warning("train.local_meters names %s, which the store holds no readings of", absent)
    no_news = "no global models tonight: none of the %d meter(s) they learn from has readings newer than its last training"
    if only_with_news and not _any_meter_has_news(config, meters, as_of_utc):  # before paying for preparing them
        logger.info(no_news, len(meters))
        return {}
    usable, left_out = powercast.training.fleet.prepare_fleet(config, meters, as_of_utc)
    for meter_id, why in left_out.items():
        logger.warning("%s left out of the global models: %s", meter_id, why)
    if not usable:
        raise TrainingError(f"none of the {len(meters)} meter(s) has validation windows to train a global model on")
    # Again among the meters that could be prepared: one that cannot (never trained) is always "new".
    if only_with_news and not _any_meter_has_news(config, [item.meter_id for item in usable], as_of_utc):
        logger.info(no_news, len(usable))
        return {}
    fits = powercast.training.fleet.fit_global_models(config, usable, run_id, progress=False)
    for cell, trained in fits.items():
        logger.info(
            "global %s trained on %d meters in %.1f s on %s (%d epochs of %d batches, stopped by %s; %s)",
            cell, len(usable), trained.elapsed_s, trained.device, trained.fit.epochs_run,
            config.train.global_steps_per_epoch, trained.fit.stopped_by,
            f"served refit for {trained.refit.epochs_run} epochs" if trained.refit else f"no refit: {trained.refit_skipped}",
        )
    return fits


def _any_meter_has_news(config: PowercastConfig, meters: Sequence[str], as_of_utc: datetime | None) -> bool:
    """Return whether any meter would retrain tonight (a meter whose check fails is left to its own night)."""
    for meter_id in meters:
        try:
            if powercast.training.freshness.training_freshness(config, meter_id, as_of_utc).retrain:
                return True
        except PowercastError as exc:
            get_run_logger().warning("%s: new readings not checked for the global models: %s", meter_id, exc)
    return False


def fit_global_models_or_none(
    config: PowercastConfig,
    meters: Sequence[str],
    record: RunRecord,
    as_of_utc: datetime | None,
    only_with_news: bool = False,
) -> dict[str, GlobalFit]:
    """Return tonight's global models (cell → fit), or none when the scope is local or their training failed.

    A failed global fit is recorded among the run's failures and the night goes on: local cells
    (with ``train.scope = both``) still compete, and every meter is still forecast by its champion
    or the fallback.
    """
    if not powercast.training.fleet.trains_global(config):
        return {}
    with record.timed("train global models"):
        state = train_global_models(config, meters, record.run_id, as_of_utc, only_with_news, return_state=True)
        fits, error = split_state(state)
    if error is not None:
        record.failures[GLOBAL_MODELS_FAILURE] = error
        return {}
    return fits


@task(cache_policy=NO_CACHE)
def decide_champion(
    config: PowercastConfig, prepared: PreparedSeries, run_id: str, fits: Sequence[ChallengerFit]
) -> TrainingOutcome:
    """Score the trained cells against the baselines and champion, register them and promote a winner."""
    outcome = powercast.training.pipeline.select_and_register(config, prepared.meter_id, run_id, prepared, fits)
    get_run_logger().info("%s: %s", prepared.meter_id, outcome.decision.reason)
    return outcome


@io_task
def forecast_meter(
    config: PowercastConfig, meter_id: str, as_of_utc: datetime | None, run_id: str
) -> ForecastBatch:
    """Return the meter's forecast batch issued at the run's ``as_of_utc`` (champion, or seasonal-naive fallback)."""
    batch = powercast.serving.forecast.make_forecast_batch(config, meter_id, as_of_utc, run_id)
    get_run_logger().info(
        "%s: %d-step forecast issued at %s by %s %s%s",
        meter_id,
        batch.table.num_rows,
        batch.issued_at_utc.isoformat(),
        batch.table["model"][0].as_py(),
        batch.table["model_version"][0].as_py(),
        "".join(f" ({note})" for note in batch.notes),
    )
    return batch


@io_task
def publish_forecasts(
    config: PowercastConfig, batches: Sequence[ForecastBatch], run_id: str, lock_timeout_s: float
) -> list[PublishedBatch]:
    """Publish the batches atomically, one file per issue time; return where they landed."""
    by_issue_time: dict[pd.Timestamp, list[ForecastBatch]] = {}
    for batch in batches:
        by_issue_time.setdefault(batch.issued_at_utc, []).append(batch)
    published = []
    with named_lock(config.root, PUBLISH_LOCK_NAME, timeout_s=lock_timeout_s, holder=run_id):
        for issued_at in sorted(by_issue_time):
            result = powercast.serving.publish.publish_batch(config.root, by_issue_time[issued_at])
            get_run_logger().info("published %d rows for %s to %s", result.rows, ", ".join(result.meters), result.path)
            published.append(result)
    return published


def publish_and_plot(config: PowercastConfig, record: RunRecord, lock_timeout_s: float) -> None:
    """Publish the run's batches and draw them, timing both steps for the report (called from a flow's body)."""
    if not record.batches:
        return
    with record.timed("publish"):
        record.published = publish_forecasts(config, record.batches, record.run_id, lock_timeout_s)
    with record.timed("plots"):
        record.plots = plot_forecasts(config, record.published)


@task(cache_policy=NO_CACHE)
def plot_forecasts(config: PowercastConfig, published: Sequence[PublishedBatch]) -> list[Path]:
    """Draw each published batch against the actual readings to ``<root>/plots/``; return the PNG paths."""
    if is_uri(config.root):
        get_run_logger().info("data root %s is not a local folder: forecast plots are left out", config.root)
        return []
    step = freq_timedelta(config.prepare.freq)
    paths = []
    for batch in published:
        frame = powercast.serving.publish.read_forecasts(config.root, issued_at=batch.issued_at_utc)
        end_utc = frame["target_time"].max() + step
        actuals = {
            meter_id: actual_kw(config, meter_id, batch.issued_at_utc - CONTEXT_STEPS * step, end_utc)
            for meter_id in batch.meters
        }
        out = Path(layout.plots_dir(config.root)) / f"forecast-{compact_utc(batch.issued_at_utc)}.png"
        coverage = float(frame.attrs["powercast"]["powercast.interval_coverage"])
        paths.append(plot_forecast(frame, actuals, out, coverage=coverage))
    return paths


def split_by_outcome(states: dict[str, State[Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Return (key → result of the completed runs, key → error message of the failed ones), keyed by meter or cell."""
    completed = {meter_id: state.result() for meter_id, state in states.items() if state.is_completed()}
    failed = {
        meter_id: state.message or type(state.result(raise_on_failure=False)).__name__
        for meter_id, state in states.items()
        if not state.is_completed()
    }
    return completed, failed


def split_state(state: State[Any]) -> tuple[Any, str | None]:
    """Return (result, None) of a completed run, or (None, its error message) of a failed one."""
    if state.is_completed():
        return state.result(), None
    return None, state.message or type(state.result(raise_on_failure=False)).__name__


def fail_on(failures: dict[str, str], result: Any) -> Any:
    """Return ``result``, or a Failed state naming every failure, meters and the global models apart (the others' work is kept)."""
    if not failures:
        return result
    failed_meters = [key for key in failures if key != GLOBAL_MODELS_FAILURE]
    counts = ([f"{len(failed_meters)} meter(s) failed"] if failed_meters else []) + (
        ["the global models failed"] if GLOBAL_MODELS_FAILURE in failures else []
    )
    detail = "; ".join(f"{key}: {error}" for key, error in failures.items())
    return Failed(message=f"{' and '.join(counts)}: {detail}")
