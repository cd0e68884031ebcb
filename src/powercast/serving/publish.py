"""The forecasts/ layout: publish forecast batches to immutable files, their manifests, the ``latest`` pointer.

Layout under a data root (a local path or a URI, see ``powercast.io.atomic.resolve_filesystem``;
the names are built in ``powercast.io.layout``)::

    forecasts/issue_date=YYYY-MM-DD/issued_at=<T>.published=<P>.parquet  every meter's rows of issue time T, one publish
    forecasts/issue_date=YYYY-MM-DD/issued_at=<T>.manifest.json           names the current file of T
    forecasts/latest.json                                                 names the newest T's current file

``issue_date`` is the UTC date of ``issued_at``. Every publish writes a new file whose name holds its
publish time ``P`` (microseconds, strictly increasing per issue time): a batch file, once written,
is never written again, renamed over or changed, so a consumer that reads a file by path (and opens
it twice, as pandas, polars and DuckDB may) always reads the one complete batch its pointer named.
Writes happen in this order, each one atomic (temp name → fsync → rename): the new Parquet file,
then the manifest of its issue time, then ``latest.json``. The file a re-publish replaces
(*superseded*) stays on disk for ``SUPERSEDED_RETENTION_S`` after that publish, listed in the
manifest's ``superseded`` entries, so a reader that fetched the old pointer a moment earlier still
finds it; a later publish sweeps it (and files of publishes that failed before their manifest).
A file a manifest or ``latest.json`` names is never swept.
``publish_batch`` takes no lock itself: its callers (the flows' publish task, ``powercast forecast``)
hold the data root's publish lock (``powercast.io.locking.PUBLISH_LOCK_NAME``), so one publisher
writes at a time; readers need no lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
    TEMP_PREFIX,
    atomic_write_bytes,
    parquet_bytes,
    read_bytes,
    resolve_filesystem,
)
from powercast.serving.contract import ForecastBatch, iso_utc, to_utc_timestamp, validate_forecast_table

KEY_CONTRACT_VERSION, KEY_COVERAGE, KEY_TRAINING_START, KEY_TRAINING_END, KEY_VALIDATION_MAE = FORECAST_METADATA_KEYS
# Keys whose value differs per meter: stored as a JSON object {meter_id: value}.
PER_METER_KEYS: tuple[str, ...] = (KEY_TRAINING_START, KEY_TRAINING_END, KEY_VALIDATION_MAE)
# Batch files never change, so a reader that finds no file where its pointer said read that
# pointer just before a publish moved it and a sweep removed the file (past its retention); it
# reads the pointer again for this long before calling the data root damaged.
READ_RETRY_S = 5.0
READ_RETRY_PAUSE_S = 0.02
# How long a superseded batch file stays after the publish that replaced it: a consumer that read
# the old pointer just before the switch must still find the file it names. A day covers any
# reader that starts a read while the pointer names it, with room for slow and retried reads.
# A keyword argument of publish_batch overrides it (tests; a store with tighter space).
SUPERSEDED_RETENTION_S = 24 * 3600.0

_log = logging.getLogger(__name__)


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
    swept: tuple[str, ...] = ()  # superseded batch files and stale temp files this publish deleted


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


def publish_batch(
    root: str,
    batches: Sequence[ForecastBatch] | ForecastBatch,
    *,
    retention_s: float = SUPERSEDED_RETENTION_S,
) -> PublishedBatch:
    """Publish forecast batches of one issue time to a new immutable file; return where they landed.

    All batches must share one issue time and one run id, one batch per meter. The issue time's
    batch is replaced as a whole: meters given here get the new rows, meters already published and
    not given here keep theirs. The rows go to a new file (its name holds the publish time), then
    the issue time's manifest is pointed at it, then ``latest.json`` if its issue time is the
    newest published. The file replaced stays ``retention_s`` longer for readers that are still on
    it; superseded files whose time is up, across all issue times, are then deleted.

    Re-publishing rows identical to the current file's (a re-run) writes no new file: the
    manifest and ``latest.json`` keep naming the file that already holds them, and are rewritten
    only if something they say changed (the notes). A re-run is thus a no-op for readers.

    Parameters
    ----------
    root : str
        Data root (local path or URI); files go under ``<root>/forecasts/``.
    batches : ForecastBatch or sequence of ForecastBatch
        The rows and metadata to publish.
    retention_s : float
        Seconds a superseded file stays after the publish that replaced it (default one day).

    Returns
    -------
    PublishedBatch
        Paths of the batch file and manifest, its sha256, row count, meters, whether
        ``latest.json`` now points at it, and the files this publish swept.
    """
    group = _checked_group(batches)
    if isinstance(retention_s, bool) or not isinstance(retention_s, (int, float)) or not 0 <= retention_s < math.inf:
        raise ForecastError(f"publish_batch retention_s={retention_s!r} must be a finite number of seconds >= 0")
    issued_at = group[0].issued_at_utc
    filesystem, directory = _forecasts_dir(root)
    manifest_path = f"{directory}/{layout.forecast_manifest_relpath(issued_at)}"
    previous_manifest = _read_json(filesystem, manifest_path)
    existing, existing_metadata, existing_sha256 = _read_current(
        filesystem, directory, previous_manifest, manifest_path
    )
    rows, per_meter, coverage = _merged_with_existing(group, existing, existing_metadata)
    validate_forecast_table(rows, source=f"batch for {iso_utc(issued_at)}")

    metadata = {
        KEY_CONTRACT_VERSION: FORECAST_CONTRACT_VERSION,
        KEY_COVERAGE: repr(float(coverage)),
        **{key: json.dumps(per_meter[key], sort_keys=True) for key in PER_METER_KEYS},
    }
    payload = parquet_bytes(rows, metadata)
    now = _utc_now()
    if previous_manifest is not None and existing_sha256 == hashlib.sha256(payload).hexdigest():
        # the same bytes are already current: keep naming that file, with the time it was published
        published_at = previous_manifest.get("published_at") or iso_utc(pd.Timestamp(now))
        placed = {"path": previous_manifest["path"], "published_at": published_at}
    else:
        placed = _write_new_batch_file(filesystem, directory, issued_at, payload, now)
    superseded, expired = _superseded_entries(
        filesystem, directory, previous_manifest, manifest_path, placed["path"], now, retention_s
    )
    manifest = _manifest(group, rows, payload, {**metadata, **per_meter}, previous_manifest, placed, superseded)
    unchanged = f"{placed['path']} is written but the manifest and latest.json name the previous file"
    _write_if_changed(filesystem, manifest_path, _json_bytes(manifest), unchanged)
    latest_updated = _move_latest_pointer(filesystem, directory, manifest, issued_at)
    swept = _sweep_superseded(filesystem, directory, now, retention_s, expired)  # only after the pointers moved
    return PublishedBatch(
        issued_at_utc=issued_at,
        path=f"{directory}/{placed['path']}",
        manifest_path=manifest_path,
        sha256=manifest["sha256"],
        rows=rows.num_rows,
        meters=tuple(manifest["meters"]),
        latest_updated=latest_updated,
        swept=tuple(swept),
    )


def _utc_now() -> datetime:
    """Return the publish clock (UTC, microseconds); one function so that tests can move it."""
    return datetime.now(timezone.utc)


def _iso_us(stamp: datetime) -> str:
    """Return an instant as ISO 8601 UTC with microseconds (retention deadlines: no rounding early)."""
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def _pointed_path(pointer: dict[str, Any], key: str, source: str) -> str:
    """Return ``pointer[key]``, a path relative to ``forecasts/``, or raise ForecastError naming ``source``."""
    relpath = pointer.get(key)
    if not isinstance(relpath, str) or not relpath or relpath.startswith("/") or ".." in relpath.split("/"):
        raise ForecastError(
            f"{source} field {key!r} must be a path inside forecasts/, got {relpath!r}; "
            "re-publish the batch with `powercast forecast`"
        )
    return relpath


def _read_current(
    filesystem: pafs.FileSystem, directory: str, manifest: dict[str, Any] | None, manifest_path: str
) -> tuple[pa.Table | None, dict[str, Any] | None, str | None]:
    """Return the rows, decoded metadata and sha256 of the file the manifest names, or Nones.

    A manifest whose file is gone counts as nothing published: the new publish holds only the
    meters it is given (the nightly run gives every meter), which is how such a root recovers.
    """
    if manifest is None:
        return None, None, None
    path = f"{directory}/{_pointed_path(manifest, 'path', manifest_path)}"
    payload = read_bytes(path, filesystem)
    if payload is None:
        return None, None, None
    table = _table_from_parquet(payload, path)
    return table, _decoded_metadata(table, path), hashlib.sha256(payload).hexdigest()


def _write_new_batch_file(
    filesystem: pafs.FileSystem, directory: str, issued_at: pd.Timestamp, payload: bytes, now: datetime
) -> dict[str, str]:
    """Write ``payload`` under a name newer than any file of its issue time on disk; return path and publish time."""
    folder = f"{directory}/{layout.forecast_issue_dir(issued_at)}"
    names = [info.base_name for info in filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))]
    parsed = [layout.parse_forecast_batch_name(name) for name in names]
    earlier = [name[1] for name in parsed if name is not None and name[0] == issued_at and name[1] is not None]
    # names must never repeat and must sort in publish order, even if the clock stands or steps back
    published_at = max([now, *(stamp + timedelta(microseconds=1) for stamp in earlier)])
    relpath = layout.forecast_batch_relpath(issued_at, published_at)
    unchanged = f"the files {iso_utc(issued_at)}'s manifest and latest.json name are unchanged"
    _write(filesystem, f"{directory}/{relpath}", payload, unchanged)
    return {"path": relpath, "published_at": iso_utc(pd.Timestamp(published_at))}


def _superseded_of(manifest: dict[str, Any] | None, manifest_path: str) -> list[dict[str, str]]:
    """Return a manifest's ``superseded`` entries (path, superseded_at, kept_until), checked."""
    entries = (manifest or {}).get("superseded", [])
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("kept_until"), str) for entry in entries
    ):
        raise ForecastError(f"{manifest_path} field 'superseded' must be a list of {{path, kept_until}} objects")
    manifest_folder, _, manifest_name = manifest_path.rpartition("/")
    issued_at = layout.parse_forecast_manifest_name(manifest_name)
    for entry in entries:
        folder, _, name = _pointed_path(entry, "path", manifest_path).rpartition("/")
        parsed = layout.parse_forecast_batch_name(name)
        # Only this manifest's own issue time's batch files are ever swept through it: an entry
        # naming latest.json, another folder's or another issue time's file is a damaged manifest.
        if folder != manifest_folder.rpartition("/")[2] or parsed is None or parsed[0] != issued_at:
            raise ForecastError(f"{manifest_path} lists {entry['path']!r} as superseded, which is not one of its batch files")
    return entries


def _superseded_entries(
    filesystem: pafs.FileSystem,
    directory: str,
    previous_manifest: dict[str, Any] | None,
    manifest_path: str,
    current_relpath: str,
    now: datetime,
    retention_s: float,
) -> tuple[list[dict[str, str]], list[str]]:
    """Return (the new manifest's ``superseded`` entries, paths whose time is up).

    Entries are earlier files of this issue time still on disk and until when they stay; those
    whose ``kept_until`` has passed leave the manifest and are swept once it no longer lists them.
    """
    entries = list(_superseded_of(previous_manifest, manifest_path))
    if previous_manifest is not None and previous_manifest["path"] != current_relpath:
        kept_until = _iso_us(now + timedelta(seconds=retention_s))
        entries.append({"path": previous_manifest["path"], "superseded_at": _iso_us(now), "kept_until": kept_until})
    on_disk = [entry for entry in entries if filesystem.get_file_info(f"{directory}/{entry['path']}").is_file]
    source = f"{manifest_path} kept_until"
    expired = [entry for entry in on_disk if to_utc_timestamp(entry["kept_until"], source) <= now]
    kept = [entry for entry in on_disk if entry not in expired]
    return kept, [f"{directory}/{entry['path']}" for entry in expired]


def _write(filesystem: pafs.FileSystem, path: str, payload: bytes, unchanged: str) -> None:
    """Write ``path`` atomically; on an I/O error raise ForecastError naming it and what still stands."""
    try:
        atomic_write_bytes(path, payload, filesystem)
    except OSError as exc:
        # the cause stays chained: the flows retry a full disk (core.errors.transient_io_cause)
        raise ForecastError(
            f"could not write {path}: {exc.strerror or exc} (errno {exc.errno}); its temporary file was removed "
            f"and {unchanged}; free space on the data root and publish again"
        ) from exc


def _write_if_changed(filesystem: pafs.FileSystem, path: str, payload: bytes, unchanged: str) -> bool:
    """Write ``path`` unless it already holds ``payload`` (a re-run rewrites nothing); return whether it wrote."""
    if read_bytes(path, filesystem) == payload:
        return False
    _write(filesystem, path, payload, unchanged)
    return True


def _sweep_superseded(
    filesystem: pafs.FileSystem, directory: str, now: datetime, retention_s: float, expired: list[str]
) -> list[str]:
    """Delete superseded batch files past their ``kept_until``, and stale temp files; return their paths.

    ``expired`` are files the publish just dropped from its manifest's ``superseded`` list.
    A file the manifest of its issue time or ``latest.json`` names is never deleted. A batch file
    no manifest names or lists is the output of a publish that failed before its manifest: no
    pointer ever named it, so it goes ``retention_s`` after its own publish time. Temp files that
    old are what a publisher killed mid-write left (a live write takes seconds).
    """
    batch_files, manifests, stale = _forecast_files(filesystem, directory, now - timedelta(seconds=retention_s))
    latest = _read_json(filesystem, f"{directory}/{layout.FORECAST_LATEST}") or {}
    named = {latest.get("path")}
    stale += [path for path in expired if path.removeprefix(f"{directory}/") not in named]
    for issued_at, files in batch_files.items():
        if len(files) == 1 and issued_at in manifests:  # one file and its manifest: nothing to sweep
            continue
        try:
            stale += _expired_batch_files(
                filesystem, directory, issued_at, files, issued_at in manifests, named, now, retention_s
            )
        except ForecastError as exc:  # another issue time's damaged manifest must not fail this publish
            _log.warning("left the files of %s unswept: %s", iso_utc(pd.Timestamp(issued_at)), exc)
    swept = []
    for path in dict.fromkeys(stale):  # an expired entry is also a file no manifest lists: delete it once
        try:
            filesystem.delete_file(path)
            swept.append(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # housekeeping only: the publish itself succeeded, the next one retries
            _log.warning("could not sweep superseded forecast file %s: %s", path, exc)
    return swept


def _forecast_files(
    filesystem: pafs.FileSystem, directory: str, temp_cutoff: datetime
) -> tuple[dict[datetime, list[tuple[str, datetime | None]]], set[datetime], list[str]]:
    """Return batch files by issue time ((relative path, publish time)), issue times with a manifest, old temp files."""
    batch_files: dict[datetime, list[tuple[str, datetime | None]]] = {}
    manifests: set[datetime] = set()
    stale_temps = []
    for info in filesystem.get_file_info(pafs.FileSelector(directory, recursive=True, allow_not_found=True)):
        if not info.is_file:
            continue
        name = info.base_name
        if name.startswith(TEMP_PREFIX) and info.mtime is not None and info.mtime < temp_cutoff:
            stale_temps.append(info.path)
        elif (parsed := layout.parse_forecast_batch_name(name)) is not None:
            relpath = info.path.removeprefix(f"{directory}/")
            batch_files.setdefault(parsed[0], []).append((relpath, parsed[1]))
        elif (manifest_issued_at := layout.parse_forecast_manifest_name(name)) is not None:
            manifests.add(manifest_issued_at)
    return batch_files, manifests, stale_temps


def _expired_batch_files(
    filesystem: pafs.FileSystem,
    directory: str,
    issued_at: datetime,
    files: list[tuple[str, datetime | None]],
    has_manifest: bool,
    named: set[str | None],
    now: datetime,
    retention_s: float,
) -> list[str]:
    """Return the paths of this issue time's batch files that no pointer names and whose time is up."""
    manifest_path = f"{directory}/{layout.forecast_manifest_relpath(issued_at)}"
    manifest = _read_json(filesystem, manifest_path) if has_manifest else None
    keep = set(named) | ({manifest.get("path")} if manifest else set())
    kept_until = {entry["path"]: entry["kept_until"] for entry in _superseded_of(manifest, manifest_path)}
    expired = []
    for relpath, published_at in files:
        if relpath in keep:
            continue
        if relpath in kept_until:
            deadline = to_utc_timestamp(kept_until[relpath], f"{manifest_path} kept_until of {relpath}")
        elif published_at is not None:
            deadline = pd.Timestamp(published_at) + pd.Timedelta(seconds=retention_s)
        else:
            continue  # a 1.0-layout file that no manifest lists: not ours to judge, left for a person
        if deadline <= now:
            expired.append(f"{directory}/{relpath}")
    return expired


def _manifest(
    group: Sequence[ForecastBatch],
    rows: pa.Table,
    payload: bytes,
    metadata: dict[str, Any],
    previous_manifest: dict[str, Any] | None,
    placed: dict[str, str],
    superseded: list[dict[str, str]],
) -> dict[str, Any]:
    """Return the manifest of an issue time: its current file (``placed``), what it holds, the files it replaced."""
    issued_at = group[0].issued_at_utc
    meter_rows = rows.group_by("meter_id").aggregate([("model", "max"), ("model_version", "max"), ("run_id", "max")])
    notes = {meter: entry.get("notes", []) for meter, entry in (previous_manifest or {}).get("models", {}).items()}
    notes.update({batch.meter_id: list(batch.notes) for batch in group})
    return {
        "contract_version": FORECAST_CONTRACT_VERSION,
        "issued_at": iso_utc(issued_at),
        "path": placed["path"],
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
        "published_at": placed["published_at"],
        "metadata": metadata,
        "superseded": superseded,
    }


def _move_latest_pointer(
    filesystem: pafs.FileSystem, directory: str, manifest: dict[str, Any], issued_at: pd.Timestamp
) -> bool:
    """Point ``latest.json`` at this batch unless a newer issue time is published; return whether it points here."""
    latest_path = f"{directory}/{layout.FORECAST_LATEST}"
    latest = _read_json(filesystem, latest_path)
    if latest is not None and to_utc_timestamp(latest.get("issued_at"), f"{latest_path} issued_at") > issued_at:
        return False
    pointer = {key: manifest[key] for key in ("contract_version", "issued_at", "path", "sha256", "rows", "meters")}
    pointer.update({"manifest": layout.forecast_manifest_relpath(issued_at), "published_at": manifest["published_at"]})
    previous = latest and latest.get("path")
    unchanged = f"{manifest['path']} is published (its manifest names it) but latest.json still names {previous}"
    _write_if_changed(filesystem, latest_path, _json_bytes(pointer), unchanged)
    return True


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8")


def latest_pointer(root: str) -> dict[str, Any] | None:
    """Return the parsed ``forecasts/latest.json``, or None when nothing was published yet."""
    filesystem, directory = _forecasts_dir(root)
    return _read_json(filesystem, f"{directory}/{layout.FORECAST_LATEST}")


def list_issue_times(root: str) -> list[pd.Timestamp]:
    """Return the issue times (UTC, ascending) published under ``<root>/forecasts``: those with a manifest."""
    filesystem, directory = _forecasts_dir(root)
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    names = [info.base_name for info in filesystem.get_file_info(selector) if info.is_file]
    stamps = {layout.parse_forecast_manifest_name(name) for name in names}
    return sorted(pd.Timestamp(stamp) for stamp in stamps if stamp is not None)


def _read_pointer(
    filesystem: pafs.FileSystem, directory: str, root: str, issued_at: datetime | pd.Timestamp | str | None
) -> tuple[dict[str, Any], str]:
    """Return (pointer, its path): ``latest.json`` for ``issued_at=None``, else the issue time's manifest."""
    if issued_at is None:
        pointer_path = f"{directory}/{layout.FORECAST_LATEST}"
        pointer = _read_json(filesystem, pointer_path)
        if pointer is None:
            raise ForecastError(f"no forecast batch published under {directory} yet; run `powercast forecast`")
        return pointer, pointer_path
    stamp = to_utc_timestamp(issued_at, "issued_at")
    pointer_path = f"{directory}/{layout.forecast_manifest_relpath(stamp)}"
    pointer = _read_json(filesystem, pointer_path)
    if pointer is None:
        known = ", ".join(iso_utc(s) for s in list_issue_times(root)[-5:]) or "none"
        raise ForecastError(
            f"no complete forecast batch issued at {iso_utc(stamp)} under {directory} (latest issue times: {known})"
        )
    return pointer, pointer_path


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
        pointer, pointer_path = _read_pointer(filesystem, directory, root, issued_at)
        path = f"{directory}/{_pointed_path(pointer, 'path', pointer_path)}"
        payload = read_bytes(path, filesystem)
        if payload is not None and hashlib.sha256(payload).hexdigest() == pointer.get("sha256"):
            table = _table_from_parquet(payload, path)
            _decoded_metadata(table, path)
            validate_forecast_table(table, source=path)
            return table
        # Batch files never change, so this is a pointer read just before a publish moved it (the
        # file since swept) - read the pointer again - or, if it persists, a damaged data root.
        if time.monotonic() > deadline:
            problem = "is missing" if payload is None else "does not match the sha256"
            raise ForecastError(
                f"{path} {problem} named in {pointer_path}: the file was removed or changed outside powercast; "
                f"re-run `powercast forecast --issued-at {pointer.get('issued_at')}`"
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
