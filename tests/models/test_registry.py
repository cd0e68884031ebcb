"""Registry: CPU checkpoint round-trip, the model card, the champion pointer and decision history."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_records import model_record
from safetensors.torch import load_file, save_file

from powercast.core.config import PowercastConfig
from powercast.core.errors import RegistryError
from powercast.models.registry import (
    ModelRecord,
    champion_version,
    list_versions,
    load_champion,
    load_model,
    promote,
    read_history,
    record_decision,
    register_model,
    version_name,
)
from powercast.models.rnn import RNNForecaster
from powercast.prepare.series import PreparedSeries
from powercast.training.fit import build_forecaster
from powercast.training.pipeline import window_inputs

METER = "sceaux_household"


@pytest.fixture()
def module(tiny_prepared: PreparedSeries, tiny_config: PowercastConfig) -> RNNForecaster:
    torch.manual_seed(0)
    return build_forecaster(tiny_prepared, tiny_config.train, "gru").eval()


def test_checkpoint_round_trip_on_cpu_gives_the_same_predictions(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config))
    loaded = load_model(tiny_config.root, METER, "night1-gru")
    windows = window_inputs(tiny_prepared, tiny_prepared.origin_starts["test"])
    expected_kw = tiny_prepared.scaler.inverse_target_kw(module.forecast_scaled(windows))
    np.testing.assert_array_equal(loaded.predict_kw(windows), expected_kw)
    assert next(loaded.module.parameters()).device == torch.device("cpu") and not loaded.module.training


def test_weights_are_plain_safetensors_and_the_card_describes_the_model(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    folder = Path(register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config)))
    tensors = load_file(folder / "weights.safetensors", device="cpu")
    assert set(tensors) == set(module.state_dict())
    card = json.loads((folder / "model.json").read_text())
    assert card["feature_names"] == list(tiny_prepared.feature_names)
    assert card["prepare_config"]["lookback_steps"] == tiny_prepared.lookback_steps
    assert card["train_config"]["hidden_sizes"] == tiny_config.train.hidden_sizes
    assert card["code_version"]["powercast"] and card["run_id"] == "night1"
    assert card["scaler"]["mean"] == tiny_prepared.scaler.to_dict()["mean"]


def test_loaded_model_carries_intervals_scaler_and_training_range(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config))
    loaded = load_model(tiny_config.root, METER, "night1-gru")
    assert loaded.interval_lo.shape == (1, tiny_prepared.horizon_steps) and (loaded.interval_lo <= 0).all()
    assert loaded.interval_coverage == 0.8 and loaded.cell == "gru"
    assert loaded.training_range_utc == tuple(pd.Timestamp(t) for t in tiny_prepared.split_bounds_utc["train"])
    assert loaded.scaler.to_dict() == tiny_prepared.scaler.to_dict()
    assert loaded.prepare_config == tiny_config.prepare


def test_a_refit_model_keeps_its_held_out_fit_beside_it(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    torch.manual_seed(1)
    held_out = build_forecaster(tiny_prepared, tiny_config.train, "gru").eval()
    folder = Path(
        register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config), held_out)
    )
    assert (folder / "holdout.safetensors").is_file()
    loaded = load_model(tiny_config.root, METER, "night1-gru")
    windows = window_inputs(tiny_prepared, tiny_prepared.origin_starts["test"])
    served_kw = tiny_prepared.scaler.inverse_target_kw(module.forecast_scaled(windows))
    held_out_kw = tiny_prepared.scaler.inverse_target_kw(held_out.forecast_scaled(windows))
    np.testing.assert_array_equal(loaded.predict_kw(windows), served_kw)
    np.testing.assert_array_equal(loaded.predict_kw(windows, held_out=True), held_out_kw)
    assert not np.array_equal(served_kw, held_out_kw)


def test_a_model_without_a_held_out_fit_serves_it_for_both(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    folder = Path(register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config)))
    assert not (folder / "holdout.safetensors").exists()
    loaded = load_model(tiny_config.root, METER, "night1-gru")
    windows = window_inputs(tiny_prepared, tiny_prepared.origin_starts["test"])
    assert loaded.holdout_module is None
    np.testing.assert_array_equal(loaded.predict_kw(windows, held_out=True), loaded.predict_kw(windows))


def test_a_card_from_before_ensembles_still_loads(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig
) -> None:
    torch.manual_seed(2)
    single = build_forecaster(tiny_prepared, tiny_config.train.model_copy(update={"ensemble_members": 1}), "gru").eval()
    folder = Path(register_model(tiny_config.root, METER, "old-gru", single, model_record(tiny_prepared, tiny_config)))
    # Rewrite the folder as the first format wrote it: one network's tensors at the top level,
    # no n_members in the card.
    tensors = {name.removeprefix("members.0."): tensor for name, tensor in load_file(folder / "weights.safetensors").items()}
    save_file(tensors, folder / "weights.safetensors")
    card = json.loads((folder / "model.json").read_text())
    del card["hparams"]["n_members"], card["holdout_weights"], card["weights_sha256"]
    card["format"] = "powercast.model/1"
    card["interval"]["lo_kw"], card["interval"]["hi_kw"] = card["interval"]["lo_kw"][0], card["interval"]["hi_kw"][0]
    (folder / "model.json").write_text(json.dumps(card))
    loaded = load_model(tiny_config.root, METER, "old-gru")
    windows = window_inputs(tiny_prepared, tiny_prepared.origin_starts["test"])
    np.testing.assert_array_equal(loaded.module.forecast_scaled(windows), single.forecast_scaled(windows))
    assert loaded.interval_lo.shape == (1, tiny_prepared.horizon_steps) and loaded.holdout_module is None


def test_a_card_of_an_unknown_format_is_refused_with_the_readable_ones(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    folder = Path(register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config)))
    card = json.loads((folder / "model.json").read_text())
    card["format"] = "powercast.model/9"
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(RegistryError, match=r"powercast.model/9.*powercast.model/1.*powercast.model/2.*powercast.model/3"):
        load_model(tiny_config.root, METER, "night1-gru")


def test_interval_offsets_follow_the_local_issue_hour(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    horizon = tiny_prepared.horizon_steps
    by_hour = np.arange(24, dtype=float)[:, None] + np.linspace(0.0, 0.5, horizon)[None, :]  # [24, H]
    record = dataclasses.replace(model_record(tiny_prepared, tiny_config), interval_lo=-by_hour, interval_hi=by_hour)
    register_model(tiny_config.root, METER, "night1-gru", module, record)
    loaded = load_model(tiny_config.root, METER, "night1-gru")
    assert loaded.interval_lo.shape == (24, horizon)
    local_tz = tiny_config.prepare.local_timezone  # a fixed offset: local 00:00 is 23:00 UTC at +01:00
    issued_utc = pd.Timestamp("2010-11-25 00:00", tz=local_tz).tz_convert("UTC")
    window = window_inputs(tiny_prepared, tiny_prepared.origin_starts["test"][:1])[0]  # [L, F]
    yhat_kw = np.full(horizon, 2.0, dtype=np.float32)
    for hours_later in (0, 7, 19):
        lo_kw, hi_kw = loaded.interval_kw(yhat_kw, issued_utc + pd.Timedelta(hours=hours_later), window)
        np.testing.assert_allclose(hi_kw - yhat_kw, by_hour[hours_later], atol=1e-5)
        np.testing.assert_allclose(lo_kw - yhat_kw, -by_hour[hours_later], atol=1e-5)


def test_interval_offsets_are_written_to_six_decimals_rounded_outward(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    horizon = tiny_prepared.horizon_steps
    hi = np.full((2, horizon), 0.1234561)  # ceil -> 0.123457; a plain round would give 0.123456, narrower
    lo = np.full((2, horizon), -0.1234561)  # floor -> -0.123457
    lo[1, 0], hi[1, 0] = -1e-9, 1e-9  # tiny offsets keep their side of zero: -1e-06 and 1e-06
    record = dataclasses.replace(model_record(tiny_prepared, tiny_config), interval_lo=lo, interval_hi=hi)
    folder = Path(register_model(tiny_config.root, METER, "night1-gru", module, record))
    interval = json.loads((folder / "model.json").read_text())["interval"]
    assert interval["hi_kw"][0][0] == 0.123457 and interval["lo_kw"][0][0] == -0.123457
    assert interval["hi_kw"][1][0] == 1e-06 and interval["lo_kw"][1][0] == -1e-06
    loaded = load_model(tiny_config.root, METER, "night1-gru")
    assert (loaded.interval_hi >= hi.astype(np.float32)).all() and (loaded.interval_lo <= lo.astype(np.float32)).all()


def test_interval_offsets_of_the_wrong_horizon_are_refused(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    wrong = np.ones((24, tiny_prepared.horizon_steps + 1))
    record = dataclasses.replace(model_record(tiny_prepared, tiny_config), interval_lo=-wrong, interval_hi=wrong)
    with pytest.raises(RegistryError, match="interval offsets"):
        register_model(tiny_config.root, METER, "night1-gru", module, record)


def test_meter_without_a_promotion_has_no_champion(tiny_config: PowercastConfig) -> None:
    assert load_champion(tiny_config.root, METER) is None


def test_promote_points_the_champion_at_the_version(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    for run in ("night1", "night2"):
        register_model(tiny_config.root, METER, version_name(run, "gru"), module, model_record(tiny_prepared, tiny_config))
    promote(tiny_config.root, METER, "night2-gru", run_id="night2")
    assert champion_version(tiny_config.root, METER) == "night2-gru"
    assert load_champion(tiny_config.root, METER).version == "night2-gru"


def test_unknown_version_names_the_known_ones(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config))
    with pytest.raises(RegistryError, match=r"no model version 'night9-gru'.*night1-gru"):
        load_model(tiny_config.root, METER, "night9-gru")


def test_folder_without_its_card_is_not_a_version(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    register_model(tiny_config.root, METER, "night1-gru", module, model_record(tiny_prepared, tiny_config))
    half_written = Path(tiny_config.root) / "models" / METER / "night2-gru"
    half_written.mkdir()
    (half_written / "weights.safetensors").write_bytes(b"partial")
    assert list_versions(tiny_config.root, METER) == ["night1-gru"]


def test_recording_a_run_twice_keeps_one_history_line(tiny_config: PowercastConfig) -> None:
    record_decision(tiny_config.root, METER, "night1", {"promoted": True})
    record_decision(tiny_config.root, METER, "night2", {"promoted": False})
    record_decision(tiny_config.root, METER, "night1", {"promoted": False})
    history = read_history(tiny_config.root, METER)
    assert [(entry["run_id"], entry["promoted"]) for entry in history] == [("night2", False), ("night1", False)]


def test_version_names_refuse_path_characters() -> None:
    with pytest.raises(RegistryError, match="run_id"):
        version_name("../etc", "gru")


def _scaled_record(prepared: PreparedSeries, config: PowercastConfig) -> ModelRecord:
    return dataclasses.replace(
        model_record(prepared, config), interval_scale="lookback_mean", interval_scale_floor_kw=0.05,
        interval_lo=-np.linspace(0.1, 0.3, prepared.horizon_steps),
        interval_hi=np.linspace(0.2, 0.6, prepared.horizon_steps),
    )


def test_scaled_interval_offsets_round_trip_and_multiply_the_input_load(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    folder = Path(register_model(tiny_config.root, METER, "night1-gru", module, _scaled_record(tiny_prepared, tiny_config)))
    interval = json.loads((folder / "model.json").read_text())["interval"]
    assert (interval["scale"], interval["scale_floor_kw"]) == ("lookback_mean", 0.05)
    assert "lo_kw" not in interval and len(interval["hi_ratio"][0]) == tiny_prepared.horizon_steps
    loaded = load_model(tiny_config.root, METER, "night1-gru")
    assert (loaded.interval_scale, loaded.interval_scale_floor_kw) == ("lookback_mean", 0.05)
    window = window_inputs(tiny_prepared, tiny_prepared.origin_starts["test"][:1])[0]  # [L, F]
    yhat_kw = loaded.predict_kw(window[None])[0]
    issued = tiny_prepared.index_utc[tiny_prepared.origin_starts["test"][0] + tiny_prepared.lookback_steps]
    lower, upper = loaded.interval_kw(yhat_kw, issued, window)
    load_kw = tiny_prepared.scaler.inverse_target_kw(window[:, 0]).mean()
    np.testing.assert_allclose(upper - yhat_kw, np.linspace(0.2, 0.6, tiny_prepared.horizon_steps) * load_kw, rtol=1e-4)
    np.testing.assert_allclose(lower - yhat_kw, -np.linspace(0.1, 0.3, tiny_prepared.horizon_steps) * load_kw, rtol=1e-4)


def test_a_card_from_before_interval_scales_keeps_its_kw_offsets(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    """A format-2 card has ``lo_kw`` / ``hi_kw`` and no ``scale``: the offsets are added in kW, as before."""
    folder = Path(register_model(tiny_config.root, METER, "old-gru", module, model_record(tiny_prepared, tiny_config)))
    card = json.loads((folder / "model.json").read_text())
    card["format"] = "powercast.model/2"
    del card["interval"]["scale"]
    (folder / "model.json").write_text(json.dumps(card))
    loaded = load_model(tiny_config.root, METER, "old-gru")
    assert (loaded.interval_scale, loaded.interval_scale_floor_kw) == ("none", 0.0)
    window = window_inputs(tiny_prepared, tiny_prepared.origin_starts["test"][:1])[0]
    yhat_kw = loaded.predict_kw(window[None])[0]
    issued = tiny_prepared.index_utc[tiny_prepared.origin_starts["test"][0] + tiny_prepared.lookback_steps]
    lower, upper = loaded.interval_kw(yhat_kw, issued, window)
    np.testing.assert_array_equal(upper, yhat_kw + np.asarray(card["interval"]["hi_kw"][0], dtype=np.float32))
    np.testing.assert_array_equal(lower, yhat_kw + np.asarray(card["interval"]["lo_kw"][0], dtype=np.float32))


def test_scaled_interval_offsets_without_a_floor_or_of_an_unknown_scale_are_refused(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    no_floor = dataclasses.replace(_scaled_record(tiny_prepared, tiny_config), interval_scale_floor_kw=0.0)
    with pytest.raises(RegistryError, match="floor"):
        register_model(tiny_config.root, METER, "night1-gru", module, no_floor)
    unknown = dataclasses.replace(model_record(tiny_prepared, tiny_config), interval_scale="median")
    with pytest.raises(RegistryError, match="interval scale"):
        register_model(tiny_config.root, METER, "night1-gru", module, unknown)


def test_a_card_naming_an_unknown_interval_scale_is_reported_as_damaged(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    folder = Path(register_model(tiny_config.root, METER, "night1-gru", module, _scaled_record(tiny_prepared, tiny_config)))
    card = json.loads((folder / "model.json").read_text())
    card["interval"]["scale"] = "median"
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(RegistryError, match="damaged.*interval scale 'median'"):
        load_model(tiny_config.root, METER, "night1-gru")


def test_a_scaled_card_without_a_floor_or_with_inverted_offsets_is_reported_as_damaged(
    tiny_prepared: PreparedSeries, tiny_config: PowercastConfig, module: RNNForecaster
) -> None:
    # Checked on load too: a card edited or truncated after it was written must not fail inside a forecast.
    folder = Path(register_model(tiny_config.root, METER, "night1-gru", module, _scaled_record(tiny_prepared, tiny_config)))
    written = json.loads((folder / "model.json").read_text())
    no_floor = json.loads(json.dumps(written))
    del no_floor["interval"]["scale_floor_kw"]
    inverted = json.loads(json.dumps(written))
    inverted["interval"]["hi_ratio"] = [[-abs(value) - 0.1 for value in row] for row in inverted["interval"]["hi_ratio"]]
    for card, damage in ((no_floor, "scale_floor_kw > 0"), (inverted, "lo <= 0 <= hi")):
        (folder / "model.json").write_text(json.dumps(card))
        with pytest.raises(RegistryError, match=f"damaged.*{damage}"):
            load_model(tiny_config.root, METER, "night1-gru")
