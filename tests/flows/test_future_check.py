"""The night's check for readings from the future never stops the night: a meter it cannot read is skipped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from prefect import flow

from flows.tasks import find_future_readings
from powercast.core.config import PowercastConfig
from powercast.core.schemas import MEASURED_COLUMNS, READINGS_SCHEMA, UTC_US
from powercast.store.readings import upsert_readings

pytestmark = pytest.mark.prefect_server


def _store(root: Path, meter_id: str, stamps: list[datetime]) -> None:
    table = pa.table(
        {
            "meter_id": [meter_id] * len(stamps),
            "timestamp": pa.array(stamps, type=UTC_US),
            **{name: pa.array([1.0] * len(stamps), type=pa.float32()) for name in MEASURED_COLUMNS},
            "source_sha256": ["0" * 64] * len(stamps),
        },
        schema=READINGS_SCHEMA,
    )
    upsert_readings(str(root), table)


@flow
def check(config: PowercastConfig, meters: list[str]) -> dict[str, str]:
    return find_future_readings(config, meters)


def test_a_corrupted_current_partition_or_unknown_meter_is_skipped(prefect_harness: None, tmp_path: Path) -> None:
    root = tmp_path / "root"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    _store(root, "meter_a", [now - timedelta(hours=1)])
    _store(root, "meter_b", [now - timedelta(hours=1), now + timedelta(days=400)])
    for part in (root / "store" / "readings" / "meter_id=meter_a").rglob("*.parquet"):
        part.write_bytes(b"not parquet")
    state = check(PowercastConfig(root=str(root)), ["meter_a", "meter_b", "no_such_meter"], return_state=True)
    assert state.is_completed(), state.message
    ignored = state.result()
    assert list(ignored) == ["meter_b"]
    assert ignored["meter_b"].startswith("1 stored reading(s) stamped at or after ")
