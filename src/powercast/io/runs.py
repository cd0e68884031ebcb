"""Run ids: the one naming rule for the runs that ingest, train, forecast and backtest start."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone


def new_run_id(kind: str) -> str:
    """Return a fresh run id: kind, UTC start time and a short random suffix (``ingest-20101126T210200Z-1a2b3c``).

    Parameters
    ----------
    kind : str
        What the run does (``"ingest"``, ``"train"``, ``"forecast"``, ``"backtest"``).
    """
    return f"{kind}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
