"""The Lightning data module over a ``PreparedSeries``: train / val / test loaders of windows.

Datasets hold the prepared arrays and an index of window starts; a sample is sliced from the
base array when asked for, so memory stays O(series length) rather than O(windows × lookback).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, RandomSampler, Sampler, Subset

from powercast.core.errors import DataPreparationError
from powercast.prepare.series import PreparedSeries
from powercast.prepare.splits import SPLIT_NAMES
from powercast.prepare.windows import window_has_invalid


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows of a prepared series: item ``i`` is (x [L, F], y [H]) for the window starting at ``starts[i]``.

    ``x`` is ``inputs[s:s+L]`` and ``y`` the scaled target ``inputs[s+L:s+L+H, 0]``, both float32.

    Parameters
    ----------
    prepared : PreparedSeries
        The series whose arrays are indexed (not copied).
    starts : np.ndarray
        int64 window starts; every window must lie on the grid and hold no NaN.
    meter_index : int, optional
        When given, each item is (x, y, meter_index) with the index as an int (batched as int64):
        the meter's row in a global network's embedding.
    """

    def __init__(self, prepared: PreparedSeries, starts: np.ndarray, meter_index: int | None = None) -> None:
        self.inputs = prepared.inputs
        self.lookback_steps = prepared.lookback_steps
        self.horizon_steps = prepared.horizon_steps
        self.starts = np.asarray(starts, dtype=np.int64)
        # A plain int: default_collate makes an int64 batch of it, and under DDP's file_system sharing a
        # tensor here would be one shared-memory file per meter and split.
        self.meter_index = None if meter_index is None else int(meter_index)
        self._check_starts(prepared.meter_id)

    def _check_starts(self, meter_id: str) -> None:
        window_steps = self.lookback_steps + self.horizon_steps
        n_windows = len(self.inputs) - window_steps + 1
        if self.starts.ndim != 1:
            raise DataPreparationError(f"window starts must be 1-D, got shape {self.starts.shape}")
        out_of_range = self.starts[(self.starts < 0) | (self.starts >= n_windows)]
        if out_of_range.size:
            raise DataPreparationError(
                f"meter {meter_id!r}: window start {int(out_of_range[0])} is outside 0..{n_windows - 1}; "
                "use starts from the same PreparedSeries"
            )
        # The guarantee that no NaN reaches a model, checked in O(T) with a prefix sum.
        touches_nan = window_has_invalid(np.isnan(self.inputs).any(axis=1), window_steps)[self.starts]
        if touches_nan.any():
            raise DataPreparationError(
                f"meter {meter_id!r}: window start {int(self.starts[touches_nan][0])} touches missing data; "
                "use starts from PreparedSeries.window_starts / origin_starts"
            )

    def __len__(self) -> int:
        return int(self.starts.size)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        start = int(self.starts[item])
        origin = start + self.lookback_steps
        x = torch.from_numpy(self.inputs[start:origin])  # [L, F], a view of the base array
        y = torch.from_numpy(self.inputs[origin : origin + self.horizon_steps, 0].copy())  # [H]
        if self.meter_index is not None:
            return x, y, self.meter_index
        return x, y


def window_dataset(prepared: PreparedSeries, starts: np.ndarray, meter_index: int | None = None) -> WindowDataset:
    """Return a dataset of (x [L, F], y [H]) windows of ``prepared`` at ``starts`` (e.g. ``origin_starts['val']``),
    each with ``meter_index`` as a third item when it is given."""
    return WindowDataset(prepared, starts, meter_index)


class WindowDataModule(pl.LightningDataModule):
    """Train / val / test loaders of (x float32 [B, L, F], y float32 [B, H]) over a ``PreparedSeries``.

    Parameters
    ----------
    prepared : PreparedSeries
        Its ``window_starts`` per split define the samples; training also reads its windows
        through a gap (``training_starts``, with ``prepare.missing_mask``), validation and test never.
    batch_size : int
        Windows per batch.
    shuffle_train : bool
        Shuffle training windows each epoch (seeded); val and test are never shuffled.
    seed : int
        Seed of the training shuffle.
    num_workers : int
        DataLoader worker processes.
    """

    def __init__(
        self,
        prepared: PreparedSeries,
        batch_size: int = 128,
        shuffle_train: bool = True,
        seed: int = 42,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise DataPreparationError(f"batch_size {batch_size} must be at least 1")
        if num_workers < 0:
            raise DataPreparationError(f"num_workers {num_workers} must be >= 0")
        self.prepared = prepared
        self.batch_size = batch_size
        self.shuffle_train = shuffle_train
        self.seed = seed
        self.num_workers = num_workers
        # Early stopping and scoring read complete windows only: the same windows every model is compared on.
        self.datasets = {split: window_dataset(prepared, prepared.window_starts[split]) for split in SPLIT_NAMES}
        self.datasets["train"] = window_dataset(prepared, prepared.training_starts("train"))

    def _loader(self, split: str, shuffle: bool) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        dataset = self.datasets[split]
        if len(dataset) == 0:
            raise DataPreparationError(
                f"meter {self.prepared.meter_id!r}: the {split} split has no usable window "
                f"(excluded: {self.prepared.exclusions[split]}); widen the split or ingest more readings"
            )
        return self._batches(dataset, shuffle)

    def _batches(self, dataset: WindowDataset, shuffle: bool) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_and_val_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Return one loader over the training and validation windows together (a refit), shuffled like training."""
        self._loader("train", False)  # raises when the training split is empty
        starts = np.concatenate([self.prepared.training_starts("train"), self.prepared.training_starts("val")])
        return self._batches(window_dataset(self.prepared, starts), self.shuffle_train)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Return the training loader (shuffled when ``shuffle_train``)."""
        return self._loader("train", self.shuffle_train)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Return the validation loader, in time order."""
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        """Return the test loader, in time order."""
        return self._loader("test", False)


def _fleet_windows(series: Sequence[PreparedSeries], split: str, meter_ids: Sequence[str] | None) -> ConcatDataset:
    """Return every meter's ``split`` windows as one dataset; each window reads its own meter's scaled arrays.

    With ``meter_ids``, each window also carries its meter's position in that list (a meter not in
    it gets ``len(meter_ids)``, the unknown meter's index).
    """
    starts = {id(item): item.training_starts(split) if split == "train" else item.window_starts[split] for item in series}
    positions = {meter_id: index for index, meter_id in enumerate(meter_ids or ())}

    def index_of(item: PreparedSeries) -> int | None:
        return None if meter_ids is None else positions.get(item.meter_id, len(positions))

    datasets = [window_dataset(item, starts[id(item)], index_of(item)) for item in series if len(starts[id(item)])]
    if not datasets:
        raise DataPreparationError(
            f"no meter of the {len(series)} given has a usable {split} window; ingest more readings or widen the split"
        )
    return ConcatDataset(datasets)


class StepBudgetSampler(Sampler[int]):
    """The indices of a seeded ``RandomSampler`` drawn with replacement: a fixed number of samples per pass.

    A wrapper rather than the ``RandomSampler`` itself because, under DDP (``train.global_devices``
    > 1), Lightning replaces a plain ``RandomSampler`` with a ``DistributedSampler`` over the whole
    dataset, one full pass of every meter's windows per epoch, which would undo the step budget.
    Any other sampler it wraps, so each process takes its share of these indices.
    """

    def __init__(self, sampler: RandomSampler) -> None:
        self.sampler = sampler

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def fleet_train_loader(
    series: Sequence[PreparedSeries], batch_size: int, n_batches: int, seed: int, meter_ids: Sequence[str] | None = None
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Return a loader of ``n_batches`` batches per pass, sampled with replacement from every meter's training windows.

    A pass costs ``n_batches`` batches however many meters there are: a global model trains on a
    budget of steps, not on full passes over the fleet's windows. With ``meter_ids`` a batch is
    (x, y, meter index [B]), the index being the window's meter's position in ``meter_ids``.
    """
    dataset = _fleet_windows(series, "train", meter_ids)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=n_batches * batch_size, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=StepBudgetSampler(sampler))


def fleet_val_loader(
    series: Sequence[PreparedSeries], batch_size: int, max_windows: int, seed: int, meter_ids: Sequence[str] | None = None
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Return a loader over at most ``max_windows`` validation windows drawn once (seeded) across meters
    (with ``meter_ids``, each with its meter's index as ``fleet_train_loader``'s)."""
    dataset = _fleet_windows(series, "val", meter_ids)
    if len(dataset) > max_windows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=max_windows, replace=False))
        dataset = Subset(dataset, chosen.tolist())
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)
