"""``powercast forecast`` / ``forecasts show|plot`` / ``backtest``: make, publish, read and replay batches."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from powercast.cli.train import add_training_options, train_overrides
from powercast.core.config import PowercastConfig, parse_timezone
from powercast.core.errors import ConfigError, ForecastError
from powercast.io import layout
from powercast.io.locking import PUBLISH_LOCK_NAME, meter_lock, named_lock
from powercast.io.runs import new_run_id

# pandas and the serving modules are imported by the handlers that use them: building the
# parser (every command, `powercast ingest` included) must not pay for them.
if TYPE_CHECKING:
    import pandas as pd


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``forecast``, ``forecasts`` (show, plot) and ``backtest`` subcommands."""
    issued_help = (
        "issue time: ISO 8601 with an offset (2010-11-10T00:00+01:00), or a date / naive time read in "
        "prepare.local_timezone (2010-11-10 = local midnight)"
    )
    forecast = subparsers.add_parser(
        "forecast",
        parents=[common],
        help="make and publish the forecast batch of every stored meter (or one)",
        description="Forecast with each meter's champion (seasonal-naive fallback when there is none or the "
        "input window has a long gap) and publish one batch for the issue time under <root>/forecasts.",
    )
    forecast.add_argument("--meter", help="only this meter (default: every stored meter)")
    forecast.add_argument("--issued-at", help=issued_help + " (default: midnight ending the last complete day)")
    forecast.add_argument("--run-id", help="run id written in the rows (default: a fresh one)")
    forecast.set_defaults(handler=run_forecast)

    forecasts = subparsers.add_parser(
        "forecasts", help="read published forecast batches", description="Print or plot a published forecast batch."
    )
    actions = forecasts.add_subparsers(dest="forecasts_action", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[common], help="print a batch as a table")
    show.add_argument("--issued-at", help=issued_help + " (default: the latest batch)")
    show.add_argument("--meter", help="only this meter")
    show.set_defaults(handler=run_show)
    plot = actions.add_parser("plot", parents=[common], help="draw a batch against the actual readings to PNG")
    plot.add_argument("--issued-at", help=issued_help + " (default: the latest batch)")
    plot.add_argument("--meter", help="only this meter")
    plot.add_argument("--out", help="PNG path (default: <root>/plots/forecast-<issued_at>.png)")
    plot.set_defaults(handler=run_plot)

    backtest = subparsers.add_parser(
        "backtest",
        parents=[common],
        help="replay day-ahead forecasts with the champion over a date range and score them",
        description="Forecast every local midnight from --start to --end with the current champion (no refit), "
        "publish each day under <root>/backtests/<meter>/<version>/, and print MAE per horizon step, "
        "overall MAE and interval coverage.",
    )
    backtest.add_argument("--start", required=True, type=date.fromisoformat, help="first issue day (YYYY-MM-DD, local)")
    backtest.add_argument("--end", required=True, type=date.fromisoformat, help="last issue day (YYYY-MM-DD, local)")
    backtest.add_argument("--meter", help="meter_id (default: ingest.default_meter_id)")
    backtest.add_argument("--run-id", help="run id written in the rows (default: a fresh one)")
    backtest.add_argument(
        "--version", help="replay this registered version instead of the champion (e.g. a night's losing contestant)"
    )
    backtest.add_argument(
        "--refit-every-days",
        type=int,
        metavar="N",
        help="walk forward: retrain as the nightly run would have before --start and every N days after it, "
        "each night on the readings before it only, into a scratch registry under "
        "<root>/backtests/<meter>/walk-forward/<run id>/ (the live champion is untouched); the training "
        "settings and --split below apply to every night, a dates split moved so that its validation ends at each night",
    )
    add_training_options(backtest)
    backtest.set_defaults(handler=run_backtest_command, config_overrides=train_overrides)


def parse_issue_time(text: str | None, config: PowercastConfig) -> pd.Timestamp | None:
    """Return ``--issued-at`` as a UTC Timestamp; dates and naive times are read in local time."""
    if text is None:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise ConfigError(f"--issued-at {text!r} is not a date or time; use e.g. 2010-11-10 or 2010-11-10T00:00+01:00") from exc
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(parse_timezone(config.prepare.local_timezone))
    return stamp.tz_convert("UTC")


def run_forecast(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Make every requested meter's batch, publish them together, print where and what; return 0."""
    from powercast.serving.forecast import (
        make_forecast_batch,  # torch: only when forecasting
    )
    from powercast.serving.publish import publish_batch
    from powercast.store.readings import list_meters

    meters = [args.meter] if args.meter else list_meters(config.root)
    if not meters:
        raise ForecastError(f"no meter is stored under {config.root}; run `powercast ingest` first")
    run_id = args.run_id or new_run_id("forecast")
    issued_at = parse_issue_time(args.issued_at, config)
    batches = []
    for meter_id in meters:
        with meter_lock(config.root, meter_id, args.lock_timeout_s, holder=run_id):
            batches.append(make_forecast_batch(config, meter_id, issued_at, run_id))
    by_issue_time: dict[pd.Timestamp, list] = {}
    for batch in batches:
        by_issue_time.setdefault(batch.issued_at_utc, []).append(batch)
    with named_lock(config.root, PUBLISH_LOCK_NAME, args.lock_timeout_s, holder=run_id):
        published = [publish_batch(config.root, group) for _, group in sorted(by_issue_time.items())]
    for batch in batches:
        notes = "".join(f"\n    note: {note}" for note in batch.notes)
        print(f"{batch.meter_id}: {batch.model} {batch.model_version}, issued {batch.issued_at_utc.isoformat()}{notes}")
    for result in published:
        latest = "latest" if result.latest_updated else "not latest (a newer batch exists)"
        print(f"published {result.rows} rows ({', '.join(result.meters)}) to {result.path} [{latest}]")
    return 0


def run_show(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Print a published batch as a table with its metadata; return 0."""
    import pandas as pd

    from powercast.serving.publish import read_forecasts

    frame = read_forecasts(config.root, issued_at=parse_issue_time(args.issued_at, config), meter_id=args.meter)
    metadata = frame.attrs["powercast"]
    print(
        f"batch issued at {frame['issued_at'].iloc[0].isoformat()}  contract {metadata['powercast.contract_version']}  "
        f"interval coverage {float(metadata['powercast.interval_coverage']):.0%}"
    )
    for meter_id in sorted(frame["meter_id"].unique()):
        mae = metadata["powercast.validation_mae_kw"].get(meter_id)
        start = metadata["powercast.training_start"].get(meter_id)
        end = metadata["powercast.training_end"].get(meter_id)
        print(f"  {meter_id}: validation MAE {mae if mae is None else f'{mae:.4f} kW'}, training data {start} .. {end}")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        print(frame.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    return 0


def run_plot(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Draw a published batch against the actual readings to a PNG; print its path; return 0."""
    from powercast.prepare.resample import freq_timedelta
    from powercast.reporting.forecast_plot import (  # matplotlib
        CONTEXT_STEPS,
        actual_kw,
        plot_forecast,
    )
    from powercast.serving.contract import compact_utc
    from powercast.serving.publish import read_forecasts

    frame = read_forecasts(config.root, issued_at=parse_issue_time(args.issued_at, config), meter_id=args.meter)
    issued = frame["issued_at"].iloc[0]
    step = freq_timedelta(config.prepare.freq)
    end = frame["target_time"].max() + step
    actuals = {meter_id: actual_kw(config, meter_id, issued - CONTEXT_STEPS * step, end) for meter_id in frame["meter_id"].unique()}
    out = Path(args.out) if args.out else Path(layout.plots_dir(config.root)) / f"forecast-{compact_utc(issued)}.png"
    path = plot_forecast(frame, actuals, out, coverage=frame.attrs["powercast"]["powercast.interval_coverage"])
    print(f"wrote {path}")
    return 0


def run_backtest_command(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Replay the champion over the date range, print the scores; return 0."""
    from powercast.serving.backtest import (  # torch: only when backtesting
        format_report,
        run_backtest,
    )

    meter_id = args.meter or config.ingest.default_meter_id
    run_id = args.run_id or new_run_id("backtest")
    if args.refit_every_days is not None:
        if args.version is not None:
            raise ConfigError("--version and --refit-every-days exclude each other: a walk-forward trains its own versions")
        return _run_walk_forward(args, config, meter_id, run_id)
    training_settings = train_overrides(args)
    if training_settings:
        raise ConfigError(
            f"{', '.join(sorted(training_settings))}: training settings apply only to a walk-forward; "
            "add --refit-every-days N, or leave them out to replay a registered model"
        )
    with meter_lock(config.root, meter_id, args.lock_timeout_s, holder=run_id):
        report = run_backtest(config, meter_id, args.start, args.end, run_id, version=args.version)
    print(format_report(report))
    return 0


def _run_walk_forward(args: argparse.Namespace, config: PowercastConfig, meter_id: str, run_id: str) -> int:
    """Replay with a retrain every ``--refit-every-days``, print the nights and the scores; return 0."""
    from powercast.experiments.walk_forward import format_walk_forward, refit_days, run_walk_forward

    refit_days(args.start, args.end, args.refit_every_days)  # a bad N or range fails before the lock is taken
    # It writes only under its own scratch root and reads the store, whose writes are atomic: the
    # live meter lock would hold the meter's nights off for hours, so it locks its run instead
    # (a lock file of the live root's locks/, named after the meter, whose id it checks, and the run).
    with named_lock(config.root, f"{meter_id}.{layout.WALK_FORWARD}.{run_id}", args.lock_timeout_s, holder=run_id):
        report = run_walk_forward(
            config, meter_id, args.start, args.end, args.refit_every_days, run_id, progress=False if args.quiet else None
        )
    print(format_walk_forward(report))
    return 0
