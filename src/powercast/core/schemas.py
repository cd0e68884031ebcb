"""Data contracts as code: every Arrow schema and column name on disk is defined here, once."""

from __future__ import annotations

import pyarrow as pa

from powercast.core.config import CELL_NAMES, COMBINED_MODEL

UTC_US = pa.timestamp("us", tz="UTC")

# ---- readings store -------------------------------------------------------------------------
# Measured columns, in the order of the UCI file. Values are float32 and nullable: a '?' in the
# source becomes a null so that gaps stay visible downstream.
TARGET_COLUMN = "active_power_kw"
MEASURED_COLUMNS: tuple[str, ...] = (
    "active_power_kw",
    "reactive_power_kw",
    "voltage_v",
    "intensity_a",
    "sub_metering_1_wh",
    "sub_metering_2_wh",
    "sub_metering_3_wh",
)
# Column names of the UCI text format, mapped to ours in the same order.
UCI_HEADER: tuple[str, ...] = (
    "Date",
    "Time",
    "Global_active_power",
    "Global_reactive_power",
    "Voltage",
    "Global_intensity",
    "Sub_metering_1",
    "Sub_metering_2",
    "Sub_metering_3",
)
# The documented generic CSV: these three first, then any of MEASURED_COLUMNS[1:].
GENERIC_REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", "meter_id", "active_power_kw")

READINGS_SCHEMA = pa.schema(
    [
        pa.field("meter_id", pa.string(), nullable=False),
        pa.field("timestamp", UTC_US, nullable=False),
        *[pa.field(name, pa.float32()) for name in MEASURED_COLUMNS],
        pa.field("source_sha256", pa.string(), nullable=False),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("raw_line", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("quarantined_at", UTC_US, nullable=False),
    ]
)

# Reason codes for quarantined rows.
REASON_WRONG_COLUMN_COUNT = "wrong_column_count"
REASON_BAD_TIMESTAMP = "bad_timestamp"
REASON_NON_NUMERIC = "non_numeric"
REASON_NEGATIVE_POWER = "negative_power"
REASON_POWER_OUT_OF_RANGE = "power_out_of_range"
REASON_VOLTAGE_OUT_OF_RANGE = "voltage_out_of_range"
REASON_MISSING_METER = "missing_meter_id"
REASON_CONFLICTING_DUPLICATE = "conflicting_duplicate"
REASON_PARTIAL_MISSING = "partially_missing"

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("ingested_at", UTC_US, nullable=False),
        pa.field("rows_in", pa.int64(), nullable=False),
        pa.field("rows_stored", pa.int64(), nullable=False),
        pa.field("rows_missing", pa.int64(), nullable=False),
        pa.field("rows_quarantined", pa.int64(), nullable=False),
        pa.field("rows_replaced", pa.int64(), nullable=False),
        pa.field("partitions_written", pa.int64(), nullable=False),
    ]
)

# ---- forecast batch contract ------------------------------------------------------------------
# Consumers depend on this. Any change to columns or types bumps FORECAST_CONTRACT_VERSION and
# docs/forecast-contract.md.
# 1.1: model values hgb, combo and same_hour; batch files immutable (docs/forecast-contract.md).
FORECAST_CONTRACT_VERSION = "1.1"
# The fallback families: the value 24 h / 168 h earlier, or the same hour's mean / median over 7 days.
FALLBACK_FAMILIES: tuple[str, ...] = ("seasonal_naive", "same_hour")
FORECAST_MODELS: tuple[str, ...] = (*CELL_NAMES, COMBINED_MODEL, *FALLBACK_FAMILIES)
FORECAST_SCHEMA = pa.schema(
    [
        pa.field("meter_id", pa.string(), nullable=False),
        pa.field("issued_at", UTC_US, nullable=False),
        pa.field("target_time", UTC_US, nullable=False),
        pa.field("horizon_h", pa.int16(), nullable=False),
        pa.field("yhat_kw", pa.float32(), nullable=False),
        pa.field("yhat_lo_kw", pa.float32(), nullable=False),
        pa.field("yhat_hi_kw", pa.float32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)
# Keys of the Parquet file (key-value) metadata every batch carries.
FORECAST_METADATA_KEYS: tuple[str, ...] = (
    "powercast.contract_version",
    "powercast.interval_coverage",
    "powercast.training_start",
    "powercast.training_end",
    "powercast.validation_mae_kw",
)

# ---- readings store, appended by ingest ----------------------------------------------------------
# Columns inside store/readings/.../part-0.parquet: the partition key meter_id lives in the path.
READINGS_FILE_SCHEMA = pa.schema([field for field in READINGS_SCHEMA if field.name != "meter_id"])
# More reason codes for quarantined rows.
REASON_DUPLICATE_ROW = "duplicate_row"  # an exact copy of an earlier line of the same file
REASON_BAD_METER_ID = "bad_meter_id"  # a meter_id that cannot name a store partition folder
REASON_FUTURE_TIMESTAMP = "future_timestamp"  # stamped after the ingest time + ingest.future_tolerance_h
# Name of the UTC reading time column in READINGS_SCHEMA (the key preparation resamples on).
TIMESTAMP_COLUMN = "timestamp"

# ---- meter ids: one rule for ingest validation, lock files, registry folders and flow parameters ----
# A meter id names store partitions, lock files and registry folders: letters, digits, '_', '.' or
# '-', starting with a letter or digit (names starting with '_' stay free for shared locks).
METER_ID_MAX_CHARS = 128
METER_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{METER_ID_MAX_CHARS - 1}}}$"
METER_ID_RULE = f"letters, digits, '_', '.' or '-', starting with a letter or digit, at most {METER_ID_MAX_CHARS} characters"
