"""Per-run settings are read from the config models: one declaration feeds the CLI and the forms."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError, create_model

from powercast.cli.options import add_setting_options, setting_overrides
from powercast.core.config import CELL_NAMES, PowercastConfig
from powercast.core.errors import ConfigError
from powercast.core.settings import TRAINING_SETTINGS, setting, settings


def test_a_setting_carries_the_config_fields_default_bounds_and_title() -> None:
    max_epochs = setting("train.max_epochs")
    assert max_epochs.default == PowercastConfig().train.max_epochs
    assert max_epochs.title == "Max epochs"
    assert max_epochs.scalar_type() == (int, None, False)
    assert setting("train.cells").scalar_type() == (str, CELL_NAMES, True)


def test_unknown_keys_are_refused_naming_them() -> None:
    with pytest.raises(ConfigError, match="train.max_epoch'"):
        setting("train.max_epoch")
    with pytest.raises(ConfigError, match="section 'trian'"):
        setting("trian.max_epochs")


def test_a_form_field_keeps_the_bounds_and_leaves_empty_to_the_configuration() -> None:
    form = create_model("Form", **{item.name: item.optional_field() for item in settings(TRAINING_SETTINGS)})
    assert form().max_epochs is None
    with pytest.raises(ValidationError, match="max_epochs"):
        form(max_epochs=1001)  # the config field's le=1000
    with pytest.raises(ValidationError, match="hidden_sizes"):
        form(hidden_sizes=[0])  # each hidden size is bounded like the config's
    schema = form.model_json_schema()["properties"]["max_time_s"]
    assert schema["title"] == "Time budget per model (s)"
    assert "default 1800" in schema["description"]


def test_cli_options_map_onto_dotted_keys() -> None:
    parser = argparse.ArgumentParser()
    items = settings(TRAINING_SETTINGS)
    add_setting_options(parser, items)
    args = parser.parse_args(["--max-epochs", "3", "--cells", "lstm", "--no-refit-on-validation", "--hidden-sizes", "16", "8"])
    overrides = setting_overrides(args, items)
    assert overrides == {
        "train.max_epochs": 3,
        "train.cells": ["lstm"],
        "train.refit_on_validation": False,
        "train.hidden_sizes": [16, 8],
    }
    config = PowercastConfig().with_overrides(overrides)
    assert (config.train.max_epochs, config.train.refit_on_validation) == (3, False)


def test_cli_values_out_of_bounds_fail_naming_the_key() -> None:
    parser = argparse.ArgumentParser()
    items = settings(TRAINING_SETTINGS)
    add_setting_options(parser, items)
    with pytest.raises(SystemExit):
        parser.parse_args(["--cells", "rnn"])  # not a cell: argparse lists the choices
    overrides = setting_overrides(parser.parse_args(["--max-epochs", "0"]), items)
    with pytest.raises(ConfigError, match="train.max_epochs"):
        PowercastConfig().with_overrides(overrides)
