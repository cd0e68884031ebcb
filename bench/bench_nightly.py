"""Benchmark: the nightly timeline, each stage of a night's wall time on the full history, default settings.

A fresh data root gets the full UCI file in its landing folder; then three nights run, each as its
own process (as a scheduler would start them), against Prefect's embedded server:

1. **first night**: ingest of the whole file, training of every default challenger (gru, lstm, hgb,
   and their combination at selection), forecast, publish, artifacts;
2. **one more day**: the file's last day, cut with ``replay_days`` and re-dated one day later,
   dropped into landing: ingest of that day and a full retraining (the meter has news);
3. **nothing new**: no new file, so training is skipped and the champion forecasts.

Each night's stages come from what the flow already records: the report artifact's step table
(``flows/report.py``: ingest, the per-meter prepare / train <cell> / selection / forecast,
publish, plots, artifacts; read back through the Prefect client), the run's leaderboard.json
(``train_time_s`` per model) and the model cards (``training``: epochs of the held-out fit and of
the refit). The held-out fit and the refit of a network are split by the mtimes of their Lightning
``metrics.csv`` (written when each ends). Timed here: the process's start and imports, the
embedded server's start (the first client call), and the flow call; "Prefect overhead" is the
flow call minus the sum of the stages measured inside it (flow and task runs, the fleet subflow,
scoring the challengers' windows, and anything else the step table does not name).

``--quick``: the bundled sample (both files, a year), two epochs per network, ``train.cpu_threads`` 1
(on a loaded 2-core machine hgb's OpenMP threads stall with the default), the first night only
(``--nights 3`` for all three): about 2 minutes.
Target (reported, never asserted): a first night ≤ 5 min on a 2-core CPU with every challenger.
Writes bench/results/nightly.{json,md} and nightly-timeline.png (nightly-quick.* with --quick).

Usage: .venv/bin/python bench/bench_nightly.py [--quick] [--data PATH] [--nights N] [--profile]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

STARTED_S = time.perf_counter()  # before any heavy import: the child's imports are a stage of its own

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 (bench/ is not a package: the path line above makes common importable)
    FULL_DATA,
    REPO_ROOT,
    RESULTS_DIR,
    Contestant,
    fmt,
    machine_description,
    markdown_table,
    print_sections,
    run_process,
    target,
    targets_table,
    write_results,
)

SAMPLE_FILES = sorted((REPO_ROOT / "data" / "sample").glob("household_power_consumption_*.txt.gz"))
# --quick: a demo budget on the sample, enough to run every stage (the networks' epochs are the cost).
QUICK_TRAINING = {"max_epochs": 2, "max_time_s": 60.0}
FIRST_NIGHT_TARGET_S = 300.0
NIGHTS = ("first night", "one more day", "nothing new")
PROFILE_LINES = 25


# ---- one night, in its own process ------------------------------------------------------------------


def _step_table(markdown: str) -> tuple[str, dict[str, float]]:
    """Return (run id, step → seconds) parsed from the nightly report's markdown."""
    run_id = re.search(r"^# \S+ run `([^`]+)`", markdown, re.MULTILINE).group(1)
    section = markdown.split("## Steps", 1)[1].split("\n## ", 1)[0]
    steps = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].endswith(" s"):
            steps[cells[0]] = float(cells[1][:-2])
    return run_id, steps


def _report_markdown(flow_run_id: Any) -> str:
    """Return the nightly report artifact of ``flow_run_id``, read back through the Prefect client."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["report-nightly"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    if not artifacts:
        raise RuntimeError(f"flow run {flow_run_id} wrote no report-nightly artifact")
    return str(artifacts[0].data)


def _train_task_seconds(since: Any) -> dict[str, float]:
    """Return cell → wall seconds of its ``train-<cell>`` task run started after ``since`` (Prefect's record)."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(like_="train-"), start_time=TaskRunFilterStartTime(after_=since)
            )
        )
    return {
        run.name.removeprefix("train-"): run.total_run_time.total_seconds()
        for run in runs
        if run.name != "train-global-models"
    }


def _models(root: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """Return model → train_time_s, epochs and the fit / refit seconds, from the run's leaderboard and model cards."""
    models: dict[str, dict[str, Any]] = {}
    for board_path in sorted((root / "runs" / run_id).glob("*/leaderboard.json")):
        rows = json.loads(board_path.read_text(encoding="utf-8"))["rows"]
        for row in rows:
            if row["kind"] == "challenger" and row["window_set"] == "val":
                models[row["model"]] = {"train_time_s": row.get("train_time_s")}
        for card_path in (root / "models" / board_path.parent.name).glob("*/model.json"):
            card = json.loads(card_path.read_text(encoding="utf-8"))
            if card.get("run_id") != run_id or card["cell"] not in models:
                continue
            training = card.get("training") or {}
            entry = models[card["cell"]]
            keys = ("elapsed_s", "fit_s", "refit_s", "epochs_run", "refit_epochs", "device")
            entry |= {key: training.get(key) for key in keys}
    return models


def _profiled_call(function: Any, out_path: Path) -> Any:
    """Call ``function()`` under cProfile; write the top functions by cumulative time to ``out_path``."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    result = profiler.runcall(function)
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(PROFILE_LINES)
    out_path.write_text(buffer.getvalue(), encoding="utf-8")
    return result


def run_night(root: Path, quick: bool, cpu_threads: int, profile_path: Path | None) -> dict[str, Any]:
    """Run the nightly flow once on ``root`` in this process; return its timed stages (the child's side)."""
    imported_s = time.perf_counter()
    sys.path.insert(0, str(REPO_ROOT))  # `flows` is imported from the repository root
    from prefect import get_client
    from prefect.settings import temporary_settings

    from flows.nightly import _prefect_defaults, nightly
    from flows.params import NightlyParams

    timings = {"imports": time.perf_counter() - imported_s}
    threads = {"cpu_threads": cpu_threads} if cpu_threads else {}  # 0: the default (every core)
    params = NightlyParams(root=str(root), **(QUICK_TRAINING if quick else {}), **threads)
    with temporary_settings(updates=_prefect_defaults(root / "prefect")):
        started = time.perf_counter()
        with get_client(sync_client=True) as client:
            client.hello()  # the first client call starts the embedded server
        timings["prefect start-up"] = time.perf_counter() - started
        started, started_utc = time.perf_counter(), datetime.now(timezone.utc)
        call = lambda: nightly(params, return_state=True)  # noqa: E731
        state = _profiled_call(call, profile_path) if profile_path else call()
        timings["flow call"] = time.perf_counter() - started
        if not state.is_completed():
            raise RuntimeError(f"nightly run {state.name}: {state.message}")
        run_id, steps = _step_table(_report_markdown(state.state_details.flow_run_id))
        task_s = _train_task_seconds(started_utc)
    timings["in process"] = time.perf_counter() - STARTED_S
    models = _models(root, run_id)
    for cell, seconds in task_s.items():
        if cell in models:  # "train-meter-0" is the train-meter subflow's own task run, not a cell
            models[cell]["task_s"] = round(seconds, 2)
    return {"run_id": run_id, "timings_s": timings, "steps_s": steps, "models": models}


# ---- the nights, from the parent -----------------------------------------------------------------------


def _last_day(path: Path) -> date:
    """Return the local day of the last line of a UCI-format gzip file."""
    last = ""
    with gzip.open(path, "rt", encoding="utf-8") as text:
        for line in text:
            if line.strip():
                last = line
    day, month, year = (int(part) for part in last.split(";", 1)[0].split("/"))
    return date(year, month, day)


def one_more_day(source: Path, landing: Path, workdir: Path) -> Path:
    """Write the last day of ``source``, re-dated to the next day, into ``landing``; return the file."""
    from powercast.store.replay import replay_days

    last_day = _last_day(source)
    [cut] = replay_days(source, workdir / "replayed", start_day=last_day, n_days=1)
    next_day = last_day + timedelta(days=1)
    old, new = f"{last_day.day}/{last_day.month}/{last_day.year};", f"{next_day.day}/{next_day.month}/{next_day.year};"
    text = gzip.decompress(cut.read_bytes()).decode("utf-8").replace(f"\n{old}", f"\n{new}")
    out = landing / f"household_power_consumption_{next_day.isoformat()}.txt.gz"
    out.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return out


def night_process(root: Path, quick: bool, cpu_threads: int, profile_path: Path | None) -> dict[str, Any]:
    """Run one night as its own process through the launcher; return its figures with wall time and peak RSS."""
    argv = [sys.executable, __file__, "--night-root", str(root), "--cpu-threads", str(cpu_threads)]
    argv += ["--quick"] if quick else []
    argv += ["--profile-out", str(profile_path)] if profile_path else []
    with tempfile.TemporaryDirectory(prefix="bench-night-") as run_dir:
        wall_s, rss_mib, report = run_process(Contestant("night", argv), 0, Path(run_dir))
    if report is None:
        raise RuntimeError("the night's process printed no JSON report")
    return {**report, "process_wall_s": round(wall_s, 2), "peak_rss_mib": round(rss_mib)}


def run_nights(sources: list[Path], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Set up a fresh root with ``sources`` in landing and run ``n_nights`` nights (see NIGHTS)."""
    root = workdir / "root"
    landing = root / "landing"
    landing.mkdir(parents=True)
    for source in sources:
        shutil.copyfile(source, landing / source.name)
    nights = {}
    quick, n_nights = args.quick, args.nights
    for index, name in enumerate(NIGHTS[:n_nights]):
        if name == "one more day":
            print(f"  dropped {one_more_day(sources[-1], landing, workdir).name} into landing", file=sys.stderr)
        profile_path = (
            RESULTS_DIR / f"nightly{'-quick' if quick else ''}-profile.txt" if args.profile and index == 0 else None
        )
        print(f"  night {index + 1}/{n_nights}: {name} ...", file=sys.stderr, flush=True)
        nights[name] = night_process(root, quick, args.cpu_threads, profile_path)
        print(f"  night {index + 1}/{n_nights}: {name}: {nights[name]['process_wall_s']:.0f} s", file=sys.stderr)
    return nights


# ---- the timeline ----------------------------------------------------------------------------------------


def _model_stages(steps: dict[str, float], models: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Return each trained model's stages: fit and refit when split, else its whole training step."""
    stages = {}
    for step, seconds in steps.items():
        if not step.startswith("· train "):
            continue
        cell = step.removeprefix("· train ")
        model = models.get(cell, {})
        if model.get("fit_s") is not None:
            unit = "boosting rounds" if cell == "hgb" else "epochs"  # hgb's card counts its trees' rounds there
            stages[f"{cell} fit ({model.get('epochs_run')} {unit})"] = model["fit_s"]
            stages[f"{cell} refit ({model.get('refit_epochs')} {unit})"] = model["refit_s"]
        else:
            stages[f"{cell} fit + refit"] = seconds
        if model.get("task_s") is not None:  # the task's time outside fit and refit: forecasting the scored windows
            stages[f"{cell} scoring windows"] = model["task_s"] - seconds
    return stages


def timeline(night: dict[str, Any]) -> dict[str, float]:
    """Return stage → seconds of one night, in the order they run; the stages sum to the process wall time."""
    steps, timings = night["steps_s"], night["timings_s"]
    stages = {
        "process start + imports": night["process_wall_s"] - timings["in process"] + timings["imports"],
        "prefect start-up (embedded server)": timings["prefect start-up"],
    }
    inside = {"ingest": steps.get("ingest", 0.0), "prepare": steps.get("· prepare", 0.0)}
    inside |= _model_stages(steps, night["models"])
    inside |= {
        name: steps.get(key, 0.0)
        for name, key in (
            ("selection (+ combination)", "· selection"),
            ("forecast", "· forecast"),
            ("publish", "publish"),
            ("plots", "plots"),
            ("artifacts", "artifacts"),
        )
    }
    inside["prefect overhead"] = timings["flow call"] - sum(inside.values())
    stages |= inside
    stages["other (report read-back, exit)"] = night["process_wall_s"] - sum(stages.values())
    return {name: round(seconds, 2) for name, seconds in stages.items()}


def timeline_table(timelines: dict[str, dict[str, float]]) -> str:
    """Return the stages as rows, one column of seconds (and share of the night) per night."""
    stages = list(dict.fromkeys(stage for night in timelines.values() for stage in night))
    totals = {name: sum(night.values()) for name, night in timelines.items()}
    rows = []
    for stage in stages:
        cells = []
        for name, night in timelines.items():
            seconds = night.get(stage)
            cells.append("–" if seconds is None else f"{fmt(seconds)} s ({seconds / totals[name]:.0%})")
        rows.append([stage, *cells])
    rows.append(["**whole night (process wall)**", *(f"**{fmt(total)} s**" for total in totals.values())])
    return markdown_table(["stage", *timelines], rows)


def models_table(nights: dict[str, dict[str, Any]]) -> str:
    """Return per night and model: leaderboard train_time_s, card elapsed_s, epochs, fit / refit split."""
    rows = []
    for name, night in nights.items():
        for model, entry in night["models"].items():
            rows.append(
                [
                    name,
                    model,
                    fmt(entry.get("train_time_s")),
                    fmt(entry.get("elapsed_s")),
                    entry.get("epochs_run", "–"),
                    entry.get("refit_epochs", "–"),
                    fmt(entry.get("fit_s")),
                    fmt(entry.get("refit_s")),
                    fmt(entry.get("task_s")),
                ]
            )
    headers = [
        "night",
        "model",
        "leaderboard train_time_s",
        "card elapsed_s",
        "epochs",
        "refit epochs",
        "fit s",
        "refit s",
        "task s",
    ]
    return markdown_table(headers, rows) if rows else "no model trained"


def chart(timelines: dict[str, dict[str, float]], out_path: Path, title: str) -> Path:
    """Draw a horizontal bar chart: one group of bars per stage, one bar per night."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(stage for night in timelines.values() for stage in night))
    height = 0.8 / max(len(timelines), 1)
    fig, axes = plt.subplots(figsize=(10, 0.16 * len(stages) * max(len(timelines), 1) + 1.5))
    for index, (name, night) in enumerate(timelines.items()):
        positions = [row + index * height for row in range(len(stages))]
        values = [night.get(stage, 0.0) for stage in stages]
        axes.barh(positions, values, height=height, label=f"{name} ({sum(night.values()):.0f} s)")
        for position, value in zip(positions, values):
            if value >= 1:
                axes.text(value, position, f" {value:.0f}", va="center", fontsize=7)
    axes.set_yticks([row + height * (len(timelines) - 1) / 2 for row in range(len(stages))], stages, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("wall time (s)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


# ---- main ---------------------------------------------------------------------------------------------------


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the bundled sample, two epochs per network, one thread, one night (~2 min)",
    )
    parser.add_argument("--data", type=Path, help=f"UCI file (default: {FULL_DATA}; --quick: both sample files)")
    parser.add_argument(
        "--nights",
        type=int,
        choices=range(1, len(NIGHTS) + 1),
        help="first night only (1; --quick's default), + one more day (2), + nothing new (3, the default)",
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        help="train.cpu_threads (default 0: every core, the default setting; --quick: 1, which a loaded 2-core "
        "machine needs, see docs/benchmarks.md)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first night's flow call (slows it)")
    parser.add_argument("--night-root", type=Path, help=argparse.SUPPRESS)  # the child: run one night on this root
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.nights = args.nights or (1 if args.quick else len(NIGHTS))
    args.cpu_threads = args.cpu_threads if args.cpu_threads is not None else (1 if args.quick else 0)
    return args


def summarise(nights: dict[str, dict[str, Any]], args: argparse.Namespace, sources: list[Path]) -> tuple[dict, list]:
    """Return (figures, titled tables) of the nights."""
    quick = args.quick
    timelines = {name: timeline(night) for name, night in nights.items()}
    first_s = sum(timelines[NIGHTS[0]].values())
    targets = [target("first night, every challenger (process wall)", first_s, FIRST_NIGHT_TARGET_S, "s")]
    suffix = "-quick" if quick else ""
    threads = f"train.cpu_threads={args.cpu_threads}" if args.cpu_threads else "default threads"
    title = f"nightly timeline ({'sample, quick' if quick else 'full UCI history, default settings'}; {threads})"
    png = chart(timelines, RESULTS_DIR / f"nightly{suffix}-timeline.png", title)
    figures = {
        "data": [str(path) for path in sources],
        "quick": quick,
        "training": QUICK_TRAINING if quick else "defaults",
        "cpu_threads": args.cpu_threads,
        "nights": nights,
        "timelines_s": timelines,
        "targets": targets,
        "chart": str(png.relative_to(REPO_ROOT)),
    }
    sections = [
        ("Nightly timeline (seconds, share of the night)", timeline_table(timelines)),
        ("Models (leaderboard and training cards)", models_table(nights)),
        ("Targets", targets_table(targets) if not quick else "none on the sample: the target is for the full history"),
        ("Chart", f"`{png.relative_to(REPO_ROOT)}`"),
    ]
    return figures, sections


def main() -> int:
    args = _parse_args()
    if args.night_root is not None:
        print(json.dumps(run_night(args.night_root, args.quick, args.cpu_threads, args.profile_out)))
        return 0
    sources = [args.data] if args.data else (SAMPLE_FILES if args.quick else [FULL_DATA])
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        print(f"data not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    machine = machine_description()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as workdir:
        nights = run_nights(sources, args, Path(workdir))
    figures, sections = summarise(nights, args, sources)
    json_path, md_path = write_results(f"nightly{'-quick' if args.quick else ''}", machine, figures, sections)
    print_sections(sections)
    print(f"\nwrote {json_path}, {md_path} and {figures['chart']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
