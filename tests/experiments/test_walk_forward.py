"""Walk-forward backtest: a night every N days on the readings before it, its champion serving the days after."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from powercast.cli.main import main
from powercast.core.config import PowercastConfig
from powercast.core.errors import ConfigError, RegistryError
from powercast.experiments.walk_forward import REPORT_NAME, run_walk_forward
from powercast.models.registry import load_champion, read_card
from powercast.prepare.splits import local_midnight_utc
from powercast.serving.backtest import NO_CHAMPION, run_backtest
from powercast.serving.forecast import FALLBACK_BASELINES
from powercast.serving.publish import list_issue_times, read_forecasts
from powercast.store.readings import read_readings

METER = "sceaux_household"
# The fixture champion's split validates until 2010-11-12: the week after is unseen by the first night.
START, END, EVERY_DAYS = date(2010, 11, 13), date(2010, 11, 18), 3


@pytest.fixture()
def walk_config(ingested_sample_root: str, champion_overrides: dict, tmp_path: Path) -> PowercastConfig:
    """A writable root with the sample's store and no model: the tiny GRU set-up of the fixture champion."""
    root = tmp_path / "root"
    shutil.copytree(Path(ingested_sample_root) / "store", root / "store")
    return PowercastConfig(root=str(root)).with_overrides(champion_overrides)


@pytest.fixture()
def walked(walk_config: PowercastConfig):
    return walk_config, run_walk_forward(walk_config, METER, START, END, EVERY_DAYS, run_id="wf", progress=False)


def _published(report_root: str) -> pd.DataFrame:
    """Every batch the replay published, under every version's folder of the scratch root."""
    frames = []
    for folder in sorted((Path(report_root) / "backtests" / METER).iterdir()):
        frames += [read_forecasts(str(folder), issued_at=t) for t in list_issue_times(str(folder))]
    return pd.concat(frames, ignore_index=True)


def test_each_night_trains_only_on_readings_before_it_with_the_split_moved_forward(walked) -> None:
    config, report = walked

    assert [refit.as_of for refit in report.refits] == [START, START + timedelta(days=EVERY_DAYS)]
    first, second = (refit.split for refit in report.refits)
    # Validation ends at each night (the configured one ended the day before START), lengths kept.
    assert (first.val_end, second.val_end) == (START, START + timedelta(days=EVERY_DAYS))
    configured = config.prepare.split
    for split in (first, second):
        assert split.val_end - split.train_end == configured.val_end - configured.train_end
    for refit in report.refits:
        card = read_card(report.work_root, METER, f"{refit.run_id}-gru")
        midnight_utc = local_midnight_utc(refit.as_of, pd.Timestamp("2010-01-01T00:00+01:00").tzinfo)
        assert pd.Timestamp(card["data_range_utc"][1]) <= midnight_utc
        assert refit.train_s > 0


def test_every_day_is_served_by_the_champion_of_the_last_night_before_it(walked) -> None:
    _, report = walked
    batches = _published(report.work_root)

    issued_days = sorted(set(batches["issued_at"].dt.tz_convert("+01:00").dt.date))
    assert issued_days == list(pd.date_range(START, END).date) and report.backtest.batches == 6
    for issued_at, version in batches.groupby("issued_at")["model_version"].first().items():
        day = issued_at.tz_convert("+01:00").date()
        block_night = [refit for refit in report.refits if refit.as_of <= day][-1]
        assert version == block_night.champion_version, (issued_at, version)  # no gap in these days' inputs
    assert sum(report.backtest.batches_by_model.values()) == 6


def test_scores_equal_the_published_batches_against_hourly_readings(walked) -> None:
    config, report = walked
    batches = _published(report.work_root)
    readings = read_readings(config.root, METER, (batches["target_time"].min() - pd.Timedelta(days=1)).to_pydatetime(), None)
    hourly_kw = readings.to_pandas().set_index("timestamp")["active_power_kw"].resample("1h").mean()

    actual = hourly_kw.reindex(batches["target_time"]).to_numpy()
    assert report.backtest.scored_days == 6
    assert report.backtest.mae_kw == pytest.approx(np.abs(batches["yhat_kw"].to_numpy() - actual).mean(), rel=1e-4)
    saved = json.loads((Path(report.work_root) / REPORT_NAME).read_text())
    assert saved["backtest"]["mae_kw"] == pytest.approx(report.backtest.mae_kw)
    assert [night["as_of"] for night in saved["refits"]] == ["2010-11-13", "2010-11-16"]


def test_the_live_registry_and_store_are_untouched_and_a_rerun_replaces_the_scratch_root(walked) -> None:
    config, report = walked
    store_files = sorted(p.relative_to(config.root) for p in (Path(config.root) / "store").rglob("*"))

    again = run_walk_forward(config, METER, START, END, EVERY_DAYS, run_id="wf", progress=False)

    assert not (Path(config.root) / "models").exists() and not (Path(config.root) / "forecasts").exists()
    assert sorted(p.relative_to(config.root) for p in (Path(config.root) / "store").rglob("*")) == store_files
    assert again.work_root == report.work_root and again.backtest.mae_kw == pytest.approx(report.backtest.mae_kw)
    assert len(_published(again.work_root)) == 6 * 24


def test_bad_command_lines_are_refused_before_any_work(walk_config: PowercastConfig, tmp_path: Path, capsys) -> None:
    config_file = tmp_path / "walk.json"
    config_file.write_text(walk_config.model_dump_json())
    common = ["backtest", "--config", str(config_file), "--root", walk_config.root, "--start", "2010-11-13",
              "--end", "2010-11-15", "--quiet"]

    with pytest.raises(ConfigError, match="refit-every-days must be at least 1"):
        run_walk_forward(walk_config, METER, START, END, 0, run_id="wf", progress=False)
    assert main([*common, "--refit-every-days", "0"]) == 2
    assert "--refit-every-days must be at least 1" in capsys.readouterr().err
    assert main([*common, "--refit-every-days", "2", "--version", "x-gru"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main([*common, "--max-epochs", "3"]) == 2  # a plain replay trains nothing
    assert "train.max_epochs: training settings apply only to a walk-forward" in capsys.readouterr().err
    assert not (Path(walk_config.root) / "backtests").exists() and not (Path(walk_config.root) / "locks").exists()


def test_the_backtest_command_walks_forward(walk_config: PowercastConfig, tmp_path: Path, capsys) -> None:
    config_file = tmp_path / "walk.json"
    config_file.write_text(walk_config.model_dump_json())

    status = main([
        "backtest", "--config", str(config_file), "--root", walk_config.root, "--start", "2010-11-13",
        "--end", "2010-11-15", "--refit-every-days", "2", "--run-id", "cli-wf", "--quiet",
    ])

    out = capsys.readouterr().out
    assert status == 0
    assert "2010-11-13" in out and "2010-11-15" in out and "2 nights" in out and "MAE overall" in out
    assert (Path(walk_config.root) / "backtests" / METER / "walk-forward" / "cli-wf" / REPORT_NAME).is_file()


def test_a_backtest_replays_a_named_version_instead_of_the_champion(walked) -> None:
    config, report = walked
    champion = load_champion(report.work_root, METER).version
    # Every night registers its GRU, promoted or not: one of the two is not the champion.
    other = next(f"{refit.run_id}-gru" for refit in report.refits if f"{refit.run_id}-gru" != champion)
    work = config.model_copy(update={"root": report.work_root})

    replayed = run_backtest(work, METER, START, END, run_id="bt-version", version=other)

    assert replayed.champion_version == other
    assert set(replayed.batches_by_model) <= {other, *FALLBACK_BASELINES} and replayed.batches == 6
    with pytest.raises(RegistryError, match="no-such-version"):
        run_backtest(work, METER, START, END, run_id="bt-version", version="no-such-version")


def test_a_night_that_fails_keeps_the_champion_it_had_and_the_walk_goes_on(walk_config: PowercastConfig) -> None:
    # The sample's outage runs from the evening of 17 August to the evening of 22 August 2010. A
    # trailing split validates on the last two days of readings: on the night of the 25th those
    # windows all read the outage in their input, so none can score a model and the night fails.
    config = walk_config.with_overrides({"prepare.split": {"mode": "trailing", "val_days": 2, "test_days": 0}})

    report = run_walk_forward(config, METER, date(2010, 8, 13), date(2010, 8, 28), 4, run_id="wf-gap", progress=False)

    nights = {refit.as_of: refit for refit in report.refits}
    failed = nights[date(2010, 8, 25)]
    assert "training failed, the champion stays" in failed.decision and "no validation window" in failed.decision
    assert failed.champion_version == nights[date(2010, 8, 21)].champion_version is not None
    batches = _published(report.work_root)
    after_failure = batches[batches["issued_at"] >= pd.Timestamp("2010-08-25T00:00+01:00")]
    assert set(after_failure["model_version"]) == {failed.champion_version}  # the champion it had served on
    assert report.backtest.batches == 16 and not report.backtest.skipped
    # The first night's tiny GRU loses to the baselines (seeded): until a champion exists the best
    # baseline serves, as it would live, and those batches sit in their own folder.
    assert nights[date(2010, 8, 13)].champion_version is None
    fallback_days = sum(n for name, n in report.backtest.batches_by_model.items() if name in FALLBACK_BASELINES)
    assert fallback_days >= 4
    assert (Path(report.work_root) / "backtests" / METER / NO_CHAMPION).is_dir()


def test_a_fleet_walk_forward_trains_every_meter_each_night_and_replays_one(
    sample_path: Path, champion_overrides: dict, tmp_path: Path
) -> None:
    # train.scope both, the house alone training its own GRU: each night the global GRU must learn
    # from every meter of the store (as the nightly run would), and only the house's days are replayed.
    from powercast.models.registry import N_METERS_KEY, list_versions
    from powercast.store.ingest import ingest_paths

    kitchen = f"{METER}.kitchen"
    config = PowercastConfig(root=str(tmp_path / "root")).with_overrides({
        **champion_overrides,
        "ingest.channel_meters": ["total", "kitchen"],
        "train.scope": "both",
        "train.local_meters": [METER],
        "train.global_steps_per_epoch": 10,
    })
    ingest_paths([sample_path], config, run_id="ingest", progress=False)

    report = run_walk_forward(config, METER, START, END, EVERY_DAYS, run_id="wf-fleet", progress=False)

    assert [refit.as_of for refit in report.refits] == [START, START + timedelta(days=EVERY_DAYS)]
    for refit in report.refits:
        assert not refit.decision.startswith("training failed"), refit.decision
        global_card = read_card(report.work_root, METER, f"{refit.run_id}-gru_global")
        assert global_card["hparams"][N_METERS_KEY] == 2  # it learned the kitchen too
        midnight_utc = local_midnight_utc(refit.as_of, pd.Timestamp("2010-01-01T00:00+01:00").tzinfo)
        assert pd.Timestamp(global_card["data_range_utc"][1]) <= midnight_utc
        assert f"{refit.run_id}-gru" in list_versions(report.work_root, METER)  # the house's own GRU
        kitchen_versions = [v for v in list_versions(report.work_root, kitchen) if v.startswith(refit.run_id)]
        assert kitchen_versions == [f"{refit.run_id}-gru_global"]  # the kitchen trained that night, globally only
    assert report.backtest.batches == (END - START).days + 1 and not report.backtest.skipped
    assert set(_published(report.work_root)["meter_id"]) == {METER}  # only the house is replayed


def test_a_fleet_walk_forward_night_whose_global_fit_fails_serves_the_meters_own_models_and_says_so(
    sample_path: Path, champion_overrides: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: every night's global fit fails as a diverging one does. As on a live night the
    # house still selects among its own models, and each night's decision says the global models failed.
    from powercast.core.errors import TrainingError
    from powercast.store.ingest import ingest_paths

    def diverging(*args: object, **kwargs: object) -> None:
        raise TrainingError("model gru_global: the training loss became nan")

    monkeypatch.setattr("powercast.training.fleet.fit_global", diverging)
    config = PowercastConfig(root=str(tmp_path / "root")).with_overrides({
        **champion_overrides,
        "ingest.channel_meters": ["total", "kitchen"],
        "train.scope": "both",
        "train.local_meters": [METER],
    })
    ingest_paths([sample_path], config, run_id="ingest", progress=False)

    report = run_walk_forward(config, METER, START, END, EVERY_DAYS, run_id="wf-no-global", progress=False)

    for refit in report.refits:
        assert not refit.decision.startswith("training failed"), refit.decision
        assert refit.decision.endswith("(the global models failed: model gru_global: the training loss became nan)")
    assert report.refits[0].champion_version == f"{report.refits[0].run_id}-gru"  # the house's own GRU serves
    assert report.backtest.batches == (END - START).days + 1
