"""The parameter form of each flow: one pydantic model per flow, mapped onto PowercastConfig.

Prefect turns these models into the deployment's ``parameter_openapi_schema``: the UI shows
each field with its description, default and bounds, and the server rejects values out of
bounds before a run starts. Settings left empty keep the configured value (configuration file,
``POWERCAST_ROOT``, then the built-in default named in the description).
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from pydantic.fields import FieldInfo

from powercast.core.config import PowercastConfig, load_config, parse_timezone
from powercast.core.schemas import METER_ID_PATTERN
from powercast.core.settings import FLEET_SETTINGS, INGEST_SETTINGS, TRAINING_SETTINGS, setting, settings
from powercast.io import layout
from powercast.io.locking import DEFAULT_LOCK_TIMEOUT_S

MeterId = Annotated[str, StringConstraints(pattern=METER_ID_PATTERN)]

# Labels of the run-level form fields; training fields carry their titles from the config models.
FIELD_TITLES: dict[str, str] = {
    "root": "Data root",
    "config_file": "Configuration file",
    "lock_timeout_s": "Lock timeout (s)",
    "landing_dir": "Landing folder",
    "meters": "Meters",
    "as_of": "As of (local day)",
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

    # Dotted keys of the configuration settings this form carries as fields (see with_settings).
    SETTING_KEYS: ClassVar[tuple[str, ...]] = ()

    def config_overrides(self) -> dict[str, Any]:
        """Return the dotted configuration keys these parameters set (empty ones left out)."""
        settings_set = {key: getattr(self, setting(key).name) for key in self.SETTING_KEYS}
        return {"root": self.root, **settings_set}

    def load_config(self) -> PowercastConfig:
        """Return the run's configuration: file and environment first, these parameters on top."""
        return load_config(self.config_file, overrides=self.config_overrides())


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


def with_settings(name: str, base: type[RunParams], keys: tuple[str, ...], doc: str) -> type[RunParams]:
    """Return a subclass of ``base`` with one form field per setting in ``keys``.

    Each field has the config field's type, bounds, title and description; empty (None) keeps
    the configured value. ``config_overrides`` maps the fields back onto their dotted keys.
    """
    model = create_model(
        name,
        __base__=base,
        __doc__=doc,
        __module__=__name__,
        **{item.name: item.optional_field() for item in settings(keys)},
    )
    model.SETTING_KEYS = (*base.SETTING_KEYS, *keys)
    return model


class _LandingParams(RunParams):
    """Which landing folder to read."""

    landing_dir: str | None = Field(
        None, description="Folder of raw files to ingest (already ingested files are skipped). Empty: <root>/landing."
    )

    def landing_path(self, config: PowercastConfig) -> str:
        """Return the landing folder to read for ``config``."""
        return self.landing_dir or layout.landing_dir(config.root)


IngestParams = with_settings(
    "IngestParams",
    _LandingParams,
    INGEST_SETTINGS,
    "Parameters of the ingest flow: which landing folder to read, and how.",
)
TrainingParams = with_settings(
    "TrainingParams",
    MeterParams,
    TRAINING_SETTINGS,
    "How challengers are trained; empty fields keep the configured value.",
)


class TrainParams(TrainingParams):
    """Parameters of the train flow: retrain challengers for some meters now."""


class ForecastParams(MeterParams):
    """Parameters of the forecast flow: publish a batch with the current champions."""

    dry_run: bool = Field(
        False, description="Only report which meters and issue time would be forecast; write nothing."
    )


class _NightlyOptions(TrainingParams, _LandingParams):
    """What the nightly run does besides training: which files, whether to force, whether to write."""

    force_retrain: bool = Field(
        False, description="Retrain even for meters with no readings newer than their champion's training data."
    )
    dry_run: bool = Field(
        False, description="Only report what would run (files to ingest, meters, effective settings); write nothing."
    )


NightlyParams = with_settings(
    "NightlyParams",
    _NightlyOptions,
    (*INGEST_SETTINGS, *FLEET_SETTINGS),
    "Parameters of the nightly flow: ingest, retrain when there is news, forecast, publish.",
)
