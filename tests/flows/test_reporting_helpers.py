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
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from prefect.states import Cancelled, Completed, Crashed, Failed, State, exception_to_failed_state

from flows.report import (
    SLOWEST_SHOWN,
    RunRecord,
    _data_lines,
    _decision_lines,
    _fleet_lines,
    _forecast_lines,
)
from flows.tasks import fail_on, split_by_outcome, split_state
from powercast.core.config import PowercastConfig
from powercast.serving.forecast import FALLBACK_MODEL, make_forecast_batch
from powercast.serving.publish import publish_batch
from powercast.store.ingest import ingest_paths
from powercast.training.selection import select_winner

METER = "sceaux_household"
ISSUED_AT = pd.Timestamp("2010-11-10T00:00+01:00")
RUN_ID = "nightly-20101110T000000Z-0123abcd"
LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


def _failed_state(exc: BaseException) -> State:
    """Return the Failed state the Prefect engine makes of a run that raised ``exc``."""
    try:
        raise exc
    except BaseException as raised:  # noqa: BLE001 - the state keeps whatever was raised
        return asyncio.run(exception_to_failed_state(raised))


def _linked_paths(line: str) -> dict[str, Path]:
    """Return link text → local path of every markdown ``file://`` link in ``line``."""
    return {text: Path(unquote(urlparse(url).path)) for text, url in LINK.findall(line)}


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
        "2 meter(s) failed: meter_b: ValueError: no readings; "
        "global models: TrainingError: no meter has validation windows"
    )


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


def test_data_lines_sum_the_files_ingested_and_leave_skipped_ones_out(ingested, tiny_prepared) -> None:
    assert [report.skipped for report in ingested] == [False, False, True]
    record = RunRecord(run_id=RUN_ID, ingested=ingested, series={METER: tiny_prepared.summary()})

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
        f"(long gaps); windows left out: {excluded}"
    )
    assert summary.missing_steps > 0 and excluded  # the sample's real outages leave long gaps and windows out
    assert len(lines) == 2


def test_data_lines_of_a_night_with_nothing_ingested_and_no_window_left_out(tiny_prepared) -> None:
    summary = dataclasses.replace(tiny_prepared.summary(), windows_excluded={})
    record = RunRecord(run_id=RUN_ID, series={METER: summary})

    lines = _data_lines(record)

    assert lines[0] == (
        "- files ingested: 0; rows stored: 0 (all values missing: 0); rows quarantined: 0; rows replaced: 0"
    )
    assert lines[1].endswith("windows left out: none")


def test_decision_lines_give_the_champion_the_reason_and_existing_links(champion_training) -> None:
    _, outcome = champion_training
    record = RunRecord(run_id=RUN_ID, outcomes={METER: outcome})

    (line,) = _decision_lines(record)

    decision = outcome.decision
    assert line.startswith(f"- **{METER}**: champion `fixture-gru`. {decision.reason} (trained gru on cpu; ")
    # the reason carries the figures the selection compared
    assert f"{decision.best_challenger_val_mae_kw:.4f} kW" in line
    assert f"{decision.best_baseline} ({decision.best_baseline_val_mae_kw:.4f} kW)" in line
    links = _linked_paths(line)
    run_dir = Path(outcome.run_dir)
    assert links == {"curves.png": run_dir / "curves.png", "leaderboard.json": run_dir / "leaderboard.json"}
    assert all(path.is_file() for path in links.values())


def test_decision_lines_without_champion_with_skipped_and_failed_meters(champion_training) -> None:
    _, outcome = champion_training
    # the same night as if the challenger had lost to the baseline on a first night: nothing promoted
    lost = select_winner({"gru": 0.7}, outcome.decision.baseline_val_mae_kw, None, None, outcome.decision.n_val_windows)
    not_promoted = dataclasses.replace(outcome, decision=lost, champion_version=None)
    record = RunRecord(
        run_id=RUN_ID,
        outcomes={METER: not_promoted},
        not_retrained={"meter_b": "no readings newer than the champion's data"},
        failures={"meter_c": "ValueError: no readings", "global models": "TrainingError: no validation windows"},
    )

    lines = _decision_lines(record)

    assert lines[0].startswith(
        f"- **{METER}**: no champion yet. gru (val MAE 0.7000 kW) does not beat the best baseline {lost.best_baseline} "
    )
    assert "no champion is promoted" in lines[0]
    assert lines[1:] == [
        "- **meter_b**: not retrained: no readings newer than the champion's data",
        "- **meter_c**: FAILED: ValueError: no readings",
        "- **global models**: FAILED: TrainingError: no validation windows",
    ]


@pytest.fixture()
def night_batches(champion_root: str, ingested_config: PowercastConfig, forecast_batch_factory):
    """Real batches at one issue time: the champion's, the no-champion fallback's, and another meter's."""
    champion = make_forecast_batch(PowercastConfig(root=champion_root), METER, ISSUED_AT, run_id=RUN_ID)
    fallback = make_forecast_batch(ingested_config, METER, ISSUED_AT, run_id=RUN_ID)
    other = forecast_batch_factory("meter_b", ISSUED_AT.isoformat(), run_id=RUN_ID, model=FALLBACK_MODEL)
    return champion, fallback, other


def test_fleet_lines_count_served_and_failed_meters_and_show_the_slowest(night_batches) -> None:
    champion, _, other = night_batches
    seconds = {"meter_a": 1.25, "meter_b": 7.0, METER: 12.34, "meter_c": 0.5, "meter_d": 3.0, "meter_e": 2.0}
    record = RunRecord(
        run_id=RUN_ID,
        meters=[METER, "meter_b", "meter_c", "meter_a"],
        batches=[champion, other],
        meter_seconds=seconds,
        failures={
            "meter_c": "ValueError: no readings",
            "meter_a": "LockedError: meter 'meter_a' is locked",
            METER: "training failed, forecast by the model in service: TrainingError: loss became nan",
        },
    )

    lines = _fleet_lines(record)

    assert lines == [
        "- meters served: 2 of 4; failed: 2 (meter_a, meter_c)",
        "- served by: gru 1, seasonal_naive 1",
        f"- forecast by the model in service after a failed training: {METER}",
        f"- slowest meters: {METER} 12.3 s, meter_b 7.0 s, meter_d 3.0 s, meter_e 2.0 s, meter_a 1.2 s",
    ]
    assert SLOWEST_SHOWN == 5  # meter_c (0.5 s), the sixth, is left out


def test_fleet_lines_when_nothing_was_served() -> None:
    record = RunRecord(run_id=RUN_ID, meters=["meter_a"], failures={"meter_a": "ValueError: no readings"})

    assert _fleet_lines(record) == ["- meters served: 0 of 1; failed: 1 (meter_a)", "- served by: none"]


def test_forecast_lines_name_the_model_the_fallback_reason_and_the_published_files(
    night_batches, tmp_path: Path
) -> None:
    champion, fallback, other = night_batches
    published = publish_batch(str(tmp_path / "root"), [champion, other])
    plot = tmp_path / "root" / "plots" / "forecast-20101109T230000Z.png"
    record = RunRecord(run_id=RUN_ID, batches=[champion, fallback], published=[published], plots=[plot])

    lines = _forecast_lines(record)

    assert lines[0] == f"- {METER}: gru `fixture-gru`"
    version = fallback.model_version
    assert lines[1].startswith(f"- {METER}: seasonal_naive `{version}`; fallback to {version} ")
    assert f"meter {METER} has no champion model yet" in lines[1]
    assert published.meters == ("meter_b", METER)
    assert lines[2].startswith(f"- issued at 2010-11-09T23:00:00+00:00: 48 rows for meter_b, {METER} in [")
    links = _linked_paths(lines[2])
    assert set(links.values()) == {Path(published.path), Path(published.manifest_path)}
    assert all(path.is_file() for path in links.values())
    assert lines[3:] == [f"- plot: [{plot.name}]({plot.as_uri()})"]


def test_forecast_lines_say_when_nothing_was_published(night_batches) -> None:
    _, fallback, _ = night_batches
    record = RunRecord(run_id=RUN_ID, batches=[fallback])

    lines = _forecast_lines(record)

    assert len(lines) == 2 and lines[0].startswith(f"- {METER}: seasonal_naive ")
    assert lines[1] == "- nothing published"
