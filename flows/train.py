"""Flow: retrain the challengers of some meters now and promote a winner that beats baseline and champion.

Each meter's ``train-meter`` sub-flow trains every cell as its own ``train_candidate`` task, then
one ``decide_champion`` task scores, selects and registers. The cells are submitted together but
the sub-flow's task runner runs one at a time: threads in one process share torch's global
random state and the same CPU cores, so side-by-side training would break the seeded,
reproducible fits (a process- or cluster-based task runner could run them in parallel). A cell
that fails is left out of the selection, the other cells still compete, and the meter is
reported as failed (the run ends Failed with the cell's error) while what succeeded is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import TrainParams
from flows.report import RunRecord, publish_report
from flows.tasks import (
    current_run_id,
    decide_champion,
    fail_on,
    find_meters,
    fit_global_models_or_none,
    prepare_training_series,
    split_by_outcome,
    train_candidates,
)
from powercast.core.config import PowercastConfig
from powercast.io.locking import meter_lock
from powercast.prepare.series import SeriesSummary
from powercast.training.fleet import GlobalFit
from powercast.training.pipeline import TrainingOutcome


@dataclass(frozen=True, eq=False)
class MeterTraining:
    """One meter's training: the series it learned from (in numbers), what was decided, the cells that failed,
    the windows per split, and the seconds of each step (prepare, train <cell>, selection)."""

    series: SeriesSummary
    outcome: TrainingOutcome
    failed_cells: dict[str, str]
    windows: dict[str, int] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)


# validate_parameters=False: an internal subflow that may run on a Dask worker (see flows/fleet.py).
# The run name carries the parent run's id: the runs list mixes every night's meters.
@flow(
    name="train-meter",
    flow_run_name="train {meter_id} · {run_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=1),
    validate_parameters=False,
)
def retrain_meter(
    config: PowercastConfig,
    meter_id: str,
    run_id: str,
    as_of_utc: datetime | None,
    lock_timeout_s: float,
    global_models: dict[str, GlobalFit] | None = None,
) -> MeterTraining:
    """Prepare one meter, train each local cell as its own task, then select among them, tonight's global
    models, the baselines and the champion, and register, holding the meter's lock."""
    with meter_lock(config.root, meter_id, timeout_s=lock_timeout_s, holder=run_id):
        started = time.perf_counter()
        prepared = prepare_training_series(config, meter_id, as_of_utc)
        prepare_s = time.perf_counter() - started
        fits, failed_cells = train_candidates(config, prepared, run_id, global_models or {})
        started = time.perf_counter()
        outcome = decide_champion(config, prepared, run_id, fits)
        selection_s = time.perf_counter() - started
    # Global models trained once for the fleet: their time is the run's "train global models" step.
    cells_s = {f"train {fit.name}": fit.elapsed_s for fit in fits if fit.scope == "local"}
    return MeterTraining(
        series=prepared.summary(),
        outcome=outcome,
        failed_cells=failed_cells,
        windows={split: len(starts) for split, starts in prepared.window_starts.items()},
        step_seconds={"prepare": prepare_s, **cells_s, "selection": selection_s},
    )


def record_trainings(record: RunRecord, trainings: dict[str, MeterTraining]) -> None:
    """Put each meter's series and outcome in ``record``, and its failed cells among the failures."""
    record.series |= {meter_id: training.series for meter_id, training in trainings.items()}
    record.windows |= {meter_id: training.windows for meter_id, training in trainings.items()}
    record.meter_steps |= {meter_id: training.step_seconds for meter_id, training in trainings.items()}
    record.outcomes |= {meter_id: training.outcome for meter_id, training in trainings.items()}
    record.failures |= {
        meter_id: "cells left out of the selection: "
        + "; ".join(f"{cell}: {error}" for cell, error in training.failed_cells.items())
        for meter_id, training in trainings.items()
        if training.failed_cells
    }


@flow(name="train")
def train(params: TrainParams = TrainParams()) -> dict[str, TrainingOutcome]:
    """Retrain the requested meters (all by default); a failing meter does not stop the others."""
    config = params.load_config()
    record = RunRecord.for_run(current_run_id(), config)
    meters = find_meters(config, params.meters)
    record.meters = list(meters)
    as_of_utc = params.as_of_utc(config)
    global_models = fit_global_models_or_none(config, meters, record, as_of_utc)
    states = {
        meter_id: retrain_meter(
            config, meter_id, record.run_id, as_of_utc, params.lock_timeout_s, global_models, return_state=True
        )
        for meter_id in meters
    }
    trained, failed = split_by_outcome(states)
    record.failures |= failed  # after a failed global fit, recorded by fit_global_models_or_none
    record_trainings(record, trained)
    publish_report(record)
    return fail_on(record.failures, record.outcomes)
