"""``powercast prepare``: show what preparation makes of a stored meter (grid, features, splits, windows)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from powercast.cli.options import add_setting_options, setting_overrides
from powercast.core.config import PowercastConfig
from powercast.core.settings import PREPARE_SETTINGS, settings

# powercast.prepare (pandas) is imported when preparing: building the parser must not pay for it.
if TYPE_CHECKING:
    from powercast.prepare.series import PreparedSeries

PREPARE_OPTIONS = settings(PREPARE_SETTINGS)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``prepare`` subcommand."""
    parser = subparsers.add_parser(
        "prepare",
        parents=[common],
        help="resample, split and window a stored meter; print what would be trained and scored",
        description="Prepare a stored meter's readings as training would, and print the grid, "
        "feature names, split bounds, usable windows per split and excluded windows by reason.",
    )
    parser.add_argument("--meter", help="meter_id (default: ingest.default_meter_id)")
    add_setting_options(parser.add_argument_group("preparation settings"), PREPARE_OPTIONS)
    parser.set_defaults(handler=run_prepare, config_overrides=prepare_overrides)


def prepare_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the dotted configuration keys set by the preparation options."""
    return setting_overrides(args, PREPARE_OPTIONS)


def describe(prepared: PreparedSeries, freq: str) -> str:
    """Return a plain-text summary of a prepared series: grid, features, splits, windows, exclusions."""
    from powercast.prepare.series import EXCLUSION_REASONS
    from powercast.prepare.splits import SPLIT_NAMES

    reasons = "  ".join(f"{reason:>14}" for reason in EXCLUSION_REASONS)
    lines = [
        f"meter        {prepared.meter_id}",
        f"grid         {len(prepared.index_utc)} steps at {freq}: {prepared.index_utc[0]} .. {prepared.index_utc[-1]}",
        f"features     {', '.join(prepared.feature_names)}",
        f"window       lookback {prepared.lookback_steps} steps -> horizon {prepared.horizon_steps} steps",
        f"gaps         {prepared.gap_report.missing_steps} missing steps, "
        f"{prepared.gap_report.interpolated_steps} interpolated, {prepared.gap_report.long_gaps} long gaps "
        f"({prepared.gap_report.long_gap_steps} steps, longest {prepared.gap_report.longest_gap_steps})",
        "",
        f"{'split':<6} {'start (UTC)':<26} {'end (UTC)':<26} {'windows':>8} {'origins':>8}  {reasons}",
    ]
    for split in SPLIT_NAMES:
        start, end = prepared.split_bounds_utc[split]
        counts = "  ".join(f"{prepared.exclusions[split][reason]:>14}" for reason in EXCLUSION_REASONS)
        lines.append(
            f"{split:<6} {str(start):<26} {str(end):<26} {prepared.window_starts[split].size:>8} "
            f"{prepared.origin_starts[split].size:>8}  {counts}"
        )
    lines.append("")
    lines.append("origins: windows issued at local midnight (day-ahead scoring); reason columns: windows excluded")
    return "\n".join(lines)


def run_prepare(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Prepare the meter from the store and print its summary; return the exit status."""
    from powercast.prepare.series import prepare_meter

    meter_id = args.meter or config.ingest.default_meter_id
    prepared = prepare_meter(config, meter_id)
    print(describe(prepared, config.prepare.freq))
    return 0
