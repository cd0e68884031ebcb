"""Registry test helpers: a model card's record, and a synthetic fleet registry of real cards and weights."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import torch

from powercast.core.config import COMBINED_MODEL, PowercastConfig
from powercast.models.combination import CombinedForecaster
from powercast.models.registry import (
    CHALLENGER_VERSIONS_KEY,
    CHAMPION_AFTER_KEY,
    CHAMPION_BEFORE_KEY,
    ModelRecord,
    promote,
    record_decision,
    register_model,
    version_name,
)
from powercast.prepare.series import PreparedSeries


def model_record(
    prepared: PreparedSeries, config: PowercastConfig, cell: str = "gru", scope: str = "local"
) -> ModelRecord:
    """Return a record of a ``cell`` model trained on ``prepared`` (validation MAE 0.5 kW, an asymmetric interval)."""
    horizon = prepared.horizon_steps
    return ModelRecord(
        cell=cell,
        scaler=prepared.scaler,
        feature_names=prepared.feature_names,
        prepare_config=config.prepare,
        train_config=config.train,
        training_range_utc=prepared.split_bounds_utc["train"],
        data_range_utc=(prepared.index_utc[0], prepared.index_utc[-1]),
        validation_mae_kw=0.5,
        metrics={"val": {"mae_kw": 0.5}},
        interval_lo=-np.linspace(0.1, 0.3, horizon),
        interval_hi=np.linspace(0.2, 0.6, horizon),
        interval_coverage=0.8,
        run_id="night1",
        training={"device": "cpu", "elapsed_s": 1.0, "scope": scope},
    )


def fleet_registry(
    root: str,
    prepared: PreparedSeries,
    config: PowercastConfig,
    meter_ids: list[str],
    run_ids: list[str],
    interval_slots: int = 1,
) -> None:
    """Write ``run_ids`` nights of a fleet, as selection does: per meter and night a GRU, an LSTM, the night's
    global GRU bound to the meter and the combination of the two GRUs, and the night's decision; the first
    night's combination is promoted and stays champion.

    ``interval_slots`` rows of interval offsets per card (96 with a 96-step horizon: a card the size of
    one at 15-minute steps, 0.36 MB). The first meter is registered model by model (tiny untrained
    networks, real weights); the others are copies of its folder (the same files under another meter
    id: a registry of thousands of cards in seconds, for measuring pruning).
    """
    torch.manual_seed(0)
    train = config.with_overrides({"train.hidden_sizes": [8], "train.ensemble_members": 1}).train
    from powercast.training.fit import build_forecaster  # torch-heavy: only when a registry is built

    gru, lstm = (build_forecaster(prepared, train, cell).eval() for cell in ("gru", "lstm"))
    global_gru = build_forecaster(prepared, train, "gru", meter_ids=meter_ids).eval()
    first, *others = meter_ids
    rng = np.random.default_rng(0)
    shape = (interval_slots, prepared.horizon_steps)
    offsets = {"interval_lo": -rng.uniform(0.1, 0.3, shape), "interval_hi": rng.uniform(0.2, 0.6, shape)}
    for run_id in run_ids:
        versions = {cell: version_name(run_id, cell) for cell in ("gru", "lstm", "gru_global", COMBINED_MODEL)}
        bound = global_gru.for_meter(first)
        combination = CombinedForecaster([gru, bound], (versions["gru"], versions["gru_global"]))
        models = {"gru": gru, "lstm": lstm, "gru_global": bound, COMBINED_MODEL: combination}
        for cell, module in models.items():
            scope = "global" if cell.endswith("_global") else "local"
            record = dataclasses.replace(
                model_record(prepared, config, cell.removesuffix("_global"), scope), run_id=run_id, **offsets
            )
            register_model(root, first, versions[cell], module, record)
        champion = version_name(run_ids[0], COMBINED_MODEL)
        if run_id == run_ids[0]:
            promote(root, first, champion, run_id)
        before = None if run_id == run_ids[0] else champion
        entry = {CHAMPION_BEFORE_KEY: before, CHAMPION_AFTER_KEY: champion, CHALLENGER_VERSIONS_KEY: versions}
        record_decision(root, first, run_id, entry)
    models_dir = Path(root) / "models"
    for meter_id in others:
        shutil.copytree(models_dir / first, models_dir / meter_id)
