"""Every path under the data root, declared once.

The root is a local path or a URI (``s3://bucket/powercast``); each function takes it (or the
base path ``resolve_filesystem`` returned for it) and returns a ``/``-joined string, so the same
layout works on any pyarrow filesystem. ``docs/architecture.md`` draws the tree.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

LANDING = "landing"
READINGS = "store/readings"
QUARANTINE = "store/quarantine"
MANIFEST = "store/manifest.parquet"
MODELS = "models"
GLOBAL_MODELS = "_global"  # under models/: never a meter id (METER_ID_PATTERN starts with a letter or digit)
RUNS = "runs"
# A run folder's subfolder of the global networks' training logs (beside one per meter).
FLEET_RUN_FOLDER = "_fleet"
FORECASTS = "forecasts"
BACKTESTS = "backtests"
WALK_FORWARD = "walk-forward"  # under backtests/<meter>/: a champion version never has this name
PLOTS = "plots"
LOCKS = "locks"


def under(root: str, *parts: str) -> str:
    """Return ``root/part/...`` without doubling the separator after a trailing ``/``."""
    return "/".join([str(root).rstrip("/"), *parts])


def landing_dir(root: str) -> str:
    """Return the folder raw files land in before ingest."""
    return under(root, LANDING)


def readings_dir(root: str) -> str:
    """Return the hive-partitioned readings dataset."""
    return under(root, READINGS)


def quarantine_dir(root: str) -> str:
    """Return the folder of quarantined rows (one subfolder per run)."""
    return under(root, QUARANTINE)


def manifest_path(root: str) -> str:
    """Return the manifest of ingested source files."""
    return under(root, MANIFEST)


def meter_models_dir(root: str, meter_id: str) -> str:
    """Return a meter's registry folder: model versions, champion pointer, promotion history."""
    return under(root, MODELS, meter_id)


def global_network_dir(root: str, version: str, network_id: str) -> str:
    """Return the shared folder of one global network of a registry version (its weights, stored once for
    every meter it serves); ``GLOBAL_MODELS`` is no meter id (those start with a letter or digit)."""
    return under(root, MODELS, GLOBAL_MODELS, version, network_id)


def run_dir(root: str, run_id: str, *parts: str) -> str:
    """Return a run's folder (``runs/<run_id>``), or a folder inside it (a meter's, the seed preset's)."""
    return under(root, RUNS, run_id, *parts)


def forecasts_dir(root: str) -> str:
    """Return the published forecast batches' folder (the consumers' contract)."""
    return under(root, FORECASTS)


# Inside forecasts/ (docs/forecast-contract.md, "Layout"); paths below are relative to that folder,
# the form the manifests and latest.json store them in.
FORECAST_LATEST = "latest.json"
FORECAST_MANIFEST_SUFFIX = ".manifest.json"
FORECAST_MANIFEST_GLOB = "issue_date=*/issued_at=*.manifest.json"
_ISSUED_AT_FORMAT = "%Y%m%dT%H%M%SZ"
_PUBLISHED_FORMAT = "%Y%m%dT%H%M%S.%fZ"
# issued_at=<T>.published=<P>.parquet, and the 1.0 name issued_at=<T>.parquet (no publish time)
_BATCH_NAME = re.compile(r"issued_at=(\d{8}T\d{6}Z)(?:\.published=(\d{8}T\d{6}\.\d{6}Z))?\.parquet")
_MANIFEST_NAME = re.compile(r"issued_at=(\d{8}T\d{6}Z)" + re.escape(FORECAST_MANIFEST_SUFFIX))


def _utc(stamp: datetime, name: str) -> datetime:
    if stamp.tzinfo is None:
        raise ValueError(f"{name}={stamp!r} has no timezone; forecast paths are named in UTC")
    return stamp.astimezone(timezone.utc)


def forecast_issue_dir(issued_at_utc: datetime) -> str:
    """Return the hive folder of an issue time, ``issue_date=YYYY-MM-DD`` (its UTC date)."""
    return f"issue_date={_utc(issued_at_utc, 'issued_at').strftime('%Y-%m-%d')}"


def forecast_manifest_relpath(issued_at_utc: datetime) -> str:
    """Return the manifest of an issue time: its one stable name, which names the current batch file."""
    stamp = _utc(issued_at_utc, "issued_at").strftime(_ISSUED_AT_FORMAT)
    return f"{forecast_issue_dir(issued_at_utc)}/issued_at={stamp}{FORECAST_MANIFEST_SUFFIX}"


def forecast_batch_relpath(issued_at_utc: datetime, published_at_utc: datetime) -> str:
    """Return the batch file of one publish of an issue time; a new name per publish, never reused."""
    issued = _utc(issued_at_utc, "issued_at").strftime(_ISSUED_AT_FORMAT)
    published = _utc(published_at_utc, "published_at").strftime(_PUBLISHED_FORMAT)
    return f"{forecast_issue_dir(issued_at_utc)}/issued_at={issued}.published={published}.parquet"


def _parsed(text: str, pattern: str) -> datetime:
    return datetime.strptime(text, pattern).replace(tzinfo=timezone.utc)


def parse_forecast_batch_name(name: str) -> tuple[datetime, datetime | None] | None:
    """Return (issued_at, published_at) of a batch file name, published_at None for a 1.0 name; None if not a batch."""
    match = _BATCH_NAME.fullmatch(name)
    if match is None:
        return None
    issued, published = match.group(1), match.group(2)
    return _parsed(issued, _ISSUED_AT_FORMAT), None if published is None else _parsed(published, _PUBLISHED_FORMAT)


def parse_forecast_manifest_name(name: str) -> datetime | None:
    """Return the issue time of a manifest file name, or None if ``name`` is not one."""
    match = _MANIFEST_NAME.fullmatch(name)
    return None if match is None else _parsed(match.group(1), _ISSUED_AT_FORMAT)


def backtest_dir(root: str, meter_id: str, version: str) -> str:
    """Return the data root a backtest of one champion version publishes into."""
    return under(root, BACKTESTS, meter_id, version)


def walk_forward_dir(root: str, meter_id: str, run_id: str) -> str:
    """Return the scratch data root of one walk-forward backtest (its own registry, runs and batches)."""
    return under(root, BACKTESTS, meter_id, WALK_FORWARD, run_id)


def store_dir(root: str) -> str:
    """Return the folder holding the readings, quarantine and manifest (the parent of ``readings_dir``)."""
    return under(root, READINGS.partition("/")[0])


def plots_dir(root: str) -> str:
    """Return the folder of forecast-vs-actual PNGs."""
    return under(root, PLOTS)


def locks_dir(root: str) -> str:
    """Return the folder of lock files (local roots only)."""
    return under(root, LOCKS)
