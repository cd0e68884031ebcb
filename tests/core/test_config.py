from __future__ import annotations

import json
from pathlib import Path

import pytest

from powercast.core.config import PowercastConfig, load_config
from powercast.core.errors import ConfigError


def test_defaults_put_the_root_under_var() -> None:
    assert load_config(environ={}).root == "var"


def test_environment_root_overrides_default() -> None:
    assert load_config(environ={"POWERCAST_ROOT": "/data/pc"}).root == "/data/pc"


def test_explicit_override_beats_environment() -> None:
    config = load_config(environ={"POWERCAST_ROOT": "/a"}, overrides={"root": "/b", "train.max_epochs": 3})
    assert (config.root, config.train.max_epochs) == ("/b", 3)


def test_file_values_are_loaded(tmp_path: Path) -> None:
    file = tmp_path / "pc.json"
    file.write_text(json.dumps({"prepare": {"lookback_steps": 48}}))
    assert load_config(file, environ={}).prepare.lookback_steps == 48


def test_invalid_value_names_the_parameter() -> None:
    with pytest.raises(ConfigError, match="train.max_epochs"):
        load_config(environ={}, overrides={"train.max_epochs": 0})


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match="train.epochz"):
        PowercastConfig().with_overrides({"train.epochz": 3})


def test_dates_split_needs_both_dates() -> None:
    with pytest.raises(ConfigError, match="val_end"):
        load_config(environ={}, overrides={"prepare.split": {"mode": "dates", "train_end": "2009-07-01"}})


def test_bad_timezone_is_rejected_with_advice() -> None:
    with pytest.raises(ConfigError, match="prepare.local_timezone.*Europe/Paris"):
        load_config(environ={}, overrides={"prepare.local_timezone": "Mars/Olympus"})
