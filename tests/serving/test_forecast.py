"""Forecast batches on the real sample: champion path, baseline fallback on real outages, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from powercast.cli.main import main
from powercast.core.config import PowercastConfig, parse_timezone
from powercast.core.errors import ForecastError
from powercast.models.conformal import ConformalIntervals
from powercast.models.registry import load_champion
from powercast.prepare.features import slot_of_day
from powercast.prepare.gaps import find_gaps
from powercast.prepare.series import input_window, prepare_meter
from powercast.serving.forecast import (
    FALLBACK_BASELINES,
    FALLBACK_FAMILY,
    baseline_forecast,
    baseline_per_window,
    champion_window,
    default_issue_time,
    grid_row,
    make_forecast_batch,
)
from powercast.serving.publish import publish_batch, read_forecasts
from powercast.store.readings import read_readings

METER = "sceaux_household"
COMPLETE_DAY = "2010-11-10T00:00+01:00"
# Real outages in the sample: 2010-08-17 21:02 local (7,226 min) and 2010-09-25 (5,237 min).
AFTER_OUTAGES = ("2010-08-19T00:00+01:00", "2010-09-27T00:00+01:00")


@pytest.fixture()
def champion_config(champion_root: str) -> PowercastConfig:
    """Default configuration over the data root that holds the sample and a champion."""
    return PowercastConfig(root=champion_root)


def test_champion_forecasts_when_the_input_window_is_complete(champion_config):
    batch = make_forecast_batch(champion_config, METER, pd.Timestamp(COMPLETE_DAY), run_id="run-1")

    frame = batch.table.to_pandas()
    champion = load_champion(champion_config.root, METER)
    assert (batch.model, batch.model_version, batch.notes) == ("gru", "fixture-gru", ())
    assert frame["horizon_h"].tolist() == list(range(1, 25))
    assert frame["target_time"].iloc[0] == pd.Timestamp(COMPLETE_DAY)
    positive = frame["yhat_kw"].to_numpy() > 0  # forecasts are clipped at 0 kW; the rest carry the raw offsets
    assert champion.interval_hi.shape == (24, 24)  # offsets per local issue hour × horizon step
    # The default scale: offsets are ratios of the mean load of the week the forecast read.
    assert champion.interval_scale == "lookback_mean" and champion.interval_scale_floor_kw > 0
    issued = pd.Timestamp(COMPLETE_DAY).tz_convert("UTC")
    prepared = prepare_meter(
        champion_config.model_copy(update={"prepare": champion.prepare_config}), METER, end_utc=issued,
        scaler=champion.scaler,
    )
    load_kw = max(float(champion.scaler.inverse_target_kw(input_window(prepared, issued)[:, 0]).mean()),
                  champion.interval_scale_floor_kw)
    midnight_hi_kw = champion.interval_hi[0] * load_kw  # issued at local midnight: slot 0
    np.testing.assert_allclose(
        (frame["yhat_hi_kw"] - frame["yhat_kw"]).to_numpy()[positive], midnight_hi_kw[positive], atol=1e-5
    )
    assert batch.training_end_utc == champion.training_range_utc[1]


def test_a_champion_card_with_kw_offsets_serves_them_as_before(champion_root, tmp_path):
    """A card from before interval scales (format 2, ``lo_kw`` / ``hi_kw``, no ``scale``) adds its kW offsets."""
    old_root = tmp_path / "root"
    shutil.copytree(champion_root, old_root)
    champion = load_champion(str(old_root), METER)
    card_path = old_root / "models" / METER / champion.version / "model.json"
    card = json.loads(card_path.read_text())
    interval = card["interval"]
    card["format"] = "powercast.model/2"
    card["interval"] = {"coverage": interval["coverage"], "lo_kw": interval["lo_ratio"], "hi_kw": interval["hi_ratio"]}
    card_path.write_text(json.dumps(card))

    batch = make_forecast_batch(PowercastConfig(root=str(old_root)), METER, pd.Timestamp(COMPLETE_DAY), run_id="r")

    frame = batch.table.to_pandas()
    positive = frame["yhat_kw"].to_numpy() > 0
    midnight_hi_kw = np.asarray(interval["hi_ratio"][0], dtype=np.float32)  # read as kW: added, not multiplied
    np.testing.assert_allclose(
        (frame["yhat_hi_kw"] - frame["yhat_kw"]).to_numpy()[positive], midnight_hi_kw[positive], atol=1e-5
    )
    served = make_forecast_batch(PowercastConfig(root=champion_root), METER, pd.Timestamp(COMPLETE_DAY), run_id="r")
    np.testing.assert_array_equal(frame["yhat_kw"].to_numpy(), served.table["yhat_kw"].to_numpy())


def _longest_hours_without_readings(config: PowercastConfig, start_utc: pd.Timestamp, end_utc: pd.Timestamp) -> int:
    """Return the longest run of whole hours in [start, end) with no stored active-power reading."""
    readings = read_readings(config.root, METER, start_utc.to_pydatetime(), end_utc.to_pydatetime()).to_pandas()
    stamps = readings.loc[readings["active_power_kw"].notna(), "timestamp"]
    hours = pd.date_range(start_utc, end_utc, freq="1h", inclusive="left")
    empty = ~hours.isin(stamps.dt.floor("1h"))
    _, lengths = find_gaps(empty)
    return int(lengths.max()) if lengths.size else 0


def test_champion_forecast_comes_from_the_served_refit_not_the_held_out_fit(champion_config):
    champion = load_champion(champion_config.root, METER)
    assert champion.holdout_module is not None  # a pipeline-written card: refit on validation, held-out fit kept
    issued = pd.Timestamp(COMPLETE_DAY).tz_convert("UTC")
    prepared = prepare_meter(
        champion_config.model_copy(update={"prepare": champion.prepare_config}), METER, end_utc=issued,
        scaler=champion.scaler,
    )
    window = input_window(prepared, issued)[None]
    served_kw = champion.scaler.inverse_target_kw(champion.module.forecast_scaled(window))[0]
    held_out_kw = champion.scaler.inverse_target_kw(champion.holdout_module.forecast_scaled(window))[0]
    assert np.abs(served_kw - held_out_kw).max() > 0.01  # the two fits disagree, so the check below can tell

    batch = make_forecast_batch(champion_config, METER, issued, run_id="run-1")

    np.testing.assert_allclose(batch.table["yhat_kw"].to_numpy(), np.maximum(served_kw, 0), rtol=1e-5, atol=1e-6)
    # the served model learned from train + validation: its training range ends with the validation weeks
    assert batch.training_end_utc == pd.Timestamp("2010-11-12", tz=champion.prepare_config.local_timezone)


@pytest.mark.parametrize("issued_at", AFTER_OUTAGES)
def test_long_gap_in_the_input_window_falls_back_to_the_best_baseline(champion_config, issued_at):
    """Both outages leave fewer real steps than prepare.min_real_input_steps in the 48-step window."""
    issued = pd.Timestamp(issued_at).tz_convert("UTC")
    champion = load_champion(champion_config.root, METER)
    lookback, max_gap = champion.prepare_config.lookback_steps, champion.prepare_config.max_interpolate_gap_steps
    window_start = issued - pd.Timedelta(hours=lookback)
    assert _longest_hours_without_readings(champion_config, window_start, issued) > max_gap  # the real outage
    # the meter's grid as the forecast reads it: the champion's preparation and scaler, readings before the issue
    prepared = prepare_meter(
        champion_config.model_copy(update={"prepare": champion.prepare_config}), METER, end_utc=issued,
        scaler=champion.scaler,
    )
    # the champion reads the mask (prepare.missing_mask), but this window holds too little real input
    assert champion_window(prepared, champion, issued) is None
    fallback = baseline_forecast(
        prepared, grid_row(prepared, issued), champion_config.forecast.interval_coverage,
        champion_config.forecast.baseline_calibration_days, parse_timezone(champion.prepare_config.local_timezone),
    )

    batch = make_forecast_batch(champion_config, METER, issued, run_id="run-1")

    assert (batch.model, batch.model_version) == (FALLBACK_FAMILY[fallback.name], fallback.name)
    assert fallback.name in FALLBACK_BASELINES
    np.testing.assert_allclose(batch.table["yhat_kw"].to_numpy(), np.maximum(fallback.yhat_kw, 0), rtol=1e-6)
    assert batch.validation_mae_kw == pytest.approx(fallback.validation_mae_kw) and batch.validation_mae_kw > 0
    assert (batch.training_start_utc, batch.training_end_utc) == (None, None)
    assert len(batch.notes) == 1 and f"champion gru {champion.version} not used" in batch.notes[0]


def _hourly_kw(config, start: pd.Timestamp, days: int) -> pd.Series:
    readings = read_readings(config.root, METER, start.to_pydatetime(), (start + pd.Timedelta(days=days)).to_pydatetime())
    return readings.to_pandas().set_index("timestamp")["active_power_kw"].resample("1h").mean()


def test_fallback_forecasts_from_real_readings_of_earlier_days(champion_config):
    """Whichever baseline falls back, its forecast is computed from the stored readings before the issue time."""
    issued = pd.Timestamp(AFTER_OUTAGES[0]).tz_convert("UTC")
    batch = make_forecast_batch(champion_config, METER, issued, run_id="run-1")
    if batch.model_version.startswith("seasonal_naive"):
        lag = pd.Timedelta(hours=24 if batch.model_version == "seasonal_naive_24h" else 168)
        expected_kw = _hourly_kw(champion_config, issued - lag, 1).to_numpy()
    else:  # the same hour's mean or median over the 7 days before
        days = _hourly_kw(champion_config, issued - pd.Timedelta(days=7), 7).to_numpy().reshape(7, 24)
        reduce = np.nanmean if batch.model_version == "same_hour_mean_7d" else np.nanmedian
        expected_kw = reduce(days, axis=0)  # the outage days are left out, as the baseline does
    # An hour with a few missing minutes is interpolated on the model grid; every other hour matches.
    matches = np.isclose(batch.table["yhat_kw"].to_numpy(), expected_kw, rtol=1e-5)
    assert matches.sum() >= 22, (batch.model_version, np.flatnonzero(~matches))


def test_meter_without_champion_falls_back_and_says_so(ingested_config):
    batch = make_forecast_batch(ingested_config, METER, pd.Timestamp(COMPLETE_DAY), run_id="run-1")

    assert batch.model in FALLBACK_FAMILY.values()
    assert "has no champion model yet" in batch.notes[0]
    assert "windows issued at the same time of day in the 28 days before" in batch.notes[0]
    lo, yhat, hi = (batch.table[c].to_numpy() for c in ("yhat_lo_kw", "yhat_kw", "yhat_hi_kw"))
    assert (lo <= yhat).all() and (yhat <= hi).all() and (hi - lo).min() > 0


def test_default_issue_time_is_the_midnight_ending_the_last_complete_day(ingested_config):
    # the sample's last reading is 2010-11-26 21:02 local, so 26 November is not complete
    assert default_issue_time(ingested_config, METER) == pd.Timestamp("2010-11-26T00:00+01:00")


def test_issue_time_off_the_hourly_grid_is_refused(champion_config):
    with pytest.raises(ForecastError, match="not on meter sceaux_household's"):
        make_forecast_batch(champion_config, METER, pd.Timestamp("2010-11-10T00:30+01:00"), run_id="run-1")


def test_made_batch_publishes_and_reads_back_unchanged(champion_config, tmp_path):
    batch = make_forecast_batch(champion_config, METER, pd.Timestamp(COMPLETE_DAY), run_id="run-1")

    publish_batch(str(tmp_path), batch)

    frame = read_forecasts(str(tmp_path), meter_id=METER)
    pd.testing.assert_frame_equal(frame, batch.table.to_pandas())
    assert frame.attrs["powercast"]["powercast.validation_mae_kw"][METER] == pytest.approx(batch.validation_mae_kw)


def test_forecast_command_publishes_and_show_prints_the_batch(champion_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(champion_root, root)

    published = main(["forecast", "--root", str(root), "--issued-at", "2010-11-10"])
    shown = main(["forecasts", "show", "--root", str(root), "--meter", METER])

    out = capsys.readouterr().out
    assert (published, shown) == (0, 0)
    assert "issue_date=2010-11-09/issued_at=20101109T230000Z" in out
    assert "fixture-gru" in out and "yhat_lo_kw" in out


def test_forecasts_plot_draws_the_latest_batch_against_actuals_to_png(champion_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(champion_root, root)
    main(["forecast", "--root", str(root), "--issued-at", "2010-11-10"])
    out = tmp_path / "plot" / "forecast.png"

    status = main(["forecasts", "plot", "--root", str(root), "--out", str(out)])

    assert status == 0 and f"wrote {out}" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_fallback_interval_comes_from_windows_issued_at_the_same_local_hour(tiny_prepared, tiny_config):
    local_tz = parse_timezone(tiny_config.prepare.local_timezone)
    issued = pd.Timestamp(COMPLETE_DAY).tz_convert("UTC")
    origin_row = grid_row(tiny_prepared, issued)
    fallback = baseline_forecast(tiny_prepared, origin_row, 0.8, 28, local_tz)

    horizon, lookback = tiny_prepared.horizon_steps, tiny_prepared.lookback_steps
    origins = np.arange(origin_row - 28 * 24, origin_row - horizon + 1)
    truth = np.lib.stride_tricks.sliding_window_view(tiny_prepared.target_kw, horizon)[origins]  # [N, H]
    forecast = baseline_per_window(fallback.name, tiny_prepared, origins - lookback)  # [N, H]
    usable = np.isfinite(truth).all(axis=1) & np.isfinite(forecast).all(axis=1)
    at_midnight = usable & (slot_of_day(tiny_prepared.index_utc[origins], local_tz, pd.Timedelta(hours=1)) == 0)
    expected = ConformalIntervals(0.8).fit(truth[at_midnight], forecast[at_midnight])
    pooled = ConformalIntervals(0.8).fit(truth[usable], forecast[usable])

    np.testing.assert_allclose(fallback.hi_kw - fallback.yhat_kw, expected.hi_[0], atol=1e-5)
    np.testing.assert_allclose(fallback.lo_kw - fallback.yhat_kw, expected.lo_[0], atol=1e-5)
    assert not np.allclose(expected.hi_, pooled.hi_)  # the issue hour matters on this house
    assert fallback.calibrated_at_issue_time and fallback.calibration_windows == int(at_midnight.sum())
