"""Benchmark: training throughput of the GRU and the LSTM, windows per second and seconds per epoch.

The bundled sample (``--data`` for another UCI file) is ingested and prepared once with the
default model settings (hourly, lookback 168 h, horizon 24 h, hidden 64, three ensemble members,
batch 128) and a trailing split that fits the sample (21 validation days, 14 test days). Then
``fit_forecaster`` trains each cell for a fixed number of epochs (early stopping can not end it
sooner), alternately (GRU, LSTM, GRU, LSTM ...), medians of ``--repeats``, once per torch thread
setting on CPU (``train.cpu_threads`` 1 and 0 = torch's default of one per core: on a machine
whose cores other processes keep busy, extra threads wait on each other):

* windows/s = train windows × epochs run / the fit's wall time (``FitResult.elapsed_s``: the
  Lightning fit, its validation passes and checkpoints included);
* s/epoch = that wall time / epochs run.

``train.accelerator = auto``: a GPU when torch sees one (bf16 mixed precision; the card is
recorded), else the CPU (the output says there is no GPU). The library has no Prefect import, so
this runs on a GPU box with only powercast installed. Writes bench/results/throughput.json and .md
(throughput-quick.* with --quick).

Usage: .venv/bin/python bench/bench_throughput.py [--quick] [--epochs N] [--repeats N] [--cpu-threads N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 (bench/ is not a package: the path line above makes common importable)
    SAMPLE_DATA,
    finish,
    fmt,
    machine_description,
    markdown_table,
    ratio,
    spread,
)

CELLS = ("gru", "lstm")
# The default model settings; only the split is made to fit a 120-day sample.
SETTINGS: dict[str, object] = {
    "prepare.split": {"mode": "trailing", "val_days": 21, "test_days": 14},
    "train.accelerator": "auto",
}


def prepare(root: Path, data: Path, overrides: dict[str, object]) -> tuple[Any, Any]:
    """Ingest ``data`` into ``root`` and prepare the house total; return (config, prepared series)."""
    from powercast.core.config import PowercastConfig
    from powercast.prepare.series import prepare_meter
    from powercast.store.ingest import ingest_paths

    config = PowercastConfig(root=str(root)).with_overrides(overrides)
    ingest_paths([data], config, run_id="bench-ingest", progress=False)
    return config, prepare_meter(config, config.ingest.default_meter_id)


def contestant_name(cell: str, threads: int) -> str:
    """Return a contestant's name: the cell and its torch threads (0: torch's default, one per core)."""
    return f"{cell}, {threads or 'default'} thread{'s' if threads != 1 else ''}"


def time_fits(
    config: Any, prepared: Any, log_root: Path, threads: list[int], repeats: int, warmup: int
) -> dict[str, list[dict[str, Any]]]:
    """Fit each (threads, cell) ``warmup + repeats`` times alternately; return per contestant its fits' figures."""
    from powercast.training.fit import fit_forecaster

    n_windows = len(prepared.window_starts["train"])
    contestants = {contestant_name(cell, n): (cell, n) for n in threads for cell in CELLS}
    fits: dict[str, list[dict[str, Any]]] = {name: [] for name in contestants}
    for round_index in range(warmup + repeats):
        for name, (cell, n_threads) in contestants.items():
            train_config = config.train.model_copy(update={"cpu_threads": n_threads})
            result = fit_forecaster(prepared, train_config, cell, log_root / f"{name}-{round_index}", progress=False)
            figures = {
                "cell": cell,
                "cpu_threads": n_threads,
                "elapsed_s": round(result.elapsed_s, 3),
                "epochs_run": result.epochs_run,
                "windows_per_s": round(n_windows * result.epochs_run / result.elapsed_s, 1),
                "s_per_epoch": round(result.elapsed_s / result.epochs_run, 3),
                "device": result.device,
                "precision": result.precision,
                "warmup": round_index < warmup,
            }
            fits[name].append(figures)
            print(f"  {'warm-up' if figures['warmup'] else f'round {round_index - warmup + 1}/{repeats}'} {name}: "
                  f"{figures['elapsed_s']} s, {figures['windows_per_s']} windows/s on {result.device}", file=sys.stderr)
    return fits


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [run for run in runs if not run["warmup"]]
    first = timed[0]
    return {
        "windows_per_s": spread([run["windows_per_s"] for run in timed]),
        "s_per_epoch": spread([run["s_per_epoch"] for run in timed]),
        **{key: first[key] for key in ("cell", "cpu_threads", "device", "precision", "epochs_run")},
    }


def throughput_table(fits: dict[str, list[dict[str, Any]]], n_windows: int) -> tuple[str, dict[str, Any]]:
    """Return the table (medians, spread, ratio to the GRU at the same threads and to the first threads) and its figures."""
    summary = {name: _summary(runs) for name, runs in fits.items()}
    rate = {name: s["windows_per_s"]["median"] for name, s in summary.items()}
    first_threads = next(iter(summary.values()))["cpu_threads"]
    rows = []
    for name, s in summary.items():
        spread_text = f"{fmt(s['windows_per_s']['min'])}–{fmt(s['windows_per_s']['max'])}"
        rows.append([
            name, s["device"], s["precision"], n_windows, s["epochs_run"], fmt(rate[name]), spread_text,
            fmt(s["s_per_epoch"]["median"]), fmt(ratio(rate[name], rate[contestant_name("gru", s["cpu_threads"])])),
            fmt(ratio(rate[name], rate[contestant_name(s["cell"], first_threads)])),
        ])
    headers = ["cell, torch threads", "device", "precision", "train windows", "epochs", "windows/s (median)",
               "min–max", "s/epoch", "× GRU's rate (same threads)", f"× {first_threads or 'default'} thread rate"]
    return markdown_table(headers, rows), summary


def main() -> int:
    """Prepare once, alternate the fits, print and write bench/results/throughput.*."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, 2 alternating rounds, no warm-up")
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA, help="UCI file (default: the bundled sample)")
    parser.add_argument("--epochs", type=int, help="epochs per fit (default 3; 1 with --quick)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3; 2 with --quick)")
    parser.add_argument(
        "--cpu-threads", type=int, nargs="+", default=[1, 0],
        help="train.cpu_threads settings to alternate (default: 1 and 0 = torch's default, one per core)",
    )
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.quick else 3)
    # Quick: two rounds, for a loaded machine where a default-threads epoch can take 8 s.
    repeats, warmup = args.repeats or (2 if args.quick else 3), 0 if args.quick else 1
    # patience above the epochs: early stopping never cuts a fit short, so every fit runs `epochs`.
    overrides = {**SETTINGS, "train.max_epochs": epochs, "train.patience_epochs": epochs + 1}
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        config, prepared = prepare(workdir / "root", args.data, overrides)
        n_windows = len(prepared.window_starts["train"])
        print(f"{n_windows} train windows; {epochs} epochs per fit, {repeats} rounds (+{warmup} warm-up)", file=sys.stderr)
        from powercast.training.fit import resolve_accelerator

        # Threads only apply on CPU (fit_module leaves them alone on a GPU): one setting is enough there.
        threads = args.cpu_threads if resolve_accelerator(config.train.accelerator) == "cpu" else [0]
        fits = time_fits(config, prepared, workdir / "logs", threads, repeats, warmup)
        machine = machine_description()  # after the fits imported torch: the GPU line is what torch sees
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table, summary = throughput_table(fits, n_windows)
    gpu = machine["gpu"]
    where = f"GPU: {gpu['name']} (bf16 mixed precision)" if gpu["name"] else f"no GPU: {gpu['why_none']}; CPU only"
    sections = [(f"Training throughput ({where}; medians of {repeats}, alternated)", table)]
    figures = {"quick": args.quick, "data": str(args.data), "settings": overrides, "cpu_threads": threads,
               "train_windows": n_windows,
               "model": config.train.model_dump(include={"hidden_sizes", "ensemble_members", "batch_size", "segment_steps"})
               | {"lookback_steps": config.prepare.lookback_steps, "horizon_steps": config.prepare.horizon_steps},
               "summary": summary, "fits": fits}
    return finish("throughput", args.quick, machine, figures, sections)


if __name__ == "__main__":
    raise SystemExit(main())
