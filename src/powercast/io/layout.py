"""Every path under the data root, declared once.

The root is a local path or a URI (``s3://bucket/powercast``); each function takes it (or the
base path ``resolve_filesystem`` returned for it) and returns a ``/``-joined string, so the same
layout works on any pyarrow filesystem. ``docs/architecture.md`` draws the tree.
"""

from __future__ import annotations

LANDING = "landing"
READINGS = "store/readings"
QUARANTINE = "store/quarantine"
MANIFEST = "store/manifest.parquet"
MODELS = "models"
RUNS = "runs"
FORECASTS = "forecasts"
BACKTESTS = "backtests"
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


def run_dir(root: str, run_id: str, *parts: str) -> str:
    """Return a run's folder (``runs/<run_id>``), or a folder inside it (a meter's, the seed preset's)."""
    return under(root, RUNS, run_id, *parts)


def forecasts_dir(root: str) -> str:
    """Return the published forecast batches' folder (the consumers' contract)."""
    return under(root, FORECASTS)


def backtest_dir(root: str, meter_id: str, version: str) -> str:
    """Return the data root a backtest of one champion version publishes into."""
    return under(root, BACKTESTS, meter_id, version)


def plots_dir(root: str) -> str:
    """Return the folder of forecast-vs-actual PNGs."""
    return under(root, PLOTS)


def locks_dir(root: str) -> str:
    """Return the folder of lock files (local roots only)."""
    return under(root, LOCKS)
