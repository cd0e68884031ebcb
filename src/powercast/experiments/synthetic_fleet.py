"""Derived meters for scale tests, made from the real channels of the UCI house, labelled synthetic.

A fleet of N meters is needed to measure a night at fleet size, and the reference data holds
five real meters (the house total and its four channels, see ``store.channels``). Each derived
meter mixes two of those real channels at 15-minute resolution (as smart meters report), scales
the mix, and delays it by a whole number of weeks (so weekdays stay weekdays; the first weeks of
a delayed meter are missing, as for a meter installed later); a bucket missing in either channel
stays missing, so the real gaps travel with the data. Every id starts with ``synthetic-`` and the rows carry the source tag
``synthetic``: these meters measure cost, never accuracy.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from io import StringIO

import numpy as np
import pandas as pd
import pyarrow as pa

from powercast.core.errors import ConfigError
from powercast.core.schemas import MEASURED_COLUMNS, READINGS_SCHEMA, TARGET_COLUMN, TIMESTAMP_COLUMN
from powercast.io.atomic import atomic_write_bytes, resolve_filesystem
from powercast.prepare.resample import resample_readings
from powercast.store.readings import list_meters, read_readings, upsert_readings

SYNTHETIC_PREFIX = "synthetic-"
SYNTHETIC_SOURCE = "synthetic"
FLEET_FREQ = "15min"
STEPS_PER_WEEK = 7 * 96
SCALE_RANGE = (0.5, 2.0)
# Upsert this many meters' rows at once: bounded memory, few store writes.
METERS_PER_WRITE = 50


@dataclass(frozen=True)
class DerivedMeter:
    """How one synthetic meter is made from the real channels."""

    meter_id: str
    channels: tuple[str, str]
    weight: float  # share of the first channel in the mix
    scale: float
    shift_weeks: int


def real_channels_15min(root: str, base_meter_id: str, start_utc: datetime, end_utc: datetime) -> pd.DataFrame:
    """Return the real meters ``base_meter_id`` and ``base_meter_id.*`` as 15-minute mean kW columns (NaN = missing)."""
    meters = [m for m in list_meters(root) if m == base_meter_id or m.startswith(f"{base_meter_id}.")]
    if len(meters) < 2:
        raise ConfigError(
            f"data root {root} holds {meters or 'no'} real meter(s) of {base_meter_id!r}; ingest the UCI file with "
            "--channel-meters total kitchen laundry heater_ac rest first"
        )
    columns = {}
    for meter_id in meters:
        frame = read_readings(root, meter_id, start_utc, end_utc, columns=[TIMESTAMP_COLUMN, TARGET_COLUMN]).to_pandas()
        grid_end = pd.Timestamp(end_utc).tz_convert("UTC")
        columns[meter_id] = resample_readings(frame, FLEET_FREQ, 0.5, [TARGET_COLUMN], grid_end).frame[TARGET_COLUMN]
    return pd.DataFrame(columns).loc[pd.Timestamp(start_utc).tz_convert("UTC") :]


def plan_fleet(channel_names: Sequence[str], n_meters: int, n_steps: int, seed: int) -> list[DerivedMeter]:
    """Return the recipe of ``n_meters`` synthetic meters (seeded: the same fleet every time)."""
    if n_meters < 1:
        raise ConfigError(f"a fleet needs at least one meter, got {n_meters}")
    rng = np.random.default_rng(seed)
    # Delays up to a quarter of the period: every meter keeps most of its history.
    n_weeks = max(1, n_steps // STEPS_PER_WEEK // 4)
    recipes = []
    for index in range(n_meters):
        first, second = rng.choice(len(channel_names), size=2, replace=False)
        recipes.append(
            DerivedMeter(
                meter_id=f"{SYNTHETIC_PREFIX}{index:05d}",
                channels=(channel_names[first], channel_names[second]),
                weight=float(rng.uniform(0.2, 0.8)),
                scale=float(rng.uniform(*SCALE_RANGE)),
                shift_weeks=int(rng.integers(0, n_weeks)),
            )
        )
    return recipes


def shifted(values: np.ndarray, steps: int) -> np.ndarray:
    """Return ``values`` delayed by ``steps`` (``out[t] = values[t - steps]``), missing where nothing was before.

    Never circular: wrapping the last weeks round to the start would put a period's future (its
    validation and test readings) into every shifted meter's past.
    """
    out = np.full(values.shape, np.nan)
    if steps < len(values):
        out[steps:] = values[: len(values) - steps]
    return out


def derived_kw(channels: pd.DataFrame, meter: DerivedMeter) -> np.ndarray:
    """Return a synthetic meter's float32 kW on the channels' grid (NaN where either channel is missing)."""
    first, second = (channels[name].to_numpy(dtype=np.float64) for name in meter.channels)
    mix_kw = meter.scale * (meter.weight * first + (1.0 - meter.weight) * second)
    return shifted(mix_kw, meter.shift_weeks * STEPS_PER_WEEK).astype(np.float32)


def _readings_table(index_utc: pd.DatetimeIndex, meter_ids: list[str], values_kw: list[np.ndarray]) -> pa.Table:
    """Return READINGS_SCHEMA rows of several synthetic meters (only the target measured)."""
    n_steps = len(index_utc)
    n_rows = n_steps * len(meter_ids)
    target = np.concatenate(values_kw)
    stamps = np.tile(index_utc.as_unit("us").asi8, len(meter_ids))
    columns = {
        "meter_id": pa.array(np.repeat(np.asarray(meter_ids, dtype=object), n_steps), pa.string()),
        TIMESTAMP_COLUMN: pa.array(stamps, READINGS_SCHEMA.field(TIMESTAMP_COLUMN).type),
    }
    for name in MEASURED_COLUMNS:
        columns[name] = pa.nulls(n_rows, pa.float32())
    columns[TARGET_COLUMN] = pa.array(target, pa.float32(), mask=np.isnan(target))
    columns["source_sha256"] = pa.array([SYNTHETIC_SOURCE] * n_rows, pa.string())
    return pa.table(columns, schema=READINGS_SCHEMA)


def write_fleet_history(root: str, channels: pd.DataFrame, fleet: Sequence[DerivedMeter], rows: slice) -> int:
    """Store the fleet's readings at ``channels``' positions ``rows`` under ``root``; return the rows written."""
    index_utc = pd.DatetimeIndex(channels.index)[rows]
    written = 0
    for offset in range(0, len(fleet), METERS_PER_WRITE):
        group = fleet[offset : offset + METERS_PER_WRITE]
        table = _readings_table(index_utc, [m.meter_id for m in group], [derived_kw(channels, m)[rows] for m in group])
        upsert_readings(root, table)
        written += table.num_rows
    return written


def write_fleet_day_csv(path: str, channels: pd.DataFrame, fleet: Sequence[DerivedMeter], rows: slice) -> int:
    """Write the fleet's readings at ``channels``' positions ``rows`` as one generic CSV landing file; return rows."""
    stamps = [stamp.strftime("%Y-%m-%dT%H:%M:%SZ") for stamp in pd.DatetimeIndex(channels.index)[rows]]
    out = StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "meter_id", TARGET_COLUMN])
    for meter in fleet:
        values = derived_kw(channels, meter)[rows]
        texts = ["" if np.isnan(kw) else f"{kw:.4f}" for kw in values]
        writer.writerows([stamp, meter.meter_id, text] for stamp, text in zip(stamps, texts))
    filesystem, target = resolve_filesystem(path)
    atomic_write_bytes(target, out.getvalue().encode("utf-8"), filesystem)
    return len(stamps) * len(fleet)
