"""Test support: a UCI text file read straight into a readings DataFrame, without the store.

Used by the preparation tests to exercise ``prepare_series`` on real readings independently of
ingest: UCI clock (+01:00) → UTC, columns named as in ``MEASURED_COLUMNS``, '?' as NaN.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from powercast.core.schemas import MEASURED_COLUMNS, UCI_HEADER

UCI_CLOCK = timezone(timedelta(hours=1))


@lru_cache(maxsize=2)
def _read(path: str) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=";", na_values=["?"], dtype={name: np.float32 for name in UCI_HEADER[2:]})
    local = pd.to_datetime(raw["Date"] + " " + raw["Time"], format="%d/%m/%Y %H:%M:%S")
    frame = raw[list(UCI_HEADER[2:])].rename(columns=dict(zip(UCI_HEADER[2:], MEASURED_COLUMNS, strict=True)))
    frame.insert(0, "timestamp", local.dt.tz_localize(UCI_CLOCK).dt.tz_convert("UTC"))
    return frame


def read_uci_readings(path: Path) -> pd.DataFrame:
    """Return a fresh copy of the readings in a UCI ``;`` file (gzip or plain) with a UTC ``timestamp``."""
    return _read(str(path)).copy()
