"""The flows' parameter forms: bounds rejected with the field's name, values mapped onto the config."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.params import REPO_ROOT, ForecastParams, IngestParams, NightlyParams, TrainParams


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
        # No default in the form: an empty field is left out of the run's parameters (None: the configured value).
        assert "default" not in properties[item.name]
        assert "Empty: the configured value (built-in default: " in properties[item.name]["description"]


FORMS = (IngestParams, TrainParams, ForecastParams, NightlyParams)


@pytest.mark.parametrize("form", FORMS, ids=lambda form: form.__name__)
def test_the_form_offers_no_type_switch_and_no_angle_brackets(form: type) -> None:
    # The UI draws `X | None` (anyOf with null) as a type switch reading 'Property is type "None"',
    # and drops `<root>` from a description like an unknown HTML tag.
    for name, schema in form.model_json_schema()["properties"].items():
        assert "anyOf" not in schema and schema.get("type") != "null", name
        assert "<" not in schema["description"] and ">" not in schema["description"], name
        assert schema.get("default", "empty") is not None, name


@pytest.mark.parametrize("form", FORMS, ids=lambda form: form.__name__)
def test_an_untouched_form_starts_with_no_empty_value(form: type) -> None:
    # The flow's default parameters are the form's initial values: a None there reads as a "None" value.
    assert None not in form().model_dump().values()


def test_a_fixed_set_of_choices_is_an_enum_in_the_form() -> None:
    properties = NightlyParams.model_json_schema()["properties"]
    assert properties["accelerator"]["enum"] == ["auto", "cpu", "gpu"]
    assert properties["task_runner"]["enum"] == ["sequential", "dask"]
    assert properties["cells"]["items"]["enum"] == ["gru", "lstm", "hgb"]


def test_a_boolean_setting_is_on_off_or_empty(tmp_path: Path) -> None:
    # A switch cannot be empty (untouched it sends false): the form offers on / off, empty keeps the configured value.
    schema = TrainParams.model_json_schema()["properties"]["refit_on_validation"]
    assert (schema["type"], schema["enum"]) == ("string", ["on", "off"])
    assert schema["description"].endswith("(built-in default: on).")
    assert TrainParams(root=str(tmp_path), refit_on_validation="off").load_config().train.refit_on_validation is False
    assert TrainParams(root=str(tmp_path), refit_on_validation=True).load_config().train.refit_on_validation is True
    config_file = tmp_path / "powercast.toml"
    config_file.write_text("[train]\nrefit_on_validation = false\n", encoding="utf-8")
    assert TrainParams(config_file=str(config_file)).load_config().train.refit_on_validation is False


def test_the_data_root_says_what_empty_resolves_to() -> None:
    description = NightlyParams.model_json_schema()["properties"]["root"]["description"]
    assert "$POWERCAST_ROOT" in description
    assert description.endswith(str(REPO_ROOT / "var"))


def test_the_nightly_form_has_a_sample_toggle_off_by_default() -> None:
    schema = NightlyParams.model_json_schema()["properties"]["use_sample"]
    assert (schema["type"], schema["default"], schema["title"]) == ("boolean", False, "Use the bundled sample")
    assert NightlyParams().use_sample is False
