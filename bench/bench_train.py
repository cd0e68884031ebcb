"""Benchmark: GRU and LSTM on the full UCI file with the reference split, against the baselines.

Ingests ``../shared/data/household_power_consumption.txt.gz`` into a scratch root (idempotent),
trains every configured cell from scratch with the default configuration and the reference split
(train < 2009-07-01 <= validation < 2010-01-01 <= test), and prints MAE / RMSE / MASE in kW on the
day-ahead windows (issued at local midnight) of validation and test, with training time and
device per model. Writes ``bench/results/train.json``. Never asserts on time.

    .venv/bin/python bench/bench_train.py [--cpu-threads 1] [--max-epochs N] [--accelerator cpu]
                                          [--ensemble-members K] [--no-refit-on-validation]
                                          [--missing-mask] [--day-of-year-features] [--holiday-features]
                                          [--profile-features]

Every training setting of ``powercast train`` for one meter's own models is an option here too
(``--help`` lists them; the fleet's, ``train.scope`` and the global networks', are
``bench_real_meters.py``'s), and so are the input switches the accuracy ablation compares
(docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from powercast.cli.options import add_setting_options, setting_overrides
from powercast.core.config import PowercastConfig, SplitConfig
from powercast.core.settings import FLEET_TRAINING_SETTINGS, TRAINING_SETTINGS, settings
from powercast.prepare.features import feature_names
from powercast.store.ingest import ingest_paths
from powercast.training.pipeline import train_meter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_set_option, set_overrides  # noqa: E402 (bench/ is not a package: the path line above makes common importable)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "household_power_consumption.txt.gz"
RESULTS = REPO / "bench" / "results"
SETS = ("val_day_ahead", "test_day_ahead")
# The training settings, the seed (the spread across seeds is part of the figure) and the input
# switches of the accuracy ablation (docs/accuracy.md).
ABLATION_SETTINGS = (
    "prepare.missing_mask",
    "prepare.min_real_input_steps",
    "prepare.day_of_year_features",
    "prepare.holiday_features",
    "prepare.profile_features",
)
# One meter's own models: the fleet's settings (train.scope, global networks) are bench_real_meters.py's.
ONE_METER_SETTINGS = tuple(key for key in TRAINING_SETTINGS if key not in FLEET_TRAINING_SETTINGS)
BENCH_OPTIONS = settings((*ONE_METER_SETTINGS, "train.seed", *ABLATION_SETTINGS))


def prepared_features(config: PowercastConfig) -> tuple[str, ...]:
    """Return the input columns the networks read under ``config``."""
    return feature_names(config.prepare)


def main() -> int:
    """Run the benchmark, print the table, write the JSON; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="the full UCI file")
    parser.add_argument("--root", default=str(RESULTS / "train_root"), help="scratch data root")
    add_setting_options(parser.add_argument_group("training settings"), BENCH_OPTIONS)
    add_set_option(parser)
    parser.add_argument("--tag", default="", help="write bench/results/train-<tag>.json instead of train.json")
    args = parser.parse_args()

    overrides = {
        "prepare.split": SplitConfig.reference().model_dump(),
        **setting_overrides(args, BENCH_OPTIONS),
        **set_overrides(parser, args.set),
    }
    config = PowercastConfig(root=args.root).with_overrides(overrides)
    if config.train.scope != "local":
        parser.error(f"train.scope={config.train.scope!r}: this bench trains one meter's own models; "
                     "global networks are measured by bench/bench_real_meters.py")
    started = time.perf_counter()
    ingest_paths([args.source], config, run_id="bench-ingest", progress=False)
    ingest_s = time.perf_counter() - started
    # Every benchmark is a first night: no earlier champion to compare with.
    for folder in (Path(args.root) / "models", Path(args.root) / "runs"):
        if folder.exists():
            shutil.rmtree(folder)
    meter_id = config.ingest.default_meter_id
    outcome = train_meter(config, meter_id, "bench-train", progress=False)

    rows = [row for row in outcome.leaderboard if row["window_set"] in SETS]
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["window_set"]] = row
    order = sorted(by_model, key=lambda name: by_model[name]["test_day_ahead"]["mae_kw"])
    header = (
        f"{'model':<20} {'val MAE':>8} {'val RMSE':>9} {'val MASE':>9} "
        f"{'test MAE':>9} {'test RMSE':>10} {'test MASE':>10} {'train s':>8}  device"
    )
    print(f"day-ahead (issued at local midnight), hourly, 24 steps, reference split; kW; ingest {ingest_s:.0f} s")
    print(header)
    print("-" * len(header))
    for name in order:
        val, test = by_model[name]["val_day_ahead"], by_model[name]["test_day_ahead"]
        train_s = f"{test['train_time_s']:.0f}" if test["train_time_s"] is not None else "-"
        print(
            f"{name:<20} {val['mae_kw']:>8.4f} {val['rmse_kw']:>9.4f} {val['mase']:>9.3f} "
            f"{test['mae_kw']:>9.4f} {test['rmse_kw']:>10.4f} {test['mase']:>10.3f} {train_s:>8}  {test['device'] or '-'}"
        )
    if config.train.refit_on_validation:
        print("val: the held-out fit (selection scores it); test: the served model, refit on train + validation")
    night_s = sum(outcome.elapsed_s.values())
    print(f"training time of the night (every challenger, held-out fit + refit): {night_s:.0f} s")
    print(f"inputs: {', '.join(prepared_features(config))}")
    print(f"\ndecision: {outcome.decision.reason}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "train",
        "source": args.source,
        "split": "reference",
        "train_config": config.train.model_dump(mode="json"),
        "prepare_config": config.prepare.model_dump(mode="json"),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "ingest_s": ingest_s,
        "devices": outcome.devices,
        "train_s": outcome.elapsed_s,
        "night_train_s": night_s,
        "decision": outcome.decision.to_dict(),
        "rows": rows,
    }
    output = RESULTS / (f"train-{args.tag}.json" if args.tag else "train.json")
    output.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
