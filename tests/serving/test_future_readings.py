"""A store that already holds readings from the future (written before ingest quarantined them).

Training, the default issue time and "is there news?" all stop at now + ingest.future_tolerance_h,
so such a meter is still trained and forecast from its real readings.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest

from powercast.core.config import PowercastConfig
from powercast.core.errors import StoreError
from powercast.core.schemas import MEASURED_COLUMNS, READINGS_SCHEMA, UTC_US
from powercast.prepare.series import prepare_meter
from powercast.serving.forecast import default_issue_time
from powercast.store.readings import future_cutoff_utc, readings_from, store_time_range, upsert_readings

UTC = timezone.utc
METER = "m1"
REAL_START = datetime(2010, 1, 1, tzinfo=UTC)
REAL_HOURS = 24 * 10
FUTURE_STAMPS = [datetime(2099, 3, 1, tzinfo=UTC), datetime(2099, 3, 1, 0, 1, tzinfo=UTC)]


def _readings(stamps: list[datetime]) -> pa.Table:
    return pa.table(
        {
            "meter_id": [METER] * len(stamps),
            "timestamp": pa.array(stamps, type=UTC_US),
            **{name: pa.array([1.0] * len(stamps), type=pa.float32()) for name in MEASURED_COLUMNS},
            "source_sha256": ["0" * 64] * len(stamps),
        },
        schema=READINGS_SCHEMA,
    )


@pytest.fixture()
def store_with_future(config: PowercastConfig) -> PowercastConfig:
    real = [REAL_START + timedelta(hours=hour) for hour in range(REAL_HOURS)]
    upsert_readings(config.root, _readings(real + FUTURE_STAMPS))
    return config.with_overrides({"prepare.lookback_steps": 48, "prepare.split.val_days": 2})


def test_future_cutoff_is_now_plus_the_tolerance() -> None:
    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert future_cutoff_utc(2.0, now) == datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    with pytest.raises(StoreError, match="no timezone"):
        future_cutoff_utc(2.0, datetime(2026, 12, 2))


def test_time_range_before_a_cutoff_skips_the_future_partition(store_with_future: PowercastConfig) -> None:
    root = store_with_future.root
    last_real = REAL_START + timedelta(hours=REAL_HOURS - 1)
    assert store_time_range(root, METER) == (REAL_START, FUTURE_STAMPS[-1])
    assert store_time_range(root, METER, future_cutoff_utc(2.0)) == (REAL_START, last_real)
    with pytest.raises(StoreError, match="no stored reading before"):
        store_time_range(root, METER, REAL_START)


def test_readings_from_counts_the_future_ones(store_with_future: PowercastConfig) -> None:
    assert readings_from(store_with_future.root, METER, future_cutoff_utc(2.0)) == (2, FUTURE_STAMPS[-1])
    assert readings_from(store_with_future.root, METER, datetime(2100, 1, 1, tzinfo=UTC)) == (0, None)


def test_preparation_and_the_default_issue_time_ignore_future_readings(store_with_future: PowercastConfig) -> None:
    prepared = prepare_meter(store_with_future, METER)
    assert prepared.index_utc[-1] == pd.Timestamp(REAL_START + timedelta(hours=REAL_HOURS - 1))
    # The last real reading is 23:00 UTC on 10 Jan = midnight local (Europe/Paris): the next midnight issues.
    assert default_issue_time(store_with_future, METER) == pd.Timestamp("2010-01-10T23:00:00Z")
