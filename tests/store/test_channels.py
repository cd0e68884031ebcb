"""The UCI house's sub-metering channels become their own meters, in kW, next to the total."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from powercast.core.config import PowercastConfig
from powercast.store.channels import KW_PER_WH_PER_MINUTE, channel_meter_id
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters, read_readings

ALL_CHANNELS = ["total", "kitchen", "laundry", "heater_ac", "rest"]
HEADER = "Date;Time;Global_active_power;Global_reactive_power;Voltage;Global_intensity;Sub_metering_1;Sub_metering_2;Sub_metering_3"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def _config(root: Path, channels: list[str]) -> PowercastConfig:
    return PowercastConfig(root=str(root)).with_overrides({"ingest.channel_meters": channels})


def test_every_channel_is_a_meter_with_its_own_kw(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "day.txt",
        [
            "1/1/2010;00:00:00;3.000;0.1;240.0;12.0;10.000;5.000;17.000",
            "1/1/2010;00:01:00;?;?;?;?;?;?;?",
        ],
    )
    config = _config(tmp_path / "root", ALL_CHANNELS)
    (report,) = ingest_paths([source], config, run_id="r1")
    assert (report.rows_in, report.rows_stored, report.rows_quarantined) == (2, 2, 0)  # lines, not meter rows
    meters = list_meters(config.root)
    assert sorted(meters) == sorted(channel_meter_id("sceaux_household", channel) for channel in ALL_CHANNELS)
    expected_kw = {
        "sceaux_household": 3.0,
        "sceaux_household.kitchen": 10 * KW_PER_WH_PER_MINUTE,
        "sceaux_household.laundry": 5 * KW_PER_WH_PER_MINUTE,
        "sceaux_household.heater_ac": 17 * KW_PER_WH_PER_MINUTE,
        "sceaux_household.rest": 3.0 - 32 * KW_PER_WH_PER_MINUTE,
    }
    for meter_id, kw in expected_kw.items():
        rows = read_readings(config.root, meter_id)
        assert rows.num_rows == 2
        values = rows["active_power_kw"].to_numpy(zero_copy_only=False)
        assert values[0] == pytest.approx(kw, abs=1e-5)
        assert np.isnan(values[1])  # a missing minute stays missing on every channel
        if meter_id != "sceaux_household":
            assert rows["voltage_v"].null_count == 2  # a channel meter measures power only


def test_the_rest_of_the_house_never_goes_below_zero(tmp_path: Path) -> None:
    # 0.5 kW in total but 9 Wh/min (0.54 kW) on the sub-meters: rounding of whole Wh, not a negative load.
    source = _write(tmp_path / "day.txt", ["1/1/2010;00:00:00;0.500;0.1;240.0;2.0;3.000;3.000;3.000"])
    config = _config(tmp_path / "root", ["rest"])
    ingest_paths([source], config, run_id="r1")
    assert list_meters(config.root) == ["sceaux_household.rest"]
    assert read_readings(config.root, "sceaux_household.rest")["active_power_kw"].to_pylist() == [0.0]


def test_default_keeps_one_meter_for_the_house(tmp_path: Path, sample_path: Path) -> None:
    config = PowercastConfig(root=str(tmp_path / "root"))
    ingest_paths([sample_path], config, run_id="r1")
    assert list_meters(config.root) == ["sceaux_household"]


def test_the_sample_gives_five_real_meters_whose_channels_add_up(tmp_path: Path, sample_path: Path) -> None:
    config = _config(tmp_path / "root", ALL_CHANNELS)
    (report,) = ingest_paths([sample_path], config, run_id="r1")
    assert report.rows_in == report.rows_stored + report.rows_quarantined
    assert len(list_meters(config.root)) == 5
    total = read_readings(config.root, "sceaux_household")["active_power_kw"]
    parts = [read_readings(config.root, f"sceaux_household.{c}")["active_power_kw"] for c in ALL_CHANNELS[1:]]
    summed = pc.add(pc.add(parts[0], parts[1]), pc.add(parts[2], parts[3])).to_numpy(zero_copy_only=False)
    total_kw = total.to_numpy(zero_copy_only=False)
    present = ~np.isnan(total_kw)
    # Equal except where the rest was clipped at zero (sub-meters' whole-Wh rounding).
    assert np.mean(np.isclose(summed[present], total_kw[present], atol=1e-3)) > 0.999
