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
"""

from __future__ import annotations

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
        self.save_hyperparameters()
        self.members = nn.ModuleList(
            _RecurrentNet(n_features, horizon_steps, cell, tuple(hidden_sizes), dropout, segment_steps, highway_steps)
            for _ in range(n_members)
        )
        self.loss_fn = nn.L1Loss()

    def member_forecasts(self, x: torch.Tensor) -> torch.Tensor:
        """Return every member's scaled forecasts ``[K, B, H]`` for scaled input windows ``[B, L, F]``."""
        return torch.stack([member(x) for member in self.members])  # [K, B, H]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return scaled forecasts ``[B, H]`` (the members' mean) for scaled input windows ``[B, L, F]``."""
        return self.member_forecasts(x).mean(dim=0)  # [B, H]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return the L1 loss of one training batch (scaled units), averaged over members.

        Each member is fitted to the targets through its own forecast (the loss is the mean of the
        members' losses, not the loss of their mean), so members stay separate estimators whose
        errors partly cancel when averaged.
        """
        x, y = batch  # [B, L, F], [B, H]
        member_yhat = self.member_forecasts(x).float()  # [K, B, H]
        loss = self.loss_fn(member_yhat, y.float().unsqueeze(0).expand_as(member_yhat))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return the L1 loss of one validation batch and log it scaled and in kW."""
        x, y = batch  # [B, L, F], [B, H]
        loss = self.loss_fn(self(x).float(), y.float())  # the loss of the members' mean
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
    ) -> None:
        super().__init__()
        self.segment_steps = segment_steps
        self.highway_steps = highway_steps
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        sizes = [n_features * segment_steps, *hidden_sizes]
        self.layers = nn.ModuleList(
            rnn_class(input_size=size_in, hidden_size=size_out, batch_first=True)
            for size_in, size_out in zip(sizes[:-1], sizes[1:])
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], horizon_steps)
        self.highway = nn.Linear(highway_steps, horizon_steps) if highway_steps else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return scaled forecasts ``[B, H]`` for scaled input windows ``[B, L, F]``."""
        segment = self.segment_steps
        n_segments = x.shape[1] // segment
        batch = x.shape[0]
        sequence = x[:, x.shape[1] - n_segments * segment :, :]  # [B, n_segments * S, F]
        sequence = sequence.reshape(batch, n_segments, segment * x.shape[2])  # [B, L // S, S * F]
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
