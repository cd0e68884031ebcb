"""Registry: a global network's weights stored once per version, each meter's card referring to them.

One tiny real global GRU (with a meter embedding, so each meter's forecasts differ) is trained
once on three synthetic meters; each test registers it into a registry of its own.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_records import model_record

from powercast.core.config import COMBINED_MODEL, PowercastConfig
from powercast.core.errors import RegistryError
from powercast.models.combination import CombinedForecaster
from powercast.models.registry import (
    CARD_FILE,
    GLOBAL_NETWORK_FILE,
    HOLDOUT_WEIGHTS_FILE,
    MODEL_FORMAT,
    WEIGHTS_FILE,
    LoadedModel,
    ModelRecord,
    load_model,
    promote,
    register_model,
    verify_model_files,
)
from powercast.models.rnn import RNNForecaster
from powercast.prepare.series import PreparedSeries, prepare_meter
from powercast.serving.forecast import FALLBACK_FAMILY, make_forecast_batch
from powercast.store.ingest import ingest_paths
from powercast.store.readings import list_meters
from powercast.training.fit import build_forecaster
from powercast.training.fleet import fit_global_models
from powercast.training.pipeline import window_inputs

VERSION = "night1-gru_global"
TINY_GLOBAL = {
    "prepare.lookback_steps": 24,
    "prepare.split": {"mode": "trailing", "val_days": 14, "test_days": 0},
    "train.scope": "global",
    "train.cells": ["gru"],
    "train.hidden_sizes": [8],
    "train.ensemble_members": 1,
    "train.meter_embedding_dim": 2,
    "train.max_epochs": 1,
    "train.batch_size": 64,
    "train.global_steps_per_epoch": 10,
    "train.global_val_windows": 200,
    "train.accelerator": "cpu",
    "train.cpu_threads": 1,
    "train.refit_on_validation": False,
}


@dataclass(frozen=True)
class Fleet:
    """Three meters' readings (``root``), their prepared series and one global network trained on them."""

    root: str
    config: PowercastConfig
    series: dict[str, PreparedSeries]
    network: RNNForecaster

    @property
    def meters(self) -> list[str]:
        return list(self.series)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """Three synthetic meters (a daily profile at three scales) and a tiny global GRU fitted on them."""
    hours = pd.date_range("2010-01-04", periods=60 * 24, freq="1h", tz="UTC")
    profile = np.exp(-((hours.hour - 19) ** 2) / 6.0)
    rows = [
        pd.DataFrame({"timestamp": hours, "meter_id": f"synthetic-{index}", "active_power_kw": 0.3 + scale * profile})
        for index, scale in enumerate((0.8, 1.5, 3.0))
    ]
    landing = tmp_path_factory.mktemp("global-registry")
    source = landing / "meters.csv"
    pd.concat(rows).to_csv(source, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    root = str(landing / "root")
    ingest_paths([source], PowercastConfig(root=root), run_id="ingest")
    config = PowercastConfig(root=root).with_overrides(TINY_GLOBAL)
    series = {meter_id: prepare_meter(config, meter_id) for meter_id in list_meters(root)}
    torch.manual_seed(0)
    [trained] = fit_global_models(config, list(series.values()), run_id="night1", progress=False).values()
    return Fleet(root, config, series, trained.fit.module.eval())


def _assert_forecasts_like(
    loaded: LoadedModel, served: RNNForecaster, held_out: RNNForecaster, meter: str, windows: np.ndarray
) -> None:
    """Assert that a reloaded model forecasts exactly like the served and held-out networks bound to ``meter``."""
    np.testing.assert_array_equal(loaded.module.forecast_scaled(windows), served.for_meter(meter).forecast_scaled(windows))
    np.testing.assert_array_equal(
        loaded.holdout_module.forecast_scaled(windows), held_out.for_meter(meter).forecast_scaled(windows)
    )


def _record(prepared: PreparedSeries, config: PowercastConfig, cell: str = "gru") -> ModelRecord:
    return model_record(prepared, config, cell, scope="global")


def _nudged(network: RNNForecaster) -> RNNForecaster:
    """Return a copy of ``network`` with other weights (the served refit beside the held-out fit)."""
    served = copy.deepcopy(network)
    with torch.no_grad():
        for parameter in served.parameters():
            parameter.add_(0.01)
    return served.eval()


def _register_global(
    registry: str,
    fleet: Fleet,
    meter_id: str,
    served: RNNForecaster,
    holdout: RNNForecaster | None = None,
    version: str = VERSION,
) -> str:
    """Register a global network bound to ``meter_id`` (as the fleet's selection does) under that meter."""
    bound_holdout = holdout.for_meter(meter_id) if holdout is not None else None
    record = _record(fleet.series[meter_id], fleet.config)
    return register_model(registry, meter_id, version, served.for_meter(meter_id), record, bound_holdout)


def _windows(prepared: PreparedSeries) -> np.ndarray:
    return window_inputs(prepared, prepared.window_starts["val"][:32])


def _shared_folder(registry: str, version: str = VERSION) -> Path:
    """Return the one network folder under ``models/_global/<version>/``."""
    [folder] = (Path(registry) / "models" / "_global" / version).iterdir()
    return folder


def _files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_one_version_under_three_meters_writes_the_weights_once_and_each_meter_reloads_bound(
    fleet: Fleet, tmp_path: Path
) -> None:
    registry = str(tmp_path / "registry")
    served = _nudged(fleet.network)
    folders = [Path(_register_global(registry, fleet, meter, served, holdout=fleet.network)) for meter in fleet.meters]
    shared = _shared_folder(registry)
    assert _files(shared) == {WEIGHTS_FILE, HOLDOUT_WEIGHTS_FILE, GLOBAL_NETWORK_FILE}
    assert all(_files(folder) == {CARD_FILE} for folder in folders)  # no weights under the meters
    network = json.loads((shared / GLOBAL_NETWORK_FILE).read_text())
    assert network["hparams"]["meter_ids"] == fleet.meters and "serving_meter" not in network["hparams"]
    assert network["weights_sha256"] == {
        name: hashlib.sha256((shared / name).read_bytes()).hexdigest() for name in (WEIGHTS_FILE, HOLDOUT_WEIGHTS_FILE)
    }
    for meter in fleet.meters:
        loaded = load_model(registry, meter, VERSION)
        windows = _windows(fleet.series[meter])
        assert loaded.module.hparams.serving_meter == meter and loaded.module.meter_ids == tuple(fleet.meters)
        _assert_forecasts_like(loaded, served, fleet.network, meter, windows)
        verify_model_files(registry, meter, VERSION)
    # Each meter reads its own embedding row: the same windows forecast differently as another meter's.
    windows = _windows(fleet.series[fleet.meters[0]])
    first, second = (load_model(registry, meter, VERSION).module for meter in fleet.meters[:2])
    assert not np.allclose(first.forecast_scaled(windows), second.forecast_scaled(windows))


def test_registering_the_same_network_again_leaves_the_shared_files_as_they_are(fleet: Fleet, tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    _register_global(registry, fleet, fleet.meters[0], fleet.network)
    shared = _shared_folder(registry)
    written = {name: (shared / name).stat().st_ino for name in _files(shared)}
    for meter in fleet.meters:  # the first meter again too (a re-registration)
        _register_global(registry, fleet, meter, fleet.network)
    assert {name: (shared / name).stat().st_ino for name in _files(shared)} == written  # not replaced


def test_another_network_under_the_same_version_gets_a_folder_of_its_own(fleet: Fleet, tmp_path: Path) -> None:
    # A re-run of the run id trains other weights: the cards of the first run keep the bytes they vouch for.
    registry = str(tmp_path / "registry")
    first, rerun = fleet.meters[0], fleet.meters[1]
    _register_global(registry, fleet, first, fleet.network)
    _register_global(registry, fleet, rerun, _nudged(fleet.network))
    assert len(list((Path(registry) / "models" / "_global" / VERSION).iterdir())) == 2
    windows = _windows(fleet.series[first])
    np.testing.assert_array_equal(
        load_model(registry, first, VERSION).module.forecast_scaled(windows),
        fleet.network.for_meter(first).forecast_scaled(windows),
    )


def test_a_meter_card_names_the_shared_folder_and_does_not_grow_with_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    meter = fleet.meters[0]
    prepared = fleet.series[meter]
    train = fleet.config.train.model_copy(update={"meter_embedding_dim": 0})
    card_bytes = {}
    for n_meters in (3, 1000):
        meter_ids = [meter, *(f"other-{index}" for index in range(n_meters - 1))]
        network = build_forecaster(prepared, train, "gru", meter_ids=meter_ids).eval()
        version = f"fleet{n_meters}-gru_global"
        folder = Path(_register_global(registry, fleet, meter, network, version=version))
        card = json.loads((folder / CARD_FILE).read_text())
        assert "meter_ids" not in card["hparams"] and card["hparams"]["n_meters"] == n_meters
        assert card["hparams"]["serving_meter"] == meter
        assert card["global_network"] == {"version": version, "network_id": _shared_folder(registry, version).name}
        assert set(card["weights_sha256"]) == {WEIGHTS_FILE}  # the meter's card still vouches for the bytes
        shared = json.loads((_shared_folder(registry, version) / GLOBAL_NETWORK_FILE).read_text())
        assert shared["hparams"]["meter_ids"] == meter_ids
        card_bytes[n_meters] = (folder / CARD_FILE).stat().st_size
    assert abs(card_bytes[1000] - card_bytes[3]) < 100, card_bytes  # O(1) per card, not O(meters)


@pytest.mark.parametrize("file_name", [WEIGHTS_FILE, HOLDOUT_WEIGHTS_FILE])
def test_a_truncated_shared_weights_file_is_named_by_load_and_verify(
    fleet: Fleet, tmp_path: Path, file_name: str
) -> None:
    registry = str(tmp_path / "registry")
    meter = fleet.meters[1]
    _register_global(registry, fleet, meter, _nudged(fleet.network), holdout=fleet.network)
    path = _shared_folder(registry) / file_name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for check in (load_model, verify_model_files):
        with pytest.raises(RegistryError, match="do not match the sha256") as raised:
            check(registry, meter, VERSION)
        assert str(path) in str(raised.value)


def test_a_missing_or_edited_network_json_is_named_by_load_and_verify(fleet: Fleet, tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    meter = fleet.meters[0]
    _register_global(registry, fleet, meter, fleet.network)
    path = _shared_folder(registry) / GLOBAL_NETWORK_FILE
    network = json.loads(path.read_text())
    # A reordered meter list would serve each meter another meter's embedding row: it no longer matches its id.
    network["hparams"]["meter_ids"] = network["hparams"]["meter_ids"][::-1]
    path.write_text(json.dumps(network))
    for check in (load_model, verify_model_files):
        with pytest.raises(RegistryError, match="do not match the network id") as raised:
            check(registry, meter, VERSION)
        assert str(path) in str(raised.value)
    path.unlink()
    for check in (load_model, verify_model_files):
        with pytest.raises(RegistryError, match="is missing") as raised:
            check(registry, meter, VERSION)
        assert str(path) in str(raised.value)


def test_a_champion_whose_shared_weights_are_damaged_is_served_by_the_fallback(fleet: Fleet, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(fleet.root, root, ignore=shutil.ignore_patterns("models", "runs", "locks"))
    config = PowercastConfig(root=str(root)).with_overrides(TINY_GLOBAL)
    meter = fleet.meters[2]
    _register_global(str(root), fleet, meter, fleet.network)
    promote(str(root), meter, VERSION, run_id="night1")
    path = _shared_folder(str(root)) / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:100])
    batch = make_forecast_batch(config, meter, None, run_id="night-after-damage")
    assert set(batch.table["model"].to_pylist()) <= set(FALLBACK_FAMILY.values())
    (note,) = batch.notes
    assert "the champion cannot be loaded" in note and str(path) in note


def _rewrite_as_before_the_shared_folder(registry: str, meter: str, version: str) -> None:
    """Rewrite a global network's registration as cards were written before the shared folder: the weights
    in the meter's version folder, the full meter list in the card's hparams; then remove the shared folder."""
    shared = _shared_folder(registry, version)
    network = json.loads((shared / GLOBAL_NETWORK_FILE).read_text())
    folder = Path(registry) / "models" / meter / version
    for name in network["weights_sha256"]:
        shutil.copyfile(shared / name, folder / name)
    card = json.loads((folder / CARD_FILE).read_text())
    card["hparams"] = {**network["hparams"], "serving_meter": meter}
    card["format"] = MODEL_FORMAT
    del card["global_network"]
    (folder / CARD_FILE).write_text(json.dumps(card))
    shutil.rmtree(Path(registry) / "models" / "_global")


def test_a_global_card_written_before_the_shared_folder_still_loads(fleet: Fleet, tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    meter = fleet.meters[2]
    served = _nudged(fleet.network)
    _register_global(registry, fleet, meter, served, holdout=fleet.network)
    _rewrite_as_before_the_shared_folder(registry, meter, VERSION)
    verify_model_files(registry, meter, VERSION)
    loaded = load_model(registry, meter, VERSION)
    windows = _windows(fleet.series[meter])
    assert loaded.module.hparams.serving_meter == meter and loaded.module.meter_ids == tuple(fleet.meters)
    _assert_forecasts_like(loaded, served, fleet.network, meter, windows)


def test_a_combination_with_a_global_member_loads_and_verifies(fleet: Fleet, tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    meter = fleet.meters[1]
    prepared = fleet.series[meter]
    torch.manual_seed(1)
    local = build_forecaster(prepared, fleet.config.train, "gru").eval()
    register_model(registry, meter, "night1-gru", local, _record(prepared, fleet.config))
    _register_global(registry, fleet, meter, fleet.network)
    versions = ("night1-gru", VERSION)
    combination = CombinedForecaster([local, fleet.network.for_meter(meter)], versions)
    register_model(registry, meter, "night1-combo", combination, _record(prepared, fleet.config, COMBINED_MODEL))
    verify_model_files(registry, meter, "night1-combo")
    loaded = load_model(registry, meter, "night1-combo")
    assert [member.version for member in loaded.members] == list(versions)
    assert loaded.members[1].module.hparams.serving_meter == meter
    windows = _windows(prepared)
    np.testing.assert_array_equal(loaded.module.forecast_scaled(windows), combination.forecast_scaled(windows))
    path = _shared_folder(registry) / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:100])
    for check in (load_model, verify_model_files):
        with pytest.raises(RegistryError, match="do not match the sha256") as raised:
            check(registry, meter, "night1-combo")
        assert str(path) in str(raised.value)
