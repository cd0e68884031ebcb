"""Run ids: kind, UTC start time and a random suffix, fresh on every call."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from powercast.io.runs import new_run_id


def test_run_id_names_its_kind_and_utc_start_time() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    run_id = new_run_id("backtest")
    match = re.fullmatch(r"backtest-(\d{8}T\d{6}Z)-[0-9a-f]{6}", run_id)
    assert match is not None
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= stamp <= before + timedelta(seconds=5)


def test_two_run_ids_started_in_the_same_second_differ() -> None:
    assert len({new_run_id("train") for _ in range(20)}) == 20


def test_a_flow_run_names_its_start_and_id_by_the_same_rule() -> None:
    started = datetime(2010, 11, 26, 3, 2, tzinfo=timezone(timedelta(hours=1)))
    assert new_run_id("nightly", started, "1a2b3c4d") == "nightly-20101126T020200Z-1a2b3c4d"
