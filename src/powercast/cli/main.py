"""The ``powercast`` command: one subcommand per job, each defined in ``powercast.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from powercast.core.config import PowercastConfig, load_config
from powercast.core.errors import PowercastError
from powercast.io.locking import DEFAULT_LOCK_TIMEOUT_S

# Each module defines ``register(subparsers, common)``; its handler receives (args, config).
COMMAND_MODULES: tuple[str, ...] = (
    "powercast.cli.ingest",
    "powercast.cli.prepare",
    "powercast.cli.forecasts",
    "powercast.cli.train",
    "powercast.cli.models",
)


def common_options() -> argparse.ArgumentParser:
    """Return the parent parser with the options every subcommand accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="data root (default: $POWERCAST_ROOT or ./var)")
    common.add_argument("--config", help="TOML or JSON configuration file (default: $POWERCAST_CONFIG)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument(
        "--lock-timeout-s",
        type=_seconds,
        default=DEFAULT_LOCK_TIMEOUT_S,
        help=f"how long to wait for another run holding the same lock (default {DEFAULT_LOCK_TIMEOUT_S:g} s)",
    )
    return common


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from exc
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="powercast",
        description="Nightly batch forecasting of electric power consumption.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers, common)
    return parser


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> PowercastConfig:
    """Return the configuration for a parsed command line."""
    merged = {"root": args.root, **(overrides or {})}
    return load_config(args.config, overrides=merged)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors become one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The command owns its process (console script, python -m): it may tune process-wide state.
    args.own_process = argv is None
    try:
        config = config_from_args(args, getattr(args, "config_overrides", lambda a: {})(args))
        return int(args.handler(args, config) or 0)
    except PowercastError as exc:
        print(f"powercast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"powercast {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
