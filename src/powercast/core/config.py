"""The one typed configuration object, and the only place that reads the environment.

Precedence, lowest first: defaults here → a TOML/JSON file (``--config`` or
``POWERCAST_CONFIG``) → environment (``POWERCAST_ROOT``) → explicit overrides (CLI flags,
flow parameters). Everything downstream receives a ``PowercastConfig`` and never looks at
``os.environ`` itself.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from datetime import date, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from powercast.core.errors import ConfigError

DEFAULT_ROOT = "var"
ENV_ROOT = "POWERCAST_ROOT"
ENV_CONFIG = "POWERCAST_CONFIG"

# The challengers a night can train: two recurrent cells and a gradient-boosting model ("hgb",
# scikit-learn's HistGradientBoostingRegressor); the CLI choices and the Prefect form read this list.
RecurrentCell = Literal["gru", "lstm"]
RECURRENT_CELLS: tuple[str, ...] = get_args(RecurrentCell)
Cell = Literal["gru", "lstm", "hgb"]
CELL_NAMES: tuple[str, ...] = get_args(Cell)
# The mean of the group of a night's challengers whose mean scores best, competing beside them (powercast.models.combination).
COMBINED_MODEL = "combo"
Scheduler = Literal["onecycle", "plateau", "none"]
SCHEDULER_NAMES: tuple[str, ...] = get_args(Scheduler)
# What a UCI file's house can be split into: its total and the channels measured inside it.
Channel = Literal["total", "kitchen", "laundry", "heater_ac", "rest"]
CHANNEL_NAMES: tuple[str, ...] = get_args(Channel)
# What a model's interval offsets multiply (powercast.models.conformal): nothing (kW offsets),
# or the mean load of the forecast's input window.
IntervalScale = Literal["none", "lookback_mean"]
INTERVAL_SCALES: tuple[str, ...] = get_args(IntervalScale)
HiddenSize = Annotated[int, Field(ge=1, le=2048)]


def parse_timezone(name: str) -> tzinfo:
    """Return a tzinfo for an IANA name (``Europe/Paris``) or a fixed offset (``+01:00``)."""
    text = name.strip()
    if text.upper() in {"UTC", "Z"}:
        return timezone.utc
    if text[:1] in "+-" and len(text) == 6 and text[3] == ":":
        sign = 1 if text[0] == "+" else -1
        hours, minutes = int(text[1:3]), int(text[4:6])
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris' or a fixed offset such as '+01:00'"
        ) from exc


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Section):
    """How raw files become stored readings."""

    source_utc_offset: str = Field(
        "+01:00",
        description="Clock of the UCI file, read as a fixed UTC offset (the house in Sceaux kept local standard time).",
    )
    default_meter_id: str = Field(
        "sceaux_household", description="meter_id given to UCI-format rows, which carry no meter column."
    )
    channel_meters: list[Channel] = Field(
        default_factory=lambda: ["total"],
        min_length=1,
        max_length=len(CHANNEL_NAMES),
        title="Channel meters",
        description="Which channels of a UCI file become meters: 'total' (the house, default_meter_id), the "
        "sub-meters 'kitchen', 'laundry', 'heater_ac' and 'rest' (total minus the three), each stored as "
        "<default_meter_id>.<channel> in kW.",
    )
    voltage_min_v: float = Field(180.0, description="Readings with a voltage below this are quarantined.")
    voltage_max_v: float = Field(280.0, description="Readings with a voltage above this are quarantined.")
    max_active_power_kw: float = Field(
        50.0, gt=0, description="Readings above this (kW) are quarantined as physically implausible."
    )
    future_tolerance_h: float = Field(
        2.0,
        ge=0,
        le=24 * 366,
        title="Future tolerance (h)",
        description="Readings stamped later than the ingest time plus this many hours come from a clock that "
        "ran ahead: ingest quarantines them, and readings already stored that late are ignored by training "
        "and forecasting.",
    )
    progress_min_bytes: int = Field(
        20_000_000, ge=0, description="Show a progress bar for files at least this large (terminal only)."
    )

    @field_validator("source_utc_offset")
    @classmethod
    def _offset_is_valid(cls, value: str) -> str:
        parse_timezone(value)
        return value


class SplitConfig(_Section):
    """Where train / validation / test separate, by dates or by trailing lengths."""

    mode: Literal["dates", "trailing"] = Field(
        "trailing", description="'dates' uses train_end/val_end; 'trailing' validates on the last val_days."
    )
    train_end: date | None = Field(None, description="First day of validation (dates mode).")
    val_end: date | None = Field(None, description="First day of test (dates mode).")
    val_days: int = Field(28, ge=1, description="Trailing validation length in days (trailing mode).")
    test_days: int = Field(0, ge=0, description="Trailing test length in days (trailing mode); 0 = no test split.")

    @model_validator(mode="after")
    def _dates_are_ordered(self) -> SplitConfig:
        if self.mode == "dates":
            if self.train_end is None or self.val_end is None:
                raise ValueError("split mode 'dates' needs both train_end and val_end")
            if not self.train_end < self.val_end:
                raise ValueError(f"train_end {self.train_end} must be before val_end {self.val_end}")
        return self

    @classmethod
    def reference(cls) -> SplitConfig:
        """The split used for every reported figure: train < 2009-07-01 <= validation < 2010-01-01 <= test."""
        return cls(mode="dates", train_end=date(2009, 7, 1), val_end=date(2010, 1, 1))


class PrepareConfig(_Section):
    """How stored readings become model-ready windows."""

    freq: str = Field(
        "1h", title="Frequency", description="Resampling frequency (pandas offset alias: '1h', '1min', '15min')."
    )
    min_coverage: float = Field(
        0.5, gt=0, le=1, description="A bucket needs at least this fraction of its expected readings, else it is missing."
    )
    max_interpolate_gap_steps: int = Field(
        3, ge=0, description="Gaps up to this many steps are interpolated; longer gaps stay missing."
    )
    lookback_steps: int = Field(
        168,
        ge=1,
        le=24 * 7 * 8,
        title="Lookback (steps)",
        description="Input window length in steps (168 h = one week at 1 h).",
    )
    horizon_steps: int = Field(
        24, ge=1, le=168, title="Horizon (steps)", description="Forecast horizon in steps (24 h = day-ahead at 1 h)."
    )
    calendar_features: bool = Field(True, description="Add cyclical hour-of-day and day-of-week features.")
    extra_features: list[str] = Field(
        default_factory=list, description="Other measured reading columns to use as inputs (e.g. 'voltage_v')."
    )
    local_timezone: str = Field(
        "+01:00", description="Timezone of 'local midnight' for forecast origins (IANA name or fixed offset)."
    )
    missing_mask: bool = Field(
        True,
        title="Missing-value mask",
        description="Networks read windows with long gaps in their input: missing input steps are filled with "
        "the same time of the previous day (scaled 0 where there is none) and an extra input column says which "
        "steps were missing. Such windows are then used for training (targets stay real readings) and a network "
        "champion forecasts through a gap instead of the baseline fallback.",
    )
    min_real_input_steps: int = Field(
        24,
        ge=1,
        title="Minimum real input (steps)",
        description="With missing_mask, a window needs at least this many real (not filled) input steps in its "
        "lookback to be trained on or forecast from (24 at 1 h: one day; the whole lookback when it is shorter).",
    )
    day_of_year_features: bool = Field(
        False,
        title="Day-of-year features",
        description="Add the local day of the year as a point on a circle (sin, cos): yearly seasonality.",
    )
    holiday_features: bool = Field(
        True,
        title="Holiday features",
        description="Add whether the local day one horizon ahead of each step is a public holiday (holidays "
        "package, country from holiday_country), so a window's last day of rows flags the days it forecasts.",
    )
    holiday_country: str = Field(
        "FR",
        description="Public-holiday calendar of a meter (ISO 3166 code known to the holidays package, optionally "
        "'FR-subdivision'), unless holiday_country_by_meter names the meter. FR: the UCI house in Sceaux.",
    )
    holiday_country_by_meter: dict[str, str] = Field(
        default_factory=dict,
        description="Per-meter holiday calendars, meter_id -> country code; other meters use holiday_country.",
    )
    profile_features: bool = Field(
        True,
        title="Weekly profile features",
        description="Add the meter's mean load over its training rows at the local hour of the week one horizon "
        "ahead of each step (in its scaled units), so a window's last day of rows carries the meter's usual "
        "shape of the day it forecasts; it tells a global network which meter it reads.",
    )
    split: SplitConfig = Field(default_factory=SplitConfig)

    @field_validator("local_timezone")
    @classmethod
    def _tz_is_valid(cls, value: str) -> str:
        parse_timezone(value)
        return value

    @model_validator(mode="after")
    def _real_input_fits_lookback(self) -> PrepareConfig:
        # Only a value someone set is refused: the default (24) under a shorter lookback, or a
        # model card written before this setting existed, means "the whole lookback".
        if "min_real_input_steps" in self.model_fields_set and self.min_real_input_steps > self.lookback_steps:
            raise ValueError(
                f"min_real_input_steps {self.min_real_input_steps} exceeds lookback_steps {self.lookback_steps}: "
                "a window could never hold that many real steps"
            )
        return self

    @property
    def real_input_steps_needed(self) -> int:
        """Return the real input steps a window needs: min_real_input_steps, at most the whole lookback."""
        return min(self.min_real_input_steps, self.lookback_steps)

    def holiday_country_of(self, meter_id: str) -> str:
        """Return the holiday calendar of ``meter_id``: its entry in holiday_country_by_meter, else holiday_country."""
        return self.holiday_country_by_meter.get(meter_id, self.holiday_country)


class TrainConfig(_Section):
    """How challengers are trained."""

    cells: list[Cell] = Field(
        default_factory=lambda: list(CELL_NAMES),
        min_length=1,
        max_length=len(CELL_NAMES),
        title="Challengers to train",
        description="Models trained each night as challengers: the GRU and LSTM networks, and hgb "
        "(scikit-learn HistGradientBoostingRegressor on lag and calendar features). Global models "
        "(train.scope) are networks only.",
    )
    hidden_sizes: list[HiddenSize] = Field(
        default_factory=lambda: [64],
        min_length=1,
        max_length=4,
        title="Hidden sizes",
        description="Hidden units of each stacked recurrent layer.",
    )
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout between stacked layers and before the head.")
    ensemble_members: int = Field(
        3,
        ge=1,
        le=16,
        title="Ensemble members",
        description="Independently initialised copies of each model trained together; forecasts are their mean "
        "(cost grows with it).",
    )
    segment_steps: int = Field(
        24,
        ge=1,
        description="Input steps read per recurrent step (24 at 1 h: one day per step; 1: hour by hour).",
    )
    highway: bool = Field(
        True, description="Add a linear shortcut from the lookback's target values to the forecast (LSTNet style)."
    )
    learning_rate: float = Field(3e-3, gt=0, description="Adam learning rate (peak rate of the one-cycle schedule).")
    scheduler: Scheduler = Field(
        "onecycle", description="Learning-rate schedule: one-cycle over max_epochs, halve on plateau, or constant."
    )
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    batch_size: int = Field(128, ge=1, le=65536, title="Batch size", description="Windows per training batch.")
    max_epochs: int = Field(
        12,
        ge=1,
        le=1000,
        title="Max epochs",
        description="Upper bound on training epochs (the one-cycle schedule anneals over exactly these).",
    )
    patience_epochs: int = Field(5, ge=1, description="Early stopping patience on validation MAE.")
    refit_on_validation: bool = Field(
        True,
        title="Refit on train + validation",
        description="After validation has chosen the epoch count, retrain on train + validation for that many "
        "epochs and serve that model (the most recent data matters most); selection still scores the held-out fit.",
    )
    max_time_s: float = Field(
        1800.0,
        gt=0,
        le=24 * 3600,
        title="Time budget per model (s)",
        description="Wall-clock budget per model in seconds: its held-out fit and its refit together.",
    )
    gradient_clip: float = Field(1.0, gt=0, description="Clip the gradient norm to this value.")
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        title="Accelerator",
        description="'auto' trains on a GPU when one is present (bf16 mixed precision), else on CPU.",
    )
    cpu_threads: int = Field(
        0,
        ge=0,
        le=256,
        title="CPU threads",
        description="torch intra-op threads while training on CPU; 0 keeps torch's default (one per core). "
        "Use 1 on a machine shared with other busy processes: oversubscribed threads spin and slow training. "
        "hgb uses this many OpenMP threads, one when 0 (its spinning threads stalled on busy cores).",
    )
    scope: Literal["local", "global", "both"] = Field(
        "local",
        title="Model scope",
        description="'local': a model per meter; 'global': one model per cell trained on every meter's windows "
        "(each meter scaled by its own training statistics); 'both': both compete. Selection is always per meter.",
    )
    global_steps_per_epoch: int = Field(
        200,
        ge=1,
        le=100_000,
        title="Global steps per epoch",
        description="Batches a global model trains on per epoch, sampled from every meter's training windows: "
        "its cost follows this budget, not the size of the fleet.",
    )
    global_val_windows: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        title="Global validation windows",
        description="Validation windows, sampled across meters, that early-stop a global model (each meter's "
        "selection then scores it on all of that meter's validation windows).",
    )
    global_devices: int = Field(
        1,
        ge=1,
        le=64,
        title="Global model devices",
        description="Devices one global network trains on at once: more than 1 runs Lightning's DDP (one spawned "
        "process per device, each on its share of the step budget, gradients averaged); set the GPU count of a "
        "multi-GPU machine. Local models always use one device.",
    )
    global_hidden_sizes: list[HiddenSize] | None = Field(
        None,
        min_length=1,
        max_length=4,
        title="Global hidden sizes",
        description="Hidden units of each stacked recurrent layer of the global models (train.scope): one network "
        "serves every meter and may need to be wider than a meter's own. None: train.hidden_sizes.",
    )
    meter_embedding_dim: int = Field(
        0,
        ge=0,
        le=256,
        title="Meter embedding size",
        description="Size of a learned vector per meter that a global network reads with every recurrent step, so "
        "it can tell meters apart; 0: none. The meters it learned are listed on its model card.",
    )
    local_meters: list[str] | None = Field(
        None,
        min_length=1,
        title="Meters with their own models",
        description="With train.scope 'both': the only meters that also train their own models (train.cells) "
        "beside the global ones; every other meter is served by the global models, which still learn from "
        "every meter. None: every meter. Spends a night's local training where it matters, e.g. on a house "
        "whose sub-meters are there to teach the global network.",
    )
    seed: int = Field(42, description="Seed of weights and shuffling; CPU runs with one seed give identical metrics.")

    @model_validator(mode="after")
    def _local_meters_need_both_scopes(self) -> TrainConfig:
        # Under 'local' a meter left out would train nothing, and under 'global' nothing is local.
        if self.local_meters is None:
            return self
        from powercast.core.schemas import METER_ID_PATTERN, METER_ID_RULE  # schemas imports this module

        malformed = [meter_id for meter_id in self.local_meters if not re.fullmatch(METER_ID_PATTERN, meter_id)]
        if malformed:
            raise ValueError(f"train.local_meters {malformed} are not meter ids ({METER_ID_RULE})")
        if self.scope != "both":
            raise ValueError(
                f"train.local_meters {self.local_meters} needs train.scope 'both' (it is {self.scope!r}): it chooses "
                "which meters train their own models beside the global ones"
            )
        if not set(self.cells) & set(RECURRENT_CELLS):
            raise ValueError(
                f"train.local_meters needs a network among train.cells (it is {self.cells}): global models are "
                "networks, and a meter not listed would have no model to select"
            )
        return self

    def trains_local_models_of(self, meter_id: str) -> bool:
        """Return whether ``meter_id`` trains its own models tonight (``scope`` and ``local_meters``)."""
        if self.scope == "global":
            return False
        return self.local_meters is None or meter_id in self.local_meters


class ForecastConfig(_Section):
    """How forecast batches are made."""

    interval_coverage: float = Field(0.8, gt=0, lt=1, description="Target coverage of [yhat_lo_kw, yhat_hi_kw].")
    baseline_calibration_days: int = Field(
        28,
        ge=1,
        le=366,
        description="A seasonal-naive fallback calibrates its interval on windows of this many days before the issue time.",
    )
    interval_scale: IntervalScale = Field(
        "lookback_mean",
        title="Interval scale",
        description="How a trained model's interval follows the load: 'lookback_mean' learns its offsets as ratios "
        "of the mean load of each window's input (the week before the issue time) and multiplies them by it, so "
        "the interval widens when the load rises (winter) and narrows when it falls; 'none' adds the same kW "
        "offsets to every forecast of an issue time. Recorded on the model card, which serving follows; baseline "
        "fallbacks always use kW offsets from the days just before the issue time.",
    )


class FleetConfig(_Section):
    """How a night spreads its per-meter work: one meter after another, or over a Dask cluster."""

    task_runner: Literal["sequential", "dask"] = Field(
        "sequential",
        title="Task runner",
        description="'sequential': one meter after another in the flow's process; 'dask': every meter as a task "
        "on a Dask cluster (a local cluster of processes, or dask_address).",
    )
    dask_address: str | None = Field(
        None,
        title="Dask scheduler address",
        description="Address of an existing Dask scheduler (tcp://host:8786); empty: start a local cluster.",
    )
    dask_workers: int = Field(
        2,
        ge=1,
        le=512,
        title="Local Dask workers",
        description="Worker processes of the local Dask cluster, one thread each (training is not thread-safe).",
    )


class RegistryConfig(_Section):
    """How long the model registry keeps the versions of past training runs (powercast.models.retention)."""

    keep_runs: int = Field(
        14,
        ge=1,
        le=10_000,
        title="Training runs kept per meter",
        description="Each meter keeps the model versions of its last this many training runs (the nights that "
        "trained it, newest by their decisions in history.jsonl); older versions are pruned after each night and by "
        "'powercast models prune'. Always kept: the champion, every version named in the meter's last this many "
        "decisions (a rollback target), the members of a kept combination, a card that cannot be read, and the "
        "global network folders a kept card uses.",
    )


class PowercastConfig(_Section):
    """Everything a run needs, passed down explicitly."""

    root: str = Field(DEFAULT_ROOT, description="Data root: store/, models/, forecasts/ live under it (path or URI).")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    def with_overrides(self, overrides: dict[str, Any]) -> PowercastConfig:
        """Return a copy with dotted-key overrides applied (``{"train.max_epochs": 3}``)."""
        merged = self.model_dump()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = merged
            *parents, leaf = dotted.split(".")
            for part in parents:
                if part not in node or not isinstance(node[part], dict):
                    raise ConfigError(f"unknown configuration key {dotted!r}")
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"unknown configuration key {dotted!r}")
            node[leaf] = value
        return _validated(merged, source="overrides")


def _validated(raw: dict[str, Any], source: str) -> PowercastConfig:
    try:
        return PowercastConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration from {source}: {problems}") from exc


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> PowercastConfig:
    """Return the configuration from defaults, an optional file, the environment and overrides."""
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    config_path = path or env.get(ENV_CONFIG)
    source = "defaults"
    if config_path:
        file = Path(config_path)
        if not file.is_file():
            raise ConfigError(f"configuration file {file} does not exist")
        text = file.read_text(encoding="utf-8")
        try:
            raw = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"configuration file {file} is not valid {file.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
        source = str(file)
    if env.get(ENV_ROOT):
        raw["root"] = env[ENV_ROOT]
    config = _validated(raw, source=source)
    return config.with_overrides(overrides or {})
