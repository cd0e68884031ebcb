"""Flow: retrain the challengers of some meters now and promote a winner that beats baseline and champion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import flow

from flows.params import TrainParams
from flows.tasks import (
    RunRecord,
    current_run_id,
    fail_on,
    find_meters,
    prepare_meter,
    report_run,
    split_by_outcome,
    train_challengers,
)
from powercast.config import PowercastConfig
from powercast.locking import meter_lock
from powercast.pipeline import TrainingOutcome
from powercast.prepare import PreparedSeries


@dataclass(frozen=True, eq=False)
class MeterTraining:
    """One meter's training: the series it learned from and what was decided."""

    prepared: PreparedSeries
    outcome: TrainingOutcome


@flow(name="train-meter", flow_run_name="train {meter_id}")
def train_meter(
    config: PowercastConfig, meter_id: str, run_id: str, end_utc: datetime | None, lock_timeout_s: float
) -> MeterTraining:
    """Prepare one meter and train, score and select its challengers, holding the meter's lock."""
    with meter_lock(config.root, meter_id, timeout_s=lock_timeout_s, holder=run_id):
        prepared = prepare_meter(config, meter_id, end_utc)
        outcome = train_challengers(config, prepared, run_id)
    return MeterTraining(prepared=prepared, outcome=outcome)


@flow(name="train")
def train(params: TrainParams = TrainParams()) -> dict[str, TrainingOutcome]:
    """Retrain the requested meters (all by default); a failing meter does not stop the others."""
    config = params.load_config()
    record = RunRecord(run_id=current_run_id())
    meters = find_meters(config, params.meters)
    states = {
        meter_id: train_meter(
            config, meter_id, record.run_id, params.as_of_utc(config), params.lock_timeout_s, return_state=True
        )
        for meter_id in meters
    }
    trained, record.failures = split_by_outcome(states)
    record.prepared = {meter_id: result.prepared for meter_id, result in trained.items()}
    record.outcomes = {meter_id: result.outcome for meter_id, result in trained.items()}
    report_run(record)
    return fail_on(record.failures, record.outcomes)
