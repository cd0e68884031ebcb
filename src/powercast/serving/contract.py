"""The forecast batch contract in memory: ``ForecastBatch`` and the checks every published row passes.

The schema and metadata keys are declared in ``powercast.core.schemas``; ``docs/forecast-contract.md``
is the consumers' description. Forecasting (``serving.forecast``) builds batches, publishing
(``serving.publish``) writes them: both speak through this module, never to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from powercast.core.errors import ForecastError
from powercast.core.schemas import FORECAST_CONTRACT_VERSION, FORECAST_MODELS, FORECAST_SCHEMA


@dataclass(frozen=True)
class ForecastBatch:
    """One meter's forecast for one issue time: the contract rows and what the file metadata says.

    Parameters
    ----------
    table : pa.Table
        Rows of exactly ``FORECAST_SCHEMA`` for one meter and one issue time, horizons 1..H.
    interval_coverage : float
        Nominal coverage of ``[yhat_lo_kw, yhat_hi_kw]`` (e.g. 0.8).
    training_start_utc, training_end_utc : pd.Timestamp or None
        Range of the data the model learned from; None for a baseline that learned nothing.
    validation_mae_kw : float or None
        Validation MAE (kW) of the model that produced the rows.
    notes : tuple of str
        Why this batch is what it is (e.g. the reason for a baseline fallback).
    """

    table: pa.Table
    interval_coverage: float
    training_start_utc: pd.Timestamp | None
    training_end_utc: pd.Timestamp | None
    validation_mae_kw: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        validate_forecast_table(self.table, source="ForecastBatch.table")
        if self.table.num_rows == 0:
            raise ForecastError("ForecastBatch.table has no rows: a batch needs at least one horizon step")
        for column in ("meter_id", "issued_at", "model", "model_version", "run_id"):
            if pc.count_distinct(self.table[column]).as_py() != 1:
                raise ForecastError(f"ForecastBatch.table column {column!r} must hold one value for the whole batch")
        if not 0.0 < self.interval_coverage < 1.0:
            raise ForecastError(f"ForecastBatch.interval_coverage={self.interval_coverage} must lie in (0, 1)")

    @property
    def meter_id(self) -> str:
        """Return the meter this batch forecasts."""
        return str(self.table["meter_id"][0].as_py())

    @property
    def issued_at_utc(self) -> pd.Timestamp:
        """Return the issue time (UTC)."""
        return pd.Timestamp(self.table["issued_at"][0].as_py())

    @property
    def model(self) -> str:
        """Return the model family that produced the rows (gru | lstm | seasonal_naive)."""
        return str(self.table["model"][0].as_py())

    @property
    def model_version(self) -> str:
        """Return the model version (registry version, or the baseline's name)."""
        return str(self.table["model_version"][0].as_py())

    @property
    def run_id(self) -> str:
        """Return the run that made the batch."""
        return str(self.table["run_id"][0].as_py())


def validate_forecast_table(table: pa.Table, source: str) -> None:
    """Raise ForecastError unless ``table`` holds valid contract rows (schema, values, uniqueness).

    Parameters
    ----------
    table : pa.Table
        Candidate rows; schema metadata is ignored, columns and types must equal FORECAST_SCHEMA.
    source : str
        Where the table came from, named in error messages.
    """
    schema = table.schema.remove_metadata()
    if not schema.equals(FORECAST_SCHEMA):
        raise ForecastError(
            f"{source} does not match forecast contract {FORECAST_CONTRACT_VERSION}: "
            f"expected {FORECAST_SCHEMA.to_string(show_schema_metadata=False)!r}, "
            f"got {schema.to_string(show_schema_metadata=False)!r}"
        )
    if table.num_rows == 0:
        return
    for column in FORECAST_SCHEMA.names:
        if table[column].null_count:
            raise ForecastError(f"{source} has {table[column].null_count} null values in {column!r}")
    values = {name: table[name].to_numpy() for name in ("yhat_kw", "yhat_lo_kw", "yhat_hi_kw")}
    for name, array in values.items():
        if not np.isfinite(array).all():
            raise ForecastError(f"{source} has non-finite values in {name!r}: a model produced NaN/inf")
    if (values["yhat_lo_kw"] > values["yhat_kw"]).any() or (values["yhat_kw"] > values["yhat_hi_kw"]).any():
        raise ForecastError(f"{source} has rows where yhat_lo_kw <= yhat_kw <= yhat_hi_kw does not hold")
    horizons = table["horizon_h"].to_numpy()
    if (horizons < 1).any():
        raise ForecastError(f"{source} has horizon_h < 1; horizons count from 1")
    unknown = set(pc.unique(table["model"]).to_pylist()) - set(FORECAST_MODELS)
    if unknown:
        raise ForecastError(f"{source} has unknown model names {sorted(unknown)}; allowed: {list(FORECAST_MODELS)}")
    keys = pa.table({"m": table["meter_id"], "i": table["issued_at"], "h": table["horizon_h"]})
    if keys.group_by(["m", "i", "h"]).aggregate([]).num_rows != table.num_rows:
        raise ForecastError(f"{source} has duplicate (meter_id, issued_at, horizon_h) rows")
    if pc.any(pc.less(table["target_time"], table["issued_at"])).as_py():
        raise ForecastError(f"{source} has target_time before issued_at; horizon 1 starts at the issue time")


def to_utc_timestamp(value: datetime | pd.Timestamp | str, name: str) -> pd.Timestamp:
    """Return ``value`` as a tz-aware UTC Timestamp; naive values are refused (ambiguous clock)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ForecastError(f"{name}={value!r} is not a timestamp; use ISO 8601 such as 2010-08-18T00:00+01:00") from exc
    if stamp.tzinfo is None:
        raise ForecastError(f"{name}={value!r} has no timezone; give an offset (…+01:00) or 'Z' for UTC")
    return stamp.tz_convert("UTC")


def compact_utc(stamp: pd.Timestamp) -> str:
    """Return the file-name form of an issue time: ``YYYYMMDDTHHMMSSZ``."""
    return stamp.tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")


def iso_utc(stamp: pd.Timestamp) -> str:
    """Return an issue time as ISO 8601 with a ``Z`` suffix (second resolution)."""
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


