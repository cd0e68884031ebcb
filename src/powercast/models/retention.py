"""Registry retention: prune the model versions of old training runs and the global networks no card uses.

Every night writes one version folder per contestant under ``models/<meter_id>/`` and a global
network's weights under ``models/_global/<version>/<network_id>/``; nothing else ever removes
them. The policy (``registry.keep_runs``, default 14) keeps, for each meter:

* the versions of its last ``keep_runs`` training runs. A version's run is its name without the
  last ``-<cell>`` (``registry.version_name`` names every version ``<run_id>-<cell>``). Runs are
  ordered by their decision's position in ``history.jsonl`` (a later line is a later night, whatever
  clock stamped the cards); runs without a decision there (a night that stopped before deciding,
  cards from before decisions were recorded) count as older than every decided run, newest first
  by their cards' newest ``created_at``. A run is a night that trained the meter, so a meter left
  untrained for a month still keeps its last 14 trainings;
* its champion (``champion.json``), however old;
* every version named in its last ``keep_runs`` decisions (the champion before and after, the
  challengers), so that the champion a night replaced stays a rollback target;
* the members of every kept combination (``hparams.member_versions``), transitively;
* a version whose card cannot be read (never delete what cannot be read), with every version of
  its run (a combination's members are always versions of its own run) and, when its JSON parses,
  the members it names: it is reported.

Cards are read only where the policy needs them (a card at 15-minute steps is 0.36 MB, and a
meter holds some 70): the cards of versions it would delete (to keep an unreadable one), of
combinations kept without their run (a champion or rollback target from an older run: their
members), and of runs without a decision (their ``created_at``). A combination kept with its whole
run is not read: its members are beside it.

A ``models/_global/<version>/<network_id>/`` folder is kept while some meter holds a card of that
version: ``register_model`` files a global network under the version of the meter card that names
it. Only when a version holds more than one network (a re-run of its run id with other weights)
are the cards of that version read, to see which network each names (one that cannot be read
keeps them all). An unreferenced folder younger than ``GLOBAL_ORPHAN_GRACE_S`` is kept too:
``register_model`` writes the shared folder before the card that names it.

A ``runs/<run_id>/`` folder (leaderboards, loss curves, training logs) goes once no meter holds a
version of its run, unless it is among the newest ``keep_runs`` run folders (a night that failed
for every meter registered nothing; its logs are what its morning needs) or changed within
``GLOBAL_ORPHAN_GRACE_S`` (a night still training registers its versions at its end).

A folder under ``models/<meter_id>/`` without ``model.json`` is never listed, so nothing else
would remove it: one in which nothing changed for ``GLOBAL_ORPHAN_GRACE_S`` (a ``register_model``
that died before its card, a deletion on an object store that stopped after the card) is removed.

Crash safety: a version folder is first renamed (atomically, on a local disk) into the meter's
``.trash/`` folder, then removed. ``list_versions`` lists only folders holding ``model.json``
directly, so a folder in ``.trash/`` is never listed, and ``.trash`` can be no version, meter id
or network id (those start with a letter or digit). A prune interrupted half-way leaves its
folders in ``.trash/``; the next prune removes them. A filesystem that cannot rename a folder (an
object store) removes the card first, so the version stops being listed before its weights go;
what a deletion stopped half-way leaves is a folder without a card, removed by a later prune.

Concurrency: a meter is pruned under its write lock (``powercast.io.locking.meter_lock``, local
roots; on a URI root no lock exists, as for training), the lock every training and promotion of
that meter holds, so pruning never races a run writing it. A meter whose lock stays busy is
skipped and reported, and so is one whose champion pointer or history cannot be read: nothing of
it is deleted. The ``_global`` folders are shared by every meter and have no lock of their own:
they are pruned after the meters, and not at all when the meters' folders cannot be read.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs as pafs

from powercast.core.config import CELL_NAMES, COMBINED_MODEL
from powercast.core.errors import ConfigError, LockedError, RegistryError
from powercast.core.schemas import METER_ID_PATTERN
from powercast.core.settings import REGISTRY_SETTINGS, Setting, settings
from powercast.io import layout
from powercast.io.atomic import is_uri, read_bytes, resolve_filesystem
from powercast.io.locking import DEFAULT_LOCK_TIMEOUT_S, meter_lock
from powercast.models.registry import (
    CARD_FILE,
    CHALLENGER_VERSIONS_KEY,
    CHAMPION_AFTER_KEY,
    CHAMPION_BEFORE_KEY,
    GLOBAL_NETWORK_FILE,
    GLOBAL_NETWORK_KEY,
    NETWORK_ID_HEX_CHARS,
    champion_version,
    list_versions,
    read_card,
    read_history,
)

# registry.keep_runs as declared once (core.config.RegistryConfig, listed in REGISTRY_SETTINGS):
# its dotted key and bounds are read from there, never written here a second time.
(KEEP_RUNS_SETTING,) = settings(REGISTRY_SETTINGS)
# Under models/<meter_id>/ and models/_global/: starts with ".", so it is no version, meter id or
# network id, and holds no model.json of its own, so list_versions never lists it.
TRASH_DIR = ".trash"
# An unreferenced global network, or a meter's folder without a card, younger than this is kept:
# register_model writes the shared folder and a version's weights a moment before the card, maybe
# in a run beside this prune. Far longer than that moment, far shorter than the nightly cadence
# (an orphan goes the next night).
GLOBAL_ORPHAN_GRACE_S = 6 * 3600.0
DEFAULT_PRUNE_HOLDER = "registry prune"
_METER_ID_RE = re.compile(METER_ID_PATTERN)
_NETWORK_ID_RE = re.compile(rf"^[0-9a-f]{{{NETWORK_ID_HEX_CHARS}}}$")
_EPOCH = datetime.fromtimestamp(0, UTC)
# A version folder's name, registry.version_name's "<run_id>-<model>": a cell or the combination, a
# global network's with its suffix ("lstm_global"). A folder named otherwise is no version of ours.
_VERSION_NAME_RE = re.compile(rf"^.+-({'|'.join((*CELL_NAMES, COMBINED_MODEL))})(_[a-z]+)?$")


@dataclass(frozen=True)
class MeterPruning:
    """What pruning did (or, in a dry run, would do) to one meter's versions."""

    meter_id: str
    kept: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    bytes_freed: int = 0  # the removed versions' files and any trash a crashed prune left
    incomplete: tuple[str, ...] = ()  # folders without a card, untouched past the grace: removed
    unreadable: dict[str, str] = field(default_factory=dict)  # version -> why its card cannot be read (kept)
    failures: dict[str, str] = field(default_factory=dict)  # version or trash folder -> why it is still there
    skipped: str | None = None  # why nothing of this meter was pruned


@dataclass(frozen=True)
class GlobalPruning:
    """What pruning did (or would do) to the shared ``models/_global/<version>/<network_id>/`` folders."""

    kept: tuple[str, ...] = ()  # "<version>/<network_id>", used by a meter's card
    removed: tuple[str, ...] = ()
    too_new: tuple[str, ...] = ()  # unreferenced but younger than the grace period: kept for now
    bytes_freed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None


@dataclass(frozen=True)
class RunsPruning:
    """What pruning did (or would do) to the training runs' folders ``runs/<run_id>/`` (logs, leaderboards, curves)."""

    kept: tuple[str, ...] = ()  # run ids: a version of theirs is in the registry, or among the newest folders
    removed: tuple[str, ...] = ()
    bytes_freed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None


@dataclass(frozen=True)
class PruneReport:
    """The outcome of pruning a registry: each meter, then the shared global networks, then the runs' folders."""

    keep_runs: int
    dry_run: bool
    meters: tuple[MeterPruning, ...]
    global_networks: GlobalPruning
    runs: RunsPruning = field(default_factory=RunsPruning)

    @property
    def bytes_freed(self) -> int:
        """Return the bytes removed (would be removed, in a dry run) in all."""
        return (
            sum(meter.bytes_freed for meter in self.meters) + self.global_networks.bytes_freed + self.runs.bytes_freed
        )

    @property
    def versions_removed(self) -> int:
        """Return how many meter versions were (would be) removed."""
        return sum(len(meter.removed) for meter in self.meters)

    def problems(self) -> list[str]:
        """Return one line per thing left in place for a reason other than the policy (empty when none)."""
        lines = [f"meter {meter.meter_id!r} not pruned: {meter.skipped}" for meter in self.meters if meter.skipped]
        for meter in self.meters:
            lines += [f"meter {meter.meter_id!r}: kept {name}: {why}" for name, why in meter.unreadable.items()]
            lines += [f"meter {meter.meter_id!r}: {name} not removed: {why}" for name, why in meter.failures.items()]
        if self.global_networks.skipped:
            lines.append(f"global networks not pruned: {self.global_networks.skipped}")
        lines += [f"global network {name} not removed: {why}" for name, why in self.global_networks.failures.items()]
        if self.runs.skipped:
            lines.append(f"run folders not pruned: {self.runs.skipped}")
        lines += [f"run folder {name} not removed: {why}" for name, why in self.runs.failures.items()]
        return lines


def check_keep_runs(keep_runs: int) -> int:
    """Return ``keep_runs`` after checking it is a whole number of runs within the setting's declared bounds.

    Raises
    ------
    ConfigError
        Naming the setting, for a number out of its bounds (0, a negative one) or not an integer.
    """
    low, high = _declared_bound(KEEP_RUNS_SETTING, "ge"), _declared_bound(KEEP_RUNS_SETTING, "le")
    if isinstance(keep_runs, bool) or not isinstance(keep_runs, int) or not low <= keep_runs <= high:
        raise ConfigError(
            f"{KEEP_RUNS_SETTING.key} must be a whole number of training runs from {low} to {high} (a meter "
            f"always keeps its newest run), got {keep_runs!r}"
        )
    return keep_runs


def _declared_bound(item: Setting, name: str) -> Any:
    """Return the bound ``name`` ("ge", "le") the setting's config field declares."""
    return next(getattr(constraint, name) for constraint in item.field.metadata if hasattr(constraint, name))


def registry_meters(root: str) -> list[str]:
    """Return the meter ids that have a folder under ``models/`` (``_global`` and the trash are none)."""
    filesystem, base = resolve_filesystem(root)
    selector = pafs.FileSelector(layout.under(base, layout.MODELS), allow_not_found=True)
    return sorted(
        info.base_name
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.Directory and _METER_ID_RE.match(info.base_name)
    )


def prune_registry(
    root: str,
    keep_runs: int,
    dry_run: bool = False,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    holder: str = DEFAULT_PRUNE_HOLDER,
    orphan_grace_s: float = GLOBAL_ORPHAN_GRACE_S,
    meter_ids: Iterable[str] | None = None,
) -> PruneReport:
    """Prune the meters' versions under ``models/``, then the global networks no meter's card uses.

    ``meter_ids`` limits the meters pruned (the nightly run prunes the meters it trained; None:
    every meter); the global networks are judged on every meter's cards all the same. ``dry_run``
    decides and measures the same, removing nothing. A meter whose lock another run holds past
    ``lock_timeout_s`` is skipped (0: skip at once). Problems with one meter are reported in the
    result (``PruneReport.problems``), never raised.

    Raises
    ------
    ConfigError
        When ``keep_runs`` is not a whole number within ``registry.keep_runs``'s bounds.
    OSError
        When ``models/`` itself cannot be listed (then no meter is pruned).
    """
    check_keep_runs(keep_runs)
    every_meter = registry_meters(root)
    chosen = every_meter if meter_ids is None else sorted(set(meter_ids) & set(every_meter))
    meters = tuple(
        prune_meter(root, meter_id, keep_runs, dry_run, lock_timeout_s, holder, orphan_grace_s) for meter_id in chosen
    )
    gone = {meter.meter_id: frozenset(meter.removed) for meter in meters}  # a dry run's too: it judges as a prune
    try:
        networks = prune_global_networks(root, every_meter, gone, dry_run, orphan_grace_s)
    except OSError as exc:  # the meters were pruned: say so, and what stopped the shared folders' pass
        networks = GlobalPruning(skipped=f"the shared global network folders cannot be read or changed ({exc})")
    try:
        runs = prune_run_folders(root, every_meter, gone, keep_runs, dry_run, orphan_grace_s)
    except OSError as exc:  # likewise: the registry was pruned, the logs wait for the next prune
        runs = RunsPruning(skipped=f"the run folders or the meters' versions cannot be read or changed ({exc})")
    return PruneReport(keep_runs, dry_run, meters, networks, runs)


def prune_meter(
    root: str,
    meter_id: str,
    keep_runs: int,
    dry_run: bool = False,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    holder: str = DEFAULT_PRUNE_HOLDER,
    orphan_grace_s: float = GLOBAL_ORPHAN_GRACE_S,
) -> MeterPruning:
    """Remove the versions of ``meter_id`` the policy does not keep, under the meter's write lock, and its
    folders without a card in which nothing changed for ``orphan_grace_s``.

    Never raises for the meter's state: a busy lock, a damaged champion pointer or history, or a
    folder that cannot be listed skips the meter (``MeterPruning.skipped``); an unreadable card is
    kept and named (``MeterPruning.unreadable``).

    Raises
    ------
    ConfigError
        When ``keep_runs`` is not a whole number within ``registry.keep_runs``'s bounds.
    """
    check_keep_runs(keep_runs)
    try:
        with _write_lock(root, meter_id, lock_timeout_s, holder):
            return _prune_locked_meter(root, meter_id, keep_runs, dry_run, orphan_grace_s)
    except LockedError as exc:
        return MeterPruning(meter_id, skipped=f"another run holds its lock ({exc})")
    except RegistryError as exc:
        return MeterPruning(meter_id, skipped=f"its registry cannot be read, so nothing is deleted: {exc}")
    except OSError as exc:
        return MeterPruning(meter_id, skipped=f"its registry folder cannot be read or changed: {exc}")
    except ValueError as exc:  # a reader that let bad bytes through: one meter's damage must not stop the prune
        damage = f"{type(exc).__name__}: {exc}"
        skipped = f"its registry holds data that cannot be read ({damage}), so nothing is deleted"
        return MeterPruning(meter_id, skipped=skipped)


def _write_lock(root: str, meter_id: str, timeout_s: float, holder: str) -> AbstractContextManager[Any]:
    """Return the meter's write lock on a local root; a no-op on a URI root (no file locks there)."""
    if is_uri(root):
        return nullcontext()
    return meter_lock(root, meter_id, timeout_s=timeout_s, holder=holder)


def _prune_locked_meter(
    root: str, meter_id: str, keep_runs: int, dry_run: bool, orphan_grace_s: float
) -> MeterPruning:
    """Return what pruning ``meter_id`` did; the caller holds its lock."""
    versions = list_versions(root, meter_id)
    champion = champion_version(root, meter_id)  # a damaged pointer raises: the champion is unknown
    history = read_history(root, meter_id)  # likewise: the rollback targets are unknown
    cards = MeterCards(root, meter_id)
    kept = versions_to_keep(versions, cards, champion, history, keep_runs)
    filesystem, base = resolve_filesystem(root)
    meter_dir = layout.meter_models_dir(base, meter_id)
    trash = f"{meter_dir}/{TRASH_DIR}"
    leftover_bytes = folder_bytes(filesystem, trash)  # what a prune killed half-way left
    doomed = [version for version in versions if version not in kept]
    # Decided before anything moves, so a folder that cannot be read leaves the meter unpruned whole.
    protected = kept | versions_named_in_history(history, keep_runs) | ({champion} if champion else set())
    abandoned = _abandoned_folders(filesystem, meter_dir, versions, protected, orphan_grace_s)
    removed, removed_bytes, failures = _discard_versions(filesystem, meter_dir, doomed, trash, dry_run)
    incomplete, incomplete_bytes, incomplete_failures = _discard_versions(
        filesystem, meter_dir, abandoned, trash, dry_run
    )
    failures |= incomplete_failures
    unremoved_bytes = 0 if dry_run else _empty_trash(filesystem, trash, failures)
    return MeterPruning(
        meter_id,
        kept=tuple(sorted(kept | (set(doomed) - set(removed)))),  # a version that failed to go is still there
        removed=tuple(removed),
        incomplete=tuple(incomplete),
        bytes_freed=leftover_bytes + removed_bytes + incomplete_bytes - unremoved_bytes,
        unreadable=dict(cards.unreadable),
        failures=failures,
    )


def _discard_versions(
    filesystem: pafs.FileSystem, meter_dir: str, versions: list[str], trash: str, dry_run: bool
) -> tuple[list[str], int, dict[str, str]]:
    """Take ``versions`` out of the meter's folder (into ``trash``); return those removed, their bytes, and why
    the others could not be (they are still there, whole)."""
    folders = [(version, f"{meter_dir}/{version}") for version in versions]
    return _discard_folders(filesystem, folders, trash, CARD_FILE, dry_run)


def _discard_folders(
    filesystem: pafs.FileSystem, folders: list[tuple[str, str]], trash: str, card_file: str | None, dry_run: bool
) -> tuple[list[str], int, dict[str, str]]:
    """Take each (name, folder) of ``folders`` into ``trash`` (``card_file`` first where no rename exists); return
    the names removed, their bytes, and why the others could not be (they are still there, whole)."""
    removed, removed_bytes, failures = [], 0, {}
    for name, folder in folders:
        size_bytes = folder_bytes(filesystem, folder)
        try:
            if not dry_run:
                discard_folder(filesystem, folder, trash, card_file)
        except OSError as exc:
            failures[name] = str(exc)
            continue
        removed.append(name)
        removed_bytes += size_bytes
    return removed, removed_bytes, failures


def _abandoned_folders(
    filesystem: pafs.FileSystem, meter_dir: str, versions: list[str], protected: set[str], grace_s: float
) -> list[str]:
    """Return the meter's folders named like a version that hold no card and in which nothing changed for ``grace_s``.

    No reader lists such a folder, so nothing else would ever remove it: a ``register_model``
    that died between the weights and the card left it, or a deletion on an object store that
    stopped after the card (the card goes first). Younger ones may be a version being written.
    Never a name the policy keeps (``protected``: the champion, a rollback target, a kept run's
    version, whose weights a repaired card would need), nor a folder not named
    ``<run_id>-<model>`` (a person's), nor the trash; files are left alone.
    """
    listed = set(versions)
    kept_runs = {run_of_version(name) for name in protected}
    now = datetime.now(UTC)
    return [
        info.base_name
        for info in _subfolders(filesystem, meter_dir)
        if info.base_name not in listed
        and info.base_name not in protected
        and _VERSION_NAME_RE.fullmatch(info.base_name)
        and run_of_version(info.base_name) not in kept_runs
        and (now - _newest_mtime(filesystem, info.path)).total_seconds() >= grace_s
    ]


def run_of_version(version: str) -> str:
    """Return the training run a version belongs to: its name without the last ``-<cell>``.

    ``registry.version_name`` names every version ``<run_id>-<cell>`` and no cell name holds a
    "-", so the name says the run without reading the card; a name without "-" is a run of its own.
    """
    run_id, _, _ = version.rpartition("-")
    return run_id or version


class MeterCards:
    """One meter's cards, each read once and only when pruning asks for it (a card can be 0.36 MB)."""

    def __init__(self, root: str, meter_id: str) -> None:
        self.root = root
        self.meter_id = meter_id
        self.unreadable: dict[str, str] = {}  # version -> why its card cannot be relied on (it is kept)
        self._cards: dict[str, dict[str, Any] | None] = {}

    def card(self, version: str) -> dict[str, Any] | None:
        """Return the version's card; None when it cannot be read or lacks what pruning relies on (then in
        ``unreadable``)."""
        if version not in self._cards:
            self._cards[version] = self._read(version)
        return self._cards[version]

    def created_at(self, version: str) -> datetime | None:
        """Return when the version's card was written; None when the card cannot be read."""
        card = self.card(version)
        return None if card is None else _created_at(card)

    def members_named(self, version: str) -> list[str]:
        """Return the member versions the card names: a readable combination's, else whatever an unreadable
        card's JSON holds under ``hparams.member_versions`` (none when it does not even parse)."""
        card = self.card(version)
        if card is not None:
            return (_member_versions(card) or []) if card.get("cell") == COMBINED_MODEL else []
        filesystem, base = resolve_filesystem(self.root)
        try:
            raw = read_bytes(f"{layout.meter_models_dir(base, self.meter_id)}/{version}/{CARD_FILE}", filesystem)
            parsed = json.loads(raw) if raw is not None else None
        except (OSError, ValueError):  # gone, or not JSON (not UTF-8 text either): it names nothing readable
            return []
        return (_member_versions(parsed) or []) if isinstance(parsed, dict) else []

    def _read(self, version: str) -> dict[str, Any] | None:
        try:
            card = read_card(self.root, self.meter_id, version)
        except RegistryError as exc:
            self.unreadable[version] = str(exc)
            return None
        problem = _card_problem(card, version)
        if problem is not None:
            path = f"{layout.meter_models_dir(self.root, self.meter_id)}/{version}/{CARD_FILE}"
            self.unreadable[version] = f"{path} {problem}"
            return None
        return card


def _card_problem(card: dict[str, Any], version: str) -> str | None:
    """Return what a card lacks for pruning to judge it (when it was made, what it names), or None."""
    if _created_at(card) is None:
        return f"has no ISO 8601 created_at (got {card.get('created_at')!r})"
    if card.get("cell") == COMBINED_MODEL and _member_versions(card) is None:
        return "is a combination without a list of member_versions in its hparams"
    reference = card.get(GLOBAL_NETWORK_KEY)
    if reference is None:
        return None
    network = _network_reference(reference)
    if network is None:
        return f"has a damaged {GLOBAL_NETWORK_KEY!r} ({reference!r})"
    if network[0] != version:  # pruning finds a global network by the version of the cards naming it
        return f"names the global network of another version ({network[0]!r})"
    return None


def _created_at(card: dict[str, Any]) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(card["created_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _member_versions(card: dict[str, Any]) -> list[str] | None:
    hparams = card.get("hparams")
    members = hparams.get("member_versions") if isinstance(hparams, dict) else None
    if not isinstance(members, list) or not all(isinstance(name, str) for name in members):
        return None
    return members


def _network_reference(reference: Any) -> tuple[str, str] | None:
    """Return (version, network_id) of a card's ``global_network`` entry, or None when it is damaged."""
    if not isinstance(reference, dict):
        return None
    version, network_id = reference.get("version"), reference.get("network_id")
    if not isinstance(version, str) or not isinstance(network_id, str):
        return None
    return version, network_id


def versions_to_keep(
    versions: list[str], cards: MeterCards, champion: str | None, history: list[Any], keep_runs: int
) -> set[str]:
    """Return the versions among ``versions`` the policy keeps (see the module docstring).

    Reads the cards of the versions it would not keep: a card that cannot be read keeps its whole
    run (and the members its JSON names), which may keep more; repeated until nothing is added.
    """
    by_run = versions_by_run(versions)
    whole_runs = set(runs_newest_first(by_run, history, cards.created_at)[:keep_runs])
    named = versions_named_in_history(history, keep_runs) | ({champion} if champion else set())
    present = set(versions)

    def members_of(version: str) -> list[str]:
        if version not in present:  # named in history, pruned long ago
            return []
        if version not in cards.unreadable and run_of_version(version) in whole_runs:
            return []  # a combination kept with its whole run: its members are versions of that run
        return cards.members_named(version)

    while True:
        kept = with_combination_members(named | {v for run in whole_runs for v in by_run[run]}, members_of)
        kept &= present
        for version in present - kept:
            cards.card(version)  # what would be deleted is read first: an unreadable card is never deleted
        unreadable_runs = {run_of_version(version) for version in cards.unreadable} - whole_runs
        if not unreadable_runs:
            return kept
        whole_runs |= unreadable_runs


def versions_by_run(versions: Iterable[str]) -> dict[str, list[str]]:
    """Return the versions grouped by their run (``run_of_version``), in the order given."""
    by_run: dict[str, list[str]] = {}
    for version in versions:
        by_run.setdefault(run_of_version(version), []).append(version)
    return by_run


def runs_newest_first(
    by_run: dict[str, list[str]], history: list[Any], created_at_of: Callable[[str], datetime | None]
) -> list[str]:
    """Return the runs of ``by_run`` newest first: those with a decision in ``history`` by its position (the last
    line is the newest night), then the others by the newest ``created_at`` of their versions' cards.

    A clock that ran ahead on one host cannot keep its run among the newest for ever: a decided
    run's place is where its line is. A run without a decision has only its cards' clock to go by.
    """
    decided: list[str] = []
    for entry in reversed(history):
        run_id = entry.get("run_id") if isinstance(entry, dict) else None
        if isinstance(run_id, str) and run_id in by_run and run_id not in decided:
            decided.append(run_id)

    def newest_card(run_id: str) -> datetime:
        stamps = [stamp for version in by_run[run_id] if (stamp := created_at_of(version)) is not None]
        return max(stamps, default=_EPOCH)  # none readable: its run is kept whole anyway

    undecided = [run_id for run_id in by_run if run_id not in set(decided)]
    return decided + sorted(undecided, key=lambda run_id: (newest_card(run_id), run_id), reverse=True)


def versions_named_in_history(history: list[Any], keep_runs: int) -> set[str]:
    """Return every version the last ``keep_runs`` decisions name: champions before and after, challengers."""
    named: set[str] = set()
    for entry in history[-keep_runs:]:
        if not isinstance(entry, dict):
            continue
        champions = (entry.get(CHAMPION_BEFORE_KEY), entry.get(CHAMPION_AFTER_KEY))
        named |= {version for version in champions if isinstance(version, str)}
        by_cell = entry.get(CHALLENGER_VERSIONS_KEY)
        if isinstance(by_cell, dict):
            named |= {version for version in by_cell.values() if isinstance(version, str)}
    return named


def with_combination_members(kept: set[str], members_of: Callable[[str], Iterable[str]]) -> set[str]:
    """Return ``kept`` with the members of every kept combination added, and theirs, until nothing is added.

    ``members_of(version)`` names a version's members (none for a model that is no combination).
    """
    closed = set(kept)
    pending = list(kept)
    while pending:
        for member in members_of(pending.pop()):
            if member not in closed:
                closed.add(member)
                pending.append(member)
    return closed


def folder_bytes(filesystem: pafs.FileSystem, folder: str) -> int:
    """Return the bytes of every file under ``folder`` (0 when it does not exist)."""
    selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
    return sum(info.size or 0 for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File)


def discard_folder(filesystem: pafs.FileSystem, folder: str, trash: str, marker_file: str | None) -> None:
    """Take ``folder`` out of the registry so that no reader ever finds it half-deleted.

    On a local disk the folder is renamed atomically into ``trash`` (emptied later, by this prune
    or, after a crash, the next one). A filesystem that cannot rename a folder (an object store)
    deletes ``marker_file`` first (a card, ``network.json``; None for a folder no reader lists by a
    file, a run's): without it the folder is no longer listed or loadable, then the rest. A folder already gone (another prune took it) is no error.

    Raises
    ------
    OSError
        When the folder is still there: it could not be moved or deleted (it stays whole on a local disk).
    """
    if isinstance(filesystem, pafs.LocalFileSystem):
        _move_into_trash(filesystem, folder, trash)
        return
    if marker_file is not None and filesystem.get_file_info(f"{folder}/{marker_file}").type == pafs.FileType.File:
        filesystem.delete_file(f"{folder}/{marker_file}")
    if filesystem.get_file_info(folder).type == pafs.FileType.Directory:
        filesystem.delete_dir(folder)


# A rename into the trash that found no trash folder is tried again this many times: another
# prune (the _global folders have no lock) can empty the trash between our create_dir and move.
TRASH_MOVE_ATTEMPTS = 3


def _move_into_trash(filesystem: pafs.LocalFileSystem, folder: str, trash: str) -> None:
    """Rename ``folder`` into ``trash`` under a name of its own; return when it is there or gone.

    The rename fails with FileNotFoundError both when ``folder`` is gone (another prune took it:
    done) and when ``trash`` is (another prune emptied it since we made it: make it again).
    """
    name = folder.rpartition("/")[2]
    for _ in range(TRASH_MOVE_ATTEMPTS):
        filesystem.create_dir(trash, recursive=True)
        try:
            filesystem.move(folder, f"{trash}/{name}.{uuid.uuid4().hex[:12]}")
            return
        except FileNotFoundError:
            if filesystem.get_file_info(folder).type == pafs.FileType.NotFound:
                return
    raise OSError(f"{folder} could not be moved into {trash}: the trash folder kept vanishing (another prune "
                  "emptying it); it is left whole, and the next prune tries again")


def _empty_trash(filesystem: pafs.FileSystem, trash: str, failures: dict[str, str]) -> int:
    """Remove the trash folder and everything in it; return the bytes that could not be removed (0 normally)."""
    if filesystem.get_file_info(trash).type != pafs.FileType.Directory:
        return 0
    try:
        filesystem.delete_dir(trash)
    except FileNotFoundError:  # another prune emptied it first
        return 0
    except OSError as exc:
        failures[TRASH_DIR] = f"{trash} could not be emptied ({exc}); the next prune tries again"
        return folder_bytes(filesystem, trash)
    return 0


def prune_global_networks(
    root: str,
    meter_ids: list[str],
    gone: Mapping[str, Collection[str]] | None = None,
    dry_run: bool = False,
    orphan_grace_s: float = GLOBAL_ORPHAN_GRACE_S,
) -> GlobalPruning:
    """Remove the ``models/_global/<version>/<network_id>/`` folders no card of ``meter_ids`` uses and older than
    the grace; a version folder left empty is removed too.

    ``gone``: versions of a meter to count as removed although their folders are there (what a dry
    run would have removed).
    """
    filesystem, base = resolve_filesystem(root)
    global_dir = layout.under(base, layout.MODELS, layout.GLOBAL_MODELS)
    trash = f"{global_dir}/{TRASH_DIR}"
    folders = _global_network_folders(filesystem, global_dir)
    try:
        in_use = networks_in_use(root, folders, meter_ids, gone or {})
    except OSError as exc:
        return GlobalPruning(skipped=f"the meters' cards naming them cannot be looked for ({exc})")
    now = datetime.now(UTC)
    kept, too_new = [], []
    bytes_freed = folder_bytes(filesystem, trash)
    orphans = []
    for version, network_id, folder in folders:
        name = f"{version}/{network_id}"
        if (version, network_id) in in_use:
            kept.append(name)
        elif (now - _newest_mtime(filesystem, folder)).total_seconds() < orphan_grace_s:
            too_new.append(name)
        else:
            orphans.append((name, folder))
    removed, removed_bytes, failures = _discard_folders(filesystem, orphans, trash, GLOBAL_NETWORK_FILE, dry_run)
    bytes_freed += removed_bytes
    if not dry_run:
        bytes_freed -= _empty_trash(filesystem, trash, failures)
        _remove_empty_version_folders(filesystem, global_dir)
    return GlobalPruning(tuple(kept), tuple(removed), tuple(too_new), bytes_freed, failures)


def prune_run_folders(
    root: str,
    meter_ids: list[str],
    gone: Mapping[str, Collection[str]] | None = None,
    keep_runs: int = 1,
    dry_run: bool = False,
    grace_s: float = GLOBAL_ORPHAN_GRACE_S,
) -> RunsPruning:
    """Remove the ``runs/<run_id>/`` folders of runs no meter of ``meter_ids`` holds a version of any more.

    A run's folder holds what a person reads about a night (each meter's ``leaderboard.json`` and
    loss curves, the training logs) and ``seed_preset`` reads the champion's leaderboard there, so
    it goes with the run's last version. Kept whatever the registry holds: the newest ``keep_runs``
    folders by modification time (a night that failed for every meter registered nothing, and its
    logs are what its morning needs) and a folder in which something changed within ``grace_s``
    (a run still training: it registers its versions at the end). ``gone`` as for
    ``prune_global_networks``. A folder is renamed into ``runs/.trash`` before it is deleted.

    Raises
    ------
    OSError
        When ``runs/`` or a meter's folder cannot be read (which runs are still used is then unknown).
    """
    filesystem, base = resolve_filesystem(root)
    runs_dir = layout.under(base, layout.RUNS)
    trash = f"{runs_dir}/{TRASH_DIR}"
    folders = [info for info in _subfolders(filesystem, runs_dir) if not info.base_name.startswith(".")]
    now = datetime.now(UTC)
    changed = {info.base_name: _newest_mtime(filesystem, info.path) for info in folders}
    newest = set(sorted(changed, key=lambda run_id: (changed[run_id], run_id), reverse=True)[:keep_runs])
    candidates = [
        info
        for info in folders
        if info.base_name not in newest
        and (now - changed[info.base_name]).total_seconds() >= grace_s
        and _holds_only_training_logs(filesystem, info.path, meter_ids)
    ]
    # Every meter's versions are listed only when some folder could go (most nights, none can).
    in_use = _runs_in_use(root, meter_ids, gone or {}) if candidates else set()
    doomed = [(info.base_name, info.path) for info in candidates if info.base_name not in in_use]
    doomed_ids = {run_id for run_id, _ in doomed}
    kept = [run_id for run_id in changed if run_id not in doomed_ids]
    leftover_bytes = folder_bytes(filesystem, trash)  # what a prune killed half-way left
    removed, removed_bytes, failures = _discard_folders(filesystem, doomed, trash, None, dry_run)
    unremoved_bytes = 0 if dry_run else _empty_trash(filesystem, trash, failures)
    return RunsPruning(
        kept=tuple(sorted(kept + [run_id for run_id, _ in doomed if run_id not in removed])),
        removed=tuple(removed),
        bytes_freed=leftover_bytes + removed_bytes - unremoved_bytes,
        failures=failures,
    )


def _runs_in_use(root: str, meter_ids: list[str], gone: Mapping[str, Collection[str]]) -> set[str]:
    """Return the runs some meter of ``meter_ids`` still holds a version of (``gone``'s count as removed)."""
    return {
        run_of_version(version)
        for meter_id in meter_ids
        for version in list_versions(root, meter_id)
        if version not in gone.get(meter_id, ())
    }


def _holds_only_training_logs(filesystem: pafs.FileSystem, folder: str, meter_ids: Collection[str]) -> bool:
    """Return whether a run folder holds only what a training night writes: a folder per registry meter, ``_fleet``.

    Anything else (the seed preset's ``seed/`` report, a file a person left) keeps the folder:
    it is not ours to judge by the registry.
    """
    known = set(meter_ids) | {layout.FLEET_RUN_FOLDER}
    entries = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return all(entry.type == pafs.FileType.Directory and entry.base_name in known for entry in entries)


def networks_in_use(
    root: str, folders: list[tuple[str, str, str]], meter_ids: list[str], gone: Mapping[str, Collection[str]]
) -> set[tuple[str, str]]:
    """Return the (version, network_id) of ``folders`` some meter's card uses.

    A global network is filed under the version of the meter cards naming it, so a version's only
    network is in use while one meter holds a card of that version (looked up, not read). Only a
    version holding several networks has those cards read, to see which each names.

    Raises
    ------
    OSError
        When a meter's folder cannot be looked into (then which networks are used is unknown).
    """
    filesystem, base = resolve_filesystem(root)
    ids_by_version: dict[str, list[str]] = {}
    for version, network_id, _ in folders:
        ids_by_version.setdefault(version, []).append(network_id)
    in_use: set[tuple[str, str]] = set()
    for version, network_ids in ids_by_version.items():
        holders = (
            meter_id
            for meter_id in meter_ids
            if version not in gone.get(meter_id, ())
            and filesystem.get_file_info(f"{layout.meter_models_dir(base, meter_id)}/{version}/{CARD_FILE}").type
            == pafs.FileType.File
        )
        if len(network_ids) == 1:
            if next(holders, None) is not None:  # the first holder is enough
                in_use.add((version, network_ids[0]))
            continue
        for meter_id in holders:
            in_use |= _networks_named(root, meter_id, version, network_ids)
    return in_use


def _networks_named(root: str, meter_id: str, version: str, network_ids: list[str]) -> set[tuple[str, str]]:
    """Return the networks of ``version`` the meter's card of that version names (all of them, when it cannot
    be read: it might name any)."""
    try:
        card = read_card(root, meter_id, version)
    except RegistryError:
        return {(version, network_id) for network_id in network_ids}
    reference = card.get(GLOBAL_NETWORK_KEY)
    if reference is None:  # a model of this meter's own under a global network's version name
        return set()
    network = _network_reference(reference)
    if network is None or network[0] != version:
        return {(version, network_id) for network_id in network_ids}
    return {network}


def _subfolders(filesystem: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(folder, allow_not_found=True)
    return sorted(
        (info for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.Directory),
        key=lambda info: info.base_name,
    )


def _global_network_folders(filesystem: pafs.FileSystem, global_dir: str) -> list[tuple[str, str, str]]:
    """Return (version, network_id, folder) of every network folder under ``_global`` (the trash and other names
    registry never writes there are left alone)."""
    found = []
    for version_info in _subfolders(filesystem, global_dir):
        if version_info.base_name.startswith("."):  # the trash (versions start with a letter or digit)
            continue
        for network_info in _subfolders(filesystem, version_info.path):
            if _NETWORK_ID_RE.match(network_info.base_name):
                found.append((version_info.base_name, network_info.base_name, network_info.path))
    return found


def _newest_mtime(filesystem: pafs.FileSystem, folder: str) -> datetime:
    """Return when anything in ``folder`` (or the folder) last changed; now when the filesystem does not say.

    Unknown counts as new: a folder is removed only when it is known to be old, never while a run
    may be writing it (on a URI root no lock keeps a prune away).
    """
    infos = [filesystem.get_file_info(folder)]
    infos += filesystem.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    stamps = [info.mtime for info in infos]
    if not stamps or any(stamp is None for stamp in stamps):
        return datetime.now(UTC)
    return max(stamps)


def _remove_empty_version_folders(filesystem: pafs.FileSystem, global_dir: str) -> None:
    """Remove ``_global/<version>`` folders left empty, on a local disk (an object store has no empty folders).

    ``os.rmdir`` removes only an empty folder: one a run has just written a network into stays.
    """
    if not isinstance(filesystem, pafs.LocalFileSystem):
        return
    for version_info in _subfolders(filesystem, global_dir):
        if version_info.base_name.startswith("."):
            continue
        try:
            os.rmdir(version_info.path)
        except OSError:  # not empty (ENOTEMPTY), or gone already
            continue
