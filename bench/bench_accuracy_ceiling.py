"""Benchmark: how far combining or correcting a night's models could go on 2010, in hindsight.

Replays every challenger one training run registered for a meter (e.g. the root of
``bench_real_meters.py`` or ``bench_train.py``) over the issue days ``--start`` .. ``--end``, exactly as
``powercast backtest --version V`` serves it (fallback through gaps included), and scores every day
whose 24 hours all have readings. Then prints, in kW over all those hours:

* each contestant's MAE (the served combination among them);
* **hindsight ceilings**, each fitted on the very hours it scores, so no model could serve them:
  the best convex weights of the run's own models (one set, and one set per horizon step), the
  best constant shift and scale of the served model, the best model chosen day by day, and the
  served model rescaled so that each day's mean equals the day's actual mean load.

A ceiling above a target says no reweighting or recalibration of these models reaches it; the
day-level rescale says how much of the error is the day's level (weather, occupancy) rather than
its shape. Writes ``bench/results/accuracy_ceiling.json`` (``-<tag>`` with ``--tag``). Never asserts.

    .venv/bin/python bench/bench_accuracy_ceiling.py [--root DIR] [--meter sceaux_household] [--run RUN_ID]
                                                     [--start 2010-01-01] [--end 2010-11-25] [--tag NAME]
"""

from __future__ import annotations

import argparse
import itertools
import json
from datetime import date
from pathlib import Path

import numpy as np

from powercast.core.config import COMBINED_MODEL, PowercastConfig
from powercast.models.registry import champion_version, list_versions, load_model, read_card
from powercast.serving.backtest import Replay, issue_days, replay_days

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# Grid of the convex-weight search: 1/50 steps for up to three models, coarser beyond (the grid grows as n^(k-1)).
FINE_STEPS, COARSE_STEPS = 50, 20


def run_versions(root: str, meter_id: str, run_id: str | None) -> tuple[str, list[str]]:
    """Return (the run id, its registered versions for ``meter_id``): ``run_id``'s, else the champion's run."""
    if not list_versions(root, meter_id):
        raise SystemExit(
            f"no registered model of meter {meter_id!r} under {root}: run bench/bench_real_meters.py "
            "(or bench_train.py) with that root first, or pass --root"
        )
    if run_id is None:
        champion = champion_version(root, meter_id)
        if champion is None:
            raise SystemExit(f"meter {meter_id!r} of {root} has no champion: pass --run")
        run_id = read_card(root, meter_id, champion)["run_id"]
    versions = sorted(version for version in list_versions(root, meter_id) if version.startswith(f"{run_id}-"))
    if not versions:
        raise SystemExit(f"run {run_id!r} registered no version of meter {meter_id!r} in {root}")
    return run_id, versions


def replayed(config: PowercastConfig, meter_id: str, version: str, days: list[date]) -> tuple[np.ndarray, np.ndarray]:
    """Return (actual kW, forecast kW), ``[days scored, H]``, of ``version`` served over ``days``."""
    replay = Replay()
    replay_days(config, load_model(config.root, meter_id, version), meter_id, days, f"ceiling-{version}", replay)
    return np.asarray(replay.truths), np.asarray(replay.forecasts)


def simplex_weights(k: int, steps: int) -> np.ndarray:
    """Return every weight vector of ``k`` non-negative multiples of 1/steps summing to one, ``[M, k]``."""
    rows = [np.diff([0, *cuts, steps]) for cuts in itertools.combinations_with_replacement(range(steps + 1), k - 1)]
    return np.asarray(rows, dtype=np.float64) / steps


def best_convex_mae_kw(
    forecasts_kw: np.ndarray, actual_kw: np.ndarray, weights: np.ndarray
) -> tuple[float, np.ndarray]:
    """Return the lowest MAE of ``weights @ forecasts`` (``[k, N]`` forecasts, ``[N]`` actuals) and its weights."""
    best, best_weights = np.inf, weights[0]
    for chunk in np.array_split(weights, max(1, len(weights) // 512)):
        errors = np.abs(chunk @ forecasts_kw - actual_kw).mean(axis=1)
        if errors.min() < best:
            best, best_weights = float(errors.min()), chunk[int(errors.argmin())]
    return best, best_weights


def ceilings(forecasts_kw: dict[str, np.ndarray], served: str, actual_kw: np.ndarray) -> dict[str, object]:
    """Return the hindsight ceilings (see the module docstring) of the members and the served model."""
    members = [name for name in forecasts_kw if name != served or len(forecasts_kw) == 1]
    stacked = np.stack([forecasts_kw[name] for name in members])  # [k, days, H]
    k, horizon = len(members), actual_kw.shape[1]
    weights = simplex_weights(k, FINE_STEPS if k <= 3 else COARSE_STEPS)
    convex, convex_weights = best_convex_mae_kw(stacked.reshape(k, -1), actual_kw.ravel(), weights)
    per_step = np.mean(
        [best_convex_mae_kw(stacked[:, :, step], actual_kw[:, step], weights)[0] for step in range(horizon)]
    )
    served_kw = forecasts_kw[served]
    residual_kw = actual_kw - served_kw
    scales = np.arange(0.80, 1.2001, 0.005)
    scaled = min(float(np.abs(scale * served_kw - actual_kw).mean()) for scale in scales)
    daily_level = served_kw * (actual_kw.mean(axis=1, keepdims=True) / served_kw.mean(axis=1, keepdims=True))
    per_day = np.stack([np.abs(forecasts_kw[name] - actual_kw).mean(axis=1) for name in forecasts_kw])
    return {
        "members": members,
        "convex_weights_mae_kw": convex,
        "convex_weights": dict(zip(members, np.round(convex_weights, 3).tolist(), strict=True)),
        "convex_weights_per_step_mae_kw": float(per_step),
        "constant_shift_mae_kw": float(np.abs(residual_kw - np.median(residual_kw)).mean()),
        "constant_shift_kw": float(np.median(residual_kw)),
        "scale_mae_kw": scaled,
        "best_model_each_day_mae_kw": float(per_day.min(axis=0).mean()),
        "daily_mean_known_mae_kw": float(np.abs(daily_level - actual_kw).mean()),
    }


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
        truth, forecasts_kw[version.removeprefix(f"{run_id}-")] = replayed(config, args.meter, version, days)
        if actual_kw is not None and not np.array_equal(truth, actual_kw):
            raise SystemExit(
                f"{version} was scored on other hours than {versions[0]}: the ceilings need the same hours"
            )
        actual_kw = truth
    served = (
        COMBINED_MODEL
        if COMBINED_MODEL in forecasts_kw
        else min(forecasts_kw, key=lambda name: np.abs(forecasts_kw[name] - actual_kw).mean())
    )
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
        f"  {served} shifted by the best constant ({found['constant_shift_kw']:+.4f} kW): "
        f"{found['constant_shift_mae_kw']:.4f}; scaled by the best factor: {found['scale_mae_kw']:.4f}"
    )
    print(f"  the best model chosen each day: {found['best_model_each_day_mae_kw']:.4f}")
    print(f"  {served} rescaled to each day's actual mean load: {found['daily_mean_known_mae_kw']:.4f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (f"accuracy_ceiling-{args.tag}.json" if args.tag else "accuracy_ceiling.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
