"""A champion whose files were damaged on disk: that meter falls back (and says which file), nothing else stops.

Each case damages a copy of the champion the pipeline really wrote (``champion_root``): a
truncated weights file, a weights file with one byte flipped (same size, still parses), a
truncated card, a card that is JSON but not a card.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from powercast.core.config import PowercastConfig
from powercast.core.errors import RegistryError
from powercast.models.registry import CARD_FILE, WEIGHTS_FILE, champion_version, load_model
from powercast.serving.forecast import FALLBACK_FAMILY, make_forecast_batch
from powercast.training.pipeline import train_meter

METER = "sceaux_household"
VERSION = "fixture-gru"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_middle_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _not_a_card(path: Path) -> None:
    path.write_text(json.dumps(["not", "a", "card"]))


def _card_without_interval(path: Path) -> None:
    card = json.loads(path.read_text())
    del card["interval"]
    path.write_text(json.dumps(card))


DAMAGES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "truncated weights": (WEIGHTS_FILE, _truncate, "do not match the sha256"),
    "flipped weights byte": (WEIGHTS_FILE, _flip_middle_byte, "do not match the sha256"),
    "truncated card": (CARD_FILE, _truncate, "is not valid JSON"),
    "card is a list": (CARD_FILE, _not_a_card, "not a model card"),
    "card misses a key": (CARD_FILE, _card_without_interval, "is damaged (KeyError"),
}


@pytest.fixture(params=sorted(DAMAGES))
def damaged(
    request: pytest.FixtureRequest, champion_root: str, champion_overrides: dict[str, object], tmp_path: Path
) -> tuple[PowercastConfig, Path, str]:
    """A copy of the champion's data root with one file damaged; returns (config, damaged file, expected message)."""
    root = tmp_path / "root"
    shutil.copytree(champion_root, root)
    file_name, damage, message = DAMAGES[request.param]
    path = root / "models" / METER / VERSION / file_name
    damage(path)
    return PowercastConfig(root=str(root)).with_overrides(champion_overrides), path, message


def test_loading_a_damaged_model_names_the_file(damaged: tuple[PowercastConfig, Path, str]) -> None:
    config, path, message = damaged
    with pytest.raises(RegistryError, match=re.escape(message)) as raised:
        load_model(config.root, METER, VERSION)
    assert str(path) in str(raised.value)


def test_a_damaged_champion_is_forecast_by_the_fallback_which_names_the_file(
    damaged: tuple[PowercastConfig, Path, str],
) -> None:
    config, path, _ = damaged
    batch = make_forecast_batch(config, METER, None, run_id="night-after-damage")
    assert set(batch.table["model"].to_pylist()) <= set(FALLBACK_FAMILY.values())
    assert batch.table.num_rows == config.prepare.horizon_steps
    (note,) = batch.notes
    assert "the champion cannot be loaded" in note and str(path) in note


def test_training_replaces_a_damaged_champion(
    champion_root: str, champion_overrides: dict[str, object], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(champion_root, root)
    _truncate(root / "models" / METER / VERSION / WEIGHTS_FILE)
    config = PowercastConfig(root=str(root)).with_overrides(champion_overrides)
    outcome = train_meter(config, METER, "after-damage", progress=False)
    assert outcome.decision.promoted, outcome.decision.reason
    assert "the champion in service is damaged and was not compared" in outcome.decision.reason
    assert champion_version(str(root), METER) == "after-damage-gru"
    load_model(str(root), METER, "after-damage-gru")
