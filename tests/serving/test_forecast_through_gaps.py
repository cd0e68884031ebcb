"""A champion that reads missing inputs (gradient-boosted trees) forecasts through a gap in its input window.

The networks need finite inputs, so a long gap before the issue time sends their meter to the
fallback; the boosted trees route missing values natively, so an hgb champion serves that day
itself and the batch says how many input steps were missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from powercast.core.config import PowercastConfig
from powercast.models.registry import load_champion
from powercast.prepare.series import input_window, prepare_meter
from powercast.serving.forecast import make_forecast_batch
from powercast.training.pipeline import train_meter

METER = "sceaux_household"
# The sample's 120-hour outage ends 22 August 20:00 UTC: the 48-step input window before this
# midnight (the tiny set-up's lookback) misses its first 21 steps, far more than interpolation covers.
AFTER_OUTAGE = pd.Timestamp("2010-08-24T00:00+01:00")


@pytest.fixture(scope="module")
def hgb_champion(ingested_sample_root: str, champion_overrides: dict[str, object], tmp_path_factory) -> PowercastConfig:
    root = tmp_path_factory.mktemp("hgb-champion") / "root"
    shutil.copytree(Path(ingested_sample_root) / "store", root / "store")
    config = PowercastConfig(root=str(root)).with_overrides({**champion_overrides, "train.cells": ["hgb"]})
    outcome = train_meter(config, METER, "hgb", progress=False)
    assert outcome.decision.promoted, outcome.decision.reason
    return config


def test_the_window_before_the_outage_has_a_long_gap(hgb_champion: PowercastConfig) -> None:
    champion = load_champion(hgb_champion.root, METER)
    prepared = prepare_meter(
        hgb_champion.model_copy(update={"prepare": champion.prepare_config}), METER, end_utc=AFTER_OUTAGE, scaler=champion.scaler
    )
    assert input_window(prepared, AFTER_OUTAGE) is None, "a network would fall back here"
    window = input_window(prepared, AFTER_OUTAGE, allow_missing=True)
    assert window is not None and np.isnan(window[:, 0]).sum() == 21


def test_an_hgb_champion_forecasts_through_the_gap_and_says_so(hgb_champion: PowercastConfig) -> None:
    batch = make_forecast_batch(hgb_champion, METER, AFTER_OUTAGE, run_id="through-gap")
    assert batch.model == "hgb" and batch.model_version == "hgb-hgb"
    yhat = batch.table["yhat_kw"].to_numpy()
    assert np.isfinite(yhat).all() and yhat.shape == (24,)
    (note,) = batch.notes
    assert note == "hgb read an input window with 21 missing steps as missing"
