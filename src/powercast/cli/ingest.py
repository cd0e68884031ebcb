"""``powercast ingest``, ``powercast replay`` and ``powercast store summary``: getting readings in, and seeing them."""

from __future__ import annotations

import argparse
import importlib.abc
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from powercast.cli.options import add_setting_options, setting_overrides
from powercast.core.config import PowercastConfig
from powercast.core.errors import ConfigError
from powercast.core.settings import INGEST_SETTINGS, settings
from powercast.store.ingest import IngestReport, ingest_paths
from powercast.store.quarantine import read_quarantine
from powercast.store.readings import PartitionSummary, summarize_partitions
from powercast.store.replay import replay_days

INGEST_OPTIONS = settings(INGEST_SETTINGS)


def ingest_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Return the dotted configuration keys set by ``powercast ingest``'s options."""
    return setting_overrides(args, INGEST_OPTIONS)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``ingest``, ``replay`` and ``store`` subcommands."""
    ingest = subparsers.add_parser(
        "ingest",
        parents=[common],
        help="ingest raw files or landing folders into the readings store",
        description="Parse, validate and store UCI ';' text files (plain or .gz) and generic CSV files "
        "(timestamp,meter_id,active_power_kw[,...]). A folder ingests every file in it not ingested yet. "
        "Prints one line per file and the store's row counts.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="file or landing folder (local path or URI)")
    ingest.add_argument("--run-id", help="run id to record in the manifest and quarantine (default: a fresh one)")
    add_setting_options(ingest, INGEST_OPTIONS)
    ingest.set_defaults(handler=run_ingest, config_overrides=ingest_overrides)

    replay = subparsers.add_parser(
        "replay",
        parents=[common],
        help="cut a UCI file into one file per local day in a landing folder",
        description="Write one UCI-format .txt.gz per local day of SOURCE into LANDING, to simulate "
        "nightly arrivals. Idempotent: day files already there with the same content are left alone.",
    )
    replay.add_argument("source", metavar="SOURCE", help="UCI-format file (plain or .gz)")
    replay.add_argument("landing", metavar="LANDING", help="landing folder to write the day files into")
    replay.add_argument("--start-day", type=_iso_day, help="first local day to cut, YYYY-MM-DD (default: the file's first)")
    replay.add_argument("--days", type=int, help="number of calendar days to cut (default: to the end of the file)")
    replay.set_defaults(handler=run_replay)

    store = subparsers.add_parser(
        "store",
        help="inspect the readings store",
        description="Inspect the readings store under the data root.",
    )
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")
    summary = store_commands.add_parser(
        "summary",
        parents=[common],
        help="row counts per meter and month, missing readings and quarantined lines",
        description="Print stored rows and missing readings per meter and month, then quarantined lines by reason.",
    )
    summary.set_defaults(handler=run_store_summary)


def _iso_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day in YYYY-MM-DD form") from exc


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return rows as a plain-text table: text left-aligned, numbers right-aligned."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in cells)])


def describe_reports(reports: Sequence[IngestReport]) -> str:
    """Return the per-file summary table of an ingest run."""
    rows = [
        [
            Path(report.source_file).name,
            f"already ingested (run {report.run_id}), no-op" if report.skipped else "ingested",
            report.rows_in,
            report.rows_stored,
            report.rows_missing,
            report.rows_quarantined,
            report.rows_replaced,
            len(report.partitions_written),
            round(report.elapsed_s, 2),
        ]
        for report in reports
    ]
    headers = ["file", "status", "rows_in", "stored", "missing", "quarantined", "replaced", "partitions", "elapsed_s"]
    return format_table(headers, rows)


def describe_store(summaries: Sequence[PartitionSummary], quarantined_by_reason: Counter[str], by_month: bool) -> str:
    """Return the store's row counts (per meter, or per meter and month) and quarantined lines by reason."""
    if by_month:
        rows = [[s.meter_id, f"{s.year:04d}-{s.month:02d}", s.rows, s.rows_missing] for s in summaries]
        table = format_table(["meter_id", "month (UTC)", "rows", "missing"], rows)
    else:
        totals: dict[str, list[int]] = {}
        for s in summaries:
            counts = totals.setdefault(s.meter_id, [0, 0, 0])
            counts[0] += s.rows
            counts[1] += s.rows_missing
            counts[2] += 1
        table = format_table(["meter_id", "rows", "missing", "partitions"], [[m, *c] for m, c in sorted(totals.items())])
    total_rows = sum(s.rows for s in summaries)
    total_missing = sum(s.rows_missing for s in summaries)
    lines = [table, "", f"store total: {total_rows} rows, {total_missing} missing, {sum(quarantined_by_reason.values())} quarantined"]
    if quarantined_by_reason:
        lines += ["", format_table(["quarantine reason", "rows"], sorted(quarantined_by_reason.items()))]
    return "\n".join(lines)


def _quarantine_counts(config: PowercastConfig) -> Counter[str]:
    return Counter(read_quarantine(config.root)["reason"].to_pylist())


class _PandasImportRefused(importlib.abc.MetaPathFinder):
    """A meta path finder that makes ``import pandas`` fail (see ``spare_pyarrows_pandas_probe``)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not imported while pyarrow probes for it (powercast ingest needs none)")
        return None


def spare_pyarrows_pandas_probe() -> None:
    """Answer pyarrow's one pandas probe with "no pandas", so that this process does not import it.

    The first time pyarrow converts any Python value (``pa.array``, ``pa.scalar``, a compute
    kernel's option) it imports pandas only to ask whether the value is a pandas object: 0.2-0.3 s,
    a sixth of a full-file ``powercast ingest``, which hands pyarrow no pandas object. The probe
    runs once per process; while it runs here, ``import pandas`` fails. Anything that later asks
    pyarrow for pandas output (``to_pandas``, as resolving conflicting duplicates does) imports
    pandas as usual. Only for this command's own process: the library does nothing of the kind
    (a flow mixes pandas and pyarrow).
    """
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    refusal = _PandasImportRefused()
    sys.meta_path.insert(0, refusal)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(refusal)


def run_ingest(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Ingest the given paths and print the per-file table and the store's row counts."""
    if getattr(args, "own_process", False):  # not when called in-process: pyarrow's answer would stick
        spare_pyarrows_pandas_probe()
    reports = ingest_paths(
        args.paths,
        config,
        run_id=args.run_id,
        progress=False if args.quiet else None,
        lock_timeout_s=args.lock_timeout_s,
    )
    print(describe_reports(reports) if reports else "no new files to ingest")
    print()
    print(describe_store(summarize_partitions(config.root), _quarantine_counts(config), by_month=False))
    return 0


def run_replay(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Cut SOURCE into day files in LANDING and say how many there are."""
    if args.days is not None and args.days < 1:
        raise ConfigError(f"--days {args.days}: give at least one day")
    paths = replay_days(args.source, args.landing, start_day=args.start_day, n_days=args.days)
    if not paths:
        print(f"no day of {args.source} falls in the requested range; nothing written to {args.landing}")
        return 0
    print(f"{len(paths)} day file(s) in {args.landing}: {paths[0].name} .. {paths[-1].name}")
    return 0


def run_store_summary(args: argparse.Namespace, config: PowercastConfig) -> int:
    """Print row counts per meter and month, missing readings and quarantined lines by reason."""
    summaries = summarize_partitions(config.root)
    if not summaries:
        print(f"the store at {config.root} holds no readings yet; run `powercast ingest PATH` first")
        return 0
    print(describe_store(summaries, _quarantine_counts(config), by_month=True))
    return 0
