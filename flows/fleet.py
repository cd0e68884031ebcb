"""Subflow: one night's per-meter work for the whole fleet, fanned out on the configured task runner.

Each meter is one ``serve-meter`` task (retrain when there is news, then forecast, under the
meter's lock). ``fleet.task_runner = "sequential"`` runs them one after another in this process;
``"dask"`` submits them to a Dask cluster through ``prefect-dask``: a local cluster of
``fleet.dask_workers`` processes with one thread each (Lightning training is not thread-safe), or
the existing scheduler at ``fleet.dask_address``. A meter that fails is reported and the others
carry on. docs/fleet.md explains how the work splits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.forecast import forecast_one_meter
from flows.tasks import has_new_readings, split_by_outcome, split_state
from flows.train import MeterTraining, retrain_meter
from powercast.core.config import PowercastConfig
from powercast.io.locking import meter_lock
from powercast.serving.contract import ForecastBatch
from powercast.training.fleet import GlobalFit


@dataclass(frozen=True, eq=False)
class MeterNight:
    """One meter's night: its training (None when skipped or failed, and why), its batch, how long it took."""

    training: MeterTraining | None
    skipped_training: str | None
    batch: ForecastBatch
    elapsed_s: float
    training_error: str | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)  # the training's steps, then "forecast"


def fleet_task_runner(config: PowercastConfig) -> TaskRunner:
    """Return the task runner ``config.fleet`` asks for (prefect-dask is imported only when it is Dask)."""
    fleet = config.fleet
    if fleet.task_runner == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if fleet.dask_address:
        return DaskTaskRunner(address=fleet.dask_address)
    # Processes, one thread each: Dask also sets OMP_NUM_THREADS=1 in its workers, so torch trains
    # on one thread per worker and workers never oversubscribe the cores.
    return DaskTaskRunner(cluster_kwargs={"n_workers": fleet.dask_workers, "processes": True, "threads_per_worker": 1})


# Internal subflow: its caller passes validated objects, and a Dask worker receives this flow by
# value (cloudpickle), without the module globals its string annotations would need to re-validate.
# The run name carries the parent run's id: the runs list mixes every night's meters.
@flow(name="meter-night", flow_run_name="night {meter_id} · {run_id}", validate_parameters=False)
def meter_night(
    config: PowercastConfig,
    meter_id: str,
    run_id: str,
    as_of_utc: datetime | None,
    force_retrain: bool,
    lock_timeout_s: float,
    global_models: dict[str, GlobalFit],
) -> MeterNight:
    """Retrain one meter when it has new readings (or when forced), then forecast it, under its lock.

    A training that fails leaves the champion in place and the meter is still forecast (by its
    champion, else the fallback); the failure is reported with the night.
    """
    started = time.perf_counter()
    training, training_error = None, None
    with meter_lock(config.root, meter_id, timeout_s=lock_timeout_s, holder=run_id):
        retrain = force_retrain or has_new_readings(config, meter_id, as_of_utc)
        if retrain:
            state = retrain_meter(
                config, meter_id, run_id, as_of_utc, lock_timeout_s, global_models, return_state=True
            )
            training, training_error = split_state(state)
        forecast_started = time.perf_counter()
        batch = forecast_one_meter(config, meter_id, run_id, as_of_utc, lock_timeout_s)
        steps = {**(training.step_seconds if training else {}), "forecast": time.perf_counter() - forecast_started}
    skipped = None if retrain else "no readings newer than the last training's data"
    return MeterNight(training, skipped, batch, time.perf_counter() - started, training_error, steps)


@task(name="serve-meter", task_run_name="serve {meter_id}", cache_policy=NO_CACHE)
def serve_meter(
    config: PowercastConfig,
    meter_id: str,
    run_id: str,
    as_of_utc: datetime | None,
    force_retrain: bool,
    lock_timeout_s: float,
    global_models: dict[str, GlobalFit],
) -> MeterNight:
    """Return one meter's night, run wherever the task runner put this task."""
    return meter_night(config, meter_id, run_id, as_of_utc, force_retrain, lock_timeout_s, global_models)


# validate_parameters=False: an internal subflow that may run on a Dask worker (see flows/fleet.py).
@flow(name="serve-fleet", flow_run_name="serve {run_id}", validate_parameters=False)
def serve_fleet(
    config: PowercastConfig,
    meters: list[str],
    run_id: str,
    as_of_utc: datetime | None,
    force_retrain: bool,
    lock_timeout_s: float,
    global_models: dict[str, GlobalFit],
) -> tuple[dict[str, MeterNight], dict[str, str]]:
    """Return (meter → its night, meter → error) after serving every meter on this flow's task runner."""
    futures = {
        meter_id: serve_meter.submit(config, meter_id, run_id, as_of_utc, force_retrain, lock_timeout_s, global_models)
        for meter_id in meters
    }
    for future in futures.values():
        future.wait()
    return split_by_outcome({meter_id: future.state for meter_id, future in futures.items()})
