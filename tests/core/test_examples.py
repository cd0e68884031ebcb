"""The example configurations in examples/ load, and say what the docs say they do."""

from __future__ import annotations

from pathlib import Path

from powercast.core.config import load_config
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_house_in_a_fleet_of_its_channels_loads_and_ingests_five_meters(sample_path: Path, tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "uci_house_channels.toml", environ={"POWERCAST_ROOT": str(tmp_path / "root")})
    assert config.train.scope == "both" and config.train.cells == ["lstm", "hgb"]
    assert config.train.global_hidden_sizes == [128] and config.train.meter_embedding_dim == 16
    assert config.train.local_meters == [config.ingest.default_meter_id]  # only the house trains its own models
    ingest_paths([sample_path], config, run_id="example", progress=False)
    house = config.ingest.default_meter_id
    assert list_meters(config.root) == sorted(
        [house, *(f"{house}.{channel}" for channel in ("kitchen", "laundry", "heater_ac", "rest"))]
    )
