"""The forecasts/ layout: atomic publish of forecast batches, their manifests, the ``latest`` pointer.

Layout under a data root (a local path or a URI, see ``powercast.io.atomic.resolve_filesystem``)::

    forecasts/issue_date=YYYY-MM-DD/issued_at=YYYYMMDDTHHMMSSZ.parquet        every meter's rows of one issue time
    forecasts/issue_date=YYYY-MM-DD/issued_at=YYYYMMDDTHHMMSSZ.manifest.json  rows, meters, models, sha256, ...
    forecasts/latest.json                                                    the newest complete batch

``issue_date`` is the UTC date of ``issued_at`` so that a consumer can find a batch from its issue
time alone. Writes happen in this order, each one atomic (temp name → fsync → rename): the Parquet
file, then its manifest, then ``latest.json``. A reader that follows ``latest.json`` therefore
only ever reaches a batch whose file and manifest are both complete. Publishing an issue time that
already exists replaces that one file; files of other issue times are never opened for writing.
``publish_batch`` takes no lock itself: its callers (the flows' publish task, ``powercast forecast``)
hold the data root's publish lock (``powercast.io.locking.PUBLISH_LOCK_NAME``), so one publisher
writes at a time; readers need no lock.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from powercast.core.errors import ForecastError
from powercast.core.schemas import (
    FORECAST_CONTRACT_VERSION,
    FORECAST_METADATA_KEYS,
    FORECAST_SCHEMA,
)
from powercast.io import layout
from powercast.io.atomic import (
    atomic_write_bytes,
    parquet_bytes,
    read_bytes,
    resolve_filesystem,
)
from powercast.serving.contract import ForecastBatch, compact_utc, iso_utc, to_utc_timestamp, validate_forecast_table

LATEST_NAME = "latest.json"
MANIFEST_SUFFIX = ".manifest.json"
KEY_CONTRACT_VERSION, KEY_COVERAGE, KEY_TRAINING_START, KEY_TRAINING_END, KEY_VALIDATION_MAE = FORECAST_METADATA_KEYS
# Keys whose value differs per meter: stored as a JSON object {meter_id: value}.
PER_METER_KEYS: tuple[str, ...] = (KEY_TRAINING_START, KEY_TRAINING_END, KEY_VALIDATION_MAE)
# A reader that finds a file whose sha256 differs from its pointer/manifest is racing a re-publish
# of the same issue time; it retries for this long before calling the batch broken.
READ_RETRY_S = 5.0
READ_RETRY_PAUSE_S = 0.02


@dataclass(frozen=True)
class PublishedBatch:
    """Where a published batch lives and what it holds."""

    issued_at_utc: pd.Timestamp
    path: str
    manifest_path: str
    sha256: str
    rows: int
    meters: tuple[str, ...]
    latest_updated: bool


def batch_relpath(issued_at_utc: datetime | pd.Timestamp) -> str:
    """Return the batch file's path relative to ``forecasts/`` for an issue time."""
    stamp = to_utc_timestamp(issued_at_utc, "issued_at")
    return f"issue_date={stamp.strftime('%Y-%m-%d')}/issued_at={compact_utc(stamp)}.parquet"


def manifest_relpath(issued_at_utc: datetime | pd.Timestamp) -> str:
    """Return the manifest's path relative to ``forecasts/`` for an issue time."""
    return batch_relpath(issued_at_utc).removesuffix(".parquet") + MANIFEST_SUFFIX


def _forecasts_dir(root: str) -> tuple[pafs.FileSystem, str]:
    filesystem, base = resolve_filesystem(root)
    return filesystem, layout.forecasts_dir(base)


def _read_json(filesystem: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    payload = read_bytes(path, filesystem)
    if payload is None:
        return None
    try:
        parsed = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ForecastError(f"{path} is not valid JSON ({exc}); re-publish the batch with `powercast forecast`") from exc
    if not isinstance(parsed, dict):
        raise ForecastError(f"{path} must hold a JSON object; re-publish the batch with `powercast forecast`")
    return parsed


def _table_from_parquet(payload: bytes, source: str) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(payload))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ForecastError(f"{source} is not a readable Parquet file ({exc}); re-publish it") from exc


def _decoded_metadata(table: pa.Table, source: str) -> dict[str, Any]:
    raw = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    missing = [key for key in FORECAST_METADATA_KEYS if key not in raw]
    if missing:
        raise ForecastError(f"{source} lacks file metadata keys {missing}; it was not written by powercast publish")
    version = raw[KEY_CONTRACT_VERSION]
    if version.split(".")[0] != FORECAST_CONTRACT_VERSION.split(".")[0]:
        raise ForecastError(
            f"{source} has contract version {version}, this reader understands {FORECAST_CONTRACT_VERSION}; "
            "upgrade powercast or read it with pyarrow directly"
        )
    decoded: dict[str, Any] = {KEY_CONTRACT_VERSION: version, KEY_COVERAGE: float(raw[KEY_COVERAGE])}
    for key in PER_METER_KEYS:
        try:
            decoded[key] = json.loads(raw[key])
        except json.JSONDecodeError as exc:
            raise ForecastError(f"{source} metadata {key!r} is not a JSON object of meter values ({exc}); re-publish it") from exc
    return decoded


def _per_meter_values(batch: ForecastBatch) -> dict[str, Any]:
    def stamp(value: pd.Timestamp | None) -> str | None:
        return None if value is None else iso_utc(pd.Timestamp(value).tz_convert("UTC"))

    mae = batch.validation_mae_kw
    return {
        KEY_TRAINING_START: stamp(batch.training_start_utc),
        KEY_TRAINING_END: stamp(batch.training_end_utc),
        KEY_VALIDATION_MAE: None if mae is None or not math.isfinite(mae) else round(float(mae), 6),
    }


def _merged_with_existing(
    batches: Sequence[ForecastBatch], existing: pa.Table | None, existing_metadata: dict[str, Any] | None
) -> tuple[pa.Table, dict[str, dict[str, Any]], float]:
    """Return (rows, per-meter metadata, coverage): the new meters' rows plus the other meters kept."""
    new_meters = [batch.meter_id for batch in batches]
    per_meter: dict[str, dict[str, Any]] = {key: {} for key in PER_METER_KEYS}
    parts = [batch.table.select(FORECAST_SCHEMA.names).cast(FORECAST_SCHEMA) for batch in batches]
    coverage = batches[0].interval_coverage
    if existing is not None and existing_metadata is not None:
        kept = existing.filter(pc.invert(pc.is_in(existing["meter_id"], pa.array(new_meters))))
        if kept.num_rows and not math.isclose(existing_metadata[KEY_COVERAGE], coverage):
            raise ForecastError(
                f"the published batch holds other meters at coverage {existing_metadata[KEY_COVERAGE]}, "
                f"the new one has {coverage}; publish every meter of this issue time together"
            )
        kept_meters = set(kept["meter_id"].to_pylist())
        for key in PER_METER_KEYS:
            per_meter[key].update({m: v for m, v in existing_metadata[key].items() if m in kept_meters})
        parts.insert(0, kept.select(FORECAST_SCHEMA.names).cast(FORECAST_SCHEMA))
    for batch in batches:
        for key, value in _per_meter_values(batch).items():
            per_meter[key][batch.meter_id] = value
    rows = pa.concat_tables(parts).sort_by([("meter_id", "ascending"), ("horizon_h", "ascending")])
    return rows.replace_schema_metadata(None), per_meter, coverage


def publish_batch(root: str, batches: Sequence[ForecastBatch] | ForecastBatch) -> PublishedBatch:
    """Publish forecast batches of one issue time atomically; return where they landed.

    All batches must share one issue time and one run id, one batch per meter. The file of that
    issue time is replaced as a whole: meters given here get the new rows, meters already in the
    file and not given here keep theirs. Then the manifest is written, then ``latest.json`` is
    moved to this batch if its issue time is the newest published.

    Parameters
    ----------
    root : str
        Data root (local path or URI); files go under ``<root>/forecasts/``.
    batches : ForecastBatch or sequence of ForecastBatch
        The rows and metadata to publish.

    Returns
    -------
    PublishedBatch
        Paths of the batch file and manifest, its sha256, row count, meters, and whether
        ``latest.json`` now points at it.
    """
    group = _checked_group(batches)
    issued_at = group[0].issued_at_utc
    filesystem, directory = _forecasts_dir(root)
    path = f"{directory}/{batch_relpath(issued_at)}"
    manifest_path = f"{directory}/{manifest_relpath(issued_at)}"
    existing, existing_metadata = _read_published(filesystem, path)
    rows, per_meter, coverage = _merged_with_existing(group, existing, existing_metadata)
    validate_forecast_table(rows, source=f"batch for {iso_utc(issued_at)}")

    metadata = {
        KEY_CONTRACT_VERSION: FORECAST_CONTRACT_VERSION,
        KEY_COVERAGE: repr(float(coverage)),
        **{key: json.dumps(per_meter[key], sort_keys=True) for key in PER_METER_KEYS},
    }
    payload = parquet_bytes(rows, metadata)
    atomic_write_bytes(path, payload, filesystem)
    previous_manifest = _read_json(filesystem, manifest_path) if existing is not None else None
    manifest = _manifest(group, rows, payload, {**metadata, **per_meter}, previous_manifest)
    atomic_write_bytes(manifest_path, _json_bytes(manifest), filesystem)
    latest_updated = _move_latest_pointer(filesystem, directory, manifest, issued_at)
    return PublishedBatch(
        issued_at_utc=issued_at,
        path=path,
        manifest_path=manifest_path,
        sha256=manifest["sha256"],
        rows=rows.num_rows,
        meters=tuple(manifest["meters"]),
        latest_updated=latest_updated,
    )


def _checked_group(batches: Sequence[ForecastBatch] | ForecastBatch) -> list[ForecastBatch]:
    """Return the batches as a list, or raise ForecastError unless they can share one file."""
    group = [batches] if isinstance(batches, ForecastBatch) else list(batches)
    if not group:
        raise ForecastError("publish_batch got no batches; make at least one with make_forecast_batch")
    issue_times = {batch.issued_at_utc for batch in group}
    if len(issue_times) != 1:
        raise ForecastError(f"publish_batch needs one issue time per call, got {sorted(map(iso_utc, issue_times))}")
    meters = [batch.meter_id for batch in group]
    if len(set(meters)) != len(meters):
        raise ForecastError(f"publish_batch got two batches for the same meter: {sorted(meters)}")
    run_ids = {batch.run_id for batch in group}
    if len(run_ids) != 1:
        raise ForecastError(f"publish_batch needs one run_id per call, got {sorted(run_ids)}")
    if len({batch.interval_coverage for batch in group}) != 1:
        raise ForecastError("publish_batch got batches with different interval coverages; use one coverage per batch")
    return group


def _read_published(filesystem: pafs.FileSystem, path: str) -> tuple[pa.Table | None, dict[str, Any] | None]:
    """Return the rows and decoded metadata already published at ``path``, or (None, None)."""
    payload = read_bytes(path, filesystem)
    if payload is None:
        return None, None
    table = _table_from_parquet(payload, path)
    return table, _decoded_metadata(table, path)


def _manifest(
    group: Sequence[ForecastBatch],
    rows: pa.Table,
    payload: bytes,
    metadata: dict[str, Any],
    previous_manifest: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return the manifest of a batch file: what it holds, per meter which model made it and why."""
    issued_at = group[0].issued_at_utc
    meter_rows = rows.group_by("meter_id").aggregate([("model", "max"), ("model_version", "max"), ("run_id", "max")])
    notes = {meter: entry.get("notes", []) for meter, entry in (previous_manifest or {}).get("models", {}).items()}
    notes.update({batch.meter_id: list(batch.notes) for batch in group})
    return {
        "contract_version": FORECAST_CONTRACT_VERSION,
        "issued_at": iso_utc(issued_at),
        "path": batch_relpath(issued_at),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
        "rows": rows.num_rows,
        "meters": sorted(set(rows["meter_id"].to_pylist())),
        "models": {
            row["meter_id"]: {
                "model": row["model_max"],
                "model_version": row["model_version_max"],
                "run_id": row["run_id_max"],
                "notes": notes.get(row["meter_id"], []),
            }
            for row in meter_rows.to_pylist()
        },
        "run_id": group[0].run_id,
        "published_at": iso_utc(pd.Timestamp.now(tz="UTC")),
        "metadata": metadata,
    }


def _move_latest_pointer(
    filesystem: pafs.FileSystem, directory: str, manifest: dict[str, Any], issued_at: pd.Timestamp
) -> bool:
    """Point ``latest.json`` at this batch unless a newer issue time is published; return whether it moved."""
    latest_path = f"{directory}/{LATEST_NAME}"
    latest = _read_json(filesystem, latest_path)
    if latest is not None and to_utc_timestamp(latest["issued_at"], f"{latest_path} issued_at") > issued_at:
        return False
    pointer = {key: manifest[key] for key in ("contract_version", "issued_at", "path", "sha256", "rows", "meters")}
    pointer.update({"manifest": manifest_relpath(issued_at), "published_at": manifest["published_at"]})
    atomic_write_bytes(latest_path, _json_bytes(pointer), filesystem)
    return True


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8")


def latest_pointer(root: str) -> dict[str, Any] | None:
    """Return the parsed ``forecasts/latest.json``, or None when nothing was published yet."""
    filesystem, directory = _forecasts_dir(root)
    return _read_json(filesystem, f"{directory}/{LATEST_NAME}")


def list_issue_times(root: str) -> list[pd.Timestamp]:
    """Return the issue times (UTC, ascending) that have a batch file under ``<root>/forecasts``."""
    filesystem, directory = _forecasts_dir(root)
    if filesystem.get_file_info(directory).type != pafs.FileType.Directory:
        return []
    selector = pafs.FileSelector(directory, recursive=True)
    stamps = []
    for info in filesystem.get_file_info(selector):
        name = info.base_name
        if info.type == pafs.FileType.File and name.startswith("issued_at=") and name.endswith(".parquet"):
            compact = name.removeprefix("issued_at=").removesuffix(".parquet")
            stamps.append(pd.Timestamp(datetime.strptime(compact, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)))
    return sorted(stamps)


def read_forecast_table(root: str, issued_at: datetime | pd.Timestamp | str | None = None) -> pa.Table:
    """Return one complete published batch as an Arrow table (contract schema + file metadata).

    The file's bytes are checked against the sha256 in ``latest.json`` (``issued_at=None``) or in
    the batch's manifest, so a table is returned only when file and pointer agree.

    Parameters
    ----------
    root : str
        Data root (local path or URI).
    issued_at : datetime, Timestamp, ISO string or None
        Issue time to read (tz-aware); None reads the batch ``latest.json`` points at.
    """
    filesystem, directory = _forecasts_dir(root)
    deadline = time.monotonic() + READ_RETRY_S
    while True:
        if issued_at is None:
            pointer_path = f"{directory}/{LATEST_NAME}"
            pointer = _read_json(filesystem, pointer_path)
            if pointer is None:
                raise ForecastError(f"no forecast batch published under {directory} yet; run `powercast forecast`")
        else:
            stamp = to_utc_timestamp(issued_at, "issued_at")
            pointer_path = f"{directory}/{manifest_relpath(stamp)}"
            pointer = _read_json(filesystem, pointer_path)
            if pointer is None:
                known = ", ".join(iso_utc(s) for s in list_issue_times(root)[-5:]) or "none"
                raise ForecastError(
                    f"no complete forecast batch issued at {iso_utc(stamp)} under {directory} "
                    f"(latest issue times: {known})"
                )
        path = f"{directory}/{pointer['path']}"
        payload = read_bytes(path, filesystem)
        if payload is not None and hashlib.sha256(payload).hexdigest() == pointer["sha256"]:
            table = _table_from_parquet(payload, path)
            _decoded_metadata(table, path)
            validate_forecast_table(table, source=path)
            return table
        if time.monotonic() > deadline:
            raise ForecastError(
                f"{path} does not match the sha256 in {pointer_path}: a publish was interrupted; "
                f"re-run `powercast forecast --issued-at {pointer['issued_at']}`"
            )
        time.sleep(READ_RETRY_PAUSE_S)


def read_forecasts(
    root: str, issued_at: datetime | pd.Timestamp | str | None = None, meter_id: str | None = None
) -> pd.DataFrame:
    """Return the latest complete forecast batch, or the one issued at ``issued_at``, as a DataFrame.

    Columns are the contract's (``powercast.core.schemas.FORECAST_SCHEMA``), timestamps tz-aware UTC.
    ``DataFrame.attrs["powercast"]`` holds the decoded file metadata (contract version, interval
    coverage, and per-meter training range and validation MAE).

    Parameters
    ----------
    root : str
        Data root (local path or URI).
    issued_at : datetime, Timestamp, ISO string or None
        Issue time (tz-aware); None reads the latest batch.
    meter_id : str or None
        Keep only this meter's rows; raises ForecastError if the batch has no such meter.
    """
    table = read_forecast_table(root, issued_at)
    metadata = _decoded_metadata(table, f"forecast batch under {root}")
    if meter_id is not None:
        meters = sorted(set(table["meter_id"].to_pylist()))
        if meter_id not in meters:
            raise ForecastError(f"meter {meter_id!r} is not in this forecast batch; meters in it: {meters}")
        table = table.filter(pc.equal(table["meter_id"], meter_id))
        metadata = {
            key: ({meter_id: value[meter_id]} if key in PER_METER_KEYS else value) for key, value in metadata.items()
        }
    frame = table.replace_schema_metadata(None).to_pandas()
    frame.attrs["powercast"] = metadata
    return frame
