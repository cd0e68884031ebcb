"""Fixtures for the Prefect flow tests: an in-process harness, and a real local Prefect server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The flows are imported as `flows.*` from the repository root, as Prefect deployments do.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from deployments.serve import LocalPrefect, free_port, stop_process_group  # noqa: E402

SERVER_START_TIMEOUT_S = 240
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def tiny_training() -> dict[str, object]:
    """Training parameters small enough for a 2-core CI machine: one epoch of a tiny network.

    They exercise every step of the pipeline, not the quality of the models.
    """
    return {
        "lookback_steps": 24,
        "horizon_steps": 24,
        "hidden_sizes": [8],
        "batch_size": 64,
        "max_epochs": 1,
        "max_time_s": 60.0,
        "accelerator": "cpu",
        "cells": ["gru", "lstm"],  # hgb and the combination are exercised in tests/training
    }


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefect]:
    """A real ``prefect server start`` on a free 127.0.0.1 port, work pool created, flows deployed.

    No worker runs unless a test starts one (``prefect_worker``). Everything is stopped at the end
    of the session, and the server's state lives in a temporary PREFECT_HOME.
    """
    home = tmp_path_factory.mktemp("prefect-server-home")
    stack = LocalPrefect(port=free_port(), prefect_home=home, log_dir=home / "logs")
    try:
        stack.start_server(timeout_s=SERVER_START_TIMEOUT_S)
        stack.create_pool()
        stack.deploy()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: LocalPrefect) -> Iterator[None]:
    """Run flows in this process against the session's Prefect server (one server for every test)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings(
        updates={PREFECT_API_URL: prefect_server.api_url, PREFECT_HOME: prefect_server.prefect_home}
    ):
        yield
        # Send the last logs and events while the server still listens (it stops right after).
        APILogWorker.drain_all(timeout=30, at_exit=False)
        EventsWorker.drain_all(timeout=30, at_exit=False)


@pytest.fixture()
def prefect_worker(prefect_server: LocalPrefect) -> Iterator[LocalPrefect]:
    """A process worker on the server's pool for the duration of one test."""
    prefect_server.start_worker()
    try:
        yield prefect_server
    finally:
        if prefect_server.worker is not None:
            stop_process_group(prefect_server.worker)
            prefect_server.worker = None


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/ at the repository root (ignored by git; CI keeps it)."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
