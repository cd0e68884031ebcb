"""Run ids: the one naming rule for the runs that ingest, train, forecast and backtest start."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone


def new_run_id(kind: str, started_utc: datetime | None = None, suffix: str | None = None) -> str:
    """Return a run id: kind, UTC start time and a short suffix (``ingest-20101126T210200Z-1a2b3c``).

    Parameters
    ----------
    kind : str
        What the run does (``"ingest"``, ``"train"``, ``"forecast"``, ``"backtest"``, a flow's name).
    started_utc : datetime, optional
        When the run started (a flow run's scheduled start); now when None.
    suffix : str, optional
        What makes the id unique (a flow run id's first hex digits); 6 random hex digits when None.
    """
    started = (started_utc or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{kind}-{started:%Y%m%dT%H%M%SZ}-{suffix or uuid.uuid4().hex[:6]}"
