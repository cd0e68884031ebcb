"""The parameter form of each flow: one pydantic model per flow, mapped onto PowercastConfig.

Prefect turns these models into the deployment's ``parameter_openapi_schema``: the UI shows
each field with its description, default and bounds, and the server rejects values out of
bounds before a run starts. Settings left empty keep the configured value (configuration file,
``POWERCAST_ROOT``, then the built-in default named in the description).
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.fields import FieldInfo

from powercast.core.config import (
    PowercastConfig,
    PrepareConfig,
    TrainConfig,
    load_config,
    parse_timezone,
)
from powercast.core.schemas import METER_ID_PATTERN
from powercast.io import layout
from powercast.io.locking import DEFAULT_LOCK_TIMEOUT_S

MeterId = Annotated[str, StringConstraints(pattern=METER_ID_PATTERN)]
Cell = Literal["gru", "lstm"]
HiddenSize = Annotated[int, Field(ge=1, le=2048)]

_TRAIN_DEFAULTS = TrainConfig()
_PREPARE_DEFAULTS = PrepareConfig()
# Labels of the form fields in the Prefect UI (the field name otherwise, title-cased).
FIELD_TITLES: dict[str, str] = {
    "root": "Data root",
    "config_file": "Configuration file",
    "lock_timeout_s": "Lock timeout (s)",
    "landing_dir": "Landing folder",
    "meters": "Meters",
    "as_of": "As of (local day)",
    "cells": "Cells to train",
    "horizon_steps": "Horizon (steps)",
    "lookback_steps": "Lookback (steps)",
    "hidden_sizes": "Hidden sizes",
    "batch_size": "Batch size",
    "max_epochs": "Max epochs",
    "ensemble_members": "Ensemble members",
    "refit_on_validation": "Refit on train + validation",
    "max_time_s": "Time budget per model (s)",
    "cpu_threads": "CPU threads",
    "accelerator": "Accelerator",
    "force_retrain": "Force retrain",
    "dry_run": "Dry run",
}


def _field_title(name: str, info: FieldInfo) -> str:
    return FIELD_TITLES.get(name, name.replace("_", " ").capitalize())


class RunParams(BaseModel):
    """Where a run reads and writes, and how long it waits for another run on the same meter."""

    model_config = ConfigDict(extra="forbid", field_title_generator=_field_title)

    root: str | None = Field(
        None,
        description="Data root (local path or URI) holding landing/, store/, models/, forecasts/. "
        "Empty: $POWERCAST_ROOT, else ./var.",
    )
    config_file: str | None = Field(
        None, description="TOML or JSON configuration file read before these parameters. Empty: $POWERCAST_CONFIG."
    )
    lock_timeout_s: float = Field(
        DEFAULT_LOCK_TIMEOUT_S,
        ge=0,
        le=6 * 3600,
        description="Seconds to wait when another run holds a meter's lock before failing that meter.",
    )

    def config_overrides(self) -> dict[str, Any]:
        """Return the dotted configuration keys these parameters set (empty ones left out)."""
        return {"root": self.root}

    def load_config(self) -> PowercastConfig:
        """Return the run's configuration: file and environment first, these parameters on top."""
        return load_config(self.config_file, overrides=self.config_overrides())


class IngestParams(RunParams):
    """Parameters of the ingest flow: which landing folder to read."""

    landing_dir: str | None = Field(
        None, description="Folder of raw files to ingest (already ingested files are skipped). Empty: <root>/landing."
    )

    def landing_path(self, config: PowercastConfig) -> str:
        """Return the landing folder to read for ``config``."""
        return self.landing_dir or layout.landing_dir(config.root)


class MeterParams(RunParams):
    """Which meters, and up to which local day."""

    meters: list[MeterId] = Field(
        default_factory=list,
        max_length=1000,
        description="Meter ids to process. Empty: every meter in the store.",
    )
    as_of: date | None = Field(
        None,
        description="Local day the run acts as of: forecasts are issued at its local midnight and training uses "
        "readings before it (a backfill). Empty: the local midnight after the last complete day of readings.",
    )

    def as_of_utc(self, config: PowercastConfig) -> datetime | None:
        """Return local midnight of ``as_of`` (``prepare.local_timezone``) in UTC, or None."""
        if self.as_of is None:
            return None
        local_midnight = datetime.combine(self.as_of, time(0), tzinfo=parse_timezone(config.prepare.local_timezone))
        return local_midnight.astimezone(timezone.utc)


class TrainingParams(MeterParams):
    """How challengers are trained; empty fields keep the configured value."""

    cells: list[Cell] = Field(
        default_factory=lambda: list(_TRAIN_DEFAULTS.cells),
        min_length=1,
        max_length=2,
        description="Recurrent cells to train as challengers, one task each.",
    )
    horizon_steps: int | None = Field(
        None, ge=1, le=168, description=f"Forecast horizon in steps (default {_PREPARE_DEFAULTS.horizon_steps})."
    )
    lookback_steps: int | None = Field(
        None, ge=1, le=24 * 7 * 8, description=f"Input window in steps (default {_PREPARE_DEFAULTS.lookback_steps})."
    )
    hidden_sizes: list[HiddenSize] | None = Field(
        None,
        min_length=1,
        max_length=4,
        description=f"Hidden units per recurrent layer (default {_TRAIN_DEFAULTS.hidden_sizes}).",
    )
    batch_size: int | None = Field(
        None, ge=1, le=65536, description=f"Windows per training batch (default {_TRAIN_DEFAULTS.batch_size})."
    )
    max_epochs: int | None = Field(
        None, ge=1, le=1000, description=f"Most epochs per model (default {_TRAIN_DEFAULTS.max_epochs})."
    )
    ensemble_members: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Independently initialised copies of each model, averaged; cost grows with it "
        f"(default {_TRAIN_DEFAULTS.ensemble_members}).",
    )
    refit_on_validation: bool | None = Field(
        None,
        description="Retrain on train + validation for the chosen epochs and serve that model "
        f"(default {_TRAIN_DEFAULTS.refit_on_validation}).",
    )
    max_time_s: float | None = Field(
        None,
        gt=0,
        le=24 * 3600,
        description="Wall-clock budget per model in seconds, held-out fit and refit together "
        f"(default {_TRAIN_DEFAULTS.max_time_s:g}).",
    )
    cpu_threads: int | None = Field(
        None,
        ge=0,
        le=256,
        description="torch threads when training on CPU; 0 = one per core, 1 on a busy shared machine "
        f"(default {_TRAIN_DEFAULTS.cpu_threads}).",
    )
    accelerator: Literal["auto", "cpu", "gpu"] | None = Field(
        None,
        description=f"Device for training: auto picks a GPU when present (default {_TRAIN_DEFAULTS.accelerator!r}).",
    )

    def config_overrides(self) -> dict[str, Any]:
        """Return the dotted configuration keys these parameters set (empty ones left out)."""
        return {
            **super().config_overrides(),
            "train.cells": list(self.cells),
            "prepare.horizon_steps": self.horizon_steps,
            "prepare.lookback_steps": self.lookback_steps,
            "train.hidden_sizes": self.hidden_sizes,
            "train.batch_size": self.batch_size,
            "train.max_epochs": self.max_epochs,
            "train.ensemble_members": self.ensemble_members,
            "train.refit_on_validation": self.refit_on_validation,
            "train.max_time_s": self.max_time_s,
            "train.cpu_threads": self.cpu_threads,
            "train.accelerator": self.accelerator,
        }


class TrainParams(TrainingParams):
    """Parameters of the train flow: retrain challengers for some meters now."""


class ForecastParams(MeterParams):
    """Parameters of the forecast flow: publish a batch with the current champions."""

    dry_run: bool = Field(
        False, description="Only report which meters and issue time would be forecast; write nothing."
    )


class NightlyParams(TrainingParams):
    """Parameters of the nightly flow: ingest, retrain when there is news, forecast, publish."""

    landing_dir: str | None = Field(
        None, description="Folder of raw files to ingest (already ingested files are skipped). Empty: <root>/landing."
    )
    force_retrain: bool = Field(
        False, description="Retrain even for meters with no readings newer than their champion's training data."
    )
    dry_run: bool = Field(
        False, description="Only report what would run (files to ingest, meters, effective settings); write nothing."
    )

    def landing_path(self, config: PowercastConfig) -> str:
        """Return the landing folder to read for ``config``."""
        return self.landing_dir or layout.landing_dir(config.root)

    def ingest_params(self) -> IngestParams:
        """Return the ingest flow's parameters for this night."""
        return IngestParams(
            root=self.root,
            config_file=self.config_file,
            lock_timeout_s=self.lock_timeout_s,
            landing_dir=self.landing_dir,
        )
