"""``powercast train``: train GRU and LSTM challengers for a meter, select, register, print the leaderboard.

``--preset seed`` instead reproduces the original tutorial experiment from a raw UCI file and
writes its report beside the default pipeline's honest figures.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from powercast.cli.options import add_setting_options, setting_overrides
from powercast.core.config import PowercastConfig, SplitConfig
from powercast.core.errors import ConfigError
from powercast.core.settings import TRAINING_SETTINGS, settings
from powercast.io import layout
from powercast.io.locking import meter_lock
from powercast.io.runs import new_run_id
from powercast.store.readings import list_meters

TRAIN_OPTIONS = settings(TRAINING_SETTINGS)

if TYPE_CHECKING:
    from powercast.experiments.seed_preset import SeedPresetResult
    from powercast.training.pipeline import TrainingOutcome


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        parents=[common],
        help="train GRU/LSTM challengers, compare with baselines and the champion, promote a winner",
        description="Train every configured cell on a stored meter, score challengers, baselines and the "
        "current champion in kW on the same windows, promote the best challenger only if it beats them, "
        "and print the leaderboard and the decision. --preset seed reproduces the original tutorial "
        "experiment from a raw UCI file instead.",
    )
    meters = parser.add_mutually_exclusive_group()
    meters.add_argument("--meter", nargs="+", help="meter id(s) to train (default: ingest.default_meter_id)")
    meters.add_argument("--all-meters", action="store_true", help="train every meter in the store (a fleet)")
    parser.add_argument("--preset", choices=("default", "seed"), default="default", help="what to train (default: default)")
    add_training_options(parser)
    parser.add_argument("--run-id", help="names the versions and run folder (default: train-<UTC time>-<random>)")
    seed = parser.add_argument_group("seed preset")
    seed.add_argument("--source", help="raw UCI file the seed preset reads (required with --preset seed)")
    seed.add_argument("--max-rows", type=int, help="seed preset: use only the first rows of the file (quick runs)")
    seed.add_argument("--epochs", type=int, default=10, help="seed preset: training epochs (default 10, as the original)")
    parser.set_defaults(handler=run_train, config_overrides=train_overrides)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Add the training settings and ``--split`` (``train`` and the walk-forward ``backtest`` train alike)."""
    add_setting_options(parser.add_argument_group("training settings"), TRAIN_OPTIONS)
    parser.add_argument(
        "--split",
        choices=("reference", "trailing"),
        help="reference: train < 2009-07-01 <= val < 2010-01-01 <= test; trailing: the last days validate",
    )


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the dotted configuration keys set by the command line."""
    overrides = setting_overrides(args, TRAIN_OPTIONS)
    if args.split == "reference":
        overrides["prepare.split"] = SplitConfig.reference().model_dump()
    elif args.split == "trailing":
        overrides["prepare.split"] = SplitConfig().model_dump()
    return overrides


def _mae(outcome: TrainingOutcome, model: str, window_set: str, key: str = "mae_kw") -> str:
    for row in outcome.leaderboard:
        if row["model"] == model and row["window_set"] == window_set:
            return f"{row[key]:.4f}" if key != "mase" else f"{row[key]:.3f}"
    return "-"


def leaderboard_table(outcome: TrainingOutcome) -> str:
    """Return the leaderboard as a plain-text table: one line per model, best validation MAE first.

    Columns: validation MAE on every window (the selection metric), day-ahead test MAE, and RMSE
    and MASE of the day-ahead test windows (of the day-ahead validation windows when the run has
    no test split).
    """
    from powercast.training.pipeline import SELECTION_SET

    sets = {row["window_set"] for row in outcome.leaderboard}
    scored_set = "test_day_ahead" if "test_day_ahead" in sets else "val_day_ahead"
    models: dict[str, dict[str, Any]] = {}
    for row in outcome.leaderboard:
        models.setdefault(row["model"], row)
    order = sorted(models, key=lambda name: float(_mae(outcome, name, SELECTION_SET)))
    scored = "test-DA" if scored_set == "test_day_ahead" else "val-DA"
    labels = {
        name: f"champion {row['version']}" if row["kind"] == "champion" else name for name, row in models.items()
    }
    width = max(len(label) for label in labels.values()) + 1
    header = (
        f"{'model':<{width}} {'kind':<10} {'val MAE':>8} {'test-DA MAE':>11} {scored + ' RMSE':>12} "
        f"{scored + ' MASE':>12} {'train s':>8}  device"
    )
    lines = [header, "-" * len(header)]
    for name in order:
        first = models[name]
        train_s = f"{first['train_time_s']:.1f}" if first["train_time_s"] is not None else "-"
        lines.append(
            f"{labels[name]:<{width}} {first['kind']:<10} {_mae(outcome, name, SELECTION_SET):>8} "
            f"{_mae(outcome, name, 'test_day_ahead'):>11} {_mae(outcome, name, scored_set, 'rmse_kw'):>12} "
            f"{_mae(outcome, name, scored_set, 'mase'):>12} {train_s:>8}  {first['device'] or '-'}"
        )
    lines += [
        "",
        "kW; val = every validation window (selects the winner); test-DA/val-DA = day-ahead windows issued at local",
        "midnight; MASE against the in-sample seasonal-naive (24 h) error of the training split. Models are scored",
        "on validation by their held-out fit and on test by the served model (refit on train + validation when",
        "train.refit_on_validation is on).",
    ]
    return "\n".join(lines)


def seed_summary(result: SeedPresetResult) -> str:
    """Return the seed preset's parameter counts, test errors and output paths as text."""
    lines = [f"seed preset on {result.source}: {result.n_train:,} train / {result.n_test:,} test minute windows"]
    for model in result.models.values():
        lines.append(
            f"  {model.cell.upper()}(75, 30, 30)+Dense(1): {model.n_parameters:,} parameters "
            f"(Keras: {model.n_parameters_keras:,}); test MAE {model.test_mae_kw:.4f} kW, RMSE {model.test_rmse_kw:.4f} kW; "
            f"{model.elapsed_s:.0f} s on {model.device}"
        )
    lines += [
        f"  persistence (next minute = this minute): test MAE {result.persistence_test_mae_kw:.4f} kW",
        f"loss curves: {result.curves_png}",
        f"report:      {result.report_md}",
    ]
    return "\n".join(lines)


def run_train(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Train (or run the seed preset) and print the results; return the exit status."""
    # torch and Lightning load only when training, so `powercast --help` stays fast
    from powercast.experiments.seed_preset import honest_figures, run_seed_preset
    from powercast.training.pipeline import train_meter

    meter_ids = list_meters(config.root) if args.all_meters else (args.meter or [config.ingest.default_meter_id])
    if not meter_ids:
        raise ConfigError(f"the store under {config.root} holds no meter; ingest readings first (powercast ingest)")
    run_id = args.run_id or new_run_id("train")
    progress = False if args.quiet else None
    if args.preset == "seed":
        if not args.source:
            raise ConfigError("--preset seed needs --source PATH, the raw UCI file to reproduce the experiment on")
        result = run_seed_preset(
            args.source,
            layout.run_dir(config.root, run_id, "seed"),
            max_rows=args.max_rows,
            epochs=args.epochs,
            accelerator=config.train.accelerator,
            seed=config.train.seed,
            cpu_threads=config.train.cpu_threads,
            progress=progress,
            honest_rows=honest_figures(config.root, meter_ids[0]),
        )
        print(seed_summary(result))
        return 0
    if len(meter_ids) > 1 or config.train.scope != "local":
        return _train_fleet(config, meter_ids, run_id, args.lock_timeout_s, progress)
    meter_id = meter_ids[0]
    with meter_lock(config.root, meter_id, args.lock_timeout_s, holder=run_id):
        outcome = train_meter(config, meter_id, run_id, progress=progress)
    print(f"run {run_id}, meter {meter_id}")
    print(leaderboard_table(outcome))
    print("")
    verdict = f"promoted {outcome.champion_version}" if outcome.decision.promoted else "not promoted"
    print(f"decision: {verdict}: {outcome.decision.reason}")
    print(f"champion: {outcome.champion_version or 'none'}; leaderboard and curves in {outcome.run_dir}")
    return 0


def _train_fleet(
    config: PowercastConfig, meter_ids: list[str], run_id: str, lock_timeout_s: float, progress: bool | None
) -> int:
    """Train a fleet (train.scope decides local, global or both), print one line per meter; return the status."""
    from powercast.training.fleet import local_meters_without_readings, train_fleet

    absent = local_meters_without_readings(config)
    if absent:
        print(f"warning: train.local_meters names {absent}, which the store holds no readings of", file=sys.stderr)
    result = train_fleet(config, meter_ids, run_id, progress=progress, lock_timeout_s=lock_timeout_s)
    print(f"run {run_id}: {len(meter_ids)} meter(s), train.scope={config.train.scope}")
    for cell, trained in result.global_fits.items():
        stopped = f"{trained.fit.epochs_run} epochs, stopped by {trained.fit.stopped_by}"
        refit = f"refit {trained.refit.epochs_run} epochs" if trained.refit else f"no refit: {trained.refit_skipped}"
        print(f"  global {cell}: {trained.elapsed_s:.1f} s on {trained.device}, {stopped}; {refit}")
    if result.global_failure:
        print(f"  global models: FAILED: {result.global_failure}")
    print(fleet_table(result.outcomes))
    for meter_id, cells in result.failed_cells.items():
        print(f"{meter_id}: cells left out: " + "; ".join(f"{cell}: {error}" for cell, error in cells.items()))
    for meter_id, error in result.failures.items():
        print(f"{meter_id}: FAILED: {error}")
    return 1 if result.failures or result.global_failure else 0


def fleet_table(outcomes: dict[str, TrainingOutcome]) -> str:
    """Return one line per meter: best challenger and baseline on validation (kW), and the decision."""
    header = f"{'meter':<32} {'best challenger':<16} {'val MAE':>8} {'best baseline':<20} {'val MAE':>8}  decision"
    lines = [header, "-" * len(header)]
    for meter_id, outcome in sorted(outcomes.items()):
        decision = outcome.decision
        verdict = f"promoted {decision.winner}" if decision.promoted else f"kept {decision.champion_version or 'none'}"
        lines.append(
            f"{meter_id:<32} {decision.best_challenger:<16} {decision.best_challenger_val_mae_kw:>8.4f} "
            f"{decision.best_baseline:<20} {decision.best_baseline_val_mae_kw:>8.4f}  {verdict}"
        )
    return "\n".join(lines)
