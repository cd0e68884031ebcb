"""A meter's lock held by another thread for the length of a ``with`` block (another run writing that meter)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from powercast.io.locking import meter_lock


@contextmanager
def lock_held_elsewhere(root: str | Path, meter_id: str, holder: str, wait_s: float = 30.0) -> Iterator[None]:
    """Hold ``meter_id``'s lock in a second thread while the block runs; release it and join the thread after."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with meter_lock(root, meter_id, holder=holder):
            held.set()
            release.wait(wait_s)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(wait_s), f"the lock of {meter_id} was not taken within {wait_s} s"
        yield
    finally:
        release.set()
        thread.join()
