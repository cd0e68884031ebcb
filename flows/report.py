"""The run report: what a flow run did, written as Prefect artifacts for the operator.

``RunRecord`` collects what the steps returned; the builders turn it into markdown lines and a
leaderboard table; ``report_run`` and ``report_plan`` write the artifacts.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from powercast.core.config import PowercastConfig
from powercast.io.atomic import is_uri, resolve_filesystem
from powercast.prepare.series import SeriesSummary
from powercast.serving.contract import ForecastBatch
from powercast.serving.publish import PublishedBatch
from powercast.store.ingest import IngestReport
from powercast.training.pipeline import SELECTION_SET, TrainingOutcome


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

