"""Benchmark: one night for a fleet of N synthetic meters (1, 10, 100, 1,000) with global models, stage by stage.

The meters are derived from the five real channels of the full UCI file (see
``powercast.experiments.synthetic_fleet``): one year of 15-minute history each, then one more
day that arrives as a landing file. They are labelled synthetic and measure cost only, never
accuracy. Each fleet size runs in its own process (``--one N``) so its peak RSS is its own.

Stages of the night, timed separately (wall seconds, this machine):
  ingest       the night's landing file: one day of every meter, one generic CSV
  prepare      every meter's series at 15 min, read in one scan of the store (lookback 672 steps = 7 days, horizon 96 = 1 day)
  global_fit   one GRU and one LSTM over every meter's windows (train.scope = global; step budget)
  select       per meter: global forecasts on its validation windows, baselines, intervals, registry
  forecast     per meter: the champion's (or fallback's) day-ahead batch, then one publish
The alternative a user would pick, local models, is measured on one meter (``local_fit_s``,
GRU + LSTM with the same settings) and scales with the fleet: N times that.

    .venv/bin/python bench/bench_fleet.py [--sizes 1 10 100 1000] [--epochs 12] [--steps 200] [--members 3]
                                          [--global-hidden-sizes 128] [--meter-embedding-dim 16] [--tag NAME]

The defaults are the configuration's defaults (12 epochs of 200 sampled batches, 3-member ensembles).

Prints a table and writes bench/results/fleet.json (and fleet-<N>.json per size; -<tag> with --tag).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "household_power_consumption.txt.gz"
RESULTS = REPO / "bench" / "results"
REAL_ROOT = RESULTS / "fleet_real"
CHANNELS = ["total", "kitchen", "laundry", "heater_ac", "rest"]
HISTORY_START = datetime(2009, 11, 25, tzinfo=timezone.utc)
NIGHT_END = datetime(2010, 11, 26, tzinfo=timezone.utc)  # history + the night's day, 15-min grid
STEPS_PER_DAY = 96


def _config(root: Path, args: argparse.Namespace):
    from powercast.core.config import PowercastConfig

    return PowercastConfig(root=str(root)).with_overrides(
        {
            "prepare.freq": "15min",
            "prepare.lookback_steps": 7 * STEPS_PER_DAY,
            "prepare.horizon_steps": STEPS_PER_DAY,
            "prepare.max_interpolate_gap_steps": 12,
            "train.scope": "global",
            "train.max_epochs": args.epochs,
            "train.global_steps_per_epoch": args.steps,
            "train.ensemble_members": args.members,
            "train.cpu_threads": args.cpu_threads,
            "train.accelerator": args.accelerator,
            "train.global_hidden_sizes": args.global_hidden_sizes,
            "train.meter_embedding_dim": args.meter_embedding_dim,
        }
    )


def ingest_real_channels(source: str) -> None:
    """Store the UCI file's five real meters under bench/results/fleet_real (idempotent: once per file)."""
    from powercast.core.config import PowercastConfig
    from powercast.store.ingest import ingest_paths

    config = PowercastConfig(root=str(REAL_ROOT)).with_overrides({"ingest.channel_meters": CHANNELS})
    ingest_paths([source], config, run_id="bench-fleet-real", progress=False)


def real_channels():
    """Return the five real meters at 15 min over the benchmark's year (read from bench/results/fleet_real)."""
    from powercast.core.config import PowercastConfig
    from powercast.experiments.synthetic_fleet import real_channels_15min

    base_meter_id = PowercastConfig().ingest.default_meter_id
    return real_channels_15min(str(REAL_ROOT), base_meter_id, HISTORY_START, NIGHT_END)


def _timed(stages: dict[str, float], name: str, started: float) -> float:
    now = time.perf_counter()
    stages[name] = round(now - started, 2)
    # On stderr as each stage ends: a failure later in the night still leaves the figures so far.
    print(f"stage {name}: {stages[name]:.1f} s", file=sys.stderr, flush=True)
    return now


def run_one(n_meters: int, args: argparse.Namespace) -> dict[str, Any]:
    """Return the figures of one night for ``n_meters`` synthetic meters, measured in this process."""
    import torch

    from powercast.experiments.synthetic_fleet import plan_fleet, write_fleet_day_csv, write_fleet_history
    from powercast.serving.forecast import make_forecast_batch
    from powercast.serving.publish import publish_batch
    from powercast.store.ingest import ingest_paths
    from powercast.training.fleet import fit_global_models, global_challenger, prepare_fleet
    from powercast.training.pipeline import select_and_register

    channels = real_channels()
    fleet = plan_fleet(list(channels.columns), n_meters, len(channels), seed=args.seed)
    root = RESULTS / f"fleet-{n_meters}"
    shutil.rmtree(root, ignore_errors=True)
    history, night = slice(0, len(channels) - STEPS_PER_DAY), slice(len(channels) - STEPS_PER_DAY, None)
    setup_started = time.perf_counter()
    write_fleet_history(str(root), channels, fleet, history)
    landing = root / "landing"
    landing.mkdir(parents=True)
    write_fleet_day_csv(str(landing / "night.csv"), channels, fleet, night)
    setup_s = time.perf_counter() - setup_started
    config = _config(root, args)
    torch.set_num_threads(max(1, args.cpu_threads))
    meters = [meter.meter_id for meter in fleet]

    stages: dict[str, float] = {}
    started = time.perf_counter()
    ingest_paths([str(landing)], config, run_id="night", progress=False)
    started = _timed(stages, "ingest", started)
    series, left_out = prepare_fleet(config, meters)  # as train-global-models does: one scan of the store
    if left_out:
        raise SystemExit(f"meters that could not be prepared: {left_out}")
    started = _timed(stages, "prepare", started)
    fits = fit_global_models(config, series, run_id="night", progress=False)
    started = _timed(stages, "global_fit", started)
    promoted = 0
    for prepared in series:
        challengers = [global_challenger(fit, cell, prepared) for cell, fit in fits.items()]
        promoted += select_and_register(config, prepared.meter_id, "night", prepared, challengers).decision.promoted
    started = _timed(stages, "select", started)
    batches = [make_forecast_batch(config, meter_id, None, "night") for meter_id in meters]
    publish_batch(str(root), batches)
    _timed(stages, "forecast", started)
    total_s = sum(stages.values())
    files = list((root / "store" / "readings").rglob("*.parquet"))
    return {
        "meters": n_meters,
        "stages_s": stages,
        "night_s": round(total_s, 1),
        "per_meter_s": round(total_s / n_meters, 3),
        "promoted_global": int(promoted),
        "served_by_network": sum(batch.model != "seasonal_naive" for batch in batches),
        "global_fit": {cell: _global_fit_row(trained) for cell, trained in fits.items()},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "store_files": len(files),
        "store_mib": round(sum(path.stat().st_size for path in files) / 2**20, 1),
        # The registry after one night: a card per meter and contestant, a global network's weights once.
        "models_mib": round(sum(p.stat().st_size for p in (root / "models").rglob("*") if p.is_file()) / 2**20, 1),
        "setup_s": round(setup_s, 1),
    }


def _global_fit_row(trained: Any) -> dict[str, Any]:
    """Return what one global network's training did: its held-out fit, and the refit that serves (if any)."""
    row = {
        "epochs": trained.fit.epochs_run,
        "stopped_by": trained.fit.stopped_by,
        "fit_s": round(trained.fit.elapsed_s, 1),
        "refit_s": round(trained.elapsed_s - trained.fit.elapsed_s, 1),
    }
    if trained.refit is not None:
        row["refit_epochs"] = trained.refit.epochs_run
    else:
        row["refit_skipped"] = trained.refit_skipped
    return row


def local_fit_seconds(args: argparse.Namespace) -> float:
    """Return the wall seconds of the local alternative for one meter: its own GRU and LSTM, same settings."""
    from powercast.prepare.series import prepare_meter
    from powercast.training.fleet import local_challengers

    root = RESULTS / "fleet-1"
    config = _config(root, args).with_overrides({"train.scope": "local", "train.refit_on_validation": False})
    prepared = prepare_meter(config, "synthetic-00000")
    started = time.perf_counter()
    local_challengers(config, prepared, run_id="local", progress=False)
    return round(time.perf_counter() - started, 1)


def main() -> int:
    """Run each fleet size in its own process, print the table, write the JSON; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="the full UCI file")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000], help="fleet sizes")
    parser.add_argument("--epochs", type=int, default=12, help="train.max_epochs of the global models")
    parser.add_argument("--steps", type=int, default=200, help="train.global_steps_per_epoch")
    parser.add_argument("--members", type=int, default=3, help="train.ensemble_members")
    parser.add_argument("--cpu-threads", type=int, default=2, help="torch threads (train.cpu_threads)")
    parser.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu", "auto"))
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic fleet")
    parser.add_argument(
        "--global-hidden-sizes", type=int, nargs="+", default=None, help="train.global_hidden_sizes (default: none)"
    )
    parser.add_argument("--meter-embedding-dim", type=int, default=0, help="train.meter_embedding_dim (default 0)")
    parser.add_argument("--tag", default="", help="write fleet-<tag>.json (and fleet-<N>-<tag>.json) instead")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--local", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args)))
        return 0
    if args.local:
        print(json.dumps({"local_fit_s": local_fit_seconds(args)}))
        return 0
    ingest_real_channels(args.source)  # here, so no child's peak memory includes the full-file ingest
    rows = [_child(["--one", str(size)], args) for size in args.sizes]
    local = _child(["--local"], args) if 1 in args.sizes else {}
    _print_table(rows, local)
    summary = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "settings": {
            key: getattr(args, key)
            for key in ("epochs", "steps", "members", "cpu_threads", "seed", "global_hidden_sizes", "meter_embedding_dim")
        },
        "sizes": rows,
        **local,
        "note": "synthetic meters (derived from the real UCI channels): cost figures only, never accuracy",
    }
    (RESULTS / f"fleet{_suffix(args)}.json").write_text(json.dumps(summary, indent=2))
    return 0


def _suffix(args: argparse.Namespace) -> str:
    """Return the results files' tag suffix (``-<tag>``, or nothing)."""
    return f"-{args.tag}" if args.tag else ""


def _child(extra: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Return the JSON a child run of this script printed on its last line."""
    options = ["--source", args.source, "--epochs", str(args.epochs), "--steps", str(args.steps)]
    options += ["--members", str(args.members), "--cpu-threads", str(args.cpu_threads)]
    options += ["--accelerator", args.accelerator, "--seed", str(args.seed)]
    options += ["--meter-embedding-dim", str(args.meter_embedding_dim)]
    if args.global_hidden_sizes:
        options += ["--global-hidden-sizes", *map(str, args.global_hidden_sizes)]
    done = subprocess.run([sys.executable, __file__, *options, *extra], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_fleet {' '.join(extra)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "meters" in result:
        (RESULTS / f"fleet-{result['meters']}{_suffix(args)}.json").write_text(json.dumps(result, indent=2))
    return result


def _print_table(rows: list[dict[str, Any]], local: dict[str, Any]) -> None:
    stages = ("ingest", "prepare", "global_fit", "select", "forecast")
    header = f"{'meters':>6} " + " ".join(f"{name:>10}" for name in stages) + f" {'night s':>8} {'s/meter':>8} {'peak MiB':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = " ".join(f"{row['stages_s'][name]:>10.1f}" for name in stages)
        print(f"{row['meters']:>6} {cells} {row['night_s']:>8.1f} {row['per_meter_s']:>8.2f} {row['peak_rss_mib']:>8}")
    if local:
        print(
            f"\nlocal alternative: one meter's own GRU + LSTM, same settings, no refit (the default refits too): "
            f"{local['local_fit_s']:.1f} s per meter"
        )
    print("synthetic meters (derived from the real UCI channels): cost figures only, never accuracy")


if __name__ == "__main__":
    raise SystemExit(main())
