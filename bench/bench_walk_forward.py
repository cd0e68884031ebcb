"""Benchmark: the 2010 backtest with the nightly retraining walked forward, per contestant, against the frozen champion.

The frozen backtest (``powercast backtest``) replays the champion trained through 2009 over all
of 2010; the nightly run retrains every night. This benchmark walks forward instead
(``powercast.experiments.walk_forward``): a training night before ``--start`` and every
``--refit-every-days`` after it, each on the readings before it only, with the reference split
(train < 2009-07-01 <= validation < 2010-01-01) moved so that its validation ends at each night. Then it scores, over every
scored day of the range (days after outages included, 24 hours known):

* the walk-forward's served champion (what the nights selected, fallbacks included);
* every contestant (``gru``, ``lstm``, ``hgb``, ``combo``), each night's version serving the days
  up to the next night (``powercast backtest --version`` per block), whether it won or not;
* the first night's champion frozen over the whole range (the frozen backtest).

Writes bench/results/walk_forward[-<tag>].json. Training time per night is printed; never asserts
on time. Ingests the full file into ``--root`` when it holds no store yet.

    .venv/bin/python bench/bench_walk_forward.py --root bench/results/train_root_s42 --seed 42 \
        [--cpu-threads 1] [--refit-every-days 30] [--start 2010-01-01] [--end 2010-11-25] [--run-id ID] [--score-only] \
        [--config FILE] [--set KEY=JSON ...]

``--score-only`` scores a walk-forward already in the root under ``--run-id`` (no training).
With a configuration whose ``train.scope`` is global or both (``--config
examples/uci_house_channels.toml``: the house and its channels), each night trains every meter of
the store, as the nightly run would, and the house's days are replayed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

from powercast.core.config import PowercastConfig, SplitConfig, load_config
from powercast.experiments.walk_forward import REPORT_NAME, run_walk_forward
from powercast.io import layout
from powercast.models.registry import list_versions
from powercast.serving.backtest import BacktestReport, run_backtest
from powercast.store.ingest import ingest_paths

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_set_option, set_overrides  # noqa: E402 (bench/ is not a package: the path line above makes common importable)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "household_power_consumption.txt.gz"
RESULTS = REPO / "bench" / "results"
METER = "sceaux_household"
CONTESTANTS = ("gru", "lstm", "hgb", "combo")  # printed in this order; every cell the first night registered is scored


def pooled(reports: list[BacktestReport]) -> dict[str, float]:
    """Return MAE and coverage over every scored day of ``reports`` (each day has all its hours: pool by days)."""
    days = sum(report.scored_days for report in reports)
    if not days:
        return {"scored_days": 0, "mae_kw": float("nan"), "interval_coverage": float("nan")}
    return {
        "scored_days": days,
        "mae_kw": sum(report.mae_kw * report.scored_days for report in reports if report.scored_days) / days,
        "interval_coverage": sum(
            report.interval_coverage * report.scored_days for report in reports if report.scored_days
        ) / days,
    }


def contestant_scores(config: PowercastConfig, nights: list[dict], end: date, run_id: str) -> dict[str, dict]:
    """Return each contestant's pooled scores: each night's version replayed over the days up to the next night.

    A night that failed, or registered no such cell, leaves its days to the contestant's previous
    version (as a failed live night keeps its models); days before any version are not scored.
    """
    scores = {}
    first_run = nights[0]["run_id"]
    cells = [v.removeprefix(f"{first_run}-") for v in list_versions(config.root, METER) if v.startswith(f"{first_run}-")]
    registered = set(list_versions(config.root, METER))
    for cell in sorted(cells, key=lambda name: CONTESTANTS.index(name) if name in CONTESTANTS else len(CONTESTANTS)):
        reports, version = [], None
        for index, night in enumerate(nights):
            first = date.fromisoformat(night["as_of"])
            last = date.fromisoformat(nights[index + 1]["as_of"]) - timedelta(days=1) if index + 1 < len(nights) else end
            if f"{night['run_id']}-{cell}" in registered:
                version = f"{night['run_id']}-{cell}"
            if version is not None:
                reports.append(run_backtest(config, METER, first, last, f"{run_id}-{cell}", version=version))
        scores[cell] = pooled(reports)
    return scores


def scoring_root(work_root: str) -> str:
    """Return a fresh root beside the walk-forward's that reads its store and registry through links.

    The contestants' and the frozen replays publish their batches there, so the walk-forward's own
    per-version folders keep only what its champions served.
    """
    root = Path(f"{work_root}-scores").absolute()
    if root.exists():
        for name in ("store", "models"):
            if (root / name).is_symlink():
                (root / name).unlink()
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name in ("store", "models"):
        os.symlink(Path(work_root, name).resolve(), root / name)
    return str(root)


def _check_channel_meters(parser: argparse.ArgumentParser, config: PowercastConfig) -> None:
    """Exit naming the root when it lacks a meter ``ingest.channel_meters`` asks for.

    A root whose store was filled without those channels skips the file on ingest (its checksum is
    known), so a fleet configuration would silently train a "fleet" of the house alone.
    """
    from powercast.store.channels import channel_meter_id
    from powercast.store.readings import list_meters

    house = config.ingest.default_meter_id
    wanted = {channel_meter_id(house, channel) for channel in config.ingest.channel_meters}
    missing = sorted(wanted - set(list_meters(config.root)))
    if missing:
        parser.error(f"the store under {config.root} holds no readings of {missing}: it was ingested with other "
                     "ingest.channel_meters; use a fresh --root")


def main() -> int:
    """Walk forward (unless --score-only), score every contestant and the frozen champion, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="the full UCI file")
    parser.add_argument(
        "--root", default=str(RESULTS / "train_root"), help="data root (the full file is ingested when missing)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--refit-every-days", type=int, default=30)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2010, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2010, 11, 25))
    parser.add_argument("--run-id", default=None, help="default: wf<N>-s<seed>")
    parser.add_argument("--score-only", action="store_true", help="score the walk-forward already under --run-id")
    parser.add_argument("--tag", default="", help="write bench/results/walk_forward-<tag>.json")
    parser.add_argument(
        "--config", default=None, help="a configuration file, e.g. examples/uci_house_channels.toml (a fleet night)"
    )
    add_set_option(parser)
    args = parser.parse_args()
    run_id = args.run_id or f"wf{args.refit_every_days}-s{args.seed}"
    config = load_config(args.config, environ={}).with_overrides({
        "root": args.root,
        "prepare.split": SplitConfig.reference().model_dump(),
        "train.seed": args.seed,
        "train.cpu_threads": args.cpu_threads,
        **set_overrides(parser, args.set),
    })
    work_root = layout.walk_forward_dir(args.root, METER, run_id)
    if not args.score_only:
        ingest_paths([args.source], config, run_id="bench-ingest", progress=False)
        _check_channel_meters(parser, config)
        run_walk_forward(config, METER, args.start, args.end, args.refit_every_days, run_id, progress=False)
    report = json.loads(Path(work_root, REPORT_NAME).read_text())
    work = config.model_copy(update={"root": scoring_root(work_root)})
    contestants = contestant_scores(work, report["refits"], args.end, run_id)
    first_champion = report["refits"][0]["champion_version"]
    frozen = (  # None would replay the scratch root's last champion: no frozen row then
        run_backtest(work, METER, args.start, args.end, f"{run_id}-frozen", version=first_champion)
        if first_champion is not None
        else None
    )
    served = report["backtest"]
    print(f"walk-forward {run_id}: {len(report['refits'])} nights every {args.refit_every_days} days, seed {args.seed}")
    print(f"{'night':<10}  {'train s':>7}  champion after it")
    for night in report["refits"]:
        print(f"{night['as_of']:<10}  {night['train_s']:>7.0f}  {night['champion_version']}")
    print(f"\n{'served by':<34} {'days':>5} {'MAE kW':>8} {'coverage':>9}")
    print(f"{'walk-forward champion':<34} {served['scored_days']:>5} {served['mae_kw']:>8.4f} {served['interval_coverage']:>9.1%}")
    for cell, score in contestants.items():
        print(f"{'walk-forward ' + cell:<34} {score['scored_days']:>5} {score['mae_kw']:>8.4f} {score['interval_coverage']:>9.1%}")
    if frozen is not None:
        print(f"{'frozen ' + first_champion:<34} {frozen.scored_days:>5} {frozen.mae_kw:>8.4f} {frozen.interval_coverage:>9.1%}")
    results = {
        "benchmark": "walk_forward", "run_id": run_id, "seed": args.seed, "refit_every_days": args.refit_every_days,
        "start": args.start.isoformat(), "end": args.end.isoformat(), "nights": report["refits"],
        "served": served, "contestants": contestants, "frozen": frozen.to_dict() if frozen is not None else None,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (f"walk_forward-{args.tag}.json" if args.tag else "walk_forward.json")
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
