"""The Lightning data module: NaN-free batches of the contract shapes, indexed not copied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from uci_readings import read_uci_readings

from powercast.core.config import PrepareConfig, SplitConfig
from powercast.core.errors import DataPreparationError
from powercast.prepare.datamodule import WindowDataModule, window_dataset
from powercast.prepare.series import PreparedSeries, prepare_series

THREE_SPLITS = SplitConfig(mode="trailing", val_days=21, test_days=14)


@pytest.fixture(scope="module")
def prepared_sample(sample_path: Path) -> PreparedSeries:
    return prepare_series(read_uci_readings(sample_path), PrepareConfig(split=THREE_SPLITS), "sceaux_household")


def assert_loaders_have_no_nan(module: WindowDataModule) -> int:
    n_batches = 0
    for loader in (module.train_dataloader(), module.val_dataloader(), module.test_dataloader()):
        for x, y in loader:
            assert not torch.isnan(x).any() and not torch.isnan(y).any()
            n_batches += 1
    return n_batches


def test_no_nan_in_any_batch_from_the_sample(prepared_sample: PreparedSeries) -> None:
    assert assert_loaders_have_no_nan(WindowDataModule(prepared_sample, batch_size=256)) > 3


def test_batches_have_the_contract_shapes(prepared_sample: PreparedSeries) -> None:
    x, y = next(iter(WindowDataModule(prepared_sample, batch_size=32).train_dataloader()))
    lookback, horizon, n_features = prepared_sample.lookback_steps, prepared_sample.horizon_steps, len(prepared_sample.feature_names)
    assert x.shape == (32, lookback, n_features) and x.dtype == torch.float32
    assert y.shape == (32, horizon) and y.dtype == torch.float32


def test_target_is_the_scaled_series_after_the_lookback(prepared_sample: PreparedSeries) -> None:
    starts = prepared_sample.window_starts["val"]
    x, y = window_dataset(prepared_sample, starts)[3]
    origin = int(starts[3]) + prepared_sample.lookback_steps
    np.testing.assert_array_equal(x.numpy(), prepared_sample.inputs[origin - prepared_sample.lookback_steps : origin])
    np.testing.assert_array_equal(y.numpy(), prepared_sample.inputs[origin : origin + prepared_sample.horizon_steps, 0])
    np.testing.assert_allclose(
        prepared_sample.scaler.inverse_target_kw(y.numpy()),
        prepared_sample.target_kw[origin : origin + prepared_sample.horizon_steps],
        rtol=1e-5,
    )


def test_dataset_items_are_views_of_the_base_array(prepared_sample: PreparedSeries) -> None:
    dataset = window_dataset(prepared_sample, prepared_sample.window_starts["train"])
    x, _ = dataset[0]
    assert np.shares_memory(x.numpy(), prepared_sample.inputs)
    assert dataset.inputs is prepared_sample.inputs


def test_val_loader_keeps_time_order_and_train_shuffle_is_seeded(prepared_sample: PreparedSeries) -> None:
    first = next(iter(WindowDataModule(prepared_sample, batch_size=64, seed=7).train_dataloader()))[1]
    again = next(iter(WindowDataModule(prepared_sample, batch_size=64, seed=7).train_dataloader()))[1]
    assert torch.equal(first, again)
    val_y = next(iter(WindowDataModule(prepared_sample, batch_size=64).val_dataloader()))[1]
    expected = window_dataset(prepared_sample, prepared_sample.window_starts["val"][:1])[0][1]
    assert torch.equal(val_y[0], expected)


def test_refit_loader_covers_every_training_and_validation_window(prepared_sample: PreparedSeries) -> None:
    loader = WindowDataModule(prepared_sample, batch_size=256).train_and_val_dataloader()
    starts = loader.dataset.starts
    expected = np.concatenate([prepared_sample.training_starts("train"), prepared_sample.training_starts("val")])
    np.testing.assert_array_equal(starts, expected)
    assert sum(len(y) for _, y in loader) == len(expected)
    assert not np.isin(prepared_sample.window_starts["test"], starts).any()


def test_dataset_rejects_a_start_touching_missing_data(sample_path: Path) -> None:
    unmasked = prepare_series(read_uci_readings(sample_path), PrepareConfig(missing_mask=False), "m")
    missing_row = int(np.flatnonzero(np.isnan(unmasked.target_kw))[0])
    with pytest.raises(DataPreparationError, match="touches missing data"):
        window_dataset(unmasked, np.array([missing_row - 1]))


def test_dataset_rejects_a_start_off_the_grid(prepared_sample: PreparedSeries) -> None:
    with pytest.raises(DataPreparationError, match="outside"):
        window_dataset(prepared_sample, np.array([len(prepared_sample.index_utc)]))


def test_empty_split_loader_explains_itself(sample_path: Path) -> None:
    prepared = prepare_series(read_uci_readings(sample_path), PrepareConfig(), "m")  # test_days = 0
    with pytest.raises(DataPreparationError, match="test split has no usable window"):
        WindowDataModule(prepared).test_dataloader()


@pytest.mark.slow
def test_no_nan_in_any_batch_from_the_full_file(full_data_path: Path) -> None:
    prepared = prepare_series(
        read_uci_readings(full_data_path), PrepareConfig(split=SplitConfig.reference()), "sceaux_household"
    )
    assert all(prepared.window_starts[split].size > 1000 for split in ("train", "val", "test"))
    assert assert_loaders_have_no_nan(WindowDataModule(prepared, batch_size=1024)) > 30


def test_fleet_batches_carry_each_windows_own_meter_index_whatever_the_series_order(tiny_prepared) -> None:
    import dataclasses

    from powercast.prepare.datamodule import fleet_train_loader

    # Three meters with the same grid, told apart by an offset on every input value: "b" +100,
    # "c" +200 ("c" is not among the network's meters: the unknown row). Given in another order
    # than meter_ids, so a position-in-the-list bug would show.
    def shifted(meter_id: str, offset: float):
        return dataclasses.replace(tiny_prepared, meter_id=meter_id, inputs=tiny_prepared.inputs + offset)

    series = [shifted("c", 200.0), shifted("b", 100.0), shifted("a", 0.0)]
    loader = fleet_train_loader(series, batch_size=64, n_batches=6, seed=3, meter_ids=["a", "b"])

    seen = set()
    for x, _, meter_index in loader:
        offset_meter = torch.round(x[:, -1, 0] / 100).long()  # 0 for a, 1 for b, 2 for c (scaled loads are small)
        assert meter_index.dtype == torch.int64
        assert torch.equal(meter_index, offset_meter)
        seen |= set(meter_index.tolist())
    assert seen == {0, 1, 2}
