"""Shared fixtures: the bundled real data sample and throw-away data roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from powercast.core.config import PowercastConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PATH = REPO_ROOT / "data" / "sample" / "household_power_consumption_last120d.txt.gz"
FULL_DATA_PATH = REPO_ROOT.parent / "shared" / "data" / "household_power_consumption.txt.gz"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    """The committed real slice of the UCI file (last ~120 days, original format, gzip)."""
    assert SAMPLE_PATH.is_file(), f"bundled sample missing: {SAMPLE_PATH}"
    return SAMPLE_PATH


@pytest.fixture(scope="session")
def full_data_path() -> Path:
    """The full UCI file from ../shared/data (slow tests only)."""
    if not FULL_DATA_PATH.is_file():
        pytest.skip(f"full data file not found at {FULL_DATA_PATH} (needs ../shared beside the repo)")
    return FULL_DATA_PATH


@pytest.fixture()
def config(tmp_path: Path) -> PowercastConfig:
    """A default configuration whose data root is a fresh temporary folder."""
    return PowercastConfig(root=str(tmp_path / "root"))


@pytest.fixture()
def forecast_batch_factory():
    """A builder of valid contract batches: ``factory(meter_id, issued_at, run_id=..., level_kw=...)``.

    Rows are hand-made (no model), so publishing and reading can be tested on their own.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from powercast.core.schemas import FORECAST_SCHEMA
    from powercast.serving.publish import ForecastBatch

    def build(
        meter_id: str,
        issued_at: str,
        run_id: str = "run-test",
        level_kw: float = 1.0,
        horizon_steps: int = 24,
        model: str = "gru",
    ) -> ForecastBatch:
        issued = pd.Timestamp(issued_at).tz_convert("UTC")
        horizons = np.arange(1, horizon_steps + 1, dtype=np.int16)
        yhat_kw = (level_kw + 0.5 * np.sin(horizons / 24 * 2 * np.pi)).astype(np.float32)
        table = pa.table(
            {
                "meter_id": [meter_id] * horizon_steps,
                "issued_at": [issued] * horizon_steps,
                "target_time": [issued + pd.Timedelta(hours=int(h) - 1) for h in horizons],
                "horizon_h": horizons,
                "yhat_kw": yhat_kw,
                "yhat_lo_kw": yhat_kw - np.float32(0.3),
                "yhat_hi_kw": yhat_kw + np.float32(0.4),
                "model": [model] * horizon_steps,
                "model_version": ["v0001"] * horizon_steps,
                "run_id": [run_id] * horizon_steps,
            },
            schema=FORECAST_SCHEMA,
        )
        return ForecastBatch(
            table=table,
            interval_coverage=0.8,
            training_start_utc=pd.Timestamp("2006-12-16T16:00Z"),
            training_end_utc=pd.Timestamp("2009-07-01T00:00Z"),
            validation_mae_kw=0.42,
            notes=("built by forecast_batch_factory",),
        )

    return build


@pytest.fixture(scope="session")
def ingested_sample_root(tmp_path_factory: pytest.TempPathFactory, sample_path: Path) -> str:
    """A data root (shared by the session, treat as read-only) with the bundled sample ingested."""
    from powercast.store.ingest import ingest_paths

    root = tmp_path_factory.mktemp("ingested_sample") / "root"
    ingest_paths([sample_path], PowercastConfig(root=str(root)), run_id="fixture-sample", progress=False)
    return str(root)


@pytest.fixture()
def ingested_config(ingested_sample_root: str) -> PowercastConfig:
    """A default configuration whose data root already holds the ingested bundled sample (read-only)."""
    return PowercastConfig(root=ingested_sample_root)


# A training set-up small enough for a test to train GRU and LSTM in seconds on the bundled sample.
TINY_TRAINING_OVERRIDES: dict[str, object] = {
    "prepare.lookback_steps": 48,
    "prepare.split": {"mode": "trailing", "val_days": 21, "test_days": 14},
    # The networks (their combination competes too); tests/training/test_challengers.py adds hgb.
    "train.cells": ["gru", "lstm"],
    "train.hidden_sizes": [8],
    "train.max_epochs": 2,
    "train.batch_size": 64,
    "train.patience_epochs": 2,
    "train.accelerator": "cpu",
    "train.cpu_threads": 1,
}


@pytest.fixture(scope="session")
def tiny_config_factory(ingested_sample_root: str):
    """A builder ``factory(folder)`` of tiny-training configurations whose root holds a copy of the sample's store."""
    import shutil

    def build(folder: Path) -> PowercastConfig:
        root = folder / "root"
        shutil.copytree(Path(ingested_sample_root) / "store", root / "store")
        return PowercastConfig(root=str(root)).with_overrides(TINY_TRAINING_OVERRIDES)

    return build


@pytest.fixture()
def tiny_config(tmp_path: Path, tiny_config_factory) -> PowercastConfig:
    """A tiny-training configuration over a writable copy of the ingested sample's store."""
    return tiny_config_factory(tmp_path)


@pytest.fixture(scope="session")
def tiny_prepared(ingested_sample_root: str):
    """The ingested sample prepared with the tiny-training windows and split (read-only)."""
    from powercast.prepare.series import prepare_meter

    config = PowercastConfig(root=ingested_sample_root).with_overrides(TINY_TRAINING_OVERRIDES)
    return prepare_meter(config, config.ingest.default_meter_id)


@pytest.fixture()
def write_source(tmp_path: Path):
    """Return ``write(name, lines, header=UCI header, compress=False) -> Path`` for small raw files in tmp_path."""
    import gzip

    from powercast.core.schemas import UCI_HEADER

    def write(name: str, lines: list[str], header: str | None = ";".join(UCI_HEADER), compress: bool = False) -> Path:
        path = tmp_path / "sources" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{line}\n" for line in ([header] if header is not None else []) + lines)
        payload = text.encode("utf-8")
        path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
        return path

    return write


# The fixture champion's split: trained before 22 October, validated until 12 November, so the
# last two weeks of the sample are unseen by it (the validation weeks are in its refit).
CHAMPION_TRAIN_END, CHAMPION_VAL_END = "2010-10-22", "2010-11-12"
# The tiny set-up with a livelier learning rate: enough for the GRU to beat the baselines on
# those validation weeks (val MAE 0.59 against 0.61 kW for same_hour_mean_7d) in about 3 s.
CHAMPION_TRAINING_OVERRIDES: dict[str, object] = {
    **TINY_TRAINING_OVERRIDES,
    "prepare.split": {"mode": "dates", "train_end": CHAMPION_TRAIN_END, "val_end": CHAMPION_VAL_END},
    "train.cells": ["gru"],
    "train.learning_rate": 0.01,
}


@pytest.fixture(scope="session")
def champion_training(tmp_path_factory: pytest.TempPathFactory, ingested_sample_root: str):
    """The real training night behind ``champion_root``: ``(data root, TrainingOutcome)`` (read-only).

    ``train_meter`` run once (tiny GRU, lookback 48 steps, 2 epochs, seeded) on a copy of the
    ingested sample with the split train < 2010-10-22 <= validation < 2010-11-12 <= test; the GRU
    beat the baselines, was refit on train + validation (the held-out fit is kept too) and
    promoted as ``fixture-gru``, its conformal offsets from the held-out fit's residuals.
    """
    import shutil

    from powercast.training.pipeline import train_meter

    root = tmp_path_factory.mktemp("champion") / "root"
    shutil.copytree(Path(ingested_sample_root) / "store", root / "store")
    config = PowercastConfig(root=str(root)).with_overrides(CHAMPION_TRAINING_OVERRIDES)
    outcome = train_meter(config, config.ingest.default_meter_id, "fixture", progress=False)
    assert outcome.decision.promoted and outcome.champion_version == "fixture-gru", outcome.decision.reason
    return str(root), outcome


@pytest.fixture(scope="session")
def champion_root(champion_training) -> str:
    """A data root (read-only) with the ingested sample and the champion ``fixture-gru`` the pipeline wrote.

    See ``champion_training`` for how it was trained and what it decided.
    """
    root, _ = champion_training
    return root


@pytest.fixture(scope="session")
def champion_overrides() -> dict[str, object]:
    """The settings ``champion_training`` trained with (modules cannot import conftest by name: there are two)."""
    return dict(CHAMPION_TRAINING_OVERRIDES)
