"""Benchmark: training throughput of the GRU and the LSTM, windows per second and seconds per epoch.

The bundled sample (``--data`` for another UCI file) is ingested and prepared once with the
default model settings (hourly, lookback 168 h, horizon 24 h, hidden 64, three ensemble members,
batch 128) and a trailing split that fits the sample (21 validation days, 14 test days). Then
``fit_forecaster`` trains each cell for a fixed number of epochs (early stopping can not end it
sooner), alternately (GRU, LSTM, GRU, LSTM ...), medians of ``--repeats``:

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
    fmt,
    machine_description,
    markdown_table,
    print_sections,
    ratio,
    spread,
    write_results,
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


def time_fits(config: Any, prepared: Any, log_root: Path, repeats: int, warmup: int) -> dict[str, list[dict[str, Any]]]:
    """Fit each cell ``warmup + repeats`` times alternately; return per cell the timed fits' figures."""
    from powercast.training.fit import fit_forecaster

    n_windows = len(prepared.window_starts["train"])
    fits: dict[str, list[dict[str, Any]]] = {cell: [] for cell in CELLS}
    for round_index in range(warmup + repeats):
        for cell in CELLS:
            result = fit_forecaster(prepared, config.train, cell, log_root / f"{cell}-{round_index}", progress=False)
            figures = {
                "elapsed_s": round(result.elapsed_s, 3),
                "epochs_run": result.epochs_run,
                "windows_per_s": round(n_windows * result.epochs_run / result.elapsed_s, 1),
                "s_per_epoch": round(result.elapsed_s / result.epochs_run, 3),
                "device": result.device,
                "precision": result.precision,
                "warmup": round_index < warmup,
            }
            fits[cell].append(figures)
            print(f"  {'warm-up' if figures['warmup'] else f'round {round_index - warmup + 1}/{repeats}'} {cell}: "
                  f"{figures['elapsed_s']} s, {figures['windows_per_s']} windows/s on {result.device}", file=sys.stderr)
    return fits


def throughput_table(fits: dict[str, list[dict[str, Any]]], n_windows: int) -> tuple[str, dict[str, Any]]:
    """Return the table (medians, spread, ratio to the GRU) and its figures."""
    summary: dict[str, Any] = {}
    for cell, runs in fits.items():
        timed = [run for run in runs if not run["warmup"]]
        summary[cell] = {
            "windows_per_s": spread([run["windows_per_s"] for run in timed]),
            "s_per_epoch": spread([run["s_per_epoch"] for run in timed]),
            "device": timed[0]["device"],
            "precision": timed[0]["precision"],
            "epochs_run": timed[0]["epochs_run"],
        }
    gru_rate = summary["gru"]["windows_per_s"]["median"]
    rows = [
        [cell, s["device"], s["precision"], n_windows, s["epochs_run"], fmt(s["windows_per_s"]["median"]),
         f"{fmt(s['windows_per_s']['min'])}–{fmt(s['windows_per_s']['max'])}", fmt(s["s_per_epoch"]["median"]),
         fmt(ratio(s["windows_per_s"]["median"], gru_rate))]
        for cell, s in summary.items()
    ]
    headers = ["cell", "device", "precision", "train windows", "epochs", "windows/s (median)", "min–max",
               "s/epoch", "× GRU's rate"]
    return markdown_table(headers, rows), summary


def main() -> int:
    """Prepare once, alternate the fits, print and write bench/results/throughput.*."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, 3 alternating rounds, no warm-up")
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA, help="UCI file (default: the bundled sample)")
    parser.add_argument("--epochs", type=int, help="epochs per fit (default 3; 1 with --quick)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3)")
    parser.add_argument("--cpu-threads", type=int, default=0, help="train.cpu_threads (0: torch's default)")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.quick else 3)
    repeats, warmup = args.repeats or 3, 0 if args.quick else 1
    # patience above the epochs: early stopping never cuts a fit short, so every fit runs `epochs`.
    overrides = {**SETTINGS, "train.max_epochs": epochs, "train.patience_epochs": epochs + 1,
                 "train.cpu_threads": args.cpu_threads}
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        config, prepared = prepare(workdir / "root", args.data, overrides)
        n_windows = len(prepared.window_starts["train"])
        print(f"{n_windows} train windows; {epochs} epochs per fit, {repeats} rounds (+{warmup} warm-up)", file=sys.stderr)
        fits = time_fits(config, prepared, workdir / "logs", repeats, warmup)
        machine = machine_description()  # after the fits imported torch: the GPU line is what torch sees
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table, summary = throughput_table(fits, n_windows)
    gpu = machine["gpu"]
    where = f"GPU: {gpu['name']} (bf16 mixed precision)" if gpu["name"] else f"no GPU: {gpu['why_none']}; CPU only"
    sections = [(f"Training throughput ({where}; medians of {repeats}, alternated)", table)]
    figures = {"quick": args.quick, "data": str(args.data), "settings": overrides, "train_windows": n_windows,
               "model": config.train.model_dump(include={"hidden_sizes", "ensemble_members", "batch_size", "segment_steps"})
               | {"lookback_steps": config.prepare.lookback_steps, "horizon_steps": config.prepare.horizon_steps},
               "summary": summary, "fits": fits}
    print_sections(sections)
    json_path, md_path = write_results("throughput-quick" if args.quick else "throughput", machine, figures, sections)
    print(f"\nwrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
