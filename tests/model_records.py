"""A model card's record for registry tests: the prepared series' real scaler and ranges, made-up scores."""

from __future__ import annotations

import numpy as np

from powercast.core.config import PowercastConfig
from powercast.models.registry import ModelRecord
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
