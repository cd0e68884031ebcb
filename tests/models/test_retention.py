"""Registry retention on real registry files: tiny real networks registered over several nights, then pruned.

Two meters share a global GRU each night. Meter A registers a local GRU, an LSTM, the global GRU
bound to it and a combination of its local and global GRU; it promoted night02's combination and
replaced it with night05's GRU. Meter B registers its local and global GRU, promoted night01's GRU
and has no decision history. Pruned keeping 3 runs (night04 to night06).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch
from lock_holder import lock_held_elsewhere
from model_records import model_record

from powercast.core.config import COMBINED_MODEL, PowercastConfig
from powercast.core.errors import ConfigError, RegistryError
from powercast.models.combination import CombinedForecaster
from powercast.models.registry import (
    CARD_FILE,
    CHALLENGER_VERSIONS_KEY,
    CHAMPION_AFTER_KEY,
    CHAMPION_BEFORE_KEY,
    CHAMPION_FILE,
    HISTORY_FILE,
    champion_version,
    list_versions,
    load_champion,
    load_model,
    promote,
    read_card,
    read_history,
    record_decision,
    register_model,
)
from powercast.models.retention import (
    GLOBAL_ORPHAN_GRACE_S,
    KEEP_RUNS_SETTING,
    TRASH_DIR,
    MeterPruning,
    PruneReport,
    discard_folder,
    prune_registry,
    with_combination_members,
)
from powercast.models.rnn import RNNForecaster
from powercast.prepare.series import PreparedSeries, prepare_meter
from powercast.training.fit import build_forecaster
from powercast.training.pipeline import fit_challenger, select_and_register

A, B = "sceaux_household", "meter-b"
NIGHTS = [f"night{number:02d}" for number in range(1, 7)]
KEEP_RUNS = 3
# What keeping 3 runs leaves: nights 04-06, A's champion (night05-gru) and the champion it replaced
# (night02-combo, named in a recent decision) with its members, B's champion from night01.
KEPT_A = sorted(
    [f"{night}-{cell}" for night in NIGHTS[3:] for cell in ("gru", "lstm", "gru_global", "combo")]
    + ["night02-combo", "night02-gru", "night02-gru_global"]
)
KEPT_B = sorted([f"{night}-{cell}" for night in NIGHTS[3:] for cell in ("gru", "gru_global")] + ["night01-gru"])
KEPT_GLOBAL = ["night02-gru_global", "night04-gru_global", "night05-gru_global", "night06-gru_global"]
TWO_DAYS_S = 2 * 24 * 3600
# A's champion after each night: none, night02's combination from night02, night05's GRU from night05.
A_CHAMPION_AFTER = dict(zip(NIGHTS, [None, *["night02-combo"] * 3, *["night05-gru"] * 2], strict=True))
A_CHAMPION_BEFORE = dict(zip(NIGHTS, [None, *list(A_CHAMPION_AFTER.values())[:-1]], strict=True))


@dataclass(frozen=True)
class Networks:
    """Untrained tiny networks with real weights: a GRU, an LSTM and a global GRU of meters A and B."""

    gru: RNNForecaster
    lstm: RNNForecaster
    global_gru: RNNForecaster


@pytest.fixture(scope="module")
def networks(tiny_prepared: PreparedSeries) -> Networks:
    train = PowercastConfig().with_overrides({"train.hidden_sizes": [8], "train.ensemble_members": 1}).train
    torch.manual_seed(0)
    return Networks(
        build_forecaster(tiny_prepared, train, "gru").eval(),
        build_forecaster(tiny_prepared, train, "lstm").eval(),
        build_forecaster(tiny_prepared, train, "gru", meter_ids=[A, B]).eval(),
    )


def _register(root: str, meter: str, version: str, module, prepared: PreparedSeries, config: PowercastConfig) -> None:
    run_id, _, cell = version.partition("-")
    scope = "global" if cell.endswith("_global") else "local"
    record = dataclasses.replace(model_record(prepared, config, cell.removesuffix("_global"), scope), run_id=run_id)
    register_model(root, meter, version, module, record)


def _night(root: str, night: str, networks: Networks, prepared: PreparedSeries, config: PowercastConfig) -> None:
    """Register one night's versions of both meters, as selection does, and A's decision."""
    bound = networks.global_gru.for_meter(A)
    for cell, module in (("gru", networks.gru), ("lstm", networks.lstm), ("gru_global", bound)):
        _register(root, A, f"{night}-{cell}", module, prepared, config)
    members = (f"{night}-gru", f"{night}-gru_global")
    combination = CombinedForecaster([networks.gru, bound], members)
    _register(root, A, f"{night}-{COMBINED_MODEL}", combination, prepared, config)
    _register(root, B, f"{night}-gru", networks.gru, prepared, config)
    _register(root, B, f"{night}-gru_global", networks.global_gru.for_meter(B), prepared, config)
    if A_CHAMPION_AFTER[night] != A_CHAMPION_BEFORE[night]:
        promote(root, A, A_CHAMPION_AFTER[night], night)
    if night == "night01":
        promote(root, B, "night01-gru", night)
    versions = {cell: f"{night}-{cell}" for cell in ("gru", "lstm", "gru_global", COMBINED_MODEL)}
    entry = {
        CHAMPION_BEFORE_KEY: A_CHAMPION_BEFORE[night],
        CHAMPION_AFTER_KEY: A_CHAMPION_AFTER[night],
        CHALLENGER_VERSIONS_KEY: versions,
    }
    record_decision(root, A, night, entry)


def _age(folder: Path, seconds: float) -> None:
    """Set every file and folder under ``folder`` to ``seconds`` ago (a registry written nights before)."""
    stamp = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (stamp, stamp))


@pytest.fixture()
def registry(tmp_path: Path, networks: Networks, tiny_prepared: PreparedSeries, tiny_config: PowercastConfig) -> str:
    """Six nights of meters A and B, written two days ago."""
    root = str(tmp_path / "registry")
    for night in NIGHTS:
        _night(root, night, networks, tiny_prepared, tiny_config)
    _age(Path(root) / "models", TWO_DAYS_S)
    return root


def _pruning_of(report: PruneReport, meter_id: str) -> MeterPruning:
    [pruning] = [meter for meter in report.meters if meter.meter_id == meter_id]
    return pruning


def _global_versions(root: str) -> list[str]:
    folder = Path(root) / "models" / "_global"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def _tree(root: str) -> dict[str, int]:
    """Return every file under models/ with its size in bytes."""
    models = Path(root) / "models"
    return {str(path.relative_to(models)): path.stat().st_size for path in models.rglob("*") if path.is_file()}


def test_old_versions_go_and_the_champions_rollbacks_members_and_used_global_networks_stay(registry: str) -> None:
    before = _tree(registry)
    report = prune_registry(registry, KEEP_RUNS)

    assert list_versions(registry, A) == KEPT_A
    assert list_versions(registry, B) == KEPT_B
    assert _global_versions(registry) == KEPT_GLOBAL  # night02's: A's kept combination uses it through its member
    by_meter = {meter.meter_id: meter for meter in report.meters}
    a_cells = sorted(("gru", "lstm", "gru_global", COMBINED_MODEL))
    a_removed = [f"{night}-{cell}" for night in ("night01", "night03") for cell in a_cells] + ["night02-lstm"]
    assert by_meter[A].removed == tuple(sorted(a_removed))  # night02's LSTM: in no kept combination
    b_removed = ("night01-gru_global", "night02-gru", "night02-gru_global", "night03-gru", "night03-gru_global")
    assert by_meter[B].removed == b_removed
    removed_networks = [name.partition("/")[0] for name in report.global_networks.removed]
    assert removed_networks == ["night01-gru_global", "night03-gru_global"]
    assert report.problems() == []
    after = _tree(registry)
    assert report.bytes_freed == sum(before.values()) - sum(after.values()) > 0
    assert not any(TRASH_DIR in name for name in after)


def test_kept_models_still_load_after_pruning(registry: str, tiny_prepared: PreparedSeries) -> None:
    prune_registry(registry, KEEP_RUNS)
    assert load_champion(registry, A).version == "night05-gru"
    assert load_champion(registry, B).version == "night01-gru"
    rollback = load_model(registry, A, "night02-combo")  # a combination with a global member, from before the window
    assert [member.version for member in rollback.members] == ["night02-gru", "night02-gru_global"]
    for version in KEPT_B:
        load_model(registry, B, version)


def test_pruning_again_changes_nothing(registry: str) -> None:
    prune_registry(registry, KEEP_RUNS)
    tree = _tree(registry)
    again = prune_registry(registry, KEEP_RUNS)
    assert _tree(registry) == tree
    assert again.bytes_freed == 0 and again.versions_removed == 0 and again.global_networks.removed == ()


def test_a_dry_run_removes_nothing_and_reports_what_pruning_then_removes(registry: str) -> None:
    tree = _tree(registry)
    dry = prune_registry(registry, KEEP_RUNS, dry_run=True)
    assert _tree(registry) == tree
    assert dry.dry_run and dry.versions_removed > 0
    real = prune_registry(registry, KEEP_RUNS)
    assert [(m.meter_id, m.kept, m.removed, m.bytes_freed) for m in dry.meters] == [
        (m.meter_id, m.kept, m.removed, m.bytes_freed) for m in real.meters
    ]
    assert dry.global_networks.removed == real.global_networks.removed and dry.bytes_freed == real.bytes_freed


def test_folders_left_in_the_trash_by_a_crash_are_never_listed_and_the_next_prune_removes_them(
    registry: str,
) -> None:
    models = Path(registry) / "models"
    # A prune that renamed a version and a global network into the trash and was killed before emptying it.
    discard_folder(pafs.LocalFileSystem(), str(models / A / "night01-lstm"), str(models / A / TRASH_DIR), CARD_FILE)
    [network] = (models / "_global" / "night01-gru_global").iterdir()
    discard_folder(pafs.LocalFileSystem(), str(network), str(models / "_global" / TRASH_DIR), "network.json")
    [trashed] = (models / A / TRASH_DIR).iterdir()
    assert (trashed / CARD_FILE).is_file()  # a whole version, inside the trash...
    assert TRASH_DIR not in list_versions(registry, A) and "night01-lstm" not in list_versions(registry, A)
    with pytest.raises(RegistryError, match="cannot name a registry folder"):
        read_card(registry, A, TRASH_DIR)  # ...which no reader can take for one
    before = _tree(registry)
    report = prune_registry(registry, KEEP_RUNS)
    assert not (models / A / TRASH_DIR).exists() and not (models / "_global" / TRASH_DIR).exists()
    assert list_versions(registry, A) == KEPT_A and _global_versions(registry) == KEPT_GLOBAL
    assert report.bytes_freed == sum(before.values()) - sum(_tree(registry).values())
    assert report.problems() == []


class ObjectStoreView(pafs.FileSystemHandler):
    """The local disk as pruning sees an object store: no LocalFileSystem, so no folder rename. Records the
    deletions in order; with ``fail_folder_deletes`` deleting a folder fails, as a dropped connection would."""

    def __init__(self, fail_folder_deletes: bool = False) -> None:
        self.local = pafs.LocalFileSystem()
        self.fail_folder_deletes = fail_folder_deletes
        self.deletions: list[str] = []

    def delete_file(self, path):
        self.deletions.append(f"file {Path(path).name}")
        self.local.delete_file(path)

    def delete_dir(self, path):
        self.deletions.append(f"folder {Path(path).name}")
        if self.fail_folder_deletes:
            raise OSError(f"connection reset while deleting {path}")
        self.local.delete_dir(path)

    def move(self, src, dest):
        raise OSError("an object store cannot rename a folder")

    def get_type_name(self):
        return "object-store-view"

    def normalize_path(self, path):
        return path

    def equals(self, other):
        return self is other

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not in a test")

    def copy_file(self, src, dest):
        self.local.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.local.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path, metadata=metadata)


def test_on_a_filesystem_that_cannot_rename_a_version_loses_its_card_first_then_the_rest(registry: str) -> None:
    meter_dir = Path(registry) / "models" / A
    store = ObjectStoreView()
    discard_folder(pafs.PyFileSystem(store), str(meter_dir / "night01-gru"), str(meter_dir / TRASH_DIR), CARD_FILE)
    assert store.deletions == [f"file {CARD_FILE}", "folder night01-gru"]
    assert not (meter_dir / "night01-gru").exists() and not (meter_dir / TRASH_DIR).exists()
    assert "night01-gru" not in list_versions(registry, A)


def test_a_deletion_stopped_after_the_card_leaves_a_folder_a_later_prune_removes(registry: str) -> None:
    meter_dir = Path(registry) / "models" / A
    store = ObjectStoreView(fail_folder_deletes=True)
    with pytest.raises(OSError, match="connection reset"):
        discard_folder(pafs.PyFileSystem(store), str(meter_dir / "night01-gru"), str(meter_dir / TRASH_DIR), CARD_FILE)
    assert not (meter_dir / "night01-gru" / CARD_FILE).exists() and (meter_dir / "night01-gru").is_dir()
    assert "night01-gru" not in list_versions(registry, A)  # never listed again: only the folder sweep finds it
    fresh = prune_registry(registry, KEEP_RUNS)  # the deletion changed the folder just now: within the grace
    assert (meter_dir / "night01-gru").is_dir() and _pruning_of(fresh, A).incomplete == ()
    _age(meter_dir / "night01-gru", GLOBAL_ORPHAN_GRACE_S + 60)
    report = prune_registry(registry, KEEP_RUNS)
    assert not (meter_dir / "night01-gru").exists() and _pruning_of(report, A).incomplete == ("night01-gru",)
    assert report.problems() == []


def test_a_folder_a_crashed_registration_left_without_its_card_goes_once_it_is_old(registry: str) -> None:
    meter_dir = Path(registry) / "models" / A
    crashed = meter_dir / "night07-gru"
    crashed.mkdir()
    (crashed / "weights.safetensors").write_bytes((meter_dir / "night06-gru" / "weights.safetensors").read_bytes())
    pointer, history = (meter_dir / CHAMPION_FILE).read_bytes(), (meter_dir / HISTORY_FILE).read_bytes()
    first = prune_registry(registry, KEEP_RUNS)
    assert crashed.is_dir() and _pruning_of(first, A).incomplete == ()  # it may be a version being written
    _age(crashed, GLOBAL_ORPHAN_GRACE_S + 60)
    dry = prune_registry(registry, KEEP_RUNS, dry_run=True)
    assert crashed.is_dir() and _pruning_of(dry, A).incomplete == ("night07-gru",)
    later = prune_registry(registry, KEEP_RUNS)
    assert not crashed.exists() and _pruning_of(later, A).incomplete == ("night07-gru",)
    assert _pruning_of(later, A).bytes_freed == _pruning_of(dry, A).bytes_freed
    assert (meter_dir / CHAMPION_FILE).read_bytes() == pointer and (meter_dir / HISTORY_FILE).read_bytes() == history
    assert list_versions(registry, A) == KEPT_A and not (meter_dir / TRASH_DIR).exists()


def test_the_folder_sweep_never_removes_what_the_policy_keeps_nor_a_folder_not_named_like_a_version(
    registry: str,
) -> None:
    """A champion whose card was lost keeps its weights (a repaired card needs them), and so does a person's folder."""
    meter_dir = Path(registry) / "models" / A
    champion = json.loads((meter_dir / CHAMPION_FILE).read_text())["version"]
    (meter_dir / champion / CARD_FILE).unlink()
    (meter_dir / "notes").mkdir()
    (meter_dir / "notes" / "why.txt").write_text("kept by hand")
    _age(meter_dir, GLOBAL_ORPHAN_GRACE_S + 60)
    report = prune_registry(registry, KEEP_RUNS)
    assert (meter_dir / champion).is_dir() and (meter_dir / "notes" / "why.txt").is_file()
    assert champion not in _pruning_of(report, A).incomplete and "notes" not in _pruning_of(report, A).incomplete


def test_a_global_pass_that_cannot_read_the_shared_folders_is_reported_after_the_meters_were_pruned(
    registry: str,
) -> None:
    global_dir = Path(registry) / "models" / "_global"
    moved = global_dir.with_name("_global-moved")
    global_dir.rename(moved)
    global_dir.write_text("not a folder")  # listing it fails
    report = prune_registry(registry, KEEP_RUNS)
    assert list_versions(registry, A) == KEPT_A  # the meters were pruned all the same
    assert report.global_networks.skipped and "cannot be read or changed" in report.global_networks.skipped
    assert any("_global" in problem or "global" in problem for problem in report.problems())


class TrashEmptiedByAnotherPrune(pafs.LocalFileSystem):
    """The local disk, where another prune empties the trash right after each of our first ``times`` create_dir."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def create_dir(self, path: str, recursive: bool = True) -> None:
        super().create_dir(path, recursive=recursive)
        if self.times > 0:
            self.times -= 1
            self.delete_dir(path)


def test_a_version_is_moved_into_the_trash_even_when_another_prune_empties_it_in_between(registry: str) -> None:
    meter_dir = Path(registry) / "models" / A
    discard_folder(
        TrashEmptiedByAnotherPrune(times=1), str(meter_dir / "night01-gru"), str(meter_dir / TRASH_DIR), CARD_FILE
    )
    assert not (meter_dir / "night01-gru").exists()
    [trashed] = (meter_dir / TRASH_DIR).iterdir()
    assert (trashed / CARD_FILE).is_file()


def test_a_version_the_trash_kept_vanishing_under_is_left_whole_and_the_failure_said(registry: str) -> None:
    meter_dir = Path(registry) / "models" / A
    with pytest.raises(OSError, match="night01-gru could not be moved"):
        discard_folder(
            TrashEmptiedByAnotherPrune(times=99), str(meter_dir / "night01-gru"), str(meter_dir / TRASH_DIR), CARD_FILE
        )
    assert "night01-gru" in list_versions(registry, A)


def test_a_card_that_cannot_be_read_is_kept_with_its_run_and_named_and_the_rest_is_pruned(registry: str) -> None:
    card = Path(registry) / "models" / A / "night01-gru_global" / CARD_FILE
    card.write_text('{"format": "powercast.model/4", "trunc')
    report = prune_registry(registry, KEEP_RUNS)
    night01 = [f"night01-{cell}" for cell in ("gru", "lstm", "gru_global", COMBINED_MODEL)]
    assert list_versions(registry, A) == sorted([*KEPT_A, *night01])  # it might be a member of any of its run
    # It might name night01's global network: that folder stays while the card does.
    assert _global_versions(registry) == sorted(["night01-gru_global", *KEPT_GLOBAL])
    [problem] = report.problems()
    assert str(card) in problem and "not valid JSON" in problem
    assert {meter.meter_id: meter for meter in report.meters}[A].unreadable.keys() == {"night01-gru_global"}


def _rewrite_card(root: str, meter: str, version: str, **changes: object) -> None:
    path = Path(root) / "models" / meter / version / CARD_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("damage", ["a newer format", "bytes that are no JSON"])
def test_an_unreadable_champion_combination_keeps_its_members_and_its_run(registry: str, damage: str) -> None:
    promote(registry, A, "night02-combo", "night07")
    card = read_card(registry, A, "night02-combo")
    if damage == "a newer format":  # still JSON: the members it names are kept, wherever they are
        hparams = {**card["hparams"], "member_versions": [*card["hparams"]["member_versions"], "night01-gru"]}
        _rewrite_card(registry, A, "night02-combo", format="powercast.model/9", hparams=hparams)
    else:
        (Path(registry) / "models" / A / "night02-combo" / CARD_FILE).write_bytes(b"\x00\x80 not a card")
    report = prune_registry(registry, KEEP_RUNS)
    also_kept = ["night02-lstm"] + (["night01-gru"] if damage == "a newer format" else [])
    assert list_versions(registry, A) == sorted([*KEPT_A, *also_kept])
    assert champion_version(registry, A) == "night02-combo"
    [problem] = report.problems()
    assert "night02-combo" in problem and problem.startswith(f"meter {A!r}: kept night02-combo")


def test_runs_are_ordered_by_their_decisions_not_by_a_clock_that_ran_ahead(registry: str) -> None:
    # night01 was trained on a host whose clock said 2099: its cards look the newest of all.
    for cell in ("gru", "lstm", "gru_global", COMBINED_MODEL):
        _rewrite_card(registry, A, f"night01-{cell}", created_at="2099-01-01T00:00:00+00:00")
    _rewrite_card(registry, B, "night02-gru", created_at="2099-01-01T00:00:00+00:00")
    prune_registry(registry, KEEP_RUNS)
    assert list_versions(registry, A) == KEPT_A  # A's decisions say night01 is the oldest night
    # B recorded no decision: only its cards' clocks order its runs, and night02 takes night04's place.
    night02, night04 = {"night02-gru", "night02-gru_global"}, {"night04-gru", "night04-gru_global"}
    assert list_versions(registry, B) == sorted(set(KEPT_B) - night04 | night02)


def test_a_meter_whose_champion_pointer_is_damaged_is_left_whole_and_named(registry: str) -> None:
    (Path(registry) / "models" / B / CHAMPION_FILE).write_text("{not json")
    versions = list_versions(registry, B)
    report = prune_registry(registry, KEEP_RUNS)
    assert list_versions(registry, B) == versions
    assert list_versions(registry, A) == KEPT_A
    # B's cards still count: every global network one of them names stays.
    assert _global_versions(registry) == [f"{night}-gru_global" for night in NIGHTS]
    [problem] = report.problems()
    assert f"meter {B!r} not pruned" in problem and CHAMPION_FILE in problem


@pytest.mark.parametrize("damaged_file", [CHAMPION_FILE, HISTORY_FILE])
def test_a_meter_whose_pointer_or_history_is_not_utf8_is_skipped_and_the_others_are_pruned(
    registry: str, damaged_file: str
) -> None:
    path = Path(registry) / "models" / A / damaged_file
    path.write_bytes(b"\x80\x81" + path.read_bytes())  # not UTF-8: a disk or copy that mangled it
    reader = champion_version if damaged_file == CHAMPION_FILE else read_history
    with pytest.raises(RegistryError, match=str(path)):
        reader(registry, A)
    versions = list_versions(registry, A)
    report = prune_registry(registry, KEEP_RUNS)
    assert list_versions(registry, A) == versions
    assert list_versions(registry, B) == KEPT_B
    [problem] = report.problems()
    assert f"meter {A!r} not pruned" in problem and damaged_file in problem


def test_a_meter_another_run_is_writing_is_skipped(registry: str) -> None:
    with lock_held_elsewhere(registry, A, holder="night07"):
        report = prune_registry(registry, KEEP_RUNS, lock_timeout_s=0)
    assert len(list_versions(registry, A)) == 4 * len(NIGHTS)
    assert list_versions(registry, B) == KEPT_B
    [problem] = report.problems()
    assert f"meter {A!r} not pruned" in problem and "night07" in problem


def test_an_unused_global_network_is_kept_while_it_is_new_then_removed(
    registry: str, networks: Networks, tiny_prepared: PreparedSeries, tiny_config: PowercastConfig
) -> None:
    # register_model writes the shared folder before the card naming it: seen between the two, it is unused.
    _register(registry, A, "night07-gru_global", networks.global_gru.for_meter(A), tiny_prepared, tiny_config)
    (Path(registry) / "models" / A / "night07-gru_global" / CARD_FILE).unlink()
    report = prune_registry(registry, KEEP_RUNS)
    assert [name.partition("/")[0] for name in report.global_networks.too_new] == ["night07-gru_global"]
    assert "night07-gru_global" in _global_versions(registry)
    _age(Path(registry) / "models" / "_global" / "night07-gru_global", GLOBAL_ORPHAN_GRACE_S + 60)
    later = prune_registry(registry, KEEP_RUNS)
    assert [name.partition("/")[0] for name in later.global_networks.removed] == ["night07-gru_global"]
    assert _global_versions(registry) == KEPT_GLOBAL


def test_nights_of_the_real_selection_keep_the_champion_it_replaced_and_lose_the_night_between(
    tiny_config: PowercastConfig,
) -> None:
    """The history the library's selection writes (its keys, its decisions), pruned to one run."""
    config = tiny_config.with_overrides({"train.max_epochs": 4, "train.patience_epochs": 4})
    prepared = prepare_meter(config, A)
    fits = {cell: fit_challenger(config, prepared, cell, "fits", progress=False) for cell in ("gru", "lstm")}
    # The GRU beats the baselines (night1), ties with itself (night2); the GRU + LSTM mean beats it (night3).
    for run_id, cells in (("night1", ["gru"]), ("night2", ["gru"]), ("night3", ["gru", "lstm"])):
        select_and_register(config, A, run_id, prepared, [fits[cell] for cell in cells])
    last = read_history(config.root, A)[-1]
    rollback, champion = last[CHAMPION_BEFORE_KEY], last[CHAMPION_AFTER_KEY]
    assert (rollback, champion) == ("night1-gru", "night3-combo"), last.get("reason")
    report = prune_registry(config.root, 1)
    assert list_versions(config.root, A) == ["night1-gru", "night3-combo", "night3-gru", "night3-lstm"]
    assert report.meters[0].removed == ("night2-gru",) and report.problems() == []
    assert champion_version(config.root, A) == champion
    assert load_model(config.root, A, rollback).version == rollback  # still there to roll back to


def test_a_rerun_night_whose_global_network_changed_frees_the_network_no_card_names_any_more(
    registry: str, tiny_prepared: PreparedSeries, tiny_config: PowercastConfig
) -> None:
    global_dir = Path(registry) / "models" / "_global" / "night06-gru_global"
    [old_network] = [path.name for path in global_dir.iterdir()]
    train = PowercastConfig().with_overrides({"train.hidden_sizes": [8], "train.ensemble_members": 1}).train
    torch.manual_seed(1)
    rerun = build_forecaster(tiny_prepared, train, "gru", meter_ids=[A, B]).eval()  # other weights, same run id
    for meter in (A, B):
        _register(registry, meter, "night06-gru_global", rerun.for_meter(meter), tiny_prepared, tiny_config)
    [new_network] = [path.name for path in global_dir.iterdir() if path.name != old_network]
    _age(Path(registry) / "models", TWO_DAYS_S)
    report = prune_registry(registry, KEEP_RUNS)
    removed = report.global_networks.removed
    versions = [name.partition("/")[0] for name in removed]
    assert versions == ["night01-gru_global", "night03-gru_global", "night06-gru_global"]
    assert removed[-1] == f"night06-gru_global/{old_network}"
    assert [path.name for path in global_dir.iterdir()] == [new_network]
    load_model(registry, A, "night06-gru_global")


def test_combination_members_are_kept_transitively() -> None:
    cards = {
        "n1-combo": {"cell": COMBINED_MODEL, "hparams": {"member_versions": ["n1-gru", "n1-inner"]}},
        "n1-inner": {"cell": COMBINED_MODEL, "hparams": {"member_versions": ["n1-lstm", "n1-gru"]}},
        "n1-gru": {"cell": "gru", "hparams": {}},
        "n1-lstm": {"cell": "lstm", "hparams": {}},
        "n1-hgb": {"cell": "hgb", "hparams": {}},
    }
    members = {version: card["hparams"].get("member_versions", []) for version, card in cards.items()}
    assert with_combination_members({"n1-combo"}, members.__getitem__) == {"n1-combo", "n1-inner", "n1-gru", "n1-lstm"}


KEEP_RUNS_MAX = next(constraint.le for constraint in KEEP_RUNS_SETTING.field.metadata if hasattr(constraint, "le"))


@pytest.mark.parametrize("keep_runs", [0, -1, KEEP_RUNS_MAX + 1])
def test_a_keep_count_out_of_the_declared_bounds_fails_naming_the_setting(registry: str, keep_runs: int) -> None:
    with pytest.raises(ConfigError, match=r"registry\.keep_runs"):
        prune_registry(registry, keep_runs)
    with pytest.raises(ConfigError, match=r"registry\.keep_runs"):
        PowercastConfig().with_overrides({"registry.keep_runs": keep_runs})
    assert len(list_versions(registry, A)) == 4 * len(NIGHTS)


def _run_folders(root: str, ages_s: dict[str, float]) -> None:
    """Write a run folder per run id (a meter's leaderboard and a training log, as a night leaves them), aged."""
    for run_id, age_s in ages_s.items():
        folder = Path(root) / "runs" / run_id
        (folder / A / "gru" / "csv").mkdir(parents=True)
        (folder / A / "leaderboard.json").write_text('{"rows": []}', encoding="utf-8")
        (folder / A / "gru" / "csv" / "metrics.csv").write_text("epoch,val_mae\n0,0.5\n", encoding="utf-8")
        _age(folder, age_s)


def test_run_folders_go_with_their_runs_last_version_but_the_newest_and_a_running_one_stay(registry: str) -> None:
    # Nights 01-06 trained two days ago, in order; a night that failed for every meter (no version)
    # yesterday; a night training now (its versions come at its end). Keeping 3 runs: night03 has
    # no version left after pruning, and it is not among the 3 newest folders.
    ages_s = {night: TWO_DAYS_S + (len(NIGHTS) - index) * 3600 for index, night in enumerate(NIGHTS)}
    _run_folders(registry, {**ages_s, "failed-night": TWO_DAYS_S / 2, "training-now": 0})
    old_failure = {"failed-before": 3 * TWO_DAYS_S}  # a failed night older than the newest 3: its logs go
    _run_folders(registry, old_failure)

    dry = prune_registry(registry, KEEP_RUNS, dry_run=True)
    assert dry.runs.removed == ("failed-before", "night03") and (Path(registry) / "runs" / "night03").is_dir()

    # A nightly prune of some meters judges the runs on every meter: A still holds night03's versions.
    first = prune_registry(registry, KEEP_RUNS, meter_ids=[B])
    assert first.runs.removed == ("failed-before",)
    report = prune_registry(registry, KEEP_RUNS)
    assert report.runs.removed == ("night03",)
    assert first.runs.bytes_freed + report.runs.bytes_freed == dry.runs.bytes_freed > 0
    left = sorted(path.name for path in (Path(registry) / "runs").iterdir())
    # night01: B's champion; night02: A's replaced champion (a rollback target); 04-06: kept runs;
    # failed-night and training-now: the 3 newest folders with night06.
    assert left == ["failed-night", "night01", "night02", "night04", "night05", "night06", "training-now"]
    assert report.problems() == []


def test_a_run_folder_holding_more_than_training_logs_stays(registry: str) -> None:
    # `powercast train --preset seed` writes its report under runs/<run_id>/seed/: no meter, no version.
    _run_folders(registry, {"seed-run": TWO_DAYS_S, "old-night": TWO_DAYS_S, **{f"new-{i}": 0.0 for i in range(3)}})
    seed = Path(registry) / "runs" / "seed-run" / "seed"
    seed.mkdir()
    (seed / "seed_report.md").write_text("# seed preset\n", encoding="utf-8")
    _age(Path(registry) / "runs" / "seed-run", TWO_DAYS_S)
    report = prune_registry(registry, KEEP_RUNS)
    assert report.runs.removed == ("old-night",) and "seed-run" in report.runs.kept
    assert (seed / "seed_report.md").is_file()


def test_a_run_folder_changed_within_the_grace_period_stays_however_many_runs_are_newer(registry: str) -> None:
    _run_folders(registry, {"slow-night": 60.0, "newer-1": 30.0, "newer-2": 10.0, "newer-3": 0.0})
    report = prune_registry(registry, 1)
    assert "slow-night" in report.runs.kept and report.runs.removed == ()
    assert prune_registry(registry, 1, orphan_grace_s=0).runs.removed == ("newer-1", "newer-2", "slow-night")
