"""How a winner is chosen: the best challenger must beat the best baseline and the champion.

All scores compared here must come from the same validation windows (the pipeline re-scores
the current champion on today's windows), so that "better" means better on identical data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from powercast.core.errors import TrainingError


@dataclass(frozen=True)
class Decision:
    """The outcome of one night's selection and why.

    ``promoted`` is True when ``winner`` (a challenger name) replaces the champion;
    otherwise ``champion_version`` stays in service (or no model is, when there was none).
    """

    promoted: bool
    winner: str | None
    best_challenger: str
    best_challenger_val_mae_kw: float
    best_baseline: str
    best_baseline_val_mae_kw: float
    champion_version: str | None
    champion_val_mae_kw: float | None
    challenger_val_mae_kw: dict[str, float]
    baseline_val_mae_kw: dict[str, float]
    n_val_windows: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict of the decision."""
        return asdict(self)


def select_winner(
    challenger_val_mae_kw: Mapping[str, float],
    baseline_val_mae_kw: Mapping[str, float],
    champion_val_mae_kw: float | None,
    champion_version: str | None,
    n_val_windows: int,
) -> Decision:
    """Return the decision: promote the lowest-MAE challenger only if it beats the best baseline and the champion.

    Parameters
    ----------
    challenger_val_mae_kw : mapping
        Challenger name (e.g. ``"gru"``) → validation MAE in kW on today's validation windows.
    baseline_val_mae_kw : mapping
        Baseline name → validation MAE in kW on the same windows.
    champion_val_mae_kw : float or None
        The current champion re-scored on the same windows; None when there is no champion.
    champion_version : str or None
        Registry version of the current champion.
    n_val_windows : int
        Number of validation windows the scores were computed on.
    """
    if not challenger_val_mae_kw:
        raise TrainingError("selection needs at least one challenger score; no model was trained")
    if not baseline_val_mae_kw:
        raise TrainingError("selection needs at least one baseline score on the validation windows")
    if (champion_val_mae_kw is None) != (champion_version is None):
        raise TrainingError("champion_val_mae_kw and champion_version must be given together")
    best_challenger = min(challenger_val_mae_kw, key=lambda name: challenger_val_mae_kw[name])
    best_baseline = min(baseline_val_mae_kw, key=lambda name: baseline_val_mae_kw[name])
    challenger_mae = float(challenger_val_mae_kw[best_challenger])
    baseline_mae = float(baseline_val_mae_kw[best_baseline])
    if challenger_mae >= baseline_mae:
        promoted = False
        reason = (
            f"{best_challenger} (val MAE {challenger_mae:.4f} kW) does not beat the best baseline "
            f"{best_baseline} ({baseline_mae:.4f} kW); "
            + (f"champion {champion_version} stays" if champion_version else "no champion is promoted")
        )
    elif champion_val_mae_kw is not None and challenger_mae >= champion_val_mae_kw:
        promoted = False
        reason = (
            f"{best_challenger} (val MAE {challenger_mae:.4f} kW) does not beat champion {champion_version} "
            f"({champion_val_mae_kw:.4f} kW on the same {n_val_windows} windows); the champion stays"
        )
    else:
        promoted = True
        against = (
            f"champion {champion_version} ({champion_val_mae_kw:.4f} kW)" if champion_val_mae_kw is not None else "no champion"
        )
        reason = (
            f"{best_challenger} (val MAE {challenger_mae:.4f} kW) beats the best baseline {best_baseline} "
            f"({baseline_mae:.4f} kW) and {against} on {n_val_windows} validation windows"
        )
    return Decision(
        promoted=promoted,
        winner=best_challenger if promoted else None,
        best_challenger=best_challenger,
        best_challenger_val_mae_kw=challenger_mae,
        best_baseline=best_baseline,
        best_baseline_val_mae_kw=baseline_mae,
        champion_version=champion_version,
        champion_val_mae_kw=None if champion_val_mae_kw is None else float(champion_val_mae_kw),
        challenger_val_mae_kw={k: float(v) for k, v in challenger_val_mae_kw.items()},
        baseline_val_mae_kw={k: float(v) for k, v in baseline_val_mae_kw.items()},
        n_val_windows=int(n_val_windows),
        reason=reason,
    )
