"""Per-meter locks between real processes: one holder, the other waits or fails by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from powercast.core.errors import ConfigError, LockedError
from powercast.io.locking import (
    PUBLISH_LOCK_NAME,
    lock_path,
    meter_lock,
    named_lock,
    read_holder,
)

# A child process that takes a lock (``meter_lock`` or ``named_lock``, named by its last argument),
# says so through a marker file, and holds it for a while.
HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from powercast.io import locking
    root, name, marker, hold_s = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    take_lock = {"meter_lock": locking.meter_lock, "named_lock": locking.named_lock}[sys.argv[5]]
    with take_lock(root, name, timeout_s=30, holder="night-run-1"):
        marker.write_text("held")
        time.sleep(hold_s)
    """
)

# A child process that tries the lock and reports how it went on stdout.
WAITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from powercast.core.errors import LockedError
    from powercast.io.locking import meter_lock
    root, meter, timeout_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    started = time.monotonic()
    try:
        with meter_lock(root, meter, timeout_s=timeout_s, holder="night-run-2"):
            print(f"acquired after {time.monotonic() - started:.2f}")
    except LockedError as exc:
        print(f"locked: {exc}")
    """
)


def _start_holder(root: Path, name: str, hold_s: float, lock: str = "meter_lock") -> subprocess.Popen[str]:
    """Start a process holding ``lock`` (meter_lock or named_lock) on ``name``; return once it holds it."""
    marker = root / f"{name}.held"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(root), name, str(marker), str(hold_s), lock], text=True
    )
    deadline = time.monotonic() + 30
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"lock holder process did not take the lock (exit status {process.poll()})")
        time.sleep(0.05)
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
    holder = _start_holder(tmp_path, "meter_a", hold_s=1.5)
    try:
        outcome = _run_waiter(tmp_path, "meter_a", timeout_s=30)
    finally:
        holder.wait(timeout=30)
    assert outcome.startswith("acquired after ")
    assert float(outcome.rsplit(" ", 1)[1]) > 0.3


def test_other_meter_is_not_blocked(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, "meter_a", hold_s=20)
    try:
        outcome = _run_waiter(tmp_path, "meter_b", timeout_s=0)
    finally:
        holder.kill()
        holder.wait()
    assert outcome.startswith("acquired after ")


def test_lock_is_released_when_holder_process_dies(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, "meter_a", hold_s=60)
    holder.kill()
    holder.wait()
    outcome = _run_waiter(tmp_path, "meter_a", timeout_s=0)
    assert outcome.startswith("acquired after ")


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
    first_holds, release = threading.Event(), threading.Event()

    def first() -> None:
        with meter_lock(tmp_path, "m1", holder="thread-1"):
            first_holds.set()
            release.wait(10)

    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert first_holds.wait(10)
        with pytest.raises(LockedError, match="m1"):
            with meter_lock(tmp_path, "m1", timeout_s=0.3, holder="thread-2"):
                pass
    finally:
        release.set()
        worker.join(10)
