"""Per-meter file locks, so two runs for the same meter never interleave their writes.

A lock is an ``fcntl.flock`` on ``<root>/locks/<meter_id>.lock``. The operating system drops it
when the holding process exits, however it exits, so a crashed run never leaves a stale lock.
While it holds the lock, a run writes who it is into the lock file; a run that waits in vain
names that holder in its :class:`~powercast.core.errors.LockedError`.

The lock guards between processes (two nightly runs, a CLI command beside a flow run) and
between threads of one process (a thread-based task runner fanning out meters): each thread
takes its own ``flock`` on its own file descriptor, which conflicts with every other holder. It
is reentrant within one thread: a flow that holds a meter's lock can call library code that
takes the same lock again without deadlocking on itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from powercast.core.errors import ConfigError, LockedError
from powercast.core.schemas import METER_ID_PATTERN, METER_ID_RULE
from powercast.io import layout
from powercast.io.atomic import is_uri

DEFAULT_LOCK_TIMEOUT_S = 600.0
POLL_INTERVAL_S = 0.2
# Meter ids become file names (powercast.core.schemas.METER_ID_PATTERN); names starting with "_" are
# free for the locks that guard files shared by every meter.
_METER_ID_RE = re.compile(METER_ID_PATTERN)
INGEST_LOCK_NAME = "_ingest"  # the store, its manifest and quarantine
PUBLISH_LOCK_NAME = "_publish"  # forecasts/: one file per issue time holds every meter
SHARED_LOCK_NAMES: frozenset[str] = frozenset({INGEST_LOCK_NAME, PUBLISH_LOCK_NAME})


@dataclass
class _HeldLock:
    fd: int
    depth: int


# (lock file, thread id) -> the open lock; re-entry is per thread, never shared across threads.
_held_locks: dict[tuple[str, int], _HeldLock] = {}
_held_locks_guard = threading.Lock()


def lock_path(root: str | Path, name: str) -> Path:
    """Return the lock file of ``name`` (a meter id or a shared lock name) under a local data root.

    Raises
    ------
    ConfigError
        When the root is a URI (locks need a local file system) or the name is not a safe
        file name.
    """
    text = str(root)
    if is_uri(text):
        raise ConfigError(
            f"cannot lock under data root {text!r}: file locks need a local path; run one writer per meter "
            "with a Prefect concurrency limit instead, or use a local data root"
        )
    if name not in SHARED_LOCK_NAMES and not _METER_ID_RE.match(name):
        raise ConfigError(
            f"meter id {name!r} cannot name a lock file: use {METER_ID_RULE}"
        )
    return Path(layout.locks_dir(str(Path(text).absolute()))) / f"{name}.lock"


def read_holder(path: str | Path) -> dict[str, str]:
    """Return what the current holder wrote into a lock file (empty when nothing readable)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe_holder(holder: dict[str, str]) -> str:
    if not holder:
        return "an unknown holder"
    parts = [f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    if holder.get("holder"):
        parts.append(f"run {holder['holder']}")
    if holder.get("acquired_at_utc"):
        parts.append(f"since {holder['acquired_at_utc']}")
    return ", ".join(parts)


def _write_holder(fd: int, holder: str | None) -> None:
    record = {
        "pid": str(os.getpid()),
        "host": socket.gethostname(),
        "holder": holder or "",
        "acquired_at_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    payload = json.dumps(record).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, payload, 0)
    os.fsync(fd)


def _acquire(path: Path, name: str, timeout_s: float, holder: str | None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                what = f"meter {name!r}" if name not in SHARED_LOCK_NAMES else f"lock {name!r}"
                raise LockedError(
                    f"{what} is locked by {_describe_holder(read_holder(path))} (lock file {path}); "
                    f"waited {timeout_s:g} s. Let that run finish, or retry with a longer lock timeout; "
                    "the lock frees itself when the holding process exits"
                ) from None
            time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0.0)))
            continue
        _write_holder(fd, holder)
        return fd


@contextmanager
def named_lock(
    root: str | Path, name: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, holder: str | None = None
) -> Iterator[Path]:
    """Hold the lock ``name`` under ``<root>/locks`` for the ``with`` block; yields the lock file.

    Parameters
    ----------
    root
        Local data root.
    name
        A meter id, or one of :data:`SHARED_LOCK_NAMES` for files every meter shares.
    timeout_s
        How long to wait for another process to release the lock (0 = fail at once).
    holder
        Who holds it (a run id), written into the lock file for whoever waits.

    Raises
    ------
    LockedError
        When another process still holds the lock after ``timeout_s``.
    """
    if timeout_s < 0:
        raise ConfigError(f"lock timeout must be >= 0 seconds, got {timeout_s}")
    path = lock_path(root, name)
    key = (str(path), threading.get_ident())
    with _held_locks_guard:
        held = _held_locks.get(key)
        if held is not None:
            held.depth += 1
    if held is None:
        fd = _acquire(path, name, timeout_s, holder)
        with _held_locks_guard:
            held = _held_locks[key] = _HeldLock(fd=fd, depth=1)
    try:
        yield path
    finally:
        with _held_locks_guard:
            held.depth -= 1
            released = held.depth == 0
            if released:
                del _held_locks[key]
        if released:
            os.ftruncate(held.fd, 0)
            fcntl.flock(held.fd, fcntl.LOCK_UN)
            os.close(held.fd)


@contextmanager
def meter_lock(
    root: str | Path, meter_id: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, holder: str | None = None
) -> Iterator[Path]:
    """Hold the write lock of one meter for the ``with`` block; yields the lock file.

    Raises
    ------
    LockedError
        When another process still holds this meter's lock after ``timeout_s``; the message
        names the meter and the holder (pid, host, run, since when).
    ConfigError
        When the meter id cannot be a file name or the root is not a local path.
    """
    with named_lock(root, meter_id, timeout_s=timeout_s, holder=holder) as path:
        yield path
