"""Derived meters for scale tests: made from the real channels, labelled synthetic, gaps kept, reproducible."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from powercast.core.config import PowercastConfig
from powercast.experiments.synthetic_fleet import (
    STEPS_PER_WEEK,
    derived_kw,
    plan_fleet,
    real_channels_15min,
    write_fleet_day_csv,
    write_fleet_history,
)
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters, read_readings

START = datetime(2010, 9, 1, tzinfo=timezone.utc)
END = datetime(2010, 10, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def channels(sample_path: Path, tmp_path_factory: pytest.TempPathFactory):
    root = str(tmp_path_factory.mktemp("real") / "root")
    config = PowercastConfig(root=root).with_overrides(
        {"ingest.channel_meters": ["total", "kitchen", "laundry", "heater_ac", "rest"]}
    )
    ingest_paths([sample_path], config, run_id="real")
    return real_channels_15min(root, "sceaux_household", START, END)


def test_real_channels_are_fifteen_minute_kw(channels) -> None:
    assert list(channels.columns)[0] == "sceaux_household" and channels.shape[1] == 5
    assert (channels.index[1] - channels.index[0]).total_seconds() == 15 * 60
    assert len(channels) == 30 * 96


def test_every_derived_meter_is_labelled_and_the_plan_is_reproducible(channels) -> None:
    fleet = plan_fleet(list(channels.columns), 30, len(channels), seed=7)
    assert all(meter.meter_id.startswith("synthetic-") for meter in fleet)
    assert len({meter.meter_id for meter in fleet}) == 30
    assert plan_fleet(list(channels.columns), 30, len(channels), seed=7) == fleet
    assert plan_fleet(list(channels.columns), 30, len(channels), seed=8) != fleet


def test_a_derived_meter_keeps_the_real_gaps_shifted_by_whole_weeks(channels) -> None:
    channels = channels.copy()
    channels.iloc[100:140, :] = np.nan  # a real outage, in every channel
    (meter,) = [m for m in plan_fleet(list(channels.columns), 40, len(channels) * 4, seed=3) if m.shift_weeks > 0][:1]
    values = derived_kw(channels, meter)
    first, second = (channels[name].to_numpy() for name in meter.channels)
    delay = meter.shift_weeks * STEPS_PER_WEEK
    source_missing = np.isnan(first) | np.isnan(second)
    assert np.isnan(values[:delay]).all()  # nothing before the delayed start, and nothing wrapped round
    assert np.array_equal(np.isnan(values[delay:]), source_missing[: len(values) - delay])
    mixed = meter.scale * (meter.weight * first + (1 - meter.weight) * second)
    np.testing.assert_allclose(values[delay:], mixed[: len(values) - delay], rtol=1e-6)


def test_history_goes_to_the_store_and_a_day_file_ingests_like_any_landing_file(channels, tmp_path: Path) -> None:
    fleet = plan_fleet(list(channels.columns), 12, len(channels), seed=1)
    root = str(tmp_path / "fleet")
    history, day = slice(0, len(channels) - 96), slice(len(channels) - 96, len(channels))
    assert write_fleet_history(root, channels, fleet, history) == 12 * (len(channels) - 96)
    day_file = tmp_path / "landing" / "fleet-day.csv"
    day_file.parent.mkdir()
    assert write_fleet_day_csv(str(day_file), channels, fleet, day) == 12 * 96
    (report,) = ingest_paths([day_file], PowercastConfig(root=root), run_id="night")
    assert report.rows_in == 12 * 96 == report.rows_stored + report.rows_quarantined
    assert list_meters(root) == [meter.meter_id for meter in fleet]
    stored = read_readings(root, fleet[0].meter_id)["active_power_kw"].to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(stored, derived_kw(channels, fleet[0]), rtol=1e-4, atol=1e-4)
