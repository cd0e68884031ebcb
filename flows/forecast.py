"""Flow: publish a forecast batch for some meters with their current champions."""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from flows.params import ForecastParams
from flows.report import RunRecord, publish_report, report_plan
from flows.tasks import (
    current_run_id,
    fail_on,
    find_meters,
    forecast_meter,
    publish_and_plot,
    split_by_outcome,
)
from powercast.core.config import PowercastConfig
from powercast.io.locking import meter_lock
from powercast.serving.contract import ForecastBatch
from powercast.serving.publish import PublishedBatch


# validate_parameters=False: an internal subflow that may run on a Dask worker (see flows/fleet.py).
# The run name carries the parent run's id: the runs list mixes every night's meters.
@flow(name="forecast-meter", flow_run_name="forecast {meter_id} · {run_id}", validate_parameters=False)
def forecast_one_meter(
    config: PowercastConfig, meter_id: str, run_id: str, as_of_utc: datetime | None, lock_timeout_s: float
) -> ForecastBatch:
    """Make one meter's forecast batch, holding the meter's lock."""
    with meter_lock(config.root, meter_id, timeout_s=lock_timeout_s, holder=run_id):
        return forecast_meter(config, meter_id, as_of_utc, run_id)


@flow(name="forecast")
def forecast(params: ForecastParams = ForecastParams()) -> list[PublishedBatch]:
    """Forecast the requested meters (all by default) and publish; a failing meter does not stop the others."""
    config = params.load_config()
    record = RunRecord.for_run(current_run_id(), config)
    meters = find_meters(config, params.meters)
    record.meters = list(meters)
    as_of_utc = params.as_of_utc(config)
    if params.dry_run:
        report_plan(config, None, meters, {"as_of_utc": as_of_utc})
        return []
    with record.timed("forecast"):
        states = {
            meter_id: forecast_one_meter(
                config, meter_id, record.run_id, as_of_utc, params.lock_timeout_s, return_state=True
            )
            for meter_id in meters
        }
    batches, record.failures = split_by_outcome(states)
    record.batches = list(batches.values())
    publish_and_plot(config, record, params.lock_timeout_s)
    publish_report(record)
    return fail_on(record.failures, record.published)
