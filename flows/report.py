"""The run report: what a flow run did, as Prefect artifacts an operator reads the morning after.

``RunRecord`` collects what the steps returned and how long they took; the builders turn it into
markdown lines and a leaderboard table; ``publish_report`` writes the artifacts. It is called from
the flow's own body, not from a task, so that every artifact belongs to the flow run itself (an
artifact made inside a task hangs off that task run, and the UI's Artifacts tab of the run then
opens on an empty "Flow run" section).

The report reads top-down and scales from one meter to a fleet: a header (who serves each meter
and why, or the fleet's totals; what was published and where), the meters that failed, fell back
or changed champion, the slowest meters, the step timings, the leaderboard, then the details.
Lists stop after ``LIST_CAP`` rows with "and N more". Paths are inline code, to be copied: the
browser refuses ``file://`` links from a web page. Numbers have three significant digits.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from powercast.core.config import PowercastConfig, SplitConfig
from powercast.io.atomic import resolve_filesystem
from powercast.models.baselines import BASELINES
from powercast.prepare.series import SeriesSummary
from powercast.serving.contract import ForecastBatch
from powercast.serving.publish import PublishedBatch
from powercast.store.ingest import IngestReport
from powercast.training.pipeline import SELECTION_SET, TrainingOutcome
from powercast.training.selection import Decision

LIST_CAP = 20  # rows of any per-meter list before "and N more"
SLOWEST_SHOWN = 5
HEADER_METERS = 3  # up to this many meters the header has a line per meter, above it the fleet's totals
SPLITS = ("train", "val", "test")


@dataclass
class RunRecord:
    """What one flow run did, for its report: filled in by the flow as the steps return."""

    run_id: str
    root: str | None = None
    split: SplitConfig | None = None
    ingested: list[IngestReport] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)
    series: dict[str, SeriesSummary] = field(default_factory=dict)
    windows: dict[str, dict[str, int]] = field(default_factory=dict)  # meter -> split -> windows
    meter_seconds: dict[str, float] = field(default_factory=dict)
    meter_steps: dict[str, dict[str, float]] = field(default_factory=dict)  # meter -> step -> seconds
    step_seconds: dict[str, float] = field(default_factory=dict)  # run-level steps, in the order they ran
    outcomes: dict[str, TrainingOutcome] = field(default_factory=dict)
    not_retrained: dict[str, str] = field(default_factory=dict)
    batches: list[ForecastBatch] = field(default_factory=list)
    published: list[PublishedBatch] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    ignored_readings: dict[str, str] = field(default_factory=dict)  # meter -> why some stored readings were ignored
    sample_copied: bool | None = None  # None: the run was not asked to copy the bundled sample
    started_s: float = field(default_factory=time.perf_counter)

    @classmethod
    def for_run(cls, run_id: str, config: PowercastConfig) -> RunRecord:
        """Return an empty record of a run on ``config``'s data root and split."""
        return cls(run_id=run_id, root=config.root, split=config.prepare.split)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Add the wall-clock time of the ``with`` body to the run-level ``step``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.step_seconds[step] = self.step_seconds.get(step, 0.0) + time.perf_counter() - started


# ---- words and numbers ------------------------------------------------------------------------------


def sig3(value: float) -> str:
    """Return ``value`` with three significant digits, never in exponent notation (0.609, 13.2, 1450)."""
    if not np.isfinite(value):
        return "n/a"
    rounded = float(f"{value:.3g}")
    return f"{rounded:.0f}" if abs(rounded) >= 1000 else np.format_float_positional(rounded, trim="-")


def _sig3_number(value: Any) -> Any:
    """Return a float rounded to three significant digits (None when NaN/inf: JSON has neither)."""
    if isinstance(value, float):
        return float(f"{value:.3g}") if np.isfinite(value) else None
    return value


def _capped(lines: list[str], what: str, cap: int = LIST_CAP) -> list[str]:
    """Return the first ``cap`` lines, and a last one saying how many ``what`` were left out."""
    if len(lines) <= cap:
        return lines
    return [*lines[:cap], f"- and {len(lines) - cap} more {what}"]


def _names(items: Sequence[str], cap: int = LIST_CAP) -> str:
    shown = ", ".join(items[:cap])
    return shown + (f" and {len(items) - cap} more" if len(items) > cap else "")


def is_fallback(batch: ForecastBatch) -> bool:
    """Return whether a baseline serves the batch (no champion, or the champion could not forecast)."""
    return batch.model_version in BASELINES


def baseline_words(name: str) -> str:
    """Return what a baseline forecasts, in words (``seasonal_naive_24h``: the readings of 24 h earlier)."""
    seasonal = re.fullmatch(r"seasonal_naive_(\d+)h", name)
    if seasonal:
        return f"the readings of {seasonal.group(1)} h earlier, repeated"
    same_hour = re.fullmatch(r"same_hour_(mean|median)_(\d+)d", name)
    if same_hour:
        return f"the {same_hour.group(1)} of the same hour over the last {same_hour.group(2)} days"
    return "a baseline"


def decision_words(decision: Decision, champion_after: str | None) -> str:
    """Return tonight's selection in plain words, figures in kW with three significant digits."""
    best = f"{decision.best_challenger} ({sig3(decision.best_challenger_val_mae_kw)} kW)"
    baseline = f"the {decision.best_baseline} baseline ({sig3(decision.best_baseline_val_mae_kw)} kW)"
    if decision.promoted:
        against = (
            f" and champion {decision.champion_version} ({sig3(decision.champion_val_mae_kw)} kW)"
            if decision.champion_version and decision.champion_val_mae_kw is not None
            else ""
        )
        words = (
            f"new champion {decision.winner}: {sig3(decision.best_challenger_val_mae_kw)} kW beats {baseline}"
            f"{against} on {decision.n_val_windows} validation windows"
        )
    elif champion_after:
        lost_to = (
            baseline
            if decision.best_challenger_val_mae_kw >= decision.best_baseline_val_mae_kw
            else f"champion {champion_after} ({sig3(decision.champion_val_mae_kw or float('nan'))} kW)"
        )
        words = f"champion {champion_after} stays: tonight's best challenger {best} did not beat {lost_to}"
    else:
        words = f"no champion yet: tonight's best challenger {best} did not beat {baseline}"
    # The selection appends why a damaged champion was left out of the comparison; keep that part.
    _, damaged, detail = decision.reason.partition("(the champion in service is damaged")
    return words + (f" ({damaged[1:]}{detail}" if damaged else "")


def _fallback_reason(batch: ForecastBatch, outcome: TrainingOutcome | None) -> str:
    """Return why a meter is served by the fallback: tonight's selection, else the batch's note."""
    if outcome is not None and outcome.champion_version is None:
        return decision_words(outcome.decision, None)
    for note in batch.notes:
        # make_forecast_batch writes "fallback to <name> (<reason>); interval from ..."
        found = re.match(r"fallback to \S+ \((.*)\); interval", note)
        if found:
            return found.group(1)
    return "; ".join(batch.notes) or "no champion"


def served_words(batch: ForecastBatch, outcome: TrainingOutcome | None) -> str:
    """Return which model serves the batch's meter and why, naming the model once."""
    if is_fallback(batch):
        return (
            f"served by the fallback **{batch.model_version}** ({baseline_words(batch.model_version)}) "
            f"because {_fallback_reason(batch, outcome)}. A baseline never becomes champion; without one, "
            "a fallback baseline serves, the one that did best on the days before the issue time"
        )
    served = f"served by champion **{batch.model_version}**"
    if outcome is None:
        return served
    return f"{served}: {decision_words(outcome.decision, outcome.champion_version)}"


def window_words(counts: dict[str, int], split: SplitConfig | None) -> str:
    """Return the windows per split (``train/val/test 1452/646/0``) and why an empty test split is empty."""
    words = f"windows train/val/test {'/'.join(str(counts.get(name, 0)) for name in SPLITS)}"
    if counts.get("test", 0) or split is None:
        return words
    if split.mode == "trailing" and split.test_days == 0:
        return f"{words} (test 0: the trailing split keeps no test days; set prepare.split.test_days)"
    if split.mode == "trailing":
        return f"{words} (test 0: no complete window in the last {split.test_days} days)"
    return f"{words} (test 0: no complete window on or after prepare.split.val_end {split.val_end})"


# The key under which a failed global fit sits among a run's failures (keyed by meter otherwise).
GLOBAL_MODELS_FAILURE = "global models"


# ---- the report's sections --------------------------------------------------------------------------


def _header_lines(record: RunRecord) -> list[str]:
    """Return the top of the report: who serves each meter and why (or the fleet's totals), what was published."""
    batches = {batch.meter_id: batch for batch in record.batches}
    meters = record.meters or sorted({*batches, *record.outcomes, *record.failures} - {GLOBAL_MODELS_FAILURE})
    lines = []
    if len(meters) <= HEADER_METERS:
        for meter_id in meters:
            outcome = record.outcomes.get(meter_id)
            if meter_id in batches:
                words = served_words(batches[meter_id], outcome)
            elif outcome is not None:
                words = decision_words(outcome.decision, outcome.champion_version)
            else:
                words = "no forecast"
            failed = record.failures.get(meter_id)
            lines.append(f"- **{meter_id}**: {words}" + (f"; FAILED: {_one_line(failed)}" if failed else "") + ".")
    else:
        lines.append(_fleet_totals(record, meters, batches))
    lines += [
        f"- published: {batch.rows} rows issued at {batch.issued_at_utc:%Y-%m-%d %H:%M} UTC in `{batch.path}`"
        for batch in record.published
    ]
    if not record.published and (record.batches or record.failures):
        lines.append("- nothing published")
    if record.sample_copied is not None:
        lines.append(
            "- the bundled sample was copied into the empty landing folder"
            if record.sample_copied
            else "- the landing folder held files: the bundled sample was not copied"
        )
    return lines + ([f"- data root: `{record.root}`"] if record.root else [])


def _fleet_totals(record: RunRecord, meters: Sequence[str], batches: dict[str, ForecastBatch]) -> str:
    fallback = sum(is_fallback(batch) for batch in batches.values())
    promoted = sum(outcome.decision.promoted for outcome in record.outcomes.values())
    return (
        f"- **{len(meters)} meters**: {len(batches)} served ({len(batches) - fallback} by their champion, "
        f"{fallback} by a baseline fallback), {len(set(meters) - set(batches))} failed; "
        f"{promoted} new champion(s) tonight"
    )


def _one_line(text: str) -> str:
    """Return ``text`` on one line: a multi-line error would break out of its markdown list item."""
    return " ".join(str(text).split())


def _attention_lines(record: RunRecord) -> list[str]:
    """Return the meters to look at, as nested list items: failed, then fell back, then changed champion.

    A list rather than a table: the UI does not wrap table cells, and these lines are long.
    """
    batches = {batch.meter_id: batch for batch in record.batches}
    lines = [f"  - **{meter_id}**: FAILED: {_one_line(error)}" for meter_id, error in sorted(record.failures.items())]
    lines += [
        f"  - **{meter_id}**: fallback {batch.model_version}: {_fallback_reason(batch, record.outcomes.get(meter_id))}"
        for meter_id, batch in sorted(batches.items())
        if is_fallback(batch)
    ]
    lines += [
        f"  - **{meter_id}**: {decision_words(outcome.decision, outcome.champion_version)}"
        for meter_id, outcome in sorted(record.outcomes.items())
        if outcome.decision.promoted
    ]
    return lines


def _longest_step(steps: dict[str, float]) -> str:
    if not steps:
        return ""
    step, seconds = max(steps.items(), key=lambda item: item[1])
    return f" ({step} {sig3(seconds)} s)"


def _fleet_lines(record: RunRecord) -> list[str]:
    """Return the fleet at a glance: totals, the meters to look at (capped), the slowest meters."""
    by_model = Counter(batch.model for batch in record.batches)
    served_by = ", ".join(f"{model} {count}" for model, count in sorted(by_model.items())) or "none"
    served = {batch.meter_id for batch in record.batches}
    not_served = sorted(set(record.meters) - served)
    retrain_failed = sorted(meter_id for meter_id in record.failures if meter_id in served)
    lines = [
        f"- meters served: {len(served)} of {len(record.meters)}; failed: {len(not_served)}"
        + (f" ({_names(not_served)})" if not_served else ""),
        f"- served by: {served_by}",
    ]
    if retrain_failed:
        lines.append(f"- forecast by the model in service after a failed training: {_names(retrain_failed)}")
    attention = _attention_lines(record)
    if attention:
        lines.append("- meters to look at (failed, fell back, new champion):")
        lines += attention[:LIST_CAP]
        lines += [f"  - and {len(attention) - LIST_CAP} more"] if len(attention) > LIST_CAP else []
    slowest = sorted(record.meter_seconds.items(), key=lambda item: item[1], reverse=True)[:SLOWEST_SHOWN]
    if slowest:
        lines.append(
            "- slowest meters: "
            + ", ".join(
                f"{meter_id} {sig3(seconds)} s{_longest_step(record.meter_steps.get(meter_id, {}))}"
                for meter_id, seconds in slowest
            )
        )
    return lines


def _step_lines(record: RunRecord, artifacts_s: float | None = None) -> list[str]:
    """Return the step-timing table: run-level steps, the per-meter steps summed over meters, the whole run."""
    per_meter: dict[str, float] = {}
    for steps in record.meter_steps.values():
        for step, seconds in steps.items():
            per_meter[step] = per_meter.get(step, 0.0) + seconds
    summed = f"{len(record.meter_steps)} meter(s); the · rows sum their steps" if per_meter else ""
    notes = {"ingest": f"{len([r for r in record.ingested if not r.skipped])} new file(s)", "meters": summed}
    lines = ["| step | time | |", "|---|---|---|"]
    for step, seconds in record.step_seconds.items():
        lines.append(f"| {step} | {sig3(seconds)} s | {notes.get(step, '')} |".replace("|  |", "| |"))
        if step == "meters":
            lines += [f"| · {name} | {sig3(seconds)} s | |" for name, seconds in per_meter.items()]
    if per_meter and "meters" not in record.step_seconds:  # the train flow: per-meter steps without a fleet step
        lines += [
            f"| {name} | {sig3(seconds)} s | summed over {len(record.meter_steps)} meter(s) |"
            for name, seconds in per_meter.items()
        ]
    if artifacts_s is not None:
        lines.append(f"| artifacts | {sig3(artifacts_s)} s | leaderboard and images |")
    lines.append(f"| whole run | {sig3(time.perf_counter() - record.started_s)} s | up to this report |")
    return lines


def _data_lines(record: RunRecord, ingest: bool = True) -> list[str]:
    """Return what was ingested (when the run ingests) and, per meter, the series it trained on."""
    ingested = [report for report in record.ingested if not report.skipped]
    lines = [
        f"- files ingested: {len(ingested)}; rows stored: {sum(r.rows_stored for r in ingested)} "
        f"(all values missing: {sum(r.rows_missing for r in ingested)}); "
        f"rows quarantined: {sum(r.rows_quarantined for r in ingested)}; "
        f"rows replaced: {sum(r.rows_replaced for r in ingested)}"
    ] if ingest else []
    meters = []
    for meter_id, series in record.series.items():
        excluded = ", ".join(f"{split} {count}" for split, count in series.windows_excluded.items())
        windows = f"{window_words(record.windows[meter_id], record.split)}; " if meter_id in record.windows else ""
        meters.append(
            f"- {meter_id}: {series.steps} steps of {series.first_utc:%Y-%m-%d} .. "
            f"{series.last_utc:%Y-%m-%d}, {series.missing_steps} still missing after "
            f"interpolation (long gaps); {windows}windows left out: {excluded or 'none'}"
        )
    meters += [f"- {meter_id}: {why}" for meter_id, why in sorted(record.ignored_readings.items())]
    return lines + _capped(meters, "meters")


def _decision_lines(record: RunRecord) -> list[str]:
    lines = [f"- **{meter_id}**: FAILED: {_one_line(error)}" for meter_id, error in record.failures.items()]
    for meter_id, outcome in record.outcomes.items():
        trained = ", ".join(
            f"{cell} on {outcome.devices.get(cell, '?')} in {sig3(seconds)} s"
            for cell, seconds in outcome.elapsed_s.items()
        )
        lines.append(
            f"- **{meter_id}**: {decision_words(outcome.decision, outcome.champion_version)}. "
            f"Trained {trained}; loss curves and leaderboard.json in `{outcome.run_dir}`"
        )
    lines += [f"- **{meter_id}**: not retrained: {why}" for meter_id, why in record.not_retrained.items()]
    return _capped(lines, "meters (every meter is in the leaderboard artifact)")


def _forecast_lines(record: RunRecord) -> list[str]:
    lines = [
        f"- {batch.meter_id}: " + ("; ".join(batch.notes) if is_fallback(batch) else (
            f"champion `{batch.model_version}`" + "".join(f"; {note}" for note in batch.notes)
        ))
        for batch in record.batches
    ]
    lines = _capped(lines, "meters")
    lines += [
        f"- issued at {batch.issued_at_utc.isoformat()}: {batch.rows} rows for {_names(batch.meters)} in "
        f"`{batch.path}` (manifest `{batch.manifest_path}`)"
        for batch in record.published
    ] or ["- nothing published"]
    return lines + [f"- plot: `{path}`" for path in record.plots]


# ---- leaderboard ------------------------------------------------------------------------------------


def _serves(row: dict[str, Any], batch: ForecastBatch | None) -> bool:
    if batch is None:
        return False
    if row["kind"] == "baseline":
        return row["model"] == batch.model_version
    return row["version"] is not None and row["version"] == batch.model_version


def _verdict(rank: int, row: dict[str, Any], batch: ForecastBatch | None, outcome: TrainingOutcome) -> str:
    """Return the row's marks: the winner (lowest validation MAE), promoted, stays, serves tomorrow's forecast."""
    marks = ["★ winner"] if rank == 1 else []
    if row["kind"] == "challenger" and row["promoted"]:
        marks.append("promoted")
    if row["kind"] == "champion" and not outcome.decision.promoted:
        marks.append("stays")
    if _serves(row, batch):
        marks.append("serves (fallback)" if row["kind"] == "baseline" else "serves")
    elif rank == 1 and row["kind"] == "baseline":
        marks.append("(a baseline)")  # a yardstick: it never becomes champion
    return ", ".join(marks).replace(", (", " (")


def leaderboard_rows(record: RunRecord) -> list[dict[str, Any]]:
    """Return the validation leaderboard: per meter, sorted by validation MAE, the winner first and marked."""
    batches = {batch.meter_id: batch for batch in record.batches}
    rows = []
    for meter_id, outcome in record.outcomes.items():
        scored = sorted(
            (row for row in outcome.leaderboard if row["window_set"] == SELECTION_SET),
            key=lambda row: (not np.isfinite(row["mae_kw"]), row["mae_kw"]),
        )
        for rank, row in enumerate(scored, start=1):
            model = f"champion {row['version']}" if row["kind"] == "champion" else row["model"]
            rows.append(
                {
                    "meter": meter_id,
                    "rank": rank,
                    "model": model,
                    "verdict": _verdict(rank, row, batches.get(meter_id), outcome),
                    "val MAE kW": _sig3_number(row["mae_kw"]),
                    "MASE": _sig3_number(row["mase"]),
                    "train s": _sig3_number(row["train_time_s"]),
                }
            )
    return rows


def _leaderboard_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Return the leaderboard as a markdown table (the meter column left out when there is one meter)."""
    columns = [name for name in rows[0] if name != "meter" or len({row["meter"] for row in rows}) > 1]
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(row[name]) for name in columns) + " |" for row in rows),
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return sig3(value) if isinstance(value, float) else str(value)


# ---- artifacts ----------------------------------------------------------------------------------------


def _artifact_key(text: str) -> str:
    """Return an artifact key (lowercase letters, digits and dashes) made from ``text``."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _image_markdown(title: str, image: Path) -> str:
    """Return a markdown artifact showing a PNG inline (a data URL), its title and its path.

    An image artifact prints its whole URL under the picture, which for a data URL is one
    unbroken line wider than the page; a markdown image is scaled to the artifact's width.
    """
    encoded = base64.b64encode(image.read_bytes()).decode("ascii")
    return f"### {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n`{image}`\n"


def _images(record: RunRecord, flow_name: str) -> dict[str, tuple[str, Path]]:
    """Return artifact key → (title, PNG): the forecast plots, then the loss curves of up to LIST_CAP meters."""
    images = {
        f"{flow_name}-forecast-plot-{index}": (f"Forecasts issued {batch.issued_at_utc:%Y-%m-%d %H:%M} UTC", path)
        for index, (batch, path) in enumerate(zip(record.published, record.plots))
    }
    # The meters to look at first (promoted tonight), so that a capped fleet shows the changes.
    meters = sorted(record.outcomes, key=lambda meter_id: not record.outcomes[meter_id].decision.promoted)
    for meter_id in meters[:LIST_CAP]:
        images[f"{flow_name}-curves-{meter_id}"] = (
            f"Loss curves of {meter_id}",
            Path(record.outcomes[meter_id].run_dir) / "curves.png",
        )
    return {key: image for key, image in images.items() if image[1].is_file()}


def report_markdown(record: RunRecord, flow_name: str, artifacts_s: float | None = None) -> str:
    """Return the run's report in markdown."""
    lines = [f"# {flow_name} run `{record.run_id}`", "", *_header_lines(record), ""]
    lines += ["## Fleet", "", *_fleet_lines(record), ""] if len(record.meters) > 1 else []
    lines += ["## Steps", "", *_step_lines(record, artifacts_s), ""]
    rows = leaderboard_rows(record)
    if rows and len(record.outcomes) <= HEADER_METERS:
        lines += ["## Leaderboard (validation)", "", *_leaderboard_lines(rows), ""]
    if record.series or record.failures or record.not_retrained or record.outcomes:
        lines += ["## Decisions", "", *_decision_lines(record), ""]
    # The train and forecast flows ingest nothing, the ingest and train flows publish nothing.
    data = _data_lines(record, ingest="ingest" in record.step_seconds or bool(record.ingested))
    lines += ["## Data", "", *data, ""] if data else []
    lines += ["## Forecasts", "", *_forecast_lines(record), ""] if record.batches or record.published else []
    return "\n".join(lines).rstrip("\n")


def publish_report(record: RunRecord) -> str:
    """Write the run's artifacts (leaderboard table, images, the report last) and return the report.

    Call it from the flow function's body: artifacts then belong to the flow run.
    """
    flow_name = flow_run.flow_name
    started = time.perf_counter()
    rows = leaderboard_rows(record)
    if rows:
        create_table_artifact(
            key=_artifact_key(f"leaderboard-{flow_name}"),
            table=rows,
            description=f"Validation scores per meter, best first; the winner is marked. Run {record.run_id}",
        )
    for key, (title, image) in _images(record, flow_name).items():
        create_markdown_artifact(
            key=_artifact_key(key), markdown=_image_markdown(title, image), description=f"{title}, run {record.run_id}"
        )
    # Made last, so that its step table holds the other artifacts' time.
    markdown = report_markdown(record, flow_name, artifacts_s=time.perf_counter() - started)
    create_markdown_artifact(
        key=_artifact_key(f"report-{flow_name}"),
        markdown=markdown,
        description=f"What run {record.run_id} served, decided and published, and how long each step took",
    )
    return markdown


def report_plan(
    config: PowercastConfig, landing_dir: str | None, meters: Sequence[str], settings: dict[str, Any]
) -> str:
    """Write (as a markdown artifact of the flow run) and return what a run would do, without doing any of it."""
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

