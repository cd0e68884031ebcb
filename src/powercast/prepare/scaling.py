"""Standardisation of measured columns, learned on training rows only and stored with the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from powercast.core.errors import DataPreparationError, RegistryError

if TYPE_CHECKING:
    from sklearn.preprocessing import StandardScaler


def _standard_scaler() -> StandardScaler:
    # Imported when a scaler is built, not with the module: scikit-learn (and SciPy) take over a
    # second to import, which every CLI command, --help included, paid before.
    from sklearn.preprocessing import StandardScaler

    return StandardScaler()

SCALER_FORMAT = "powercast.FeatureScaler/1"


class FeatureScaler:
    """Zero-mean, unit-variance scaling of measured columns (scikit-learn ``StandardScaler``).

    Parameters
    ----------
    columns : Sequence[str]
        Measured columns to scale, in input order; the first is the target (kW).

    Attributes
    ----------
    scaler_ : StandardScaler
        The fitted scikit-learn scaler (set by ``fit`` or ``from_dict``).
    n_rows_fit_ : int
        Rows of the frame the scaler was fit on.
    weekly_profile_kw_ : np.ndarray or None
        float64 [168]: the target's mean per local hour of the week over the same training rows
        (``prepare.profile_features``; set by ``with_weekly_profile``), None without it. It lives
        here because, like the scaling, it is learned on training rows and must travel with the
        model: a meter prepared for serving takes it from the model card, not from today's rows.
    """

    weekly_profile_kw_: np.ndarray | None = None

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)

    def fit(self, frame_train: pd.DataFrame) -> FeatureScaler:
        """Learn each column's mean and standard deviation from training rows (NaN ignored); return self."""
        train = self._matrix(frame_train, "fit")
        empty = [name for name, n_real in zip(self.columns, (~np.isnan(train)).sum(axis=0), strict=True) if n_real == 0]
        if empty:
            raise DataPreparationError(
                f"cannot fit the scaler: column(s) {empty} have no real value in the {len(train)} training rows; "
                "move the train/validation boundary later or ingest more history"
            )
        self.scaler_ = _standard_scaler().fit(train)
        self.n_rows_fit_ = int(len(train))
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Return float32 [T, F_measured] scaled columns (NaN stays NaN)."""
        self._check_fitted()
        return self.scaler_.transform(self._matrix(frame, "transform")).astype(np.float32)

    def with_weekly_profile(self, profile_kw: np.ndarray) -> FeatureScaler:
        """Store the target's training-row mean per local hour of the week (float [168], kW); return self."""
        profile = np.asarray(profile_kw, dtype=np.float64)
        if profile.ndim != 1 or not np.isfinite(profile).all():
            raise DataPreparationError(f"a weekly profile is a finite 1-D array, got shape {profile.shape}")
        self.weekly_profile_kw_ = profile.copy()
        return self

    def weekly_profile_scaled(self) -> np.ndarray:
        """Return the stored weekly profile in the target's scaled units (float64 [168])."""
        self._check_fitted()
        if self.weekly_profile_kw_ is None:
            raise DataPreparationError(
                "this scaler holds no weekly profile (it was fit without prepare.profile_features): "
                "prepare with the model's own prepare config"
            )
        return (self.weekly_profile_kw_ - float(self.scaler_.mean_[0])) / float(self.scaler_.scale_[0])

    def inverse_target_kw(self, scaled: np.ndarray) -> np.ndarray:
        """Return scaled target values (any shape, e.g. [N, H]) back in kW, as float32."""
        self._check_fitted()
        scale, mean = float(self.scaler_.scale_[0]), float(self.scaler_.mean_[0])
        return (np.asarray(scaled, dtype=np.float64) * scale + mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Return the fitted state as plain JSON-able values (``from_dict`` restores it)."""
        self._check_fitted()
        return {
            "format": SCALER_FORMAT,
            "columns": list(self.columns),
            "mean": [float(v) for v in self.scaler_.mean_],
            "scale": [float(v) for v in self.scaler_.scale_],
            "var": [float(v) for v in self.scaler_.var_],
            "n_samples_seen": [int(v) for v in np.broadcast_to(self.scaler_.n_samples_seen_, len(self.columns))],
            "n_rows_fit": self.n_rows_fit_,
            # absent without a profile, so a scaler fit without it writes the same state as before it existed
            **({} if self.weekly_profile_kw_ is None else {"weekly_profile_kw": [float(v) for v in self.weekly_profile_kw_]}),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeatureScaler:
        """Return a fitted scaler rebuilt from ``to_dict`` output."""
        if state.get("format") != SCALER_FORMAT:
            raise RegistryError(
                f"scaler state has format {state.get('format')!r}, expected {SCALER_FORMAT!r}; "
                "the model was saved by an incompatible version: retrain it"
            )
        scaler = cls(state["columns"])
        inner = _standard_scaler()
        inner.mean_ = np.asarray(state["mean"], dtype=np.float64)
        inner.scale_ = np.asarray(state["scale"], dtype=np.float64)
        inner.var_ = np.asarray(state["var"], dtype=np.float64)
        inner.n_samples_seen_ = np.asarray(state["n_samples_seen"], dtype=np.int64)
        inner.n_features_in_ = len(scaler.columns)
        if not len(inner.mean_) == len(inner.scale_) == len(inner.var_) == len(scaler.columns):
            raise RegistryError(
                f"scaler state lists {len(scaler.columns)} columns but {len(inner.mean_)} means: the file is damaged"
            )
        scaler.scaler_ = inner
        scaler.n_rows_fit_ = int(state["n_rows_fit"])
        if "weekly_profile_kw" in state:
            scaler.with_weekly_profile(np.asarray(state["weekly_profile_kw"], dtype=np.float64))
        return scaler

    def _matrix(self, frame: pd.DataFrame, action: str) -> np.ndarray:
        missing = [name for name in self.columns if name not in frame.columns]
        if missing:
            raise DataPreparationError(
                f"cannot {action} the scaler: frame lacks column(s) {missing} (it scales {list(self.columns)})"
            )
        return frame.loc[:, list(self.columns)].to_numpy(dtype=np.float64, na_value=np.nan)

    def _check_fitted(self) -> None:
        if not hasattr(self, "scaler_"):
            raise DataPreparationError("FeatureScaler is not fitted: call fit() on training rows or load one with from_dict()")
