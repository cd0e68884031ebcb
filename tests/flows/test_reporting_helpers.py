"""The flows' outcome helpers and run-report builders on real inputs.

``split_by_outcome``, ``split_state`` and ``fail_on`` get Prefect states as the engine makes them;
the report builders get a ``RunRecord`` filled with what the library really returns: ingest
reports of real files, a prepared series' summary, the session's real training outcome, forecast
batches of the champion and of the fallback, and a batch published to disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from prefect.states import Cancelled, Completed, Crashed, Failed, State, exception_to_failed_state

from flows.report import (
    LIST_CAP,
    SLOWEST_SHOWN,
    RunRecord,
    _data_lines,
    _decision_lines,
    _fleet_lines,
    _forecast_lines,
    _header_lines,
    _step_lines,
    decision_words,
    leaderboard_rows,
    report_markdown,
    sig3,
    window_words,
)
from flows.tasks import fail_on, split_by_outcome, split_state
from powercast.core.config import PowercastConfig, SplitConfig
from powercast.serving.forecast import make_forecast_batch
from powercast.serving.publish import publish_batch
from powercast.store.ingest import ingest_paths
from powercast.training.selection import select_winner

METER = "sceaux_household"
ISSUED_AT = pd.Timestamp("2010-11-10T00:00+01:00")
RUN_ID = "nightly-20101110T000000Z-0123abcd"
CODE = re.compile(r"`([^`]+)`")


def _failed_state(exc: BaseException) -> State:
    """Return the Failed state the Prefect engine makes of a run that raised ``exc``."""
    try:
        raise exc
    except BaseException as raised:  # noqa: BLE001 - the state keeps whatever was raised
        return asyncio.run(exception_to_failed_state(raised))


def _code_paths(line: str) -> list[Path]:
    """Return the paths a report line shows as inline code (copyable; the browser refuses file:// links)."""
    return [Path(text) for text in CODE.findall(line)]


# ---- split_by_outcome, split_state, fail_on -------------------------------------------------------


def test_split_by_outcome_keeps_results_of_completed_runs_and_messages_of_the_others() -> None:
    states = {
        "meter_a": Completed(data=["batch a"]),
        "meter_b": _failed_state(ValueError("no readings after 2010-11-26")),
        "meter_d": Crashed(message="worker process exited with code -9"),
        "meter_e": Cancelled(message="cancelled by the user"),
    }

    completed, failed = split_by_outcome(states)

    assert completed == {"meter_a": ["batch a"]}
    assert failed == {
        "meter_b": "ValueError: no readings after 2010-11-26",
        "meter_d": "worker process exited with code -9",
        "meter_e": "cancelled by the user",
    }


def test_a_failure_without_a_message_is_named_by_its_exception_type() -> None:
    states = {"gru": Failed(data=MemoryError()), "lstm": Completed(data="fit")}

    assert split_by_outcome(states) == ({"lstm": "fit"}, {"gru": "MemoryError"})
    assert split_state(states["gru"]) == (None, "MemoryError")


def test_split_by_outcome_of_no_runs_is_empty() -> None:
    assert split_by_outcome({}) == ({}, {})


def test_split_state_returns_the_result_or_the_error_message() -> None:
    assert split_state(Completed(data={"gru": "fit"})) == ({"gru": "fit"}, None)
    assert split_state(_failed_state(RuntimeError("CUDA out of memory"))) == (None, "RuntimeError: CUDA out of memory")


def test_fail_on_returns_the_result_untouched_when_nothing_failed() -> None:
    published = ["batch"]

    assert fail_on({}, published) is published


def test_fail_on_returns_a_failed_state_naming_every_failed_meter() -> None:
    failures = {"meter_b": "ValueError: no readings", "global models": "TrainingError: no meter has validation windows"}

    state = fail_on(failures, ["batch of meter_a"])

    assert isinstance(state, State) and state.is_failed()
    assert state.message == (
        "1 meter(s) failed and the global models failed: meter_b: ValueError: no readings; "
        "global models: TrainingError: no meter has validation windows"
    )
    assert fail_on({"global models": "TrainingError: x"}, []).message == "the global models failed: global models: TrainingError: x"


# ---- report builders --------------------------------------------------------------------------------


def _day(day: str, power: str = "1.000", minutes: int = 3) -> list[str]:
    return [f"{day};00:{m:02d}:00;{power};0.100;240.000;4.000;0.000;1.000;0.000" for m in range(minutes)]


@pytest.fixture()
def ingested(write_source, config: PowercastConfig) -> list:
    """Three real ingest reports: a mixed file, a correction of one reading, and a skipped copy."""
    mixed = write_source(
        "mixed.txt",
        [
            *_day("2/1/2007"),
            "2/1/2007;00:05:00;1.0;0.1",  # wrong column count: quarantined
            "2/1/2007;00:06:00;x;0.1;240;4;0;0;0",  # non-numeric: quarantined
            "2/1/2007;00:07:00;?;?;?;?;?;?;",  # all values missing: stored as nulls
        ],
    )
    corrected = _day("2/1/2007")
    corrected[1] = corrected[1].replace("1.000", "2.500", 1)
    fix = write_source("fix.txt", corrected)
    copy = write_source("copy-of-mixed.txt", mixed.read_text().splitlines()[1:])
    return ingest_paths([mixed, fix, copy], config, run_id=RUN_ID, progress=False)


@pytest.fixture()
def lost_outcome(champion_training):
    """The session's real outcome as if the challenger had lost to the baseline on a first night: no champion."""
    _, outcome = champion_training
    lost = select_winner({"gru": 0.7}, outcome.decision.baseline_val_mae_kw, None, None, outcome.decision.n_val_windows)
    return dataclasses.replace(outcome, decision=lost, champion_version=None)


def test_three_significant_digits_never_in_exponent_notation() -> None:
    values = [0.6090, 13.2169, 1452.3, 0.0, 10.0, 0.000466, 8.2749e-05, 1234567.0, float("nan")]
    assert [sig3(value) for value in values] == [
        "0.609", "13.2", "1450", "0", "10", "0.000466", "0.0000827", "1230000", "n/a"
    ]


def test_window_words_say_why_a_test_split_is_empty() -> None:
    counts = {"train": 1452, "val": 646, "test": 0}
    assert window_words(counts, SplitConfig(mode="trailing", val_days=28)) == (
        "windows train/val/test 1452/646/0 (test 0: the trailing split keeps no test days; set prepare.split.test_days)"
    )
    assert window_words(counts, SplitConfig(mode="trailing", val_days=28, test_days=3)) == (
        "windows train/val/test 1452/646/0 (test 0: no complete window in the last 3 days)"
    )
    dates = SplitConfig(mode="dates", train_end=date(2010, 10, 22), val_end=date(2010, 11, 12))
    assert window_words(counts, dates) == (
        "windows train/val/test 1452/646/0 (test 0: no complete window on or after prepare.split.val_end 2010-11-12)"
    )
    assert window_words({**counts, "test": 5}, dates) == "windows train/val/test 1452/646/5"


def test_decision_words_in_plain_words_with_three_significant_digits(champion_training, lost_outcome) -> None:
    _, outcome = champion_training
    decision = outcome.decision
    baseline = f"the {decision.best_baseline} baseline ({sig3(decision.best_baseline_val_mae_kw)} kW)"
    assert decision_words(decision, outcome.champion_version) == (
        f"new champion gru: {sig3(decision.best_challenger_val_mae_kw)} kW beats {baseline} "
        f"on {decision.n_val_windows} validation windows"
    )
    assert decision_words(lost_outcome.decision, None) == (
        f"no champion yet: tonight's best challenger gru (0.7 kW) did not beat {baseline}"
    )
    stays = select_winner(
        {"gru": 0.5}, decision.baseline_val_mae_kw, 0.4, "fixture-gru", decision.n_val_windows
    )
    assert decision_words(stays, "fixture-gru") == (
        "champion fixture-gru stays: tonight's best challenger gru (0.5 kW) did not beat champion fixture-gru (0.4 kW)"
    )


def test_data_lines_sum_the_files_ingested_and_leave_skipped_ones_out(ingested, tiny_prepared) -> None:
    assert [report.skipped for report in ingested] == [False, False, True]
    windows = {split: len(starts) for split, starts in tiny_prepared.window_starts.items()}
    record = RunRecord(
        run_id=RUN_ID,
        ingested=ingested,
        series={METER: tiny_prepared.summary()},
        windows={METER: windows},
        split=SplitConfig(mode="trailing", val_days=21, test_days=14),
    )

    lines = _data_lines(record)

    # mixed.txt: 4 stored (one all '?'), 2 quarantined; fix.txt: 3 stored, 1 of them replacing a reading
    assert lines[0] == (
        "- files ingested: 2; rows stored: 7 (all values missing: 1); rows quarantined: 2; rows replaced: 1"
    )
    summary = tiny_prepared.summary()
    excluded = ", ".join(f"{split} {count}" for split, count in summary.windows_excluded.items())
    assert lines[1] == (
        f"- {METER}: {len(tiny_prepared.index_utc)} steps of {tiny_prepared.index_utc[0]:%Y-%m-%d} .. "
        f"{tiny_prepared.index_utc[-1]:%Y-%m-%d}, {summary.missing_steps} still missing after interpolation "
        f"(long gaps); windows train/val/test {windows['train']}/{windows['val']}/{windows['test']}; "
        f"windows left out: {excluded}"
    )
    assert windows["test"] > 0  # the tiny split keeps 14 test days: no word on an empty test split
    assert summary.missing_steps > 0 and excluded  # the sample's real outages leave long gaps and windows out
    assert len(lines) == 2


def test_data_lines_of_a_night_with_nothing_ingested_an_empty_test_split_and_ignored_readings(tiny_prepared) -> None:
    summary = dataclasses.replace(tiny_prepared.summary(), windows_excluded={})
    record = RunRecord(
        run_id=RUN_ID,
        series={METER: summary},
        windows={METER: {"train": 625, "val": 145, "test": 0}},
        split=SplitConfig(mode="trailing", val_days=7),
        ignored_readings={METER: "3 stored reading(s) stamped at or after 2026-12-02T03:00Z ..., ignored"},
    )

    lines = _data_lines(record)

    assert lines[0] == (
        "- files ingested: 0; rows stored: 0 (all values missing: 0); rows quarantined: 0; rows replaced: 0"
    )
    assert lines[1].endswith(
        "windows train/val/test 625/145/0 (test 0: the trailing split keeps no test days; set "
        "prepare.split.test_days); windows left out: none"
    )
    assert lines[2] == f"- {METER}: 3 stored reading(s) stamped at or after 2026-12-02T03:00Z ..., ignored"


def test_decision_lines_give_the_decision_in_words_the_training_and_the_run_folder(champion_training) -> None:
    _, outcome = champion_training
    record = RunRecord(run_id=RUN_ID, outcomes={METER: outcome})

    (line,) = _decision_lines(record)

    seconds = sig3(outcome.elapsed_s["gru"])
    assert line == (
        f"- **{METER}**: {decision_words(outcome.decision, 'fixture-gru')}. Trained gru on cpu in {seconds} s; "
        f"loss curves and leaderboard.json in `{outcome.run_dir}`"
    )
    (run_dir,) = _code_paths(line)
    assert (run_dir / "curves.png").is_file() and (run_dir / "leaderboard.json").is_file()


def test_decision_lines_put_failures_first_then_decisions_then_skipped_meters(lost_outcome) -> None:
    record = RunRecord(
        run_id=RUN_ID,
        outcomes={METER: lost_outcome},
        not_retrained={"meter_b": "no readings newer than the champion's data"},
        failures={"meter_c": "ValueError: no readings", "global models": "TrainingError: no validation windows"},
    )

    lines = _decision_lines(record)

    assert lines[:2] == [
        "- **meter_c**: FAILED: ValueError: no readings",
        "- **global models**: FAILED: TrainingError: no validation windows",
    ]
    assert lines[2].startswith(f"- **{METER}**: no champion yet: tonight's best challenger gru (0.7 kW) did not beat ")
    assert lines[3:] == ["- **meter_b**: not retrained: no readings newer than the champion's data"]


def test_decision_lines_of_a_fleet_stop_after_the_cap() -> None:
    failures = {f"meter_{index:03d}": "ValueError: no readings" for index in range(LIST_CAP + 7)}

    lines = _decision_lines(RunRecord(run_id=RUN_ID, failures=failures))

    assert len(lines) == LIST_CAP + 1
    assert lines[-1] == "- and 7 more meters (every meter is in the leaderboard artifact)"


@pytest.fixture()
def night_batches(champion_root: str, ingested_config: PowercastConfig, forecast_batch_factory):
    """Real batches at one issue time: the champion's, the no-champion fallback's, and another meter's."""
    champion = make_forecast_batch(PowercastConfig(root=champion_root), METER, ISSUED_AT, run_id=RUN_ID)
    fallback = make_forecast_batch(ingested_config, METER, ISSUED_AT, run_id=RUN_ID)
    other = forecast_batch_factory("meter_b", ISSUED_AT.isoformat(), run_id=RUN_ID, model="lstm")
    return champion, fallback, other


def test_fleet_lines_give_totals_the_meters_to_look_at_then_the_slowest(night_batches, champion_training) -> None:
    _, fallback, other = night_batches
    _, outcome = champion_training
    seconds = {"meter_a": 1.25, "meter_b": 7.0, METER: 12.34, "meter_c": 0.5, "meter_d": 3.0, "meter_e": 2.0}
    record = RunRecord(
        run_id=RUN_ID,
        meters=[METER, "meter_b", "meter_c", "meter_a"],
        batches=[fallback, other],
        outcomes={"meter_b": outcome},
        meter_seconds=seconds,
        meter_steps={METER: {"prepare": 0.5, "train gru": 9.87, "forecast": 1.0}},
        failures={
            "meter_c": "ValueError: no readings",
            "meter_a": "LockedError: meter 'meter_a' is locked",
        },
    )

    lines = _fleet_lines(record)

    version = fallback.model_version
    assert lines == [
        "- meters served: 2 of 4; failed: 2 (meter_a, meter_c)",
        f"- served by: lstm 1, {fallback.model} 1",
        "- meters to look at (failed, fell back, new champion):",
        "  - **meter_a**: FAILED: LockedError: meter 'meter_a' is locked",
        "  - **meter_c**: FAILED: ValueError: no readings",
        f"  - **{METER}**: fallback {version}: meter {METER} has no champion model yet",
        f"  - **meter_b**: {decision_words(outcome.decision, outcome.champion_version)}",
        f"- slowest meters: {METER} 12.3 s (train gru 9.87 s), meter_b 7 s, meter_d 3 s, meter_e 2 s, meter_a 1.25 s",
    ]
    assert SLOWEST_SHOWN == 5  # meter_c (0.5 s), the sixth, is left out


def test_fleet_lines_when_nothing_was_served() -> None:
    record = RunRecord(run_id=RUN_ID, meters=["meter_a"], failures={"meter_a": "ValueError: no readings"})

    assert _fleet_lines(record) == [
        "- meters served: 0 of 1; failed: 1 (meter_a)",
        "- served by: none",
        "- meters to look at (failed, fell back, new champion):",
        "  - **meter_a**: FAILED: ValueError: no readings",
    ]


def test_fleet_lines_cap_the_meters_to_look_at() -> None:
    failed = [f"meter_{index:03d}" for index in range(LIST_CAP + 5)]
    record = RunRecord(run_id=RUN_ID, meters=failed, failures=dict.fromkeys(failed, "ValueError: no readings"))

    lines = _fleet_lines(record)

    assert lines[0] == (
        f"- meters served: 0 of {LIST_CAP + 5}; failed: {LIST_CAP + 5} ({', '.join(failed[:LIST_CAP])} and 5 more)"
    )
    assert lines[3:] == [
        *(f"  - **{meter_id}**: FAILED: ValueError: no readings" for meter_id in failed[:LIST_CAP]),
        "  - and 5 more",
    ]


def test_forecast_lines_name_the_model_once_and_show_the_published_files_as_paths(
    night_batches, tmp_path: Path
) -> None:
    champion, fallback, other = night_batches
    published = publish_batch(str(tmp_path / "root"), [champion, other])
    plot = tmp_path / "root" / "plots" / "forecast-20101109T230000Z.png"
    record = RunRecord(run_id=RUN_ID, batches=[champion, fallback], published=[published], plots=[plot])

    lines = _forecast_lines(record)

    assert lines[0] == f"- {METER}: champion `fixture-gru`"
    version = fallback.model_version
    assert lines[1] == f"- {METER}: {'; '.join(fallback.notes)}"
    assert lines[1].count(version) == 1, "the fallback is named once"
    assert f"meter {METER} has no champion model yet" in lines[1]
    assert published.meters == ("meter_b", METER)
    assert lines[2] == (
        f"- issued at 2010-11-09T23:00:00+00:00: 48 rows for meter_b, {METER} in `{published.path}` "
        f"(manifest `{published.manifest_path}`)"
    )
    assert all(path.is_file() for path in _code_paths(lines[2]))
    assert "file://" not in "\n".join(lines)
    assert lines[3:] == [f"- plot: `{plot}`"]


def test_forecast_lines_say_when_nothing_was_published(night_batches) -> None:
    _, fallback, _ = night_batches
    record = RunRecord(run_id=RUN_ID, batches=[fallback])

    lines = _forecast_lines(record)

    assert len(lines) == 2 and lines[0].startswith(f"- {METER}: fallback to {fallback.model_version} ")
    assert lines[1] == "- nothing published"


def test_header_names_the_served_model_why_and_where_it_was_published(
    night_batches, lost_outcome, champion_training, tmp_path: Path
) -> None:
    champion, fallback, _ = night_batches
    _, outcome = champion_training
    published = publish_batch(str(tmp_path / "root"), [fallback])
    record = RunRecord(
        run_id=RUN_ID, root=str(tmp_path / "root"), meters=[METER], outcomes={METER: lost_outcome},
        batches=[fallback], published=[published],
    )

    lines = _header_lines(record)

    version = fallback.model_version
    assert lines[0].startswith(f"- **{METER}**: served by the fallback **{version}** (")
    assert f") because {decision_words(lost_outcome.decision, None)}. A baseline never becomes champion" in lines[0]
    assert lines[0].replace(decision_words(lost_outcome.decision, None), "").count(version) == 1  # named once
    assert lines[1:] == [
        f"- published: 24 rows issued at 2010-11-09 23:00 UTC in `{published.path}`",
        f"- data root: `{tmp_path / 'root'}`",
    ]
    promoted = RunRecord(run_id=RUN_ID, meters=[METER], outcomes={METER: outcome}, batches=[champion])
    assert _header_lines(promoted) == [
        f"- **{METER}**: served by champion **fixture-gru**: {decision_words(outcome.decision, 'fixture-gru')}.",
        "- nothing published",
    ]


def test_header_of_a_fleet_gives_totals(night_batches, champion_training) -> None:
    _, fallback, other = night_batches
    _, outcome = champion_training
    record = RunRecord(
        run_id=RUN_ID,
        meters=[METER, "meter_b", "meter_c", "meter_d"],
        batches=[fallback, other],
        outcomes={"meter_b": outcome},
        failures={"meter_c": "ValueError: no readings", "meter_d": "ValueError: no readings"},
        sample_copied=True,
    )

    assert _header_lines(record) == [
        "- **4 meters**: 2 served (1 by their champion, 1 by a baseline fallback), 2 failed; 1 new champion(s) tonight",
        "- nothing published",
        "- the bundled sample was copied into the empty landing folder",
    ]


def test_leaderboard_is_sorted_by_validation_mae_with_the_winner_first_and_marked(
    champion_training, night_batches
) -> None:
    _, outcome = champion_training
    champion, _, _ = night_batches
    record = RunRecord(run_id=RUN_ID, outcomes={METER: outcome}, batches=[champion])

    rows = leaderboard_rows(record)

    validation = [row for row in outcome.leaderboard if row["window_set"] == "val"]
    assert len(rows) == len(validation)
    assert [row["rank"] for row in rows] == list(range(1, len(rows) + 1))
    maes = [row["val MAE kW"] for row in rows]
    assert maes == sorted(maes)
    assert rows[0]["model"] == "gru" and rows[0]["verdict"] == "★ winner, promoted, serves"
    assert all(row["verdict"] == "" for row in rows[1:])
    assert list(rows[0]) == ["meter", "rank", "model", "verdict", "val MAE kW", "MASE", "train s"]
    assert not any(RUN_ID in str(row["model"]) or "fixture" in str(row["model"]) for row in rows)
    for row in rows:
        for name in ("val MAE kW", "MASE", "train s"):
            value = row[name]
            assert value is None or value == float(f"{value:.3g}"), (name, value)


def test_leaderboard_marks_the_fallback_that_serves_when_a_baseline_wins(lost_outcome, night_batches) -> None:
    _, fallback, _ = night_batches
    board = [dict(row, promoted=False) for row in lost_outcome.leaderboard]
    for row in board:
        if row["kind"] == "challenger":
            row["mae_kw"] = 9.0  # every baseline beats it
    record = RunRecord(
        run_id=RUN_ID, outcomes={METER: dataclasses.replace(lost_outcome, leaderboard=board)}, batches=[fallback]
    )

    rows = leaderboard_rows(record)

    assert rows[0]["verdict"].startswith("★ winner")
    best_baseline = min((row for row in board if row["window_set"] == "val"), key=lambda row: row["mae_kw"])
    assert rows[0]["model"] == best_baseline["model"]
    served = [row for row in rows if "serves" in row["verdict"]]
    assert [row["model"] for row in served] == [fallback.model_version]
    if rows[0] is served[0]:  # the best baseline is the fallback that serves
        assert rows[0]["verdict"] == "★ winner, serves (fallback)"
    else:
        assert (rows[0]["verdict"], served[0]["verdict"]) == ("★ winner (a baseline)", "serves (fallback)")


def test_step_lines_list_run_steps_then_the_meters_steps_summed() -> None:
    record = RunRecord(
        run_id=RUN_ID,
        ingested=[],
        step_seconds={"ingest": 2.1234, "meters": 20.56, "publish": 0.0387},
        meter_steps={"a": {"prepare": 0.5, "train gru": 7.731}, "b": {"prepare": 0.25, "forecast": 1.0}},
    )

    lines = _step_lines(record, artifacts_s=0.0785)

    assert lines[:-1] == [
        "| step | time | |",
        "|---|---|---|",
        "| ingest | 2.12 s | 0 new file(s) |",
        "| meters | 20.6 s | 2 meter(s); the · rows sum their steps |",
        "| · prepare | 0.75 s | |",
        "| · train gru | 7.73 s | |",
        "| · forecast | 1 s | |",
        "| publish | 0.0387 s | |",
        "| artifacts | 0.0785 s | leaderboard and images |",
    ]
    assert re.fullmatch(r"\| whole run \| [0-9.]+ s \| up to this report \|", lines[-1])


def test_the_report_reads_header_fleet_steps_leaderboard_decisions_data_forecasts(
    champion_training, night_batches
) -> None:
    _, outcome = champion_training
    champion, _, _ = night_batches
    record = RunRecord(
        run_id=RUN_ID, root="/data/root", meters=[METER, "meter_b"], outcomes={METER: outcome}, batches=[champion],
        failures={"meter_b": "ValueError: no readings"}, step_seconds={"ingest": 1.0, "meters": 3.0},
    )

    markdown = report_markdown(record, "nightly")

    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert headings == [
        f"# nightly run `{RUN_ID}`",
        "## Fleet",
        "## Steps",
        "## Leaderboard (validation)",
        "## Decisions",
        "## Data",
        "## Forecasts",
    ]
    assert markdown.splitlines()[2] == (
        f"- **{METER}**: served by champion **fixture-gru**: {decision_words(outcome.decision, 'fixture-gru')}."
    )
    assert "- data root: `/data/root`" in markdown
    assert "file://" not in markdown and "<" not in markdown
    # A run that neither ingests nor forecasts (the train flow) has no Data line about files, no Forecasts.
    trained = report_markdown(dataclasses.replace(record, step_seconds={}, batches=[]), "train")
    assert "## Forecasts" not in trained and "## Data" not in trained and "files ingested" not in trained


def test_the_printed_leaderboard_names_the_models_a_combination_averages(tmp_path: Path, capsys) -> None:
    """The group a combination averages changes from night to night, so the leaderboard `make run` prints names it."""
    import json

    from flows.nightly import _print_leaderboards

    rows = [
        {"model": "combo", "kind": "challenger", "window_set": "val", "n_windows": 9, "mae_kw": 0.41,
         "train_time_s": 0.0, "members": ["lstm", "hgb"]},
        {"model": "lstm", "kind": "challenger", "window_set": "val", "n_windows": 9, "mae_kw": 0.42, "train_time_s": 80.0},
        {"model": "same_hour_mean_7d", "kind": "baseline", "window_set": "val", "n_windows": 9, "mae_kw": 0.5},
    ]
    folder = tmp_path / "runs" / "night" / METER
    folder.mkdir(parents=True)
    (folder / "leaderboard.json").write_text(json.dumps({"rows": rows, "decision": {"reason": "combo wins"}}))
    _print_leaderboards(tmp_path, "night")
    printed = capsys.readouterr().out.splitlines()
    assert next(line for line in printed if "combo" in line and "challenger" in line).endswith("(mean of lstm + hgb)")
    assert next(line for line in printed if line.strip().startswith("lstm")).endswith("80 s")
