"""The flows' I/O tasks retry when the library's error was caused by a transient I/O failure.

The last test proves it with a disk that really fails: ``tests/faults/flakyfs.c``, loaded into a
flow process with ``LD_PRELOAD``, makes the open(2) family return EIO for the first writes under
the store, the way a flaky NFS mount or network block device fails and recovers.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from prefect import flow

from flows.tasks import IO_RETRIES, io_task
from powercast.core.errors import StoreError
from powercast.io.atomic import TEMP_PREFIX
from powercast.store.readings import read_readings
from powercast.store.replay import replay_days

pytestmark = pytest.mark.prefect_server
METER = "sceaux_household"


def _write_through_flaky_disk(counter: Path, failures: int, error: OSError) -> int:
    """Append one attempt to ``counter``; fail like a full disk (wrapped as the store does) the first times."""
    attempts = len(counter.read_text()) if counter.exists() else 0
    counter.write_text("x" * (attempts + 1))
    if attempts < failures:
        raise StoreError(f"cannot write {counter.name}: {error.strerror}") from error
    return attempts + 1


flaky_write = io_task(_write_through_flaky_disk)


@flow
def write_once(counter: Path, failures: int, error: OSError) -> int:
    return flaky_write(counter, failures, error)


def test_a_store_error_from_a_full_disk_is_retried_until_it_passes(prefect_harness: None, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    state = write_once(counter, IO_RETRIES - 1, OSError(errno.ENOSPC, "No space left on device"), return_state=True)
    assert state.is_completed()
    assert state.result() == IO_RETRIES  # failed twice, passed on the third attempt


def test_a_missing_file_is_not_retried(prefect_harness: None, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    state = write_once(counter, 1, FileNotFoundError(errno.ENOENT, "No such file"), return_state=True)
    assert state.is_failed()
    assert counter.read_text() == "x"  # one attempt only


FLAKYFS_SOURCE = Path(__file__).resolve().parents[1] / "faults" / "flakyfs.c"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Runs the ingest flow in a process whose disk is flaky; prints the flow run id and the reports.
INGEST_SCRIPT = """
import json, sys
from flows.ingest import ingest
from flows.params import IngestParams
state = ingest(IngestParams(root=sys.argv[1]), return_state=True)
reports = state.result()
print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id),
                  "reports": [[r.rows_in, r.rows_stored, r.rows_quarantined] for r in reports]}))
"""


@pytest.fixture(scope="module")
def flakyfs_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/faults/flakyfs.c built with the machine's C compiler (gcc is part of the CI image)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the flaky filesystem (tests/faults/flakyfs.c)")
    library = tmp_path_factory.mktemp("flakyfs") / "libflakyfs.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(FLAKYFS_SOURCE), "-ldl"], check=True)
    return library


def _task_run_counts(flow_run_id: str) -> dict[str, int]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}


def test_the_ingest_flow_retries_through_a_disk_that_fails_then_works(
    prefect_harness: None, prefect_server, flakyfs_library: Path, sample_path: Path, tmp_path: Path
) -> None:
    """The store's writes hit real EIO errors from the open(2) family twice; the third attempt stores everything."""
    root = tmp_path / "root"
    # Mid-month days: each file lands in one month partition (the 1st of a month, local midnight,
    # is the previous month's last hour in UTC), so one attempt writes one partition and meets one
    # failure; a file spanning two partitions writes them in parallel and can meet both at once.
    replay_days(sample_path, root / "landing", start_day=date(2010, 10, 10), n_days=2)
    failures = IO_RETRIES - 1
    env = {
        **os.environ,
        "LD_PRELOAD": str(flakyfs_library),
        "FLAKYFS_PREFIX": str(root / "store" / "readings"),
        "FLAKYFS_FAILURES": str(failures),
        "FLAKYFS_LOG": str(tmp_path / "flakyfs.log"),
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_HOME": str(prefect_server.prefect_home),
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", INGEST_SCRIPT, str(root)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The faults really happened: two failed opens of a store partition's temp file.
    failed_opens = (tmp_path / "flakyfs.log").read_text().splitlines()
    assert len(failed_opens) == failures
    assert all(Path(path).name.startswith(TEMP_PREFIX) for path in failed_opens), failed_opens
    assert "Input/output error" in done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert _task_run_counts(result["flow_run_id"])["ingest_new_files"] == failures + 1
    # Rows in = rows stored + rows quarantined, and the store holds every stored row once.
    assert len(result["reports"]) == 2  # one landing file a day
    rows_in, rows_stored, rows_quarantined = (sum(column) for column in zip(*result["reports"]))
    assert rows_in == rows_stored + rows_quarantined == 2 * 24 * 60
    stored = read_readings(str(root), METER)
    assert len(stored) == rows_stored
    assert not list((root / "store").rglob(f"{TEMP_PREFIX}*"))
