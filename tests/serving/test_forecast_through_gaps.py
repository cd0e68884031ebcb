"""A network trained with prepare.missing_mask forecasts through real outages; old cards serve as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from powercast.core.config import PowercastConfig
from powercast.models.registry import load_champion, promote
from powercast.prepare.features import MISSING_MASK_FEATURE
from powercast.prepare.series import input_window, prepare_meter
from powercast.serving.forecast import FALLBACK_FAMILY, make_forecast_batch
from powercast.training.pipeline import train_meter

METER = "sceaux_household"
NEW_PREPARE_KEYS = (
    "missing_mask", "min_real_input_steps", "day_of_year_features", "holiday_features", "holiday_country",
    "holiday_country_by_meter",
)


@pytest.fixture(scope="module")
def masked_night(tmp_path_factory, ingested_sample_root: str, champion_overrides) -> PowercastConfig:
    """The fixture champion's night (tiny GRU, seeded) with hgb beside it, prepared with the mask.

    Registers ``masked-gru``, ``masked-hgb`` and ``masked-combo``; each test promotes the one it serves.
    """
    root = tmp_path_factory.mktemp("masked") / "root"
    shutil.copytree(Path(ingested_sample_root) / "store", root / "store")
    overrides = {**champion_overrides, "prepare.missing_mask": True, "train.cells": ["gru", "hgb"]}
    config = PowercastConfig(root=str(root)).with_overrides(overrides)
    outcome = train_meter(config, METER, "masked", progress=False)
    assert set(outcome.versions) == {"gru", "hgb", "combo"}
    return config


@pytest.fixture()
def masked_champion(masked_night: PowercastConfig) -> PowercastConfig:
    """The masked night's GRU as the champion."""
    promote(masked_night.root, METER, "masked-gru", "test")
    return masked_night


def _midnights_after_outages(config: PowercastConfig, min_real: int, enough: bool) -> list[pd.Timestamp]:
    """Return local midnights whose input window holds a real outage and (not) at least ``min_real`` real steps."""
    prepared = prepare_meter(config, METER)
    lookback = prepared.lookback_steps
    missing = np.isnan(prepared.target_kw)
    local = prepared.index_utc.tz_convert(config.prepare.local_timezone)
    found = []
    for origin in np.flatnonzero((local.hour == 0) & (np.arange(len(local)) >= lookback)):
        n_missing = int(missing[origin - lookback : origin].sum())
        if n_missing > config.prepare.max_interpolate_gap_steps and ((lookback - n_missing >= min_real) == enough):
            found.append(prepared.index_utc[origin])
    return found


def test_network_reading_the_mask_forecasts_through_a_long_gap(masked_champion: PowercastConfig) -> None:
    champion = load_champion(masked_champion.root, METER)
    assert champion.cell in ("gru", "lstm") and MISSING_MASK_FEATURE in champion.feature_names
    issue_times = _midnights_after_outages(masked_champion, champion.prepare_config.min_real_input_steps, True)
    assert len(issue_times) >= 2  # the sample's August and September outages
    for issued in issue_times:
        batch = make_forecast_batch(masked_champion, METER, issued, run_id="run-gap")
        frame = batch.table.to_pandas()
        assert (batch.model, batch.model_version) == (champion.cell, champion.version)
        # The consumer is told the forecast read filled inputs, and by whom.
        (note,) = batch.notes
        assert note.startswith("the input window has ") and " steps missing, filled from the day before" in note
        assert note.endswith(f"forecast by {champion.cell} {champion.version}")
        assert np.isfinite(frame[["yhat_kw", "yhat_lo_kw", "yhat_hi_kw"]].to_numpy()).all()
        assert len(frame) == champion.prepare_config.horizon_steps


def test_too_little_real_input_still_falls_back_and_names_the_setting(masked_champion: PowercastConfig) -> None:
    champion = load_champion(masked_champion.root, METER)
    issued = _midnights_after_outages(masked_champion, champion.prepare_config.min_real_input_steps, False)[0]
    batch = make_forecast_batch(masked_champion, METER, issued, run_id="run-gap")
    assert batch.model in set(FALLBACK_FAMILY.values())
    assert "prepare.min_real_input_steps=24" in batch.notes[0]


@pytest.fixture(scope="module")
def unmasked_root(tmp_path_factory, ingested_sample_root: str, champion_overrides) -> str:
    """The fixture champion's night trained without the mask and holidays, as every model was before they existed."""
    root = tmp_path_factory.mktemp("unmasked") / "root"
    shutil.copytree(Path(ingested_sample_root) / "store", root / "store")
    old_inputs = {"prepare.missing_mask": False, "prepare.holiday_features": False}
    config = PowercastConfig(root=str(root)).with_overrides({**champion_overrides, **old_inputs})
    outcome = train_meter(config, METER, "unmasked", progress=False)
    assert outcome.decision.promoted, outcome.decision.reason
    return str(root)


def test_card_without_the_new_prepare_keys_loads_and_forecasts_as_before(unmasked_root: str, tmp_path: Path) -> None:
    """A model card written before these settings existed (its prepare_config lacks them) serves unchanged.

    Without its keys the card's prepare config would take today's defaults (the mask on); its
    feature list says the model reads no mask, and that wins.
    """
    champion_root = unmasked_root
    old_root = tmp_path / "root"
    shutil.copytree(champion_root, old_root)
    config = PowercastConfig(root=str(old_root))
    champion = load_champion(str(old_root), METER)
    card_path = old_root / "models" / METER / champion.version / "model.json"
    card = json.loads(card_path.read_text())
    for key in NEW_PREPARE_KEYS:
        card["prepare_config"].pop(key, None)
    card_path.write_text(json.dumps(card))

    old = load_champion(str(old_root), METER)
    assert old.feature_names == champion.feature_names and MISSING_MASK_FEATURE not in old.feature_names
    assert not (old.prepare_config.missing_mask or old.prepare_config.holiday_features)
    issued = pd.Timestamp("2010-11-10T00:00+01:00")
    before = make_forecast_batch(PowercastConfig(root=champion_root), METER, issued, run_id="r")
    after = make_forecast_batch(config, METER, issued, run_id="r")
    assert after.model == "gru"
    np.testing.assert_array_equal(after.table["yhat_kw"].to_numpy(), before.table["yhat_kw"].to_numpy())
    outage = make_forecast_batch(config, METER, pd.Timestamp("2010-08-19T00:00+01:00"), run_id="r")
    assert outage.model in set(FALLBACK_FAMILY.values())  # no mask: a gap still falls back


def test_combination_through_a_gap_is_served_by_its_network_member(masked_night: PowercastConfig) -> None:
    promote(masked_night.root, METER, "masked-combo", "test")
    champion = load_champion(masked_night.root, METER)
    issued = _midnights_after_outages(masked_night, champion.prepare_config.min_real_input_steps, True)[0]
    batch = make_forecast_batch(masked_night, METER, issued, run_id="run-gap")
    assert (batch.model, batch.model_version) == ("gru", "masked-gru")
    assert "masked-combo served by its network member(s) masked-gru alone" in batch.notes[0]
    assert "with the interval of masked-gru" in batch.notes[0]
    # Its interval: the member's own offsets (calibrated on its own residuals), scaled by the load
    # of the window it read (filled steps included).
    (member,) = [model for model in champion.members if model.version == "masked-gru"]
    _assert_upper_offsets_kw(batch, _expected_upper_offsets_kw(masked_night, member, issued))
    promote(masked_night.root, METER, "masked-gru", "test")
    alone = make_forecast_batch(masked_night, METER, issued, run_id="run-gap")
    np.testing.assert_allclose(batch.table["yhat_kw"].to_numpy(), alone.table["yhat_kw"].to_numpy(), rtol=1e-6)


def _assert_upper_offsets_kw(batch, expected_kw: np.ndarray) -> None:
    """Check ``yhat_hi_kw - yhat_kw`` of a batch where the forecast was not clipped at 0 kW."""
    frame = batch.table.to_pandas()
    positive = frame["yhat_kw"].to_numpy() > 0
    got_kw = (frame["yhat_hi_kw"] - frame["yhat_kw"]).to_numpy()
    np.testing.assert_allclose(got_kw[positive], np.asarray(expected_kw)[positive], atol=1e-5)


def _expected_upper_offsets_kw(config: PowercastConfig, model, issued: pd.Timestamp, kw_offsets: bool = False):
    """Return ``model``'s midnight upper offsets in kW for the window before ``issued`` (scaled by its load)."""
    return _expected_offsets_kw(config, model, issued, kw_offsets)


def _expected_offsets_kw(config: PowercastConfig, model, issued: pd.Timestamp, kw_offsets: bool = False, bound="hi"):
    """Return ``model``'s midnight ``bound`` ("hi" or "lo") offsets in kW for the window before ``issued``."""
    offsets = model.interval_hi[0] if bound == "hi" else model.interval_lo[0]
    prepared = prepare_meter(
        config.model_copy(update={"prepare": model.prepare_config}), METER, end_utc=issued, scaler=model.scaler
    )
    window = input_window(prepared, issued)
    assert window[:, prepared.feature_names.index(MISSING_MASK_FEATURE)].any()  # filled steps in the input
    if kw_offsets:
        return offsets
    load_kw = max(float(model.scaler.inverse_target_kw(window[:, 0]).mean()), model.interval_scale_floor_kw)
    return offsets * load_kw  # issued at local midnight: slot 0


def test_an_old_combination_card_serves_its_member_through_a_gap_with_its_own_kw_offsets(
    masked_night: PowercastConfig, tmp_path: Path
) -> None:
    """A combination card from before interval scales (format 2, kW offsets) keeps serving a gap as it did."""
    old_root = tmp_path / "root"
    shutil.copytree(masked_night.root, old_root)
    config = masked_night.model_copy(update={"root": str(old_root)})
    promote(config.root, METER, "masked-combo", "test")
    card_path = old_root / "models" / METER / "masked-combo" / "model.json"
    card = json.loads(card_path.read_text())
    interval = card["interval"]
    card["format"] = "powercast.model/2"
    card["interval"] = {"coverage": interval["coverage"], "lo_kw": interval["lo_ratio"], "hi_kw": interval["hi_ratio"]}
    card_path.write_text(json.dumps(card))
    champion = load_champion(config.root, METER)
    assert champion.interval_scale == "none" and not champion.members_keep_their_intervals
    issued = _midnights_after_outages(config, champion.prepare_config.min_real_input_steps, True)[0]
    batch = make_forecast_batch(config, METER, issued, run_id="run-gap")
    assert (batch.model, batch.model_version) == ("gru", "masked-gru")
    assert "with the interval of masked-combo" in batch.notes[0]
    _assert_upper_offsets_kw(batch, _expected_upper_offsets_kw(config, champion, issued, kw_offsets=True))


def _copy_version(root: Path, version: str, copy: str, edit) -> None:
    """Register ``copy`` as a copy of ``version`` (same weights files) whose card ``edit`` changes."""
    shutil.copytree(root / "models" / METER / version, root / "models" / METER / copy)
    card_path = root / "models" / METER / copy / "model.json"
    card = json.loads(card_path.read_text())
    card["version"] = copy
    edit(card)
    card_path.write_text(json.dumps(card))


def test_part_of_a_combination_through_a_gap_serves_the_widest_of_its_members_intervals(
    masked_night: PowercastConfig, tmp_path: Path
) -> None:
    """Two networks of a three-member combination (hgb left out) serve with the widest of their own intervals.

    The combination's interval was calibrated with hgb in the mean, and their mean without it was
    never calibrated; each network's own is, on its own residuals. The second network here is the
    first with its upper offsets doubled and its lower ones halved, so the widest bounds are its
    upper and the first's lower.
    """
    root = tmp_path / "root"
    shutil.copytree(masked_night.root, root)
    config = masked_night.model_copy(update={"root": str(root)})

    def wider_above(card: dict) -> None:
        interval = card["interval"]
        interval["hi_ratio"] = (np.asarray(interval["hi_ratio"]) * 2).tolist()
        interval["lo_ratio"] = (np.asarray(interval["lo_ratio"]) / 2).tolist()

    def three_members(card: dict) -> None:
        card["hparams"]["member_versions"] = ["masked-gru", "masked-gru-wide", "masked-hgb"]

    _copy_version(root, "masked-gru", "masked-gru-wide", wider_above)
    _copy_version(root, "masked-combo", "masked-trio", three_members)
    promote(config.root, METER, "masked-trio", "test")
    champion = load_champion(config.root, METER)
    gru, wide = (next(m for m in champion.members if m.version == v) for v in ("masked-gru", "masked-gru-wide"))
    issued = _midnights_after_outages(config, champion.prepare_config.min_real_input_steps, True)[0]
    batch = make_forecast_batch(config, METER, issued, run_id="run-gap")

    assert (batch.model, batch.model_version) == ("combo", "masked-trio")
    assert "served by its network member(s) masked-gru, masked-gru-wide alone" in batch.notes[0]
    assert "with the widest of the intervals of masked-gru, masked-gru-wide" in batch.notes[0]
    _assert_upper_offsets_kw(batch, _expected_upper_offsets_kw(config, wide, issued))
    frame = batch.table.to_pandas()
    unclipped = frame["yhat_lo_kw"].to_numpy() > 0  # a lower bound is clipped at 0 kW
    assert unclipped.any()
    lower_offsets_kw = (frame["yhat_kw"] - frame["yhat_lo_kw"]).to_numpy()
    expected_lower_kw = -_expected_offsets_kw(config, gru, issued, bound="lo")
    np.testing.assert_allclose(lower_offsets_kw[unclipped], expected_lower_kw[unclipped], atol=1e-5)


def test_hgb_champion_keeps_the_fallback_through_a_gap(masked_night: PowercastConfig) -> None:
    promote(masked_night.root, METER, "masked-hgb", "test")
    champion = load_champion(masked_night.root, METER)
    issued = _midnights_after_outages(masked_night, champion.prepare_config.min_real_input_steps, True)[0]
    batch = make_forecast_batch(masked_night, METER, issued, run_id="run-gap")
    assert batch.model in set(FALLBACK_FAMILY.values())
    complete = make_forecast_batch(masked_night, METER, pd.Timestamp("2010-11-10T00:00+01:00"), run_id="run-gap")
    assert complete.model == "hgb"
