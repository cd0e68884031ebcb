"""Day-ahead replay with the champion: one contract batch per day, scored against the real readings."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from powercast.cli.main import main
from powercast.core.config import PowercastConfig
from powercast.core.errors import ForecastError
from powercast.serving.backtest import run_backtest
from powercast.serving.forecast import FALLBACK_BASELINES
from powercast.serving.publish import list_issue_times, read_forecasts
from powercast.store.readings import read_readings

METER = "sceaux_household"
# The fixture champion validated (and was refit) until 2010-11-12, so the week after is unseen by it.
UNSEEN_START, UNSEEN_END = date(2010, 11, 13), date(2010, 11, 19)


@pytest.fixture()
def writable_champion_config(champion_root: str, tmp_path: Path) -> PowercastConfig:
    """A writable copy of the data root with the sample and the fixture champion."""
    root = tmp_path / "root"
    shutil.copytree(champion_root, root)
    return PowercastConfig(root=str(root))


def test_backtest_publishes_one_contract_batch_per_day_under_its_own_root(writable_champion_config):
    report = run_backtest(writable_champion_config, METER, UNSEEN_START, UNSEEN_END, run_id="bt-1")

    issue_times = list_issue_times(report.root)
    assert [t.tz_convert("+01:00").date() for t in issue_times] == list(pd.date_range(UNSEEN_START, UNSEEN_END).date)
    assert report.root.startswith(f"{writable_champion_config.root}/backtests/{METER}/fixture-gru")
    assert not (Path(writable_champion_config.root) / "forecasts").exists()
    assert set(read_forecasts(report.root, issued_at=issue_times[3])["run_id"]) == {"bt-1"}
    assert json.loads((Path(report.root) / "backtest.json").read_text())["scored_days"] == report.scored_days


def test_backtest_scores_equal_published_batches_against_hourly_readings(writable_champion_config):
    report = run_backtest(writable_champion_config, METER, UNSEEN_START, UNSEEN_END, run_id="bt-1")

    batches = pd.concat(read_forecasts(report.root, issued_at=t) for t in list_issue_times(report.root))
    readings = read_readings(
        writable_champion_config.root, METER, (batches["target_time"].min() - pd.Timedelta(days=1)).to_pydatetime(), None
    ).to_pandas()
    hourly_kw = readings.set_index("timestamp")["active_power_kw"].resample("1h").mean()
    actual = hourly_kw.reindex(batches["target_time"]).to_numpy()
    errors = np.abs(batches["yhat_kw"].to_numpy() - actual).reshape(-1, 24)  # [days, H]
    inside = (batches["yhat_lo_kw"].to_numpy() <= actual) & (actual <= batches["yhat_hi_kw"].to_numpy())
    assert report.scored_days == 7 and report.overlap_days == 0
    assert report.mae_kw == pytest.approx(errors.mean(), rel=1e-4)
    np.testing.assert_allclose(report.mae_kw_by_step, errors.mean(axis=0), rtol=1e-4)
    assert report.interval_coverage == pytest.approx(inside.mean())
    same_hour_yesterday = hourly_kw.reindex(batches["target_time"] - pd.Timedelta(days=1)).to_numpy()
    assert report.reference_days == 7
    assert report.reference_mae_kw == pytest.approx(np.abs(same_hour_yesterday - actual).mean(), rel=1e-4)


def test_backtest_across_an_outage_falls_back_and_scores_only_complete_days(writable_champion_config):
    report = run_backtest(writable_champion_config, METER, date(2010, 8, 16), date(2010, 8, 24), run_id="bt-gap")

    fallback_days = sum(n for version, n in report.batches_by_model.items() if version in FALLBACK_BASELINES)
    assert report.batches == 9 and fallback_days >= 4
    assert report.scored_days < report.batches  # days whose actuals fall in the outage are not scored
    assert report.overlap_days == 9  # August is inside the champion's training data


def test_rerunning_a_backtest_replaces_its_batches(writable_champion_config):
    first = run_backtest(writable_champion_config, METER, UNSEEN_START, UNSEEN_END, run_id="bt-1")

    second = run_backtest(writable_champion_config, METER, UNSEEN_START, UNSEEN_END, run_id="bt-2")

    issue_times = list_issue_times(second.root)
    assert first.root == second.root and len(issue_times) == 7
    assert all(set(read_forecasts(second.root, issued_at=t)["run_id"]) == {"bt-2"} for t in issue_times)
    assert second.mae_kw == first.mae_kw


def test_backtest_without_a_champion_is_refused(ingested_config):
    with pytest.raises(ForecastError, match="has no champion to replay"):
        run_backtest(ingested_config, METER, UNSEEN_START, UNSEEN_END, run_id="bt-1")


def test_backtest_command_prints_mae_per_step_and_coverage(writable_champion_config, capsys):
    status = main(
        ["backtest", "--root", writable_champion_config.root, "--start", "2010-11-13", "--end", "2010-11-15"]
    )

    out = capsys.readouterr().out
    assert status == 0
    assert "horizon_h" in out and "MAE overall" in out and "interval coverage" in out
    assert len([line for line in out.splitlines() if line.strip().split(" ")[0].isdigit()]) == 24
