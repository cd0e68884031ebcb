"""Benchmark: forecast latency, one meter's batch and a fleet's, from registered champions.

Set-up (not timed): the bundled sample is ingested with the five real channel meters
(``ingest.channel_meters = [total, kitchen, laundry, heater_ac, rest]``) and a tiny champion is
trained for each with ``train_meter`` (the settings of tests/conftest.py's champion fixture: a GRU
of 8 hidden units, lookback 48 h, 2 epochs; where it does not beat the baselines the meter is
served by the fallback, and the table says so).

Timed, in this process, alternately (one meter, fleet, one meter, fleet ...), medians of
``--repeats``: ``make_forecast_batch`` for the house total, and for the five meters one after the
other (a night's forecast step). Each call loads the champion from the registry, prepares the
meter's readings up to the issue time and forecasts; a warm-up round (after the set-up's training
in the same process, as in a night) is reported apart. The parts of one call that can be timed through public
functions (``load_champion``, ``prepare_meter``) are timed alternately too, to say what bounds it.

Target (reported, never asserted): one meter ≤ 1 s. Writes bench/results/forecast_latency.json
and .md (forecast_latency-quick.* with --quick).

Usage: .venv/bin/python bench/bench_forecast_latency.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 (bench/ is not a package: the path line above makes common importable)
    SAMPLE_DATA,
    alternate_in_process,
    finish,
    fmt,
    machine_description,
    markdown_table,
    ratio,
    target,
    targets_table,
)

CHANNELS = ["total", "kitchen", "laundry", "heater_ac", "rest"]
# tests/conftest.py CHAMPION_TRAINING_OVERRIDES (copied: bench/ cannot import a conftest): a GRU
# that trains in seconds on the sample and beats the baselines on the house total.
CHAMPION_OVERRIDES: dict[str, object] = {
    "prepare.lookback_steps": 48,
    "prepare.split": {"mode": "dates", "train_end": "2010-10-22", "val_end": "2010-11-12"},
    "train.cells": ["gru"],
    "train.hidden_sizes": [8],
    "train.max_epochs": 2,
    "train.batch_size": 64,
    "train.patience_epochs": 2,
    "train.accelerator": "cpu",
    "train.cpu_threads": 1,
    "train.learning_rate": 0.01,
    "ingest.channel_meters": CHANNELS,
}
RUN_ID = "bench-latency"


def set_up(root: Path, data: Path) -> tuple[Any, list[dict[str, Any]]]:
    """Ingest ``data`` with the five channel meters and train a champion per meter; return (config, meters)."""
    from powercast.core.config import PowercastConfig
    from powercast.store.channels import channel_meter_id
    from powercast.store.ingest import ingest_paths
    from powercast.training.pipeline import train_meter

    config = PowercastConfig(root=str(root)).with_overrides(CHAMPION_OVERRIDES)
    ingest_paths([data], config, run_id="bench-ingest", progress=False)
    meters = []
    for channel in CHANNELS:
        meter_id = channel_meter_id(config.ingest.default_meter_id, channel)
        started = time.perf_counter()
        outcome = train_meter(config, meter_id, RUN_ID, progress=False)
        meters.append({
            "meter_id": meter_id,
            "champion": outcome.champion_version,
            "promoted": bool(outcome.decision.promoted),
            "train_s": round(time.perf_counter() - started, 2),
        })
        print(f"  trained {meter_id}: champion {outcome.champion_version} ({meters[-1]['train_s']} s)", file=sys.stderr)
    return config, meters


def time_batches(config: Any, meter_ids: list[str], repeats: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Alternate one meter's batch with the fleet's; return the spreads and the model serving each meter."""
    from powercast.serving.forecast import make_forecast_batch

    served: dict[str, str] = {}

    def one_meter(_: int) -> None:
        make_forecast_batch(config, meter_ids[0], None, RUN_ID)

    def fleet(_: int) -> None:
        for meter_id in meter_ids:
            batch = make_forecast_batch(config, meter_id, None, RUN_ID)
            served[meter_id] = str(batch.table.column("model")[0])

    return alternate_in_process({"one meter": one_meter, f"fleet of {len(meter_ids)}": fleet}, repeats), served


def time_parts(config: Any, meter_id: str, repeats: int) -> dict[str, Any]:
    """Alternate the public parts of one call (load the champion, prepare the readings) to say what bounds it."""
    from powercast.models.registry import load_champion
    from powercast.prepare.series import prepare_meter
    from powercast.serving.forecast import default_issue_time

    issued = default_issue_time(config, meter_id)
    champion = load_champion(config.root, meter_id)
    if champion is None:
        return {}
    run_config = config.model_copy(update={"prepare": champion.prepare_config})
    return alternate_in_process({
        "load_champion": lambda _: load_champion(config.root, meter_id),
        "prepare_meter": lambda _: prepare_meter(run_config, meter_id, end_utc=issued, scaler=champion.scaler),
    }, repeats)


def latency_tables(
    batches: dict[str, Any], parts: dict[str, Any], meters: list[dict[str, Any]], served: dict[str, str]
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """Return the titled tables (latency, parts of one call, meters) and the target."""
    one = batches["one meter"]["wall_s"]["median"]
    fleet_name = next(name for name in batches if name.startswith("fleet"))
    n_meters = len(meters)
    rows = []
    for name, timing in batches.items():
        wall = timing["wall_s"]
        per_meter = wall["median"] / (n_meters if name == fleet_name else 1)
        rows.append([name, fmt(wall["median"]), f"{fmt(wall['min'])}–{fmt(wall['max'])}", fmt(per_meter),
                     fmt(ratio(wall["median"], one)), fmt(timing["warmup_wall_s"][0] if timing["warmup_wall_s"] else None)])
    latency_md = markdown_table(
        ["batch", "median s", "min–max s", "s per meter", "× one meter", "warm-up round s"], rows
    )
    part_rows = [[name, fmt(t["wall_s"]["median"]), fmt(ratio(t["wall_s"]["median"], one))] for name, t in parts.items()]
    rest_s = one - sum(t["wall_s"]["median"] for t in parts.values())
    part_rows.append(["the rest (forecast, intervals, contract table)", fmt(rest_s), fmt(ratio(rest_s, one))])
    parts_md = markdown_table(["part of one meter's call", "median s", "share of the call"], part_rows)
    meters_md = markdown_table(
        ["meter", "champion", "served by", "tiny training s (set-up)"],
        [[m["meter_id"], m["champion"] or "none (fallback)", served.get(m["meter_id"], "–"), fmt(m["train_s"])]
         for m in meters],
    )
    sections = [("Forecast latency, in-process (alternated)", latency_md), ("What one call is made of", parts_md),
                ("The meters", meters_md)]
    return sections, [target("one meter's forecast batch ≤ 1 s", one, 1.0, "s")]


def main() -> int:
    """Set up, time, print and write bench/results/forecast_latency.*."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 alternating rounds instead of 7")
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA, help="UCI file to train on (default: the sample)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 7; 3 with --quick)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    try:
        print("set-up: ingest the five channel meters, train a tiny champion each", file=sys.stderr)
        config, meters = set_up(workdir / "root", args.data)
        machine = machine_description()  # after torch is imported: the GPU line is what torch sees
        meter_ids = [meter["meter_id"] for meter in meters]
        print(f"timing, {repeats} alternating rounds (+1 warm-up)", file=sys.stderr)
        batches, served = time_batches(config, meter_ids, repeats)
        parts = time_parts(config, meter_ids[0], repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sections, targets = latency_tables(batches, parts, meters, served)
    sections.append(("Target (reported, not asserted)", targets_table(targets)))
    figures = {"quick": args.quick, "data": str(args.data), "settings": CHAMPION_OVERRIDES, "meters": meters,
               "served_by": served, "batches": batches, "parts_of_one_call": parts, "targets": targets}
    return finish("forecast_latency", args.quick, machine, figures, sections)


if __name__ == "__main__":
    raise SystemExit(main())
