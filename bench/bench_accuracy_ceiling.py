"""Benchmark: how far combining or correcting a night's models could go on 2010, in hindsight.

Replays every model one training run registered for a meter (e.g. on the root of
``bench_real_meters.py`` or ``bench_train.py``) over the issue days ``--start`` .. ``--end``, exactly as
``powercast backtest --version V`` serves it (fallback through gaps included; its batches are
published under ``<root>/backtests/<meter>/<version>/`` as a backtest's are), and scores every day
whose 24 hours all have readings. Then prints, in kW over all those hours:

* each model's MAE, the one the run serves marked (its champion, else its combination);
* **hindsight ceilings**, each fitted on the very hours it scores, so no model could serve them:
  the best convex weights of the run's own models (not the combination), and the best free
  weights with an intercept, each as one set and as one set per horizon step (least absolute
  deviations, solved exactly as linear programs); the best constant shift and single scale
  factor of the served model; the best model chosen day by day; and the served model rescaled (and,
  apart, shifted) so that each day's mean equals the day's actual mean load.

For contrast it also fits the per-step weights on half of the days and scores them on the other
half, both ways, with the halves taken as alternate days (same seasons) and as the first and
second half of the range (across seasons). A ceiling above a target says that no
such reweighting or recalibration of these models reaches it; the day-level rescale says how
much of the error the day's level (weather, occupancy) accounts for, the rest being its shape.
Writes ``bench/results/accuracy_ceiling.json`` (``-<tag>`` with
``--tag``). Never asserts.

    .venv/bin/python bench/bench_accuracy_ceiling.py [--root DIR] [--meter sceaux_household] [--run RUN_ID]
                                                     [--start 2010-01-01] [--end 2010-11-25] [--tag NAME]
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from powercast.core.config import COMBINED_MODEL, PowercastConfig
from powercast.core.errors import PowercastError
from powercast.models.registry import champion_version, list_versions, load_model, read_card
from powercast.serving.backtest import Replay, issue_days, replay_days

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def run_versions(root: str, meter_id: str, run_id: str | None) -> tuple[str, list[str]]:
    """Return (the run id, its registered versions for ``meter_id``): ``run_id``'s, else the champion's run."""
    registered = list_versions(root, meter_id)
    if not registered:
        raise SystemExit(
            f"no registered model of meter {meter_id!r} under {root}: run bench/bench_real_meters.py "
            "(or bench_train.py) with that root first, or pass --root"
        )
    if run_id is None:
        champion = champion_version(root, meter_id)
        if champion is None:
            raise SystemExit(f"--meter {meter_id!r} of --root {root} has no champion: pass --run RUN_ID")
        run_id = read_card(root, meter_id, champion)["run_id"]
    versions = sorted(version for version in registered if version.startswith(f"{run_id}-"))
    if not versions:
        raise SystemExit(f"--run {run_id!r} registered no version of --meter {meter_id!r} in --root {root}")
    return run_id, versions


def replayed(config: PowercastConfig, meter_id: str, version: str, days: list[date]) -> tuple[np.ndarray, np.ndarray]:
    """Return (actual kW, forecast kW), ``[days scored, H]``, of ``version`` served over ``days``."""
    replay = Replay()
    replay_days(config, load_model(config.root, meter_id, version), meter_id, days, f"ceiling-{version}", replay)
    return np.asarray(replay.truths), np.asarray(replay.forecasts)


def best_l1_combination(forecasts_kw: np.ndarray, actual_kw: np.ndarray, convex: bool) -> tuple[float, np.ndarray]:
    """Return the lowest MAE of a linear combination of the rows of ``forecasts_kw`` (``[k, N]``) against ``actual_kw``
    (``[N]``) and its coefficients: convex weights (non-negative, summing to one) or, with ``convex`` off, any
    weights plus an intercept (its last coefficient). Solved exactly as a linear program (least absolute deviations).
    """
    k, n = forecasts_kw.shape
    columns = forecasts_kw.T if convex else np.column_stack([forecasts_kw.T, np.ones(n)])
    m = columns.shape[1]
    # Variables: the m coefficients, then the positive and negative parts of each residual.
    cost = np.concatenate([np.zeros(m), np.full(2 * n, 1.0 / n)])
    a_eq = sparse.hstack([sparse.csr_matrix(columns), sparse.identity(n), -sparse.identity(n)]).tocsr()
    b_eq = actual_kw
    if convex:
        a_eq = sparse.vstack([a_eq, sparse.hstack([sparse.csr_matrix(np.ones((1, m))), sparse.csr_matrix((1, 2 * n))])])
        b_eq = np.concatenate([actual_kw, [1.0]])
    bounds = [(0, None) if convex else (None, None)] * m + [(0, None)] * (2 * n)
    solved = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if not solved.success:
        raise SystemExit(f"the least-absolute-deviations fit failed: {solved.message}")
    coefficients = solved.x[:m]
    return float(np.abs(columns @ coefficients - actual_kw).mean()), coefficients


def cross_fitted_per_step_mae_kw(
    stacked_kw: np.ndarray, actual_kw: np.ndarray, convex: bool, alternate_days: bool
) -> float:
    """Return the MAE of per-step weights fitted on half of the days and scored on the other half, both ways.

    ``stacked_kw`` is ``[k, days, H]``. The halves are the first and the second half of the range, or, with
    ``alternate_days``, the even and the odd days (the same seasons on both sides, so what is lost there is
    the fit's noise; what the time-ordered halves lose more is the weights not carrying across seasons).
    Unlike the ceilings, these weights are scored on days they were not fitted on.
    """
    days, horizon = actual_kw.shape[0], actual_kw.shape[1]
    first = np.arange(days) % 2 == 0 if alternate_days else np.arange(days) < days // 2
    errors_kw = np.empty_like(actual_kw)
    for fit_days, score_days in ((first, ~first), (~first, first)):
        for step in range(horizon):
            _, coefficients = best_l1_combination(stacked_kw[:, fit_days, step], actual_kw[fit_days, step], convex)
            columns = stacked_kw[:, score_days, step].T
            if not convex:
                columns = np.column_stack([columns, np.ones(len(columns))])
            errors_kw[score_days, step] = columns @ coefficients - actual_kw[score_days, step]
    return float(np.abs(errors_kw).mean())


def best_scale(served_kw: np.ndarray, actual_kw: np.ndarray) -> tuple[float, float]:
    """Return (the lowest MAE of ``scale * served``, that scale): the median of actual / served weighted by
    |served| (sum |s f - y| = sum |f| |s - y / f|), exact; hours forecast at zero cannot move and are left out."""
    forecast, actual = served_kw.ravel(), actual_kw.ravel()
    moving = forecast != 0
    ratios, weights = actual[moving] / forecast[moving], np.abs(forecast[moving])
    order = np.argsort(ratios)
    cumulative = np.cumsum(weights[order])
    scale = float(ratios[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    return float(np.abs(scale * served_kw - actual_kw).mean()), scale


def ceilings(forecasts_kw: dict[str, np.ndarray], served: str, actual_kw: np.ndarray) -> dict[str, object]:
    """Return the hindsight ceilings (see the module docstring) of the run's own models and the served model."""
    members = [name for name in forecasts_kw if name != COMBINED_MODEL] or list(forecasts_kw)
    stacked = np.stack([forecasts_kw[name] for name in members])  # [k, days, H]
    k, horizon = len(members), actual_kw.shape[1]
    convex, convex_weights = best_l1_combination(stacked.reshape(k, -1), actual_kw.ravel(), convex=True)
    affine, affine_coefficients = best_l1_combination(stacked.reshape(k, -1), actual_kw.ravel(), convex=False)
    per_step = [
        (
            best_l1_combination(stacked[:, :, step], actual_kw[:, step], convex=True)[0],
            best_l1_combination(stacked[:, :, step], actual_kw[:, step], convex=False)[0],
        )
        for step in range(horizon)
    ]
    served_kw = forecasts_kw[served]
    residual_kw = actual_kw - served_kw
    scale_mae_kw, scale = best_scale(served_kw, actual_kw)
    # The day's actual mean known, two ways: the served day rescaled to it (load scales with the level), and shifted
    # to it. A day forecast at (near) zero mean, an idle channel meter, has no level to rescale: it is shifted.
    actual_mean_kw, served_mean_kw = actual_kw.mean(axis=1, keepdims=True), served_kw.mean(axis=1, keepdims=True)
    shifted_kw = served_kw + (actual_mean_kw - served_mean_kw)
    rescalable = served_mean_kw > np.maximum(1e-3, 0.05 * np.abs(actual_mean_kw))
    rescaled_kw = np.where(
        rescalable, served_kw * actual_mean_kw / np.where(rescalable, served_mean_kw, 1.0), shifted_kw
    )
    per_day = np.stack([np.abs(forecasts_kw[name] - actual_kw).mean(axis=1) for name in forecasts_kw])
    return {
        "members": members,
        "convex_weights_mae_kw": convex,
        "convex_weights": dict(zip(members, np.round(convex_weights, 3).tolist(), strict=True)),
        "convex_weights_per_step_mae_kw": float(np.mean([pair[0] for pair in per_step])),
        "affine_mae_kw": affine,
        "affine_coefficients": dict(
            zip([*members, "intercept_kw"], np.round(affine_coefficients, 3).tolist(), strict=True)
        ),
        "affine_per_step_mae_kw": float(np.mean([pair[1] for pair in per_step])),
        "cross_fitted_per_step_mae_kw": {
            f"{kind}, {split}": cross_fitted_per_step_mae_kw(
                stacked, actual_kw, convex=kind == "convex", alternate_days=split == "alternate days"
            )
            for kind in ("convex", "free with an intercept")
            for split in ("alternate days", "first and second half")
        },
        "constant_shift_mae_kw": float(np.abs(residual_kw - np.median(residual_kw)).mean()),
        "constant_shift_kw": float(np.median(residual_kw)),
        "scale_mae_kw": scale_mae_kw,
        "scale": scale,
        "best_model_each_day_mae_kw": float(per_day.min(axis=0).mean()),
        "daily_mean_known_rescaled_mae_kw": float(np.abs(rescaled_kw - actual_kw).mean()),
        "daily_mean_known_shifted_mae_kw": float(np.abs(shifted_kw - actual_kw).mean()),
    }


def served_name(root: str, meter_id: str, run_id: str, names: list[str]) -> str:
    """Return the model the run serves: its champion when the champion is the run's, else its combination."""
    champion = champion_version(root, meter_id)
    if champion is not None and champion.startswith(f"{run_id}-"):
        return champion.removeprefix(f"{run_id}-")
    if COMBINED_MODEL in names:
        return COMBINED_MODEL
    raise SystemExit(
        f"--run {run_id!r} holds neither the champion of --meter {meter_id!r} nor a {COMBINED_MODEL}: nothing it serves"
    )


def main() -> int:
    """Replay the run's versions, print the table, write the JSON; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        default=str(RESULTS / "real_meters_root"),
        help="a data root holding the run's registered models and the store (default: bench_real_meters.py's)",
    )
    parser.add_argument("--meter", default="sceaux_household")
    parser.add_argument("--run", default=None, help="the training run's id (default: the champion's)")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2010, 1, 1), help="first issue day")
    parser.add_argument("--end", type=date.fromisoformat, default=date(2010, 11, 25), help="last issue day")
    parser.add_argument("--tag", default="", help="write accuracy_ceiling-<tag>.json")
    args = parser.parse_args()

    config = PowercastConfig(root=args.root)
    run_id, versions = run_versions(args.root, args.meter, args.run)
    days = issue_days(args.start, args.end)
    actual_kw, forecasts_kw = None, {}
    for version in versions:
        try:
            truth, forecasts_kw[version.removeprefix(f"{run_id}-")] = replayed(config, args.meter, version, days)
        except PowercastError as exc:
            raise SystemExit(f"{version} could not be replayed over {args.start} .. {args.end}: {exc}") from exc
        if actual_kw is not None and not np.array_equal(truth, actual_kw):
            raise SystemExit(
                f"{version} was scored on other hours than {versions[0]}: the ceilings need the same hours"
            )
        actual_kw = truth
    if actual_kw is None or actual_kw.shape[0] < 2:
        raise SystemExit(
            f"fewer than two days of --start {args.start} .. --end {args.end} have all their hours read: "
            "the weights cross-fitted on halves of the days need two"
        )
    served = served_name(args.root, args.meter, run_id, list(forecasts_kw))
    scores = {name: float(np.abs(yhat - actual_kw).mean()) for name, yhat in forecasts_kw.items()}
    result = {
        "root": args.root,
        "meter": args.meter,
        "run": run_id,
        "start": str(args.start),
        "end": str(args.end),
        "scored_days": int(actual_kw.shape[0]),
        "scored_hours": int(actual_kw.size),
        "served": served,
        "mae_kw": scores,
        "ceilings": ceilings(forecasts_kw, served, actual_kw),
    }
    print(
        f"{args.meter}, run {run_id}: {result['scored_days']} scored days ({result['scored_hours']} hours), "
        f"{args.start} .. {args.end}; MAE kW over every scored hour"
    )
    for name, mae in sorted(scores.items(), key=lambda item: item[1]):
        print(f"  {name:<24} {mae:.4f}{'  (served)' if name == served else ''}")
    found = result["ceilings"]
    print("hindsight ceilings, fitted on the hours they score (no model could serve them):")
    print(
        f"  best convex weights of {', '.join(found['members'])}: {found['convex_weights_mae_kw']:.4f} "
        f"{found['convex_weights']}; one set per step: {found['convex_weights_per_step_mae_kw']:.4f}"
    )
    print(
        f"  best free weights and intercept: {found['affine_mae_kw']:.4f} {found['affine_coefficients']}; "
        f"one set per step: {found['affine_per_step_mae_kw']:.4f}"
    )
    print(
        f"  {served} shifted by the best constant ({found['constant_shift_kw']:+.4f} kW): "
        f"{found['constant_shift_mae_kw']:.4f}; scaled by the best factor (x{found['scale']:.3f}): "
        f"{found['scale_mae_kw']:.4f}"
    )
    print(f"  the best model chosen each day: {found['best_model_each_day_mae_kw']:.4f}")
    print(
        f"  {served} with each day's actual mean load: rescaled to it {found['daily_mean_known_rescaled_mae_kw']:.4f}, "
        f"shifted to it {found['daily_mean_known_shifted_mae_kw']:.4f}"
    )
    print("not hindsight: per-step weights fitted on half of the days, scored on the other half (both ways):")
    for name, mae in found["cross_fitted_per_step_mae_kw"].items():
        print(f"  {name}: {mae:.4f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (f"accuracy_ceiling-{args.tag}.json" if args.tag else "accuracy_ceiling.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
