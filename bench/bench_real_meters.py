"""Benchmark: the five real meters of the UCI file, local vs global models vs the best baseline, on test 2010.

Ingests the full file with every channel as its own meter (the house total and its kitchen,
laundry, heater/AC and rest-of-house channels), trains with ``train.scope = both`` on the
reference split (train < 2009-07-01 <= validation < 2010-01-01 <= test), and prints per meter the
day-ahead test MAE (kW, windows issued at local midnight, every scored window of 2010) of the
best local network, the best global network (each chosen by validation MAE, as selection would),
the baseline with the lowest validation MAE, the combination (the mean of the group of
challengers, of any scope, whose mean scores best on validation; its members read from its
model card) and the contestant selection serves on a first
night, then the median over meters. Writes
bench/results/real_meters.json (real_meters-<tag>.json with --tag). Seeds are the configuration's
(train.seed, default 42).

    .venv/bin/python bench/bench_real_meters.py [--cpu-threads 1] [--root DIR] [--tag NAME] [--set KEY=JSON ...]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_set_option, set_overrides  # noqa: E402 (bench/ is not a package: the path line above makes common importable)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "household_power_consumption.txt.gz"
RESULTS = REPO / "bench" / "results"
CHANNELS = ["total", "kitchen", "laundry", "heater_ac", "rest"]
SCORED_SET = "test_day_ahead"
SCRATCH_MARKER = ".bench-real-meters-scratch"


def _mae(leaderboard: list[dict[str, Any]], model: str, window_set: str) -> float:
    return next(row["mae_kw"] for row in leaderboard if row["model"] == model and row["window_set"] == window_set)


def _best_by_validation(leaderboard: list[dict[str, Any]], models: list[str]) -> str | None:
    """Return the model of ``models`` with the lowest validation MAE, None when the family was not trained."""
    return min(models, key=lambda model: _mae(leaderboard, model, "val")) if models else None


def _median_kw(values: list[float]) -> float:
    """Return the median over meters; NaN for a family not trained (statistics.median would mix NaN in)."""
    trained = [value for value in values if not math.isnan(value)]
    return statistics.median(trained) if trained else float("nan")


def meter_row(meter_id: str, leaderboard: list[dict[str, Any]], decision: Any, combo_members: list[str]) -> dict[str, Any]:
    """Return one meter's test MAE per family (NaN for a family not trained), each family's member chosen on validation."""
    names = {row["model"] for row in leaderboard}
    baselines = sorted({row["model"] for row in leaderboard if row["kind"] == "baseline"})
    families = {
        "local": sorted(n for n in names if n in ("gru", "lstm")),
        "global": sorted(n for n in names if n.endswith("_global")),
        "baseline": baselines,
    }
    row: dict[str, Any] = {"meter_id": meter_id}
    for family, models in families.items():
        best = _best_by_validation(leaderboard, models)
        row[family] = best or "-"
        row[f"{family}_test_mae_kw"] = _mae(leaderboard, best, SCORED_SET) if best else float("nan")
    row["combo"] = "+".join(combo_members) if "combo" in names else "-"
    row["combo_test_mae_kw"] = _mae(leaderboard, "combo", SCORED_SET) if "combo" in names else float("nan")
    row["selected"] = decision.winner if decision.promoted else "(none promoted)"
    row["selected_test_mae_kw"] = _mae(leaderboard, decision.winner, SCORED_SET) if decision.promoted else float("nan")
    return row


def combination_members(root: str, meter_id: str, versions: dict[str, str]) -> list[str]:
    """Return the models the meter's registered combination averages (its card's member versions), [] without one."""
    from powercast.models.registry import read_card

    if "combo" not in versions:
        return []
    by_version = {version: model for model, version in versions.items()}
    return [by_version[version] for version in read_card(root, meter_id, versions["combo"])["hparams"]["member_versions"]]


def claim_scratch_root(root: Path) -> None:
    """Mark ``root`` as this benchmark's scratch root, refusing a data root with models it did not make.

    The benchmark deletes the root's models/ and runs/ (each run is a first night), so it must never
    be pointed at a real data root by mistake.
    """
    marker = root / SCRATCH_MARKER
    inside_results = root.resolve().is_relative_to(RESULTS.resolve())  # the benchmarks' own scratch space
    if (root / "models").exists() and not marker.exists() and not inside_results:
        raise SystemExit(
            f"{root} holds models/ but is not a scratch root of this benchmark (no {SCRATCH_MARKER}); "
            "the benchmark deletes models/ and runs/ of its root: pass a new --root"
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text("scratch root of bench/bench_real_meters.py: its models/ and runs/ are deleted on each run\n")


def main() -> int:
    """Run the benchmark, print the table, write the JSON; return the exit status."""
    from powercast.core.config import PowercastConfig, SplitConfig
    from powercast.store.ingest import ingest_paths
    from powercast.store.readings import list_meters
    from powercast.training.fleet import train_fleet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="the full UCI file")
    parser.add_argument("--root", default=str(RESULTS / "real_meters_root"), help="scratch data root")
    parser.add_argument("--cpu-threads", type=int, default=0, help="train.cpu_threads")
    parser.add_argument("--tag", default="", help="write bench/results/real_meters-<tag>.json instead of real_meters.json")
    add_set_option(parser)
    args = parser.parse_args()
    overrides: dict[str, Any] = {
        "ingest.channel_meters": CHANNELS,
        "prepare.split": SplitConfig.reference().model_dump(),
        "train.scope": "both",
        "train.cpu_threads": args.cpu_threads,
    }
    overrides.update(set_overrides(parser, args.set))
    config = PowercastConfig(root=args.root).with_overrides(overrides)
    claim_scratch_root(Path(args.root))
    ingest_paths([args.source], config, run_id="bench-real-ingest", progress=False)
    # Every benchmark is a first night: no earlier champion to compare with, so "selected" is what
    # selection picks among tonight's contestants.
    for folder in (Path(args.root) / "models", Path(args.root) / "runs"):
        if folder.exists():
            shutil.rmtree(folder)
    meters = list_meters(config.root)
    run_id = f"bench-real-{int(time.time())}"
    started = time.perf_counter()
    result = train_fleet(config, meters, run_id, progress=False)
    elapsed_s = time.perf_counter() - started
    if result.global_failure:  # the benchmark compares global with local networks: no figures without them
        raise SystemExit(f"the global networks failed, nothing to compare: {result.global_failure}")
    rows = [
        meter_row(m, o.leaderboard, o.decision, combination_members(config.root, m, o.versions))
        for m, o in sorted(result.outcomes.items())
    ]
    header = (
        f"{'meter':<28} {'local':>14} {'global':>20} {'best baseline':>28} {'combination':>32} {'selected':>20}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['meter_id']:<28} {row['local']:>5} {row['local_test_mae_kw']:>8.4f} "
            f"{row['global']:>11} {row['global_test_mae_kw']:>8.4f} "
            f"{row['baseline']:>19} {row['baseline_test_mae_kw']:>8.4f} "
            f"{row['combo']:>23} {row['combo_test_mae_kw']:>8.4f} "
            f"{row['selected']:>11} {row['selected_test_mae_kw']:>8.4f}"
        )
    families = ("local", "global", "baseline", "combo", "selected")
    keys = tuple(f"{family}_test_mae_kw" for family in families)
    medians = {key: _median_kw([row[key] for row in rows]) for key in keys}
    print(
        f"{'median over meters':<28} {medians['local_test_mae_kw']:>14.4f} {medians['global_test_mae_kw']:>20.4f} "
        f"{medians['baseline_test_mae_kw']:>28.4f} {medians['combo_test_mae_kw']:>32.4f} "
        f"{medians['selected_test_mae_kw']:>20.4f}"
    )
    global_s = {
        cell: {"fit_s": round(trained.fit.elapsed_s, 1), "refit_s": round(trained.elapsed_s - trained.fit.elapsed_s, 1)}
        for cell, trained in result.global_fits.items()
    }
    print(f"\ntraining {elapsed_s:.0f} s in all (global fits: {global_s}); failures: {result.failures or 'none'}")
    print("kW, day-ahead windows of 2010 issued at local midnight; each family's network chosen on validation MAE")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / (f"real_meters-{args.tag}.json" if args.tag else "real_meters.json")).write_text(
        json.dumps({"rows": rows, "medians": medians, "elapsed_s": elapsed_s, "global_fit_s": global_s,
                    "seed": config.train.seed, "overrides": overrides}, indent=2, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
