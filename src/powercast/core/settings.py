"""The settings a person may change per run, derived from the config models.

A setting is declared once, as a field of a section of ``PowercastConfig`` (name, type,
default, bounds, title, description). The CLI options (``powercast.cli.options``) and the
Prefect parameter forms (``flows/params.py``) are built from the ``Setting`` records here, so a
new per-run setting is one dotted key added to a tuple below.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from powercast.core.config import PowercastConfig
from powercast.core.errors import ConfigError

# What an ingest (and the nightly run's ingest) lets a person change.
INGEST_SETTINGS: tuple[str, ...] = ("ingest.channel_meters",)

# What `powercast prepare` lets a person try on a meter.
PREPARE_SETTINGS: tuple[str, ...] = (
    "prepare.freq",
    "prepare.lookback_steps",
    "prepare.horizon_steps",
    "prepare.max_interpolate_gap_steps",
)

# How the nightly run spreads per-meter work.
FLEET_SETTINGS: tuple[str, ...] = ("fleet.task_runner", "fleet.dask_address", "fleet.dask_workers")

# How much of the model registry a night (and `powercast models prune`) keeps.
REGISTRY_SETTINGS: tuple[str, ...] = ("registry.keep_runs",)

# The training settings that matter only when global networks train on a fleet (train.scope global or both).
FLEET_TRAINING_SETTINGS: tuple[str, ...] = (
    "train.scope",
    "train.global_steps_per_epoch",
    "train.global_devices",
    "train.global_hidden_sizes",
    "train.meter_embedding_dim",
    "train.local_meters",
)

# What the train and nightly runs let a person change, in form order.
TRAINING_SETTINGS: tuple[str, ...] = (
    "train.cells",
    "prepare.horizon_steps",
    "prepare.lookback_steps",
    "train.hidden_sizes",
    "train.batch_size",
    "train.max_epochs",
    "train.ensemble_members",
    "train.refit_on_validation",
    "train.max_time_s",
    "train.cpu_threads",
    "train.accelerator",
    *FLEET_TRAINING_SETTINGS,
)


@dataclass(frozen=True)
class Setting:
    """One configuration field reachable by a dotted key (``train.max_epochs``)."""

    key: str
    field: FieldInfo

    @property
    def name(self) -> str:
        """Return the field's own name: the form field and, in kebab case, the CLI option."""
        return self.key.rpartition(".")[2]

    @property
    def default(self) -> Any:
        """Return the built-in default (the value a fresh ``PowercastConfig`` holds)."""
        return self.field.get_default(call_default_factory=True)

    @property
    def title(self) -> str:
        """Return the label people see (the field's title, else its name in words)."""
        return self.field.title or self.name.replace("_", " ").capitalize()

    @property
    def default_text(self) -> str:
        """Return the built-in default as people read it (``12``, ``1800``, ``'auto'``, ``['gru', 'lstm']``)."""
        default = self.default
        return f"{default:g}" if isinstance(default, float) else repr(default)

    @property
    def description(self) -> str:
        """Return the field's description (its title when it has none)."""
        return self.field.description or self.title

    def scalar_type(self) -> tuple[type, tuple[Any, ...] | None, bool]:
        """Return ``(python type, allowed values or None, is a list)`` of the setting's values."""
        annotation = self.field.annotation
        if get_origin(annotation) in (Union, UnionType):  # ``str | None``: the value's type is the other one
            (annotation,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        is_list = get_origin(annotation) is list
        if is_list:
            (annotation,) = get_args(annotation)
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        if get_origin(annotation) is Literal:
            choices = get_args(annotation)
            return type(choices[0]), choices, is_list
        return annotation, None, is_list

    def optional_field(self) -> tuple[Any, FieldInfo]:
        """Return ``(annotation, FieldInfo)`` of a form field for this setting: same bounds, empty = configured."""
        info = copy.copy(self.field)
        info.default = None
        info.default_factory = None
        info.title = self.title
        info.description = f"{self.description} (default {self.default_text}; empty: the configured value)"
        return Optional[self.field.annotation], info  # noqa: UP045 - a runtime type, not an annotation


def setting(key: str) -> Setting:
    """Return the ``Setting`` for a dotted key, or raise ``ConfigError`` naming the unknown part."""
    model: type[BaseModel] = PowercastConfig
    *sections, leaf = key.split(".")
    for section in sections:
        field = model.model_fields.get(section)
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            raise ConfigError(f"unknown configuration section {section!r} in setting {key!r}")
        model = inner
    if leaf not in model.model_fields:
        raise ConfigError(f"unknown configuration key {key!r}")
    return Setting(key, model.model_fields[leaf])


def settings(keys: tuple[str, ...]) -> tuple[Setting, ...]:
    """Return the ``Setting`` of each dotted key, in order."""
    return tuple(setting(key) for key in keys)


__all__ = [
    "FLEET_SETTINGS",
    "INGEST_SETTINGS",
    "PREPARE_SETTINGS",
    "REGISTRY_SETTINGS",
    "FLEET_TRAINING_SETTINGS",
    "TRAINING_SETTINGS",
    "Setting",
    "setting",
    "settings",
]
