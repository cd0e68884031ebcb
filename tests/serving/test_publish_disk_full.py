"""A disk that fills during a publish leaves the previous batch published, whole and readable.

The publish runs in a child process whose file-size limit (``RLIMIT_FSIZE``) is too small for
one of the files it writes: first the new batch file, then (limit between the two sizes) the
manifest after the batch file went through. The child ignores ``SIGXFSZ`` so that the write fails
with ``EFBIG`` the way a full disk fails with ``ENOSPC``, instead of the kernel killing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from powercast.serving.publish import latest_pointer, publish_batch, read_forecasts

ISSUED_AT = "2010-08-17T23:00Z"
METERS = tuple(f"meter-{number:02d}" for number in range(10))
FAILED_PUBLISH = 3  # the child's exit status when publish_batch raised ForecastError

CHILD = """
import pickle, resource, signal, sys

from powercast.core.errors import ForecastError
from powercast.serving.publish import publish_batch

root, batches_file, limit_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(batches_file, "rb") as handle:
    batches = pickle.load(handle)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write() instead of death by signal
resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
try:
    publish_batch(root, batches)
except ForecastError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"cause: {exc.__cause__!r}", file=sys.stderr)
    sys.exit(3)
"""


def _batches(factory, run_id: str, level_kw: float):
    # long notes make the manifest bigger than the batch file, so a limit can fall between them
    return [
        dataclasses.replace(
            factory(meter, ISSUED_AT, run_id=run_id, level_kw=level_kw), notes=(f"{meter}: " + "n" * 600,)
        )
        for meter in METERS
    ]


def _snapshot(root: Path) -> dict[str, str]:
    """Return every file under forecasts/ (temp files included) with the sha256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((root / "forecasts").rglob("*"))
        if path.is_file()
    }


def _new_file_sizes(tmp_path: Path, factory) -> tuple[int, int]:
    """Return (batch file bytes, manifest bytes) of the second publish, measured in a scratch root."""
    scratch = str(tmp_path / "scratch")
    publish_batch(scratch, _batches(factory, "run-before", 1.0))
    published = publish_batch(scratch, _batches(factory, "run-after", 3.0))
    return os.path.getsize(published.path), os.path.getsize(published.manifest_path)


@pytest.mark.parametrize("failing_file", ["batch file", "manifest"])
def test_a_publish_that_fills_the_disk_leaves_the_previous_batch_intact(tmp_path, forecast_batch_factory, failing_file):
    batch_bytes, manifest_bytes = _new_file_sizes(tmp_path, forecast_batch_factory)
    assert manifest_bytes > batch_bytes + 1000, "the manifest must be the bigger file for the second case"
    limit_bytes = batch_bytes // 2 if failing_file == "batch file" else (batch_bytes + manifest_bytes) // 2
    root = tmp_path / "root"
    before = publish_batch(str(root), _batches(forecast_batch_factory, "run-before", 1.0))
    snapshot = _snapshot(root)
    batches_file = tmp_path / "batches.pickle"
    batches_file.write_bytes(pickle.dumps(_batches(forecast_batch_factory, "run-after", 3.0)))

    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(batches_file), str(limit_bytes)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    after = _snapshot(root)
    assert child.returncode == FAILED_PUBLISH, child.stderr
    named = (
        rf"{re.escape(str(Path(before.path).parent))}/issued_at=20100817T230000Z\.published=\S+\.parquet"
        if failing_file == "batch file"
        else re.escape(before.manifest_path)
    )
    print(child.stderr)
    assert re.search(rf"could not write {named}: File too large", child.stderr), child.stderr
    assert "cause: OSError(27, 'File too large')" in child.stderr and "temporary file was removed" in child.stderr
    assert not [name for name in after if Path(name).name.startswith(".tmp-")]
    new_files = sorted(set(after) - set(snapshot))
    assert {name: after[name] for name in snapshot} == snapshot  # previous batch, manifest, latest.json: same bytes
    assert len(new_files) == (0 if failing_file == "batch file" else 1)  # a batch file that no pointer names
    assert latest_pointer(str(root))["path"] == Path(before.path).relative_to(root / "forecasts").as_posix()
    frame = read_forecasts(str(root))
    assert set(frame["run_id"]) == {"run-before"} and len(frame) == 24 * len(METERS)
