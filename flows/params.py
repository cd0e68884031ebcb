"""The parameter form of each flow: one pydantic model per flow, mapped onto PowercastConfig.

Prefect turns these models into the deployment's ``parameter_openapi_schema``: the UI shows
each field with its description, default and bounds, and the server rejects values out of
bounds before a run starts. Settings left empty keep the configured value (configuration file,
``POWERCAST_ROOT``, then the built-in default named in the description).

"Empty" is None in Python, but the form never offers None: the UI draws ``X | None`` as a type
switch whose ``None`` side reads 'Property is type "None"', so a field that may be empty is
shown as its own type with no default (``_form_shows_the_value_type``), and a field left empty
is left out of the run's parameters, which then validate to None. Descriptions avoid angle
brackets: the UI renders descriptions as HTML and drops ``<root>`` like an unknown tag.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    create_model,
    model_serializer,
)
from pydantic.fields import FieldInfo

from powercast.core.config import DEFAULT_ROOT, ENV_CONFIG, ENV_ROOT, PowercastConfig, load_config, parse_timezone
from powercast.core.schemas import METER_ID_PATTERN
from powercast.core.settings import (
    FLEET_SETTINGS,
    INGEST_SETTINGS,
    REGISTRY_SETTINGS,
    TRAINING_SETTINGS,
    Setting,
    setting,
    settings,
)
from powercast.io import layout
from powercast.io.locking import DEFAULT_LOCK_TIMEOUT_S

MeterId = Annotated[str, StringConstraints(pattern=METER_ID_PATTERN)]
# How the form offers a boolean setting that may be left empty (see _form_shows_the_value_type).
BOOLEAN_CHOICES = ("on", "off")
# A deployment's flow runs in the folder it was deployed from (prefect.yaml has no pull step), so
# a relative default root resolves under this checkout; the form names that folder.
REPO_ROOT = Path(__file__).resolve().parents[1]

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
    "use_sample": "Use the bundled sample",
}


def _field_title(name: str, info: FieldInfo) -> str:
    return FIELD_TITLES.get(name, name.replace("_", " ").capitalize())


def _form_shows_the_value_type(schema: dict[str, Any]) -> None:
    """Show an optional field in the form as its value type, with no default: empty means None.

    pydantic writes ``X | None`` as ``anyOf: [X, null]``, which the UI draws as a type switch;
    left empty, the field is left out of the parameters and validates to None. A boolean is
    offered as a choice of "on" / "off" (pydantic reads both as booleans): the UI draws a boolean
    as a switch, and an untouched switch sends false, which would overrule a configured true.
    The server checks a deployment run's parameters against this schema, so API callers send
    "on" / "off" for such a setting too; Python callers may pass True / False.
    """
    variants = schema.pop("anyOf", None)
    if variants is not None:
        (concrete,) = [variant for variant in variants if variant.get("type") != "null"]
        schema.update(concrete)
    schema.pop("default", None)
    if schema.get("type") == "boolean":
        schema.update(type="string", enum=list(BOOLEAN_CHOICES))


def empty_keeps(description: str) -> FieldInfo:
    """Return the field of an optional run parameter: None (empty in the form) keeps what is configured."""
    return Field(None, description=description, json_schema_extra=_form_shows_the_value_type)


def _default_words(item: Setting) -> str:
    """Return a setting's built-in default as the form's description says it (no quotes, no brackets)."""
    default = item.default
    if isinstance(default, bool):
        return BOOLEAN_CHOICES[0] if default else BOOLEAN_CHOICES[1]
    if isinstance(default, (list, tuple)):
        return ", ".join(str(value) for value in default)
    if isinstance(default, float):
        return f"{default:g}"
    return "none" if default is None else str(default)


def setting_field(item: Setting) -> tuple[Any, FieldInfo]:
    """Return ``(annotation, FieldInfo)`` of the form field of a setting: its bounds, empty = configured."""
    annotation, info = item.optional_field()
    described = re.sub(r"<([^<>]*)>", r"\1", item.description)  # the UI would drop <name> as an HTML tag
    info.description = f"{described} Empty: the configured value (built-in default: {_default_words(item)})."
    info.json_schema_extra = _form_shows_the_value_type
    return annotation, info


class RunParams(BaseModel):
    """Where a run reads and writes, and how long it waits for another run on the same meter."""

    model_config = ConfigDict(extra="forbid", field_title_generator=_field_title)

    root: str | None = empty_keeps(
        "Data root (local path or URI) holding landing/, store/, models/, forecasts/. "
        f"Empty: ${ENV_ROOT} of the worker, else the configuration file's root, else {DEFAULT_ROOT}/ in the "
        f"folder the deployment runs in: {REPO_ROOT / DEFAULT_ROOT}"
    )
    config_file: str | None = empty_keeps(
        f"TOML or JSON configuration file read before these parameters. Empty: ${ENV_CONFIG} of the worker, "
        "else none (built-in defaults)."
    )
    lock_timeout_s: float = Field(
        DEFAULT_LOCK_TIMEOUT_S,
        ge=0,
        le=6 * 3600,
        description="Seconds to wait when another run holds a meter's lock before failing that meter.",
    )

    # Dotted keys of the configuration settings this form carries as fields (see with_settings).
    SETTING_KEYS: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _leave_empty_fields_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The flow's default parameters (the form's initial values) must not hold None: the form
        # would show it as a "None" value instead of an empty field.
        return {name: value for name, value in handler(self).items() if value is not None}

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
    as_of: date | None = empty_keeps(
        "Local day the run acts as of: forecasts are issued at its local midnight and training uses "
        "readings before it (a backfill). Empty: the local midnight after the last complete day of readings."
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
        **{item.name: setting_field(item) for item in settings(keys)},
    )
    model.SETTING_KEYS = (*base.SETTING_KEYS, *keys)
    return model


class _LandingParams(RunParams):
    """Which landing folder to read."""

    landing_dir: str | None = empty_keeps(
        "Folder of raw files to ingest (already ingested files are skipped). Empty: landing/ under the data root."
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
    use_sample: bool = Field(
        False,
        description="Copy the bundled sample (a year of one household's real readings, two files) into the landing "
        "folder when it holds no file, then run on it: a demo night without data of your own.",
    )


NightlyParams = with_settings(
    "NightlyParams",
    _NightlyOptions,
    (*INGEST_SETTINGS, *FLEET_SETTINGS, *REGISTRY_SETTINGS),
    "Parameters of the nightly flow: ingest, retrain when there is news, forecast, publish, prune old models.",
)
