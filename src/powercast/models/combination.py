"""A combination challenger: the mean of the night's best challengers' forecasts.

Networks and gradient boosting err differently (the boosted trees follow the daily profile, the
networks the recent level), so their mean is often better than either. The combination is
scored on the same validation windows as every contestant and wins only by a lower MAE.
It holds no weights of its own: its model card names the member versions, registered in the
same night, and loading it loads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from powercast.core.config import COMBINED_MODEL
from powercast.core.errors import DataPreparationError
from powercast.models.boosting import _AttributeDict


class CombinedForecaster:
    """Forecasts the mean of its members' forecasts (same windows in, ``[N, H]`` scaled out)."""

    def __init__(self, members: list[Any], member_versions: tuple[str, ...] = ()) -> None:
        if len(members) < 2:
            raise DataPreparationError(f"a {COMBINED_MODEL} needs at least two members, got {len(members)}")
        self.members = members
        self.member_versions = member_versions

    @property
    def hparams(self) -> _AttributeDict:
        """Return what the model card stores: the member versions and the horizon."""
        return _AttributeDict(
            {"member_versions": list(self.member_versions), "horizon_steps": int(self.members[0].hparams.horizon_steps)}
        )

    def forecast_scaled(self, windows: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Return the members' mean scaled forecast ``[N, H]`` (the scaler is affine, so also their mean in kW)."""
        return np.mean([member.forecast_scaled(windows) for member in self.members], axis=0).astype(np.float32)

    def to(self, device: str) -> CombinedForecaster:
        """Return self after moving every member to ``device``."""
        self.members = [member.to(device) for member in self.members]
        return self

    def eval(self) -> CombinedForecaster:
        """Return self with every member in eval mode."""
        self.members = [member.eval() for member in self.members]
        return self
