"""Per-meter locks between real processes: one holder, the other waits or fails by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from lock_holder import lock_held_elsewhere

from powercast.core.errors import ConfigError, LockedError
from powercast.io.locking import (
    PUBLISH_LOCK_NAME,
    lock_path,
    meter_lock,
    named_lock,
    read_holder,
)

# A child process that takes a lock (``meter_lock`` or ``named_lock``, named by its last argument),
# writes "held" to a marker file, holds the lock until a ``.release`` file appears beside the
# marker (or hold_s passes), then writes "released" to the marker just before letting the lock go.
HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from powercast.io import locking
    root, name, marker, hold_s = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    take_lock = {"meter_lock": locking.meter_lock, "named_lock": locking.named_lock}[sys.argv[5]]
    with take_lock(root, name, timeout_s=30, holder="night-run-1"):
        marker.write_text("held")
        deadline = time.monotonic() + hold_s
        while not marker.with_suffix(".release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        marker.write_text("released")
    """
)

# A child process that tries the meter lock and reports how it went on stdout. Given the holder's
# marker, it writes a ``.trying`` file beside it first, and reports what the marker said once it
# had the lock.
WAITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from powercast.core.errors import LockedError
    from powercast.io.locking import meter_lock
    root, meter, timeout_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    holder_marker = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    if holder_marker is not None:
        holder_marker.with_suffix(".trying").write_text("trying")
    try:
        with meter_lock(root, meter, timeout_s=timeout_s, holder="night-run-2"):
            seen = holder_marker.read_text() if holder_marker is not None else "-"
            print(f"acquired; holder marker: {seen}")
    except LockedError as exc:
        print(f"locked: {exc}")
    """
)


def _wait_for_file(path: Path, process: subprocess.Popen[str], what: str) -> None:
    """Return once ``path`` exists; fail the test if ``process`` exits first or 30 s pass."""
    deadline = time.monotonic() + 30
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{what} (exit status {process.poll()})")
        time.sleep(0.02)


def _start_holder(root: Path, name: str, hold_s: float, lock: str = "meter_lock") -> subprocess.Popen[str]:
    """Start a process holding ``lock`` (meter_lock or named_lock) on ``name``; return once it holds it."""
    marker = root / f"{name}.held"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(root), name, str(marker), str(hold_s), lock], text=True
    )
    _wait_for_file(marker, process, "lock holder process did not take the lock")
    return process


def _run_waiter(root: Path, meter: str, timeout_s: float) -> str:
    finished = subprocess.run(
        [sys.executable, "-c", WAITER_SCRIPT, str(root), meter, str(timeout_s)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return finished.stdout.strip()


def test_second_process_fails_naming_meter_and_holder(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, "meter_a", hold_s=20)
    try:
        outcome = _run_waiter(tmp_path, "meter_a", timeout_s=0.5)
    finally:
        holder.kill()
        holder.wait()
    assert outcome.startswith("locked: ")
    assert "'meter_a'" in outcome
    assert f"pid {holder.pid}" in outcome
    assert "night-run-1" in outcome


def test_second_process_waits_until_first_releases(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, "meter_a", hold_s=60)
    marker = tmp_path / "meter_a.held"
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER_SCRIPT, str(tmp_path), "meter_a", "60", str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_file(marker.with_suffix(".trying"), waiter, "waiter process did not start")
        assert marker.read_text() == "held"
        marker.with_suffix(".release").write_text("go")  # only now may the holder let go
        out, err = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
        holder.kill()
        holder.wait()
    # the waiter got the lock only after the holder had written "released", inside its lock
    assert out.strip() == "acquired; holder marker: released", err


def test_other_meter_is_not_blocked(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, "meter_a", hold_s=20)
    try:
        outcome = _run_waiter(tmp_path, "meter_b", timeout_s=0)
    finally:
        holder.kill()
        holder.wait()
    assert outcome == "acquired; holder marker: -"


def test_lock_is_released_when_holder_process_dies(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, "meter_a", hold_s=60)
    holder.kill()
    holder.wait()
    outcome = _run_waiter(tmp_path, "meter_a", timeout_s=0)
    assert outcome == "acquired; holder marker: -"


def test_lock_is_reentrant_within_one_thread(tmp_path: Path) -> None:
    with meter_lock(tmp_path, "meter_a", timeout_s=0, holder="outer"):
        with meter_lock(tmp_path, "meter_a", timeout_s=0, holder="inner") as path:
            assert read_holder(path)["holder"] == "outer"
        assert read_holder(path)["holder"] == "outer"
    assert read_holder(path) == {}


def test_held_lock_file_names_the_holder(tmp_path: Path) -> None:
    with meter_lock(tmp_path, "meter_a", holder="run-42") as path:
        holder = read_holder(path)
    assert path == tmp_path.absolute() / "locks" / "meter_a.lock"
    assert holder["holder"] == "run-42"
    assert holder["pid"].isdigit()


def test_unsafe_meter_id_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot name a lock file"):
        lock_path(tmp_path, "../escape")


def test_uri_root_is_rejected_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local path"):
        lock_path("s3://bucket/powercast", "meter_a")


def test_locked_error_is_raised_in_process_against_other_process(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, "meter_a", hold_s=20)
    try:
        with pytest.raises(LockedError, match="meter 'meter_a' is locked by pid"):
            with meter_lock(tmp_path, "meter_a", timeout_s=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_shared_lock_is_named_as_a_lock_not_a_meter(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, PUBLISH_LOCK_NAME, hold_s=20, lock="named_lock")
    try:
        with pytest.raises(LockedError) as raised:
            with named_lock(tmp_path, PUBLISH_LOCK_NAME, timeout_s=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    message = str(raised.value)
    assert message.startswith(f"lock '_publish' is locked by pid {holder.pid}")
    assert "run night-run-1" in message
    assert f"(lock file {lock_path(tmp_path, PUBLISH_LOCK_NAME)})" in message


def test_second_thread_waits_for_the_first_to_release(tmp_path: Path) -> None:
    order: list[str] = []
    first_holds = threading.Event()

    def first() -> None:
        with meter_lock(tmp_path, "m1", holder="thread-1"):
            order.append("first in")
            first_holds.set()
            time.sleep(0.5)
            order.append("first out")

    worker = threading.Thread(target=first)
    worker.start()
    assert first_holds.wait(10)
    with meter_lock(tmp_path, "m1", timeout_s=10, holder="thread-2"):
        order.append("second in")
    worker.join(10)
    assert order == ["first in", "first out", "second in"]


def test_second_thread_times_out_while_the_first_holds(tmp_path: Path) -> None:
    with lock_held_elsewhere(tmp_path, "m1", holder="thread-1", wait_s=10):
        with pytest.raises(LockedError, match="m1"):
            with meter_lock(tmp_path, "m1", timeout_s=0.3, holder="thread-2"):
                pass
