"""The flows' parameter forms: bounds rejected with the field's name, values mapped onto the config."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.params import ForecastParams, NightlyParams, TrainParams


def test_out_of_bounds_epochs_are_rejected_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="max_epochs"):
        TrainParams(max_epochs=0)


def test_unknown_parameter_is_rejected() -> None:
    with pytest.raises(ValidationError, match="max_epoch"):
        NightlyParams.model_validate({"max_epoch": 3})


def test_meter_id_that_cannot_be_a_file_name_is_rejected() -> None:
    with pytest.raises(ValidationError, match="meters"):
        ForecastParams(meters=["../etc"])


def test_training_parameters_reach_the_configuration(tmp_path: Path) -> None:
    params = NightlyParams(
        root=str(tmp_path),
        cells=["lstm"],
        horizon_steps=12,
        lookback_steps=48,
        hidden_sizes=[16, 8],
        max_epochs=2,
        max_time_s=30,
        accelerator="cpu",
    )
    config = params.load_config()
    assert config.root == str(tmp_path)
    assert config.train.cells == ["lstm"]
    assert (config.prepare.horizon_steps, config.prepare.lookback_steps) == (12, 48)
    assert config.train.hidden_sizes == [16, 8]
    assert (config.train.max_epochs, config.train.max_time_s, config.train.accelerator) == (2, 30, "cpu")


def test_empty_parameters_keep_the_configuration_file_values(tmp_path: Path) -> None:
    config_file = tmp_path / "powercast.toml"
    config_file.write_text("[train]\nmax_epochs = 7\n", encoding="utf-8")
    config = TrainParams(root=str(tmp_path), config_file=str(config_file)).load_config()
    assert config.train.max_epochs == 7


def test_as_of_is_local_midnight_in_utc(tmp_path: Path) -> None:
    params = ForecastParams(root=str(tmp_path), as_of=date(2010, 11, 25))
    config = params.load_config().with_overrides({"prepare.local_timezone": "Europe/Paris"})
    assert params.as_of_utc(config) == datetime(2010, 11, 24, 23, 0, tzinfo=timezone.utc)


def test_form_schema_carries_titles_descriptions_and_bounds() -> None:
    schema = TrainParams.model_json_schema()["properties"]["lock_timeout_s"]
    assert schema["title"] == "Lock timeout (s)"
    assert schema["minimum"] == 0 and schema["maximum"] == 6 * 3600
    assert "lock" in schema["description"]


def test_every_training_setting_is_a_form_field_with_the_config_title() -> None:
    from powercast.core.settings import TRAINING_SETTINGS, settings

    properties = NightlyParams.model_json_schema()["properties"]
    for item in settings(TRAINING_SETTINGS):
        assert properties[item.name]["title"] == item.title
        assert properties[item.name]["default"] is None  # empty: the configured value
