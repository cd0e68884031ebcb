"""Prefect tasks: one verb each, each a thin call into the ``powercast`` library.

Tasks that touch the file system or an object store retry with exponential backoff, and only
on I/O errors: a bad file or a bad setting fails at once with the library's message. Results
stay in memory (no result persistence, no caching): every run recomputes from the data root.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from prefect import Task, get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
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
from powercast.core.config import PowercastConfig
from powercast.core.errors import TrainingError, transient_io_cause
from powercast.io import layout
from powercast.io.atomic import is_uri, resolve_filesystem
from powercast.io.locking import PUBLISH_LOCK_NAME, named_lock
from powercast.io.runs import new_run_id
from powercast.prepare.resample import freq_timedelta
from powercast.prepare.series import PreparedSeries, SeriesSummary
from powercast.reporting.forecast_plot import CONTEXT_STEPS, actual_kw, plot_forecast
from powercast.serving.contract import ForecastBatch, compact_utc
from powercast.serving.publish import PublishedBatch
from powercast.store.ingest import IngestReport
from powercast.training.fit import FitResult
from powercast.training.pipeline import SELECTION_SET, ChallengerFit, TrainingOutcome

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
    default issue time stop before them, so the meter is still trained and forecast.
    """
    future_from = powercast.store.readings.future_cutoff_utc(config.ingest.future_tolerance_h)
    ignored = {}
    for meter_id in meters:
        count, latest_utc = powercast.store.readings.readings_from(config.root, meter_id, future_from)
        if count:
            ignored[meter_id] = (
                f"{count} stored reading(s) stamped at or after {future_from:%Y-%m-%dT%H:%MZ} (now + "
                f"ingest.future_tolerance_h={config.ingest.future_tolerance_h:g} h), the latest "
                f"{latest_utc:%Y-%m-%dT%H:%MZ}, ignored: a clock that ran ahead"
            )
            get_run_logger().warning("%s: %s", meter_id, ignored[meter_id])
    return ignored


@io_task
def has_new_readings(config: PowercastConfig, meter_id: str) -> bool:
    """Return True when the store holds readings newer than every recorded training of the meter saw."""
    freshness = powercast.training.freshness.training_freshness(config, meter_id)
    get_run_logger().info("%s: %s", meter_id, freshness.reason)
    return freshness.retrain


@io_task
def prepare_training_series(config: PowercastConfig, meter_id: str, as_of_utc: datetime | None) -> PreparedSeries:
    """Return the meter's prepared series (readings before the run's ``as_of_utc``; all when None)."""
    prepared = powercast.prepare.series.prepare_meter(config, meter_id, end_utc=as_of_utc)
    get_run_logger().info(
        "%s: %d steps, windows train/val/test %s",
        meter_id,
        len(prepared.index_utc),
        "/".join(str(len(prepared.window_starts[split])) for split in ("train", "val", "test")),
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
    config: PowercastConfig, prepared: PreparedSeries, run_id: str, global_models: dict[str, FitResult]
) -> tuple[list[ChallengerFit], dict[str, str]]:
    """Return the challengers (local cells trained here, tonight's global models) and (cell → error) of failures.

    Local cells (when ``train.scope`` includes them) are one ``train_candidate`` task each, all
    submitted before any is awaited, so the flow's task runner decides whether they run one after
    the other or side by side. A failed cell is left out and the others still compete; when no
    challenger is left the meter fails with their errors.
    """
    cells = config.train.cells if powercast.training.fleet.trains_local(config) else []
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
    config: PowercastConfig, meters: Sequence[str], run_id: str, as_of_utc: datetime | None
) -> dict[str, FitResult]:
    """Train one network per cell on every meter's windows (``train.scope`` global or both); return cell → fit."""
    logger = get_run_logger()
    usable, left_out = powercast.training.fleet.prepare_fleet(config, meters, as_of_utc)
    for meter_id, why in left_out.items():
        logger.warning("%s left out of the global models: %s", meter_id, why)
    if not usable:
        raise TrainingError(f"none of the {len(meters)} meter(s) has validation windows to train a global model on")
    fits = powercast.training.fleet.fit_global_models(config, usable, run_id, progress=False)
    for cell, fit in fits.items():
        logger.info(
            "global %s trained on %d meters in %.1f s on %s (%d epochs of %d batches, stopped by %s)",
            cell, len(usable), fit.elapsed_s, fit.device, fit.epochs_run, config.train.global_steps_per_epoch,
            fit.stopped_by,
        )
    return fits


def fit_global_models_or_none(
    config: PowercastConfig, meters: Sequence[str], record: RunRecord, as_of_utc: datetime | None
) -> dict[str, FitResult]:
    """Return tonight's global models (cell → fit), or none when the scope is local or their training failed.

    A failed global fit is recorded among the run's failures and the night goes on: local cells
    (with ``train.scope = both``) still compete, and every meter is still forecast by its champion
    or the fallback.
    """
    if not powercast.training.fleet.trains_global(config):
        return {}
    fits, error = split_state(train_global_models(config, meters, record.run_id, as_of_utc, return_state=True))
    if error is not None:
        record.failures["global models"] = error
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


def _artifact_key(text: str) -> str:
    """Return an artifact key (lowercase letters, digits and dashes) made from ``text``."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _file_link(path: str) -> str:
    """Return a markdown link to a file under the data root (a ``file://`` URL for local paths)."""
    url = path if is_uri(path) else Path(path).absolute().as_uri()
    return f"[{Path(path).name}]({url})"


@dataclass
class RunRecord:
    """What one flow run did, for its report: filled in by the flow as the steps return."""

    run_id: str
    ingested: list[IngestReport] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)
    series: dict[str, SeriesSummary] = field(default_factory=dict)
    meter_seconds: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, TrainingOutcome] = field(default_factory=dict)
    not_retrained: dict[str, str] = field(default_factory=dict)
    batches: list[ForecastBatch] = field(default_factory=list)
    published: list[PublishedBatch] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    ignored_readings: dict[str, str] = field(default_factory=dict)  # meter -> why some stored readings were ignored


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


def _finite_or_none(value: Any) -> Any:
    """Return ``value`` rounded when it is a finite float, None when it is NaN/inf (JSON has neither)."""
    if isinstance(value, float):
        return round(value, 4) if np.isfinite(value) else None
    return value


def _data_lines(record: RunRecord) -> list[str]:
    ingested = [report for report in record.ingested if not report.skipped]
    lines = [
        f"- files ingested: {len(ingested)}; rows stored: {sum(r.rows_stored for r in ingested)} "
        f"(all values missing: {sum(r.rows_missing for r in ingested)}); "
        f"rows quarantined: {sum(r.rows_quarantined for r in ingested)}; "
        f"rows replaced: {sum(r.rows_replaced for r in ingested)}"
    ]
    for meter_id, series in record.series.items():
        excluded = ", ".join(f"{split} {count}" for split, count in series.windows_excluded.items())
        lines.append(
            f"- {meter_id}: {series.steps} steps of {series.first_utc:%Y-%m-%d} .. "
            f"{series.last_utc:%Y-%m-%d}, {series.missing_steps} still missing after "
            f"interpolation (long gaps); windows left out: {excluded or 'none'}"
        )
    return lines


def _decision_lines(record: RunRecord) -> list[str]:
    lines = []
    for meter_id, outcome in record.outcomes.items():
        devices = ", ".join(f"{cell} on {device}" for cell, device in outcome.devices.items())
        champion = f"champion `{outcome.champion_version}`" if outcome.champion_version else "no champion yet"
        curves, leaderboard = (
            _file_link(f"{outcome.run_dir}/curves.png"),
            _file_link(f"{outcome.run_dir}/leaderboard.json"),
        )
        lines.append(
            f"- **{meter_id}**: {champion}. {outcome.decision.reason} "
            f"(trained {devices}; loss curves {curves}, leaderboard {leaderboard})"
        )
    lines += [f"- **{meter_id}**: not retrained: {why}" for meter_id, why in record.not_retrained.items()]
    lines += [f"- **{meter_id}**: FAILED: {error}" for meter_id, error in record.failures.items()]
    return lines


SLOWEST_SHOWN = 5


def _fleet_lines(record: RunRecord) -> list[str]:
    """Return the fleet at a glance: meters served and failed, which model served them, the slowest."""
    by_model = Counter(batch.model for batch in record.batches)
    served_by = ", ".join(f"{model} {count}" for model, count in sorted(by_model.items())) or "none"
    slowest = sorted(record.meter_seconds.items(), key=lambda item: item[1], reverse=True)[:SLOWEST_SHOWN]
    served = {batch.meter_id for batch in record.batches}
    not_served = sorted(set(record.meters) - served)
    retrain_failed = sorted(meter_id for meter_id in record.failures if meter_id in served)
    lines = [
        f"- meters served: {len(served)} of {len(record.meters)}; failed: {len(not_served)}"
        + (f" ({', '.join(not_served)})" if not_served else ""),
        f"- served by: {served_by}",
    ]
    if retrain_failed:
        lines.append(f"- forecast by the model in service after a failed training: {', '.join(retrain_failed)}")
    lines += [f"- {meter_id}: {why}" for meter_id, why in sorted(record.ignored_readings.items())]
    if slowest:
        lines.append("- slowest meters: " + ", ".join(f"{meter_id} {seconds:.1f} s" for meter_id, seconds in slowest))
    return lines


def _forecast_lines(record: RunRecord) -> list[str]:
    lines = [
        f"- {batch.meter_id}: {batch.table['model'][0].as_py()} `{batch.table['model_version'][0].as_py()}`"
        + "".join(f"; {note}" for note in batch.notes)
        for batch in record.batches
    ]
    lines += [
        f"- issued at {batch.issued_at_utc.isoformat()}: {batch.rows} rows for {', '.join(batch.meters)} in "
        f"{_file_link(batch.path)} (manifest {_file_link(batch.manifest_path)})"
        for batch in record.published
    ] or ["- nothing published"]
    return lines + [f"- plot: {_file_link(str(path))}" for path in record.plots]


@task(cache_policy=NO_CACHE)
def report_run(record: RunRecord) -> None:
    """Write the run's artifacts: the leaderboard table, the decision + data summary, the plots."""
    flow_name = flow_run.flow_name
    columns = (
        "meter_id",
        "model",
        "kind",
        "version",
        "mae_kw",
        "rmse_kw",
        "mase",
        "device",
        "epochs",
        "train_time_s",
        "promoted",
    )
    rows = [
        {key: _finite_or_none(row[key]) for key in columns}
        for outcome in record.outcomes.values()
        for row in outcome.leaderboard
        if row["window_set"] == SELECTION_SET
    ]
    if rows:
        create_table_artifact(
            key=_artifact_key(f"leaderboard-{flow_name}"),
            table=rows,
            description=f"Validation scores (kW) of challengers, baselines and champion; run {record.run_id}",
        )
    lines = [f"# powercast {flow_name} run `{record.run_id}`", ""]
    lines += ["## Fleet", "", *_fleet_lines(record), ""] if record.meters else []
    lines += ["## Decisions", "", *_decision_lines(record), ""] if record.series or record.failures or record.not_retrained else []
    lines += ["## Data", "", *_data_lines(record), "", "## Forecasts", "", *_forecast_lines(record)]
    create_markdown_artifact(
        key=_artifact_key(f"report-{flow_name}"),
        markdown="\n".join(lines),
        description=f"Decisions, data summary and forecast links of run {record.run_id}",
    )
    images = {f"{flow_name}-forecast-plot-{index}": path for index, path in enumerate(record.plots)}
    images.update(
        {f"{flow_name}-curves-{meter_id}": Path(o.run_dir) / "curves.png" for meter_id, o in record.outcomes.items()}
    )
    for key, image in images.items():
        if image.is_file():
            encoded = base64.b64encode(image.read_bytes()).decode("ascii")
            create_image_artifact(
                image_url=f"data:image/png;base64,{encoded}",
                key=_artifact_key(key),
                description=f"{image.name} of run {record.run_id}",
            )


@task(cache_policy=NO_CACHE)
def report_plan(
    config: PowercastConfig, landing_dir: str | None, meters: Sequence[str], settings: dict[str, Any]
) -> str:
    """Write (as a markdown artifact) and return what a run would do, without doing any of it."""
    lines = ["# powercast dry run: nothing was written", ""]
    if landing_dir is not None:
        filesystem, base = resolve_filesystem(landing_dir)
        found = filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = sorted(info.base_name for info in found if info.is_file and not info.base_name.startswith("."))
        lines.append(f"- landing folder `{landing_dir}`: {len(names)} file(s); those already ingested would be skipped")
        lines += [f"  - {name}" for name in names[:50]]
    lines.append(f"- meters: {', '.join(meters) or 'none in the store'}")
    lines.append(f"- data root: `{config.root}`")
    lines += [f"- {key} = `{value}`" for key, value in settings.items() if value is not None]
    markdown = "\n".join(lines)
    create_markdown_artifact(key=_artifact_key(f"plan-{flow_run.flow_name}"), markdown=markdown, description="Dry run")
    get_run_logger().info("%s", markdown)
    return markdown


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
    """Return ``result``, or a Failed state naming every failed meter (the others' work is kept)."""
    if not failures:
        return result
    detail = "; ".join(f"{meter_id}: {error}" for meter_id, error in failures.items())
    return Failed(message=f"{len(failures)} meter(s) failed: {detail}")
