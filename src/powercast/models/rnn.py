"""``RNNForecaster``: a stacked GRU or LSTM with a direct multi-horizon head (Lightning).

The network reads a window of scaled inputs ``[B, L, F]`` (column 0 is the scaled target) and
emits all ``H`` future steps of the scaled target at once ``[B, H]``; it is trained with an L1
loss, so its forecasts aim at the conditional median, which is what MAE rewards.

With ``segment_steps`` S > 1 the recurrence runs over segments rather than single steps (as in
SegRNN, Lin et al. 2023): the window is cut into ``L // S`` consecutive blocks of S steps and each
block's ``S * F`` values are one recurrent input. One day per step (S = 24 at 1 h) keeps the daily
shape intact inside each input and makes a 168-step lookback a 7-step recurrence, which trains
an order of magnitude faster on CPU than stepping hour by hour. A linear
"highway" from the last ``highway_steps`` target values straight to the output (as in LSTNet)
gives the network the seasonal-naive signal for free, so the recurrent layers only have to learn
corrections to it.

With ``n_members`` K > 1 the module is a deep ensemble: K copies of that network, initialised
independently and trained together on the same batches, forecasting their mean. The training
loss is the mean of the members' own L1 losses (not the loss of their mean), so each member's
gradient comes from its own forecast only; gradient-norm clipping applies to all members at
once, and the logged ``train_loss`` (members' mean loss) sits above ``val_mae`` (loss of the mean).
Averaging members removes part of the seed-to-seed variance of single networks and lowers the
error; docs/architecture.md gives the measured spread and the ablation.

A global network (one for a fleet, ``train.scope``) records ``meter_ids``, the meters it learned
from. With ``meter_embedding_dim`` E > 0 each member also learns a vector of E values per meter
(row i for ``meter_ids[i]``) that is appended to every recurrent step's input, so that meters
scaled alike can still be told apart. Which row a forecast reads: the batch's meter indices while
training and validating, and at any other time the row of ``serving_meter``; a meter the network
never learned (not in ``meter_ids``, or no ``serving_meter``) reads the mean of the learned rows,
an average meter. ``for_meter`` returns the network bound to one meter, sharing its weights; that
binding is in the hyperparameters, so a registered global model reloads bound to its meter.
Without an embedding and meter list (every local model) the module, its hyperparameters and its
weights are exactly what they were before these options existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from powercast.core.config import RECURRENT_CELLS, SCHEDULER_NAMES
from powercast.core.errors import ConfigError, DataPreparationError


class RNNForecaster(pl.LightningModule):
    """A stacked recurrent forecaster that predicts all horizon steps at once.

    Parameters
    ----------
    n_features : int
        Number of input columns ``F`` (column 0 must be the scaled target).
    lookback_steps : int
        Window length ``L`` the model is trained on (stored for loading; any L works at run time).
    horizon_steps : int
        Number of future steps ``H`` predicted at once.
    cell : {"gru", "lstm"}
        Recurrent cell type.
    hidden_sizes : sequence of int
        Hidden size of each stacked recurrent layer, first to last (e.g. ``(128, 64)``).
    dropout : float
        Dropout between stacked layers and before the head.
    segment_steps : int
        Input steps read per recurrent step (1 = classic step-by-step RNN; 24 at 1 h = a day per step).
        The oldest ``L mod S`` steps of a window are not read.
    highway_steps : int
        Length of the linear shortcut from the last target values to the output; 0 disables it.
    learning_rate : float
        Adam learning rate (the peak rate for the one-cycle schedule).
    weight_decay : float
        Adam weight decay.
    scheduler : {"onecycle", "plateau", "none"}
        Learning-rate schedule: one-cycle over the whole run, halve on a validation plateau, or constant.
    target_scale_kw : float
        kW per scaled target unit, so that validation MAE can be logged in kW as well.
    n_members : int
        Independently initialised copies of the network trained side by side, each on its own
        loss; the forecast is their mean (a deep ensemble in one module, one checkpoint).
    meter_ids : sequence of str, optional
        The meters a global network learned from, in the order of their embedding rows.
    meter_embedding_dim : int
        Size of each meter's learned input vector (0: none; needs ``meter_ids``).
    serving_meter : str, optional
        The meter whose embedding row a forecast reads when no meter index is given.
    """

    def __init__(
        self,
        n_features: int,
        lookback_steps: int,
        horizon_steps: int,
        cell: str = "gru",
        hidden_sizes: tuple[int, ...] | list[int] = (128, 64),
        dropout: float = 0.1,
        segment_steps: int = 1,
        highway_steps: int = 0,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        target_scale_kw: float = 1.0,
        n_members: int = 1,
        meter_ids: Sequence[str] | None = None,
        meter_embedding_dim: int = 0,
        serving_meter: str | None = None,
    ) -> None:
        super().__init__()
        if cell not in RECURRENT_CELLS:
            raise ConfigError(f"cell must be one of {RECURRENT_CELLS}, got {cell!r}")
        if scheduler not in SCHEDULER_NAMES:
            raise ConfigError(f"scheduler must be one of {SCHEDULER_NAMES}, got {scheduler!r}")
        if n_features < 1 or lookback_steps < 1 or horizon_steps < 1:
            raise ConfigError(
                f"n_features, lookback_steps and horizon_steps must be >= 1, got {n_features}, {lookback_steps}, {horizon_steps}"
            )
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ConfigError(f"hidden_sizes must be a non-empty list of positive sizes, got {list(hidden_sizes)}")
        if not 1 <= segment_steps <= lookback_steps:
            raise ConfigError(f"segment_steps must lie in [1, lookback_steps={lookback_steps}], got {segment_steps}")
        if not 0 <= highway_steps <= lookback_steps:
            raise ConfigError(f"highway_steps must lie in [0, lookback_steps={lookback_steps}], got {highway_steps}")
        if n_members < 1:
            raise ConfigError(f"n_members must be >= 1, got {n_members}")
        if meter_embedding_dim < 0:
            raise ConfigError(f"meter_embedding_dim must be >= 0, got {meter_embedding_dim}")
        if meter_embedding_dim and not meter_ids:
            raise ConfigError("a meter embedding needs the list of meter_ids it learns a row for")
        if meter_ids is not None and len(set(meter_ids)) != len(meter_ids):
            raise ConfigError("meter_ids must not repeat a meter: a row per meter")
        # Only a global network's options are recorded: a local model's hyperparameters (and so its card)
        # stay exactly as they were before global networks had them.
        fleet_options = {"meter_ids": meter_ids, "meter_embedding_dim": meter_embedding_dim, "serving_meter": serving_meter}
        self.save_hyperparameters(ignore=[name for name, value in fleet_options.items() if not value])
        if meter_ids is not None:
            self.hparams.meter_ids = list(meter_ids)  # a list, as a card's JSON reads back
        self.meter_ids: tuple[str, ...] = tuple(meter_ids or ())
        self.members = nn.ModuleList(
            _RecurrentNet(
                n_features, horizon_steps, cell, tuple(hidden_sizes), dropout, segment_steps, highway_steps,
                n_meters=len(self.meter_ids) if meter_embedding_dim else 0, meter_embedding_dim=meter_embedding_dim,
            )
            for _ in range(n_members)
        )
        self.loss_fn = nn.L1Loss()

    @property
    def unknown_meter_index(self) -> int:
        """Return the index that reads the mean of the learned rows (a meter not in ``meter_ids``)."""
        return len(self.meter_ids)

    def meter_index(self, meter_id: str | None) -> int:
        """Return ``meter_id``'s embedding row, or ``unknown_meter_index`` for a meter not learned (or None)."""
        return self.meter_ids.index(meter_id) if meter_id in self.meter_ids else self.unknown_meter_index

    def for_meter(self, meter_id: str) -> RNNForecaster:
        """Return this network bound to ``meter_id``: the same weights (shared, not copied), its forecasts
        read that meter's embedding row, and ``serving_meter`` records it for a card.

        A network without an embedding forecasts the same for every meter; it is bound all the same,
        so that each meter's card says which meter it serves.
        """
        view = RNNForecaster.__new__(RNNForecaster)
        view.__dict__ = {key: value for key, value in self.__dict__.items()}
        # Each mapping nn.Module keeps its state in is copied (their entries, the weights, are shared), so
        # that nothing set on the view later reaches this module.
        for key in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
            view.__dict__[key] = type(self.__dict__[key])(self.__dict__[key])
        hparams = type(self.hparams)({**self.hparams, "serving_meter": meter_id})
        view.__dict__["_hparams"] = hparams
        view.__dict__["_hparams_initial"] = type(hparams)(hparams)
        return view

    def member_forecasts(self, x: torch.Tensor, meter_index: torch.Tensor | None = None) -> torch.Tensor:
        """Return every member's scaled forecasts ``[K, B, H]`` for scaled input windows ``[B, L, F]``.

        ``meter_index`` (int64 ``[B]``) picks each window's embedding row; None: ``serving_meter``'s row.
        """
        if self.hparams.get("meter_embedding_dim", 0) and meter_index is None:
            if self.training:
                # Training reads each window's own meter: a loader that lost the index must fail,
                # not train every window through the serving meter's (or the mean) row.
                raise DataPreparationError("a network with a meter embedding trains only on windows with a meter index")
            index = self.meter_index(self.hparams.get("serving_meter"))
            meter_index = torch.full((x.shape[0],), index, dtype=torch.long, device=x.device)
        return torch.stack([member(x, meter_index) for member in self.members])  # [K, B, H]

    def forward(self, x: torch.Tensor, meter_index: torch.Tensor | None = None) -> torch.Tensor:
        """Return scaled forecasts ``[B, H]`` (the members' mean) for scaled input windows ``[B, L, F]``."""
        return self.member_forecasts(x, meter_index).mean(dim=0)  # [B, H]

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Return the L1 loss of one training batch (scaled units), averaged over members.

        Each member is fitted to the targets through its own forecast (the loss is the mean of the
        members' losses, not the loss of their mean), so members stay separate estimators whose
        errors partly cancel when averaged.
        """
        x, y, meter_index = _unpacked(batch)  # [B, L, F], [B, H], [B] or None
        member_yhat = self.member_forecasts(x, meter_index).float()  # [K, B, H]
        loss = self.loss_fn(member_yhat, y.float().unsqueeze(0).expand_as(member_yhat))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Return the L1 loss of one validation batch and log it scaled and in kW."""
        x, y, meter_index = _unpacked(batch)  # [B, L, F], [B, H], [B] or None
        loss = self.loss_fn(self(x, meter_index).float(), y.float())  # the loss of the members' mean
        size = x.shape[0]
        # sync_dist: under DDP each process scores its share of the windows; the logged MAE (what early
        # stopping and the best checkpoint read) is over all of them. One process: nothing to sync.
        self.log("val_mae", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        self.log(
            "val_mae_kw", loss * self.hparams.target_scale_kw, on_step=False, on_epoch=True, batch_size=size,
            sync_dist=True,
        )
        return loss

    @torch.no_grad()
    def forecast_scaled(self, windows: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Return scaled forecasts ``[N, H]`` (float32, NumPy) for scaled input windows ``[N, L, F]``.

        Runs in eval mode on the module's device in chunks, and restores the previous mode.
        """
        if windows.ndim != 3 or windows.shape[2] != self.hparams.n_features:
            raise DataPreparationError(
                f"windows must be [N, L, {self.hparams.n_features}] scaled inputs, got shape {windows.shape}"
            )
        if not np.isfinite(windows).all():
            raise DataPreparationError("input windows contain NaN/inf: no NaN may reach a model")
        was_training = self.training
        self.eval()
        outputs = []
        for first in range(0, len(windows), batch_size):
            chunk = torch.as_tensor(np.ascontiguousarray(windows[first : first + batch_size]), dtype=torch.float32)
            outputs.append(self(chunk.to(self.device)).float().cpu().numpy())  # [b, H]
        self.train(was_training)
        if not outputs:
            return np.zeros((0, self.hparams.horizon_steps), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)  # [N, H]

    def configure_optimizers(self) -> Any:
        """Return Adam and the configured learning-rate schedule."""
        optimizer = torch.optim.Adam(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.scheduler == "onecycle":
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=self.hparams.learning_rate,
                total_steps=max(int(self.trainer.estimated_stepping_batches), 1),
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
        if self.hparams.scheduler == "plateau":
            schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "monitor": "val_mae"}}
        return optimizer


def _unpacked(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return (x, y, meter index or None) of a batch: (x, y) of one meter, or (x, y, meter index) of a fleet."""
    if len(batch) == 3:
        return batch[0], batch[1], batch[2]
    x, y = batch
    return x, y, None


def count_parameters(module: nn.Module) -> int:
    """Return the number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class _RecurrentNet(nn.Module):
    """One member: stacked recurrent layers over segments, a linear head and the optional highway."""

    def __init__(
        self,
        n_features: int,
        horizon_steps: int,
        cell: str,
        hidden_sizes: tuple[int, ...],
        dropout: float,
        segment_steps: int,
        highway_steps: int,
        n_meters: int = 0,
        meter_embedding_dim: int = 0,
    ) -> None:
        super().__init__()
        self.segment_steps = segment_steps
        self.highway_steps = highway_steps
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        # The meter's vector is appended once per recurrent step (a segment), not to each of its S rows.
        sizes = [n_features * segment_steps + meter_embedding_dim, *hidden_sizes]
        self.layers = nn.ModuleList(
            rnn_class(input_size=size_in, hidden_size=size_out, batch_first=True)
            for size_in, size_out in zip(sizes[:-1], sizes[1:])
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], horizon_steps)
        self.highway = nn.Linear(highway_steps, horizon_steps) if highway_steps else None
        # Created last, so a network without it draws the same initial weights as before it existed.
        self.meter_embedding = nn.Embedding(n_meters, meter_embedding_dim) if meter_embedding_dim else None

    def meter_vectors(self, meter_index: torch.Tensor) -> torch.Tensor:
        """Return the ``[B, E]`` embedding rows of int64 ``[B]`` meter indices; index n_meters: the rows' mean."""
        assert self.meter_embedding is not None
        table = self.meter_embedding.weight  # [n_meters, E]
        table = torch.cat([table, table.mean(dim=0, keepdim=True)])  # [n_meters + 1, E]: the last is "unknown"
        return table[meter_index]  # [B, E]

    def forward(self, x: torch.Tensor, meter_index: torch.Tensor | None = None) -> torch.Tensor:
        """Return scaled forecasts ``[B, H]`` for scaled input windows ``[B, L, F]`` (and meter indices ``[B]``)."""
        segment = self.segment_steps
        n_segments = x.shape[1] // segment
        batch = x.shape[0]
        sequence = x[:, x.shape[1] - n_segments * segment :, :]  # [B, n_segments * S, F]
        sequence = sequence.reshape(batch, n_segments, segment * x.shape[2])  # [B, L // S, S * F]
        if self.meter_embedding is not None:
            if meter_index is None:
                raise DataPreparationError("a network with a meter embedding needs each window's meter index")
            vectors = self.meter_vectors(meter_index).to(sequence.dtype)  # [B, E]
            sequence = torch.cat([sequence, vectors[:, None, :].expand(-1, n_segments, -1)], dim=2)  # [B, L // S, S * F + E]
        for index, layer in enumerate(self.layers):
            sequence, _ = layer(sequence)  # [B, L // S, hidden_sizes[index]]
            if index < len(self.layers) - 1:
                sequence = self.dropout(sequence)
        last = self.dropout(sequence[:, -1, :])  # [B, hidden_sizes[-1]]
        yhat = self.head(last)  # [B, H]
        if self.highway is not None:
            recent_target = x[:, -self.highway_steps :, 0]  # [B, highway_steps]
            yhat = yhat + self.highway(recent_target)  # [B, H]
        return yhat
