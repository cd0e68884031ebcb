"""``powercast models prune``: remove the registry's model versions of old training runs (``registry.keep_runs``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from powercast.cli.options import add_setting_options, setting_overrides
from powercast.core.config import PowercastConfig
from powercast.core.errors import RegistryError
from powercast.core.settings import REGISTRY_SETTINGS, settings

# The registry imports torch: the retention module is imported by the handler, so that building
# the parser (every command) stays quick.
if TYPE_CHECKING:
    from powercast.models.retention import GlobalPruning, MeterPruning, PruneReport, RunsPruning

REGISTRY_OPTIONS = settings(REGISTRY_SETTINGS)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``models`` subcommand group (``prune``)."""
    models = subparsers.add_parser(
        "models", help="look after the model registry", description="Commands on the model registry under models/."
    )
    actions = models.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    prune = actions.add_parser(
        "prune",
        parents=[common],
        help="remove the model versions of old training runs and unused global networks",
        description="Keep each meter's versions of its last registry.keep_runs training runs, its champion, the "
        "versions its last decisions name, the members of kept combinations and the global networks kept cards "
        "use; remove the rest, each meter under its lock. Prints what it removed and the bytes freed.",
    )
    prune.add_argument("--dry-run", action="store_true", help="print what would be removed and freed; remove nothing")
    add_setting_options(prune.add_argument_group("retention settings"), REGISTRY_OPTIONS)
    prune.set_defaults(handler=run_prune, config_overrides=prune_overrides)


def prune_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the dotted configuration keys the retention options set."""
    return setting_overrides(args, REGISTRY_OPTIONS)


def size_text(n_bytes: int) -> str:
    """Return a byte count as people read it: ``1.5 MiB (1,572,864 bytes)``."""
    value, unit = float(n_bytes), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n_bytes:,} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({n_bytes:,} bytes)"


def meter_line(meter: MeterPruning, verb: str, freed: str) -> str:
    """Return one line saying what pruning did (would do) to a meter."""
    if meter.skipped:
        return f"  {meter.meter_id}: skipped, {meter.skipped}"
    removed = f" ({', '.join(meter.removed)})" if meter.removed else ""
    incomplete = (
        f" and {len(meter.incomplete)} folders without a card ({', '.join(meter.incomplete)})"
        if meter.incomplete
        else ""
    )
    return (
        f"  {meter.meter_id}: kept {len(meter.kept)} versions, {verb} {len(meter.removed)}{removed}{incomplete}, "
        f"{freed} {size_text(meter.bytes_freed)}"
    )


def global_line(networks: GlobalPruning, verb: str, freed: str) -> str:
    """Return one line saying what pruning did (would do) to the shared global network folders."""
    if networks.skipped:
        return f"  _global: skipped, {networks.skipped}"
    removed = f" ({', '.join(networks.removed)})" if networks.removed else ""
    too_new = f" (+{len(networks.too_new)} unused, newer than the grace period)" if networks.too_new else ""
    return (
        f"  _global: kept {len(networks.kept)} networks{too_new}, {verb} {len(networks.removed)}{removed}, "
        f"{freed} {size_text(networks.bytes_freed)}"
    )


def runs_line(runs: RunsPruning, verb: str, freed: str) -> str:
    """Return one line saying what pruning did (would do) to the training runs' folders under ``runs/``."""
    if runs.skipped:
        return f"  runs/: skipped, {runs.skipped}"
    removed = f" ({', '.join(runs.removed)})" if runs.removed else ""
    return f"  runs/: kept {len(runs.kept)} run folders, {verb} {len(runs.removed)}{removed}, {freed} {size_text(runs.bytes_freed)}"


def report_lines(report: PruneReport, models_dir: str) -> list[str]:
    """Return the printed report: a heading, one line per meter, the global networks, the total."""
    verb = "would remove" if report.dry_run else "removed"
    freed = "would free" if report.dry_run else "freed"
    heading = "dry run: nothing removed; " if report.dry_run else ""
    lines = [f"{heading}pruning {models_dir}, keeping each meter's last {report.keep_runs} training runs"]
    lines += [meter_line(meter, verb, freed) for meter in report.meters]
    lines.append(global_line(report.global_networks, verb, freed))
    lines.append(runs_line(report.runs, verb, freed))
    lines.append(
        f"{verb} {report.versions_removed} versions of {len(report.meters)} meters, "
        f"{len(report.global_networks.removed)} global networks and {len(report.runs.removed)} run folders; "
        f"{freed} {size_text(report.bytes_freed)}"
    )
    return lines


def run_prune(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Prune the registry (or only say what would go); return 1 when something was left for a problem, else 0."""
    from powercast.io import layout
    from powercast.models.retention import prune_registry

    models_dir = layout.under(config.root, layout.MODELS)
    try:
        report = prune_registry(
            config.root, config.registry.keep_runs, dry_run=args.dry_run, lock_timeout_s=args.lock_timeout_s
        )
    except OSError as exc:  # models/ itself cannot be listed: nothing was pruned
        raise RegistryError(f"cannot list the registry folder {models_dir} ({exc}); nothing was pruned") from exc
    print("\n".join(report_lines(report, models_dir)))
    problems = report.problems()
    for problem in problems:
        print(f"powercast models prune: {problem}", file=sys.stderr)
    return 1 if problems else 0
