"""Forecast against actual readings, with the interval band, drawn to a PNG (matplotlib Agg canvas)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from powercast.core.config import PowercastConfig
from powercast.core.errors import ForecastError, StoreError
from powercast.core.schemas import TARGET_COLUMN
from powercast.io.atomic import atomic_write_bytes
from powercast.prepare.resample import resample_readings

# Hours of actual readings drawn before the issue time, for context.
CONTEXT_STEPS = 48


def actual_kw(config: PowercastConfig, meter_id: str, start_utc: pd.Timestamp, end_utc: pd.Timestamp) -> pd.Series:
    """Return the meter's mean active power per ``prepare.freq`` bucket in [start, end) (NaN where missing)."""
    from powercast.store.readings import read_readings

    try:
        table = read_readings(
            config.root, meter_id, start_utc.to_pydatetime(), end_utc.to_pydatetime(), columns=["timestamp", TARGET_COLUMN]
        )
    except StoreError as exc:
        raise ForecastError(f"cannot read actual readings of meter {meter_id!r} to plot: {exc}") from exc
    grid = pd.date_range(start_utc, end_utc, freq=config.prepare.freq, inclusive="left", tz="UTC")
    if table.num_rows < 2:
        return pd.Series(float("nan"), index=grid, name=TARGET_COLUMN)
    resampled = resample_readings(
        table.to_pandas(), config.prepare.freq, config.prepare.min_coverage, [TARGET_COLUMN], grid_end_utc=end_utc
    )
    return resampled.frame[TARGET_COLUMN].reindex(grid)


def plot_forecast(
    forecast: pd.DataFrame, actuals_kw: dict[str, pd.Series], out_path: str | Path, coverage: float | None = None
) -> Path:
    """Draw each meter's forecast, interval band and actual readings to one PNG; return its path.

    Parameters
    ----------
    forecast : pd.DataFrame
        One batch in the contract's columns (``read_forecasts`` output), one or more meters.
    actuals_kw : dict[str, pd.Series]
        meter_id → actual kW indexed by UTC bucket start (may be empty or NaN where unknown).
    out_path : str or Path
        Where the PNG is written (atomically).
    coverage : float, optional
        Nominal interval coverage, for the legend.
    """
    if forecast.empty:
        raise ForecastError("the forecast batch to plot has no rows")
    meters = sorted(forecast["meter_id"].unique())
    # The object API with an Agg canvas: no pyplot state, no display needed.
    figure = Figure(figsize=(11, 3.6 * len(meters)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(meters), 1, squeeze=False)
    band_label = f"{coverage:.0%} interval" if coverage is not None else "interval"
    for axis, meter_id in zip(axes[:, 0], meters):
        rows = forecast[forecast["meter_id"] == meter_id].sort_values("horizon_h")
        step = rows["target_time"].iloc[1] - rows["target_time"].iloc[0] if len(rows) > 1 else pd.Timedelta(hours=1)
        # bucket means are drawn at the middle of their bucket
        middle = rows["target_time"] + step / 2
        axis.fill_between(middle, rows["yhat_lo_kw"], rows["yhat_hi_kw"], color="tab:blue", alpha=0.2, label=band_label)
        model = ", ".join(f"{m} {v}" for m, v in rows[["model", "model_version"]].drop_duplicates().itertuples(index=False))
        axis.plot(middle, rows["yhat_kw"], color="tab:blue", label=f"forecast ({model})")
        actual = actuals_kw.get(meter_id)
        if actual is not None and actual.notna().any():
            axis.plot(actual.index + step / 2, actual.to_numpy(), color="black", linewidth=1.0, label="actual")
        issued = rows["issued_at"].iloc[0]
        axis.axvline(issued, color="grey", linestyle="--", linewidth=0.8)
        axis.set_title(f"{meter_id}: issued {issued:%Y-%m-%d %H:%M} UTC")
        axis.set_ylabel("active power (kW)")
        axis.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz="UTC"))
        axis.legend(loc="upper left", fontsize="small")
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (UTC)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    path = Path(out_path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
