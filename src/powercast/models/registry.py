"""Versioned model folders on disk, the champion pointer, and the history of promotion decisions.

Layout under the data root (a local path or a URI)::

    models/<meter_id>/<version>/weights.safetensors   tensors only (CPU, loadable anywhere): the served model
    models/<meter_id>/<version>/holdout.safetensors   the held-out fit selection scores (only when the
                                                      served model was refit on train + validation)
    models/<meter_id>/<version>/model.json            everything needed to rebuild and trust it
    models/<meter_id>/champion.json                   {"version": ...}, replaced atomically
    models/<meter_id>/history.jsonl                   one line per nightly decision (idempotent per run_id)
    models/_global/<version>/<network_id>/weights.safetensors   a global network's served weights (and
    models/_global/<version>/<network_id>/holdout.safetensors   held-out ones), once for every meter
    models/_global/<version>/<network_id>/network.json          its hyperparameters (meter list included)
                                                                and the weights' sha256s

``model.json`` is written after the weights, so a version folder without it is incomplete and
never listed. Weights are stored as safetensors from CPU copies, so a model trained on a GPU
loads on a machine without one.

A global network (an ``RNNForecaster`` with ``meter_ids``) serves many meters with the same
weights, so it is stored once per version in the shared folder rather than once per meter: the
meter's card (format /4) keeps its scaler, intervals, metrics, ``serving_meter`` and the weights'
sha256s (it still vouches for the bytes it serves), names the shared folder (``global_network``)
and records ``n_meters`` instead of the fleet's meter list. ``network_id`` is a digest of
``network.json``'s hyperparameters and sha256s: a network of other content under the same version
(a re-run of the run id) gets a folder of its own and never replaces bytes an older card vouches
for, and a ``network.json`` edited or damaged since (a reordered meter list would swap embedding
rows) no longer matches the id it is filed under. Cards written before the shared folder keep
their weights and meter list in their own folder and still load.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from powercast.core.config import COMBINED_MODEL, INTERVAL_SCALES, PrepareConfig, TrainConfig, parse_timezone
from powercast.core.errors import RegistryError
from powercast.core.schemas import METER_ID_PATTERN, METER_ID_RULE
from powercast.core.version import PACKAGE_VERSION
from powercast.io import layout
from powercast.io.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    read_bytes,
    resolve_filesystem,
)
from powercast.models.boosting import BOOSTED_CELL, BoostedForecaster, BoostingParams
from powercast.models.combination import CombinedForecaster
from powercast.models.conformal import interval_bounds_kw
from powercast.models.rnn import RNNForecaster
from powercast.prepare.features import config_for_features, slot_of_day
from powercast.prepare.scaling import FeatureScaler

# /2: ensembles (``members.*`` tensors, ``n_members``), held-out weights, per-slot interval offsets.
# /3: the interval's ``scale`` (offsets may be ratios of the input window's mean load); a reader
# of /2 would take such a card for a damaged one, so it is refused there by its format instead.
# A /3 combination whose network members serve alone through a gap (hgb left out) serves it with
# their own intervals (see ``LoadedModel.members_keep_their_intervals``).
MODEL_FORMAT = "powercast.model/3"
FORMATS_BEFORE_INTERVAL_SCALES: frozenset[str] = frozenset({"powercast.model/1", "powercast.model/2"})
# /4: a global network's meter card, whose weights and meter list are in the shared folder (every
# other card is still /3); a reader of /3 would find no weights and take it for a damaged card.
GLOBAL_MODEL_FORMAT = "powercast.model/4"
READABLE_MODEL_FORMATS: frozenset[str] = FORMATS_BEFORE_INTERVAL_SCALES | {MODEL_FORMAT, GLOBAL_MODEL_FORMAT}
WEIGHTS_FILE = "weights.safetensors"
HOLDOUT_WEIGHTS_FILE = "holdout.safetensors"
# A boosted model's trees (scikit-learn's pickle format; the card's sha256 vouches for them).
BOOSTED_WEIGHTS_FILE = "weights.pkl"
BOOSTED_HOLDOUT_FILE = "holdout.pkl"
CARD_FILE = "model.json"
WEIGHTS_SHA256_KEY = "weights_sha256"  # card key: {weights file name: sha256 of its bytes}
CHAMPION_FILE = "champion.json"
GLOBAL_NETWORK_FILE = "network.json"  # in a global network's shared folder
GLOBAL_NETWORK_FORMAT = "powercast.global_network/1"
GLOBAL_NETWORK_KEY = "global_network"  # meter card key: {"version": ..., "network_id": ...} of the shared folder
N_METERS_KEY = "n_meters"  # in a global network's meter card hparams: the length of the meter list kept in network.json
NETWORK_ID_HEX_CHARS = 16  # 64 bits of the digest: two different networks of one version never share a folder
HISTORY_FILE = "history.jsonl"
# The keys of a history.jsonl decision that name versions: training.pipeline writes them, and
# models.retention keeps every version they name in a meter's last decisions (rollback targets).
CHAMPION_BEFORE_KEY = "champion_before"
CHAMPION_AFTER_KEY = "champion_after"
CHALLENGER_VERSIONS_KEY = "challenger_versions"  # {challenger name: version} of the night
INTERVAL_DECIMALS = 6  # interval offsets on a card: kW, or ratios of the input week's mean load
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # run ids and versions
_METER_ID_RE = re.compile(METER_ID_PATTERN)
_NETWORK_ID_RE = re.compile(rf"^[0-9a-f]{{{NETWORK_ID_HEX_CHARS}}}$")


@dataclass(frozen=True, eq=False)
class ModelRecord:
    """What is written beside a model's weights.

    Attributes
    ----------
    cell : str
        ``"gru"`` or ``"lstm"``.
    scaler : FeatureScaler
        The fitted input scaler.
    feature_names : tuple[str, ...]
        Input columns in order.
    prepare_config, train_config : PrepareConfig, TrainConfig
        The configuration the model was prepared and trained with.
    training_range_utc : tuple[pd.Timestamp, pd.Timestamp]
        [start, end) of the training split.
    data_range_utc : tuple[pd.Timestamp, pd.Timestamp]
        [start, end) of all data the run saw (through validation and test).
    validation_mae_kw : float
        Validation MAE in kW on all validation windows (the selection metric).
    metrics : dict
        Leaderboard scores of this model (JSON-able).
    interval_lo, interval_hi : np.ndarray
        Conformal offsets ``[slots, H]`` per issue slot of the local day and horizon step (one row:
        the same for every issue time; ``[H]`` is taken as one row), ``lo <= 0 <= hi``: kW when
        ``interval_scale`` is "none", else multiples of the forecast window's scale.
    interval_coverage : float
        Target coverage of the interval.
    run_id : str
        The run that trained it.
    training : dict
        Device, precision, elapsed_s, epochs (JSON-able).
    interval_scale : str
        What the offsets multiply (``conformal.INTERVAL_SCALES``): "none" (kW offsets) or
        "lookback_mean" (the mean load of the input window, at least ``interval_scale_floor_kw``).
    interval_scale_floor_kw : float
        The smallest scale (kW, > 0) of scaled offsets; 0.0 when ``interval_scale`` is "none".
    """

    cell: str
    scaler: FeatureScaler
    feature_names: tuple[str, ...]
    prepare_config: PrepareConfig
    train_config: TrainConfig
    training_range_utc: tuple[pd.Timestamp, pd.Timestamp]
    data_range_utc: tuple[pd.Timestamp, pd.Timestamp]
    validation_mae_kw: float
    metrics: dict[str, Any]
    interval_lo: np.ndarray
    interval_hi: np.ndarray
    interval_coverage: float
    run_id: str
    training: dict[str, Any] = field(default_factory=dict)
    interval_scale: str = "none"
    interval_scale_floor_kw: float = 0.0


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A registered model ready to forecast on CPU, with what it was trained on and how good it was."""

    version: str
    cell: str
    module: RNNForecaster | BoostedForecaster
    holdout_module: RNNForecaster | BoostedForecaster | None
    scaler: FeatureScaler
    feature_names: tuple[str, ...]
    prepare_config: PrepareConfig
    interval_lo: np.ndarray  # [slots, H]: kW, or multiples of the window's scale (interval_scale)
    interval_hi: np.ndarray
    interval_coverage: float
    training_range_utc: tuple[pd.Timestamp, pd.Timestamp]
    validation_mae_kw: float
    metadata: dict[str, Any]
    interval_scale: str = "none"
    interval_scale_floor_kw: float = 0.0
    members: tuple[LoadedModel, ...] = ()  # a combination's member models (empty for any other model)

    @property
    def members_keep_their_intervals(self) -> bool:
        """Return whether network members serving part of this combination (through a gap) keep their own intervals.

        A member's interval is calibrated on its own held-out residuals; one network (or the mean of
        some) errs more than the whole combination, so the combination's offsets would be too narrow
        for it: one member serves with its own interval, several with the widest of theirs
        (``serving.forecast.gap_interval_kw``). Cards from before interval scales serve the member
        with the combination's offsets, as they did.
        """
        return self.metadata.get("format") not in FORMATS_BEFORE_INTERVAL_SCALES

    def predict_kw(self, inputs: np.ndarray, held_out: bool = False) -> np.ndarray:
        """Return ``[N, H]`` kW forecasts for ``[N, L, F]`` scaled input windows.

        ``held_out=True`` forecasts with the fit that never saw its validation windows (the one
        selection compares), when the served model was refit on them; otherwise with the served one.
        """
        if inputs.ndim != 3 or inputs.shape[2] != len(self.feature_names):
            raise RegistryError(
                f"model {self.version} expects [N, L, {len(self.feature_names)}] inputs "
                f"({', '.join(self.feature_names)}), got shape {inputs.shape}"
            )
        module = self.holdout_module if held_out and self.holdout_module is not None else self.module
        return self.scaler.inverse_target_kw(module.forecast_scaled(inputs))

    def interval_kw(
        self, yhat_kw: np.ndarray, issued_at_utc: pd.Timestamp, window: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``(lower, upper)`` ``[H]`` kW bounds of the ``[H]`` forecast issued at ``issued_at_utc``.

        ``window`` is the ``[L, F]`` scaled input the forecast read (column 0 the load): scaled
        offsets multiply its mean load in kW.
        """
        if window.ndim != 2 or window.shape[1] != len(self.feature_names):
            raise RegistryError(
                f"model {self.version} takes a [L, {len(self.feature_names)}] input window, got shape {window.shape}"
            )
        step = pd.Timedelta(days=1) / self.interval_lo.shape[0]
        local_tz = parse_timezone(self.prepare_config.local_timezone)
        slots = slot_of_day(pd.DatetimeIndex([issued_at_utc]), local_tz, step)
        lookback_kw = self.scaler.inverse_target_kw(window[None, :, 0])  # [1, L]
        lower, upper = interval_bounds_kw(
            np.asarray(yhat_kw)[None], self.interval_lo, self.interval_hi, slots,
            self.interval_scale, self.interval_scale_floor_kw, lookback_kw,
        )
        return lower[0], upper[0]


def code_version() -> dict[str, str | None]:
    """Return the package version and, when the source lives in a git checkout, its commit."""
    source_dir = Path(__file__).resolve().parent
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {"powercast": PACKAGE_VERSION, "git_sha": None}
    sha = completed.stdout.strip() if completed.returncode == 0 else None
    return {"powercast": PACKAGE_VERSION, "git_sha": sha or None}


def _checked_name(kind: str, value: str) -> str:
    if not _NAME_PATTERN.match(value):
        raise RegistryError(
            f"{kind} {value!r} cannot name a registry folder: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)"
        )
    return value


def _meter_dir(root: str, meter_id: str) -> tuple[pafs.FileSystem, str]:
    filesystem, base = resolve_filesystem(root)
    if not _METER_ID_RE.match(meter_id):
        raise RegistryError(f"meter_id {meter_id!r} cannot name a registry folder: use {METER_ID_RULE}")
    return filesystem, layout.meter_models_dir(base, meter_id)


def _global_network_dir(root: str, version: str, network_id: str) -> tuple[pafs.FileSystem, str]:
    """Return the filesystem and shared folder of a global network, after checking both names (cards can be damaged)."""
    filesystem, base = resolve_filesystem(root)
    if not isinstance(network_id, str) or not _NETWORK_ID_RE.match(network_id):
        raise RegistryError(f"{network_id!r} is not a global network id ({NETWORK_ID_HEX_CHARS} hex digits)")
    return filesystem, layout.global_network_dir(base, _checked_name("version", version), network_id)


def _timestamp_text(value: pd.Timestamp) -> str:
    return pd.Timestamp(value).isoformat()


def version_name(run_id: str, cell: str) -> str:
    """Return the registry version of a run's model: ``<run_id>-<cell>`` (re-running a run replaces it)."""
    return _checked_name("version", f"{_checked_name('run_id', run_id)}-{cell}")


def register_model(
    root: str,
    meter_id: str,
    version: str,
    module: RNNForecaster | BoostedForecaster,
    record: ModelRecord,
    holdout_module: RNNForecaster | BoostedForecaster | None = None,
) -> str:
    """Write a model's weights and card under ``models/<meter_id>/<version>/``; return the folder path.

    ``module`` is the model that forecasts in service; ``holdout_module``, when it was refit on
    the validation windows, is the fit that had not seen them (kept so that a later night can
    compare this model with its challengers out of sample). A global network's weights go to its
    shared folder instead (written once, whichever meter registers it first), and only its card
    to the meter's folder.
    """
    filesystem, meter_dir = _meter_dir(root, meter_id)
    folder = f"{meter_dir}/{_checked_name('version', version)}"
    interval = _interval_card(record, version, module.hparams.horizon_steps)
    card = {
        "format": MODEL_FORMAT,
        "version": version,
        "meter_id": meter_id,
        "cell": record.cell,
        "hparams": dict(module.hparams),
        "holdout_weights": holdout_module is not None,
        "feature_names": list(record.feature_names),
        "scaler": record.scaler.to_dict(),
        "prepare_config": record.prepare_config.model_dump(mode="json"),
        "train_config": record.train_config.model_dump(mode="json"),
        "training_range_utc": [_timestamp_text(t) for t in record.training_range_utc],
        "data_range_utc": [_timestamp_text(t) for t in record.data_range_utc],
        "validation_mae_kw": float(record.validation_mae_kw),
        "metrics": record.metrics,
        "interval": interval,
        "run_id": record.run_id,
        "training": record.training,
        "code_version": code_version(),
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    served_name, holdout_name = _weights_files(record.cell)
    # A combination has no weights of its own: its card names the member versions.
    own_weights = not isinstance(module, CombinedForecaster)
    weights = {served_name: _module_bytes(module)} if own_weights else {}
    if holdout_module is not None:
        if dict(holdout_module.hparams) != dict(module.hparams):
            raise RegistryError(f"the held-out fit of {version} has other hyperparameters than the served model")
        if own_weights:
            weights[holdout_name] = _module_bytes(holdout_module)
    # The card, written last, vouches for the weights: a file damaged later is caught at load.
    card[WEIGHTS_SHA256_KEY] = {name: hashlib.sha256(raw).hexdigest() for name, raw in weights.items()}
    if _is_global_network(module):
        network = _global_network_entry(version, record.cell, card["hparams"], card[WEIGHTS_SHA256_KEY])
        network_id = _network_id(network)
        _, shared = _global_network_dir(root, version, network_id)
        _write_global_network(filesystem, shared, weights, network)
        card["format"] = GLOBAL_MODEL_FORMAT
        card["hparams"] = _meter_card_hparams(card["hparams"])
        card[GLOBAL_NETWORK_KEY] = {"version": version, "network_id": network_id}
    else:
        for name, raw in weights.items():
            atomic_write_bytes(f"{folder}/{name}", raw, filesystem)
    atomic_write_json(f"{folder}/{CARD_FILE}", card, filesystem)
    return folder


def _is_global_network(module: RNNForecaster | BoostedForecaster | CombinedForecaster) -> bool:
    """Return whether ``module`` is a global network (one for a fleet: ``meter_ids`` recorded; a local one has none)."""
    return isinstance(module, RNNForecaster) and bool(module.meter_ids)


def _json_ready(value: Any) -> Any:
    """Return ``value`` as JSON reads it back (tuples become lists), so that written and read entries compare equal."""
    return json.loads(json.dumps(value))


def _global_network_entry(version: str, cell: str, hparams: dict[str, Any], digests: dict[str, str]) -> dict[str, Any]:
    """Return a global network's ``network.json``: the same for every meter it serves (no ``serving_meter``)."""
    shared_hparams = {name: value for name, value in hparams.items() if name != "serving_meter"}
    return _json_ready(
        {
            "format": GLOBAL_NETWORK_FORMAT,
            "version": version,
            "cell": cell,
            "hparams": shared_hparams,
            WEIGHTS_SHA256_KEY: digests,
        }
    )


def _network_id(network: dict[str, Any]) -> str:
    """Return the id a global network is filed under: a digest of its hyperparameters and weights' sha256s."""
    identity = {"hparams": network["hparams"], WEIGHTS_SHA256_KEY: network[WEIGHTS_SHA256_KEY]}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:NETWORK_ID_HEX_CHARS]


def _meter_card_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Return a global network's hyperparameters as a meter's card keeps them: the meter list's length, not the list.

    The list is the fleet (O(meters) per card); it stays in the shared ``network.json``.
    """
    kept = {name: value for name, value in hparams.items() if name != "meter_ids"}
    return {**kept, N_METERS_KEY: len(hparams["meter_ids"])}


def _write_global_network(
    filesystem: pafs.FileSystem, shared: str, weights: dict[str, bytes], network: dict[str, Any]
) -> None:
    """Write a global network's weights files, then its ``network.json``, into its shared folder unless already there.

    Every meter the network serves registers it, possibly several processes at once: their bytes
    are identical (the folder is named by their digest) and each write is an atomic rename, so
    concurrent writers cannot leave a folder of mixed files.
    """
    if _global_network_is_complete(filesystem, shared, weights, network):
        return
    for name, raw in weights.items():
        atomic_write_bytes(f"{shared}/{name}", raw, filesystem)
    atomic_write_json(f"{shared}/{GLOBAL_NETWORK_FILE}", network, filesystem)


def _global_network_is_complete(
    filesystem: pafs.FileSystem, shared: str, weights: dict[str, bytes], network: dict[str, Any]
) -> bool:
    """Return whether the shared folder already holds this network: its ``network.json`` with these sha256s, and
    each weights file at its size.

    ``network.json`` is written after the weights, so when it is there the weights were written; they
    are not read back and hashed for each of a thousand meters (loading checks every byte).
    """
    raw = read_bytes(f"{shared}/{GLOBAL_NETWORK_FILE}", filesystem)
    try:
        if raw is None or json.loads(raw) != network:
            return False
    except ValueError:  # a damaged network.json is rewritten
        return False
    infos = filesystem.get_file_info([f"{shared}/{name}" for name in weights])
    return all(info.type == pafs.FileType.File and info.size == len(weights[info.base_name]) for info in infos)


def _interval_card(record: ModelRecord, version: str, horizon: int) -> dict[str, Any]:
    """Return the card's ``interval`` entry, after checking the offsets' shapes, signs and scale.

    kW offsets keep the keys cards had before scaled offsets existed (``lo_kw``, ``hi_kw``);
    scaled ones are ``lo_ratio`` / ``hi_ratio`` with their ``scale`` and ``scale_floor_kw``.
    """
    lo = np.atleast_2d(np.asarray(record.interval_lo, dtype=float))  # [slots, H]
    hi = np.atleast_2d(np.asarray(record.interval_hi, dtype=float))
    if lo.ndim != 2 or lo.shape[1] != horizon or hi.shape != lo.shape or (lo > 0).any() or (hi < 0).any():
        raise RegistryError(
            f"interval offsets for {version} must be [slots, {horizon}] (or [{horizon}]) with lo <= 0 <= hi, "
            f"got shapes {lo.shape}, {hi.shape}"
        )
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise RegistryError(f"interval offsets for {version} must be finite")
    scale, floor_kw = record.interval_scale, float(record.interval_scale_floor_kw)
    if scale not in INTERVAL_SCALES:
        raise RegistryError(f"interval scale of {version} must be one of {list(INTERVAL_SCALES)}, got {scale!r}")
    entry: dict[str, Any] = {"coverage": float(record.interval_coverage), "scale": scale}
    # A card holds slots x horizon offsets per bound (96 x 96 at 15 min): written at full float
    # precision they were most of a card's 0.5 MB. A millionth of a kW (or of a ratio) is far
    # finer than a quantile estimated from validation residuals. Rounded outward, so an interval
    # is never narrower than the one calibrated (and lo <= 0 <= hi still holds).
    grid = 10.0**INTERVAL_DECIMALS
    lo, hi = np.floor(lo * grid) / grid, np.ceil(hi * grid) / grid
    if scale == "none":
        return {**entry, "lo_kw": lo.tolist(), "hi_kw": hi.tolist()}
    if not (np.isfinite(floor_kw) and floor_kw > 0):
        raise RegistryError(f"scaled interval offsets of {version} need a scale floor > 0 kW, got {floor_kw}")
    return {**entry, "scale_floor_kw": floor_kw, "lo_ratio": lo.tolist(), "hi_ratio": hi.tolist()}


def list_versions(root: str, meter_id: str) -> list[str]:
    """Return the meter's complete registered versions, sorted by name."""
    filesystem, meter_dir = _meter_dir(root, meter_id)
    if filesystem.get_file_info(meter_dir).type != pafs.FileType.Directory:
        return []
    entries = filesystem.get_file_info(pafs.FileSelector(meter_dir))
    versions = [
        entry.base_name
        for entry in entries
        if entry.type == pafs.FileType.Directory
        and filesystem.get_file_info(f"{entry.path}/{CARD_FILE}").type == pafs.FileType.File
    ]
    return sorted(versions)


def read_card(root: str, meter_id: str, version: str) -> dict[str, Any]:
    """Return the parsed ``model.json`` of one version."""
    filesystem, meter_dir = _meter_dir(root, meter_id)
    path = f"{meter_dir}/{_checked_name('version', version)}/{CARD_FILE}"
    raw = read_bytes(path, filesystem)
    if raw is None:
        known = list_versions(root, meter_id)
        raise RegistryError(f"meter {meter_id!r} has no model version {version!r} at {path}; known versions: {known}")
    try:
        card = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8 text
        raise RegistryError(f"{path} is not valid JSON ({exc}); the registry entry is damaged: retrain") from exc
    if not isinstance(card, dict):
        raise RegistryError(f"{path} holds a JSON {type(card).__name__}, not a model card; the entry is damaged: retrain")
    if card.get("format") not in READABLE_MODEL_FORMATS:
        raise RegistryError(
            f"{path} has format {card.get('format')!r}, this powercast reads {sorted(READABLE_MODEL_FORMATS)}: "
            "retrain the model (or upgrade powercast)"
        )
    return card


def load_model(root: str, meter_id: str, version: str) -> LoadedModel:
    """Return a registered model rebuilt on CPU in eval mode (also when it was trained on a GPU).

    Raises
    ------
    RegistryError
        Naming the file, when the card or a weights file is missing, truncated or corrupted.
    """
    card = read_card(root, meter_id, version)
    filesystem, meter_dir = _meter_dir(root, meter_id)
    folder = f"{meter_dir}/{version}"
    try:
        if card["cell"] == COMBINED_MODEL:
            combined = _combination_modules(root, meter_id, version, card)
            return _loaded_model(card, filesystem, folder, card["hparams"], meter_id, version, combined)
        shared = _shared_network(root, card, folder)
        weights_folder, hparams = (folder, card["hparams"]) if shared is None else shared
        return _loaded_model(card, filesystem, weights_folder, hparams, meter_id, version)
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # pydantic's ValidationError is a ValueError
        raise RegistryError(
            f"{meter_dir}/{version}/{CARD_FILE} is damaged ({type(exc).__name__}: {exc}); retrain the model"
        ) from exc


def _combination_modules(
    root: str, meter_id: str, version: str, card: dict[str, Any]
) -> tuple[CombinedForecaster, CombinedForecaster, tuple[LoadedModel, ...]]:
    """Return a combination's (served, held-out) modules, built from its member versions, and the members."""
    names = list(card["hparams"]["member_versions"])
    if version in names or any(read_card(root, meter_id, name)["cell"] == COMBINED_MODEL for name in names):
        raise RegistryError(f"combination {version} of meter {meter_id!r} names a combination among its members")
    members = [load_model(root, meter_id, name) for name in names]
    served = CombinedForecaster([member.module for member in members], tuple(names))
    held_out = CombinedForecaster([member.holdout_module or member.module for member in members], tuple(names))
    return served, held_out, tuple(members)


def _shared_network(root: str, card: dict[str, Any], folder: str) -> tuple[str, dict[str, Any]] | None:
    """Return (the shared folder, the hyperparameters to rebuild with) of a global network's meter card; None for any
    other card (a global network's registered before the shared folder included: its own folder holds all).

    The hyperparameters are ``network.json``'s (the meter list) bound to the card's ``serving_meter``.

    Raises
    ------
    RegistryError
        Naming the file, when ``network.json`` is missing or damaged or the card does not describe it.
    """
    reference = card.get(GLOBAL_NETWORK_KEY)
    if reference is None:
        return None
    try:
        filesystem, shared = _global_network_dir(root, reference["version"], reference["network_id"])
        serving = {name: value for name, value in card["hparams"].items() if name == "serving_meter"}
        card_digests = card[WEIGHTS_SHA256_KEY]
    except (KeyError, TypeError, AttributeError) as exc:
        damage = f"{type(exc).__name__}: {exc}"
        raise RegistryError(f"{folder}/{CARD_FILE} is damaged ({damage}); retrain the model") from exc
    network = _read_global_network(filesystem, shared)
    hparams = {**network["hparams"], **serving}
    if network[WEIGHTS_SHA256_KEY] != card_digests or _meter_card_hparams(hparams) != card["hparams"]:
        raise RegistryError(
            f"{folder}/{CARD_FILE} does not describe the shared network at {shared}/{GLOBAL_NETWORK_FILE} "
            "(other hyperparameters or sha256s): the entry is damaged; retrain the model"
        )
    return shared, hparams


def _read_global_network(filesystem: pafs.FileSystem, shared: str) -> dict[str, Any]:
    """Return the parsed ``network.json`` of a shared folder, after checking it matches the id it is filed under."""
    path = f"{shared}/{GLOBAL_NETWORK_FILE}"
    raw = read_bytes(path, filesystem)
    if raw is None:
        raise RegistryError(f"the shared global network at {path} is missing: retrain the model")
    try:
        network = json.loads(raw)
        intact = (
            network["format"] == GLOBAL_NETWORK_FORMAT
            and isinstance(network["hparams"], dict)
            and _network_id(network) == shared.rpartition("/")[2]
        )
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError, or not the entry's shape
        raise RegistryError(f"{path} is damaged ({type(exc).__name__}: {exc}); retrain the model") from exc
    if not intact:
        raise RegistryError(
            f"{path} is damaged: its format or contents do not match the network id it is filed under; retrain"
        )
    return network


def _loaded_model(
    card: dict[str, Any],
    filesystem: pafs.FileSystem,
    weights_folder: str,
    hparams: dict[str, Any],
    meter_id: str,
    version: str,
    combined: tuple[CombinedForecaster, CombinedForecaster, tuple[LoadedModel, ...]] | None = None,
) -> LoadedModel:
    """Return the model of ``card`` whose weights files are in ``weights_folder`` (a combination: its members')."""
    served_name, holdout_name = _weights_files(card["cell"])
    members: tuple[LoadedModel, ...] = ()
    if combined is not None:
        module, holdout_module = combined[0], (combined[1] if card.get("holdout_weights") else None)
        members = combined[2]
    else:
        module = _load_weights(f"{weights_folder}/{served_name}", card, hparams, filesystem, meter_id, version)
        holdout_module = None
        if card.get("holdout_weights"):
            holdout_path = f"{weights_folder}/{holdout_name}"
            holdout_module = _load_weights(holdout_path, card, hparams, filesystem, meter_id, version)
    interval = card["interval"]
    # A card written before scaled offsets existed has no "scale": its offsets are kW.
    scale = interval.get("scale", "none")
    if scale not in INTERVAL_SCALES:
        raise ValueError(f"interval scale {scale!r} is not one of {list(INTERVAL_SCALES)}")
    unit = "kw" if scale == "none" else "ratio"
    interval_lo = np.atleast_2d(np.asarray(interval[f"lo_{unit}"], dtype=np.float32))
    interval_hi = np.atleast_2d(np.asarray(interval[f"hi_{unit}"], dtype=np.float32))
    floor_kw = float(interval.get("scale_floor_kw", 0.0))
    # Checked here too, not only when written: a damaged card must fail to load (the fallback then
    # serves), not fail later inside a forecast.
    if scale != "none" and not (math.isfinite(floor_kw) and floor_kw > 0):
        raise ValueError(f"interval scale {scale!r} needs a scale_floor_kw > 0, got {floor_kw}")
    if not (np.isfinite(interval_lo).all() and np.isfinite(interval_hi).all()) or (interval_lo > 0).any() or (interval_hi < 0).any():
        raise ValueError(f"interval lo_{unit} / hi_{unit} must be finite with lo <= 0 <= hi")
    start, end = (pd.Timestamp(text) for text in card["training_range_utc"])
    return LoadedModel(
        version=version,
        cell=card["cell"],
        module=module,
        holdout_module=holdout_module,
        scaler=FeatureScaler.from_dict(card["scaler"]),
        feature_names=tuple(card["feature_names"]),
        # The feature list decides the input switches: a card older than a switch lacks its key.
        prepare_config=config_for_features(PrepareConfig.model_validate(card["prepare_config"]), tuple(card["feature_names"])),
        interval_lo=interval_lo,
        interval_hi=interval_hi,
        interval_coverage=float(interval["coverage"]),
        training_range_utc=(start, end),
        validation_mae_kw=float(card["validation_mae_kw"]),
        metadata=card,
        interval_scale=scale,
        interval_scale_floor_kw=floor_kw,
        members=members,
    )


def _weights_files(cell: str) -> tuple[str, str]:
    """Return the (served, held-out) weights file names of a model of ``cell``."""
    if cell == BOOSTED_CELL:
        return BOOSTED_WEIGHTS_FILE, BOOSTED_HOLDOUT_FILE
    return WEIGHTS_FILE, HOLDOUT_WEIGHTS_FILE


def _module_bytes(module: RNNForecaster | BoostedForecaster) -> bytes:
    if isinstance(module, BoostedForecaster):
        return module.to_bytes()
    tensors = {name: tensor.detach().to("cpu").float().contiguous() for name, tensor in module.state_dict().items()}
    return save_safetensors(tensors)


def _load_weights(
    weights_path: str,
    card: dict[str, Any],
    hparams: dict[str, Any],
    filesystem: pafs.FileSystem,
    meter_id: str,
    version: str,
) -> RNNForecaster | BoostedForecaster:
    """Return the module built from ``hparams`` with the weights at ``weights_path``, on CPU in eval mode.

    ``card`` vouches for the bytes (its sha256s); ``hparams`` is its own, or a global network's shared ones.
    """
    raw = read_bytes(weights_path, filesystem)
    if raw is None:
        raise RegistryError(f"model {version} of meter {meter_id!r} has no weights at {weights_path}: retrain it")
    digests = card.get(WEIGHTS_SHA256_KEY, {})
    if not isinstance(digests, dict):
        raise RegistryError(f"the model card of {version} has a damaged {WEIGHTS_SHA256_KEY!r}; retrain the model")
    expected_sha256 = digests.get(weights_path.rpartition("/")[2])
    if expected_sha256 is None and card["cell"] == BOOSTED_CELL:
        # A pickle is only ever unpickled when its card vouches for its bytes.
        raise RegistryError(f"the model card of {version} has no sha256 for {weights_path}; retrain the model")
    if expected_sha256 is not None and hashlib.sha256(raw).hexdigest() != expected_sha256:
        raise RegistryError(
            f"weights at {weights_path} do not match the sha256 in the model card ({len(raw)} bytes): "
            "the file is truncated or corrupted; retrain the model"
        )
    if card["cell"] == BOOSTED_CELL:
        return BoostedForecaster.from_bytes(BoostingParams.from_dict(hparams), raw, weights_path)
    built_with = dict(hparams)
    built_with["hidden_sizes"] = tuple(built_with["hidden_sizes"])
    module = RNNForecaster(**built_with)
    try:
        state = load_safetensors(raw)
    except Exception as exc:  # safetensors raises its own SafetensorError on a damaged header
        raise RegistryError(f"weights at {weights_path} cannot be read ({exc}): the file is damaged; retrain") from exc
    if "n_members" not in hparams:
        # Cards written before ensembles hold one network's tensors at the top level.
        state = {f"members.0.{name}": tensor for name, tensor in state.items()}
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise RegistryError(f"weights at {weights_path} do not fit the model described in its card: {exc}") from exc
    return module.to("cpu").eval()


def champion_version(root: str, meter_id: str) -> str | None:
    """Return the version the champion pointer names, or None when the meter has no champion."""
    filesystem, meter_dir = _meter_dir(root, meter_id)
    raw = read_bytes(f"{meter_dir}/{CHAMPION_FILE}", filesystem)
    if raw is None:
        return None
    try:
        return str(json.loads(raw)["version"])
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError, or bytes that are not UTF-8 text
        raise RegistryError(f"{meter_dir}/{CHAMPION_FILE} is damaged ({exc}); re-promote a version") from exc


def verify_model_files(root: str, meter_id: str, version: str) -> None:
    """Check a version's card and the sha256 of its weights files (a combination's members too), building nothing.

    Cheaper than ``load_model`` for a question asked of every meter every night ("is the
    champion intact?"): it hashes bytes, it does not rebuild networks or unpickle trees.

    Raises
    ------
    RegistryError
        Naming the file that is missing, damaged or does not match its sha256.
    """
    card = read_card(root, meter_id, version)
    filesystem, meter_dir = _meter_dir(root, meter_id)
    if card.get("cell") == COMBINED_MODEL:
        for member in card.get("hparams", {}).get("member_versions", []):
            if member != version:
                verify_model_files(root, meter_id, member)
        return
    folder = f"{meter_dir}/{version}"
    shared = _shared_network(root, card, folder)  # a global network's weights are in its shared folder
    weights_folder = folder if shared is None else shared[0]
    digests = card.get(WEIGHTS_SHA256_KEY)
    if not isinstance(digests, dict):
        return  # a card written before sha256s were recorded: only loading can check it
    for name, expected in digests.items():
        raw = read_bytes(f"{weights_folder}/{name}", filesystem)
        if raw is None or hashlib.sha256(raw).hexdigest() != expected:
            raise RegistryError(
                f"weights at {weights_folder}/{name} are missing or do not match the sha256 in the model card: "
                "the file is truncated or corrupted; retrain the model"
            )


def load_champion(root: str, meter_id: str) -> LoadedModel | None:
    """Return the meter's champion model, or None when no model has been promoted yet."""
    version = champion_version(root, meter_id)
    return None if version is None else load_model(root, meter_id, version)


def promote(root: str, meter_id: str, version: str, run_id: str) -> None:
    """Point the meter's champion at ``version`` (atomic replace of ``champion.json``)."""
    card = read_card(root, meter_id, version)
    filesystem, meter_dir = _meter_dir(root, meter_id)
    pointer = {
        "version": version,
        "cell": card["cell"],
        "validation_mae_kw": card["validation_mae_kw"],
        "run_id": run_id,
        "promoted_at": datetime.now(timezone.utc).isoformat(),
    }
    atomic_write_json(f"{meter_dir}/{CHAMPION_FILE}", pointer, filesystem)


def read_history(root: str, meter_id: str) -> list[dict[str, Any]]:
    """Return the meter's decisions, oldest first (empty when none was recorded)."""
    filesystem, meter_dir = _meter_dir(root, meter_id)
    path = f"{meter_dir}/{HISTORY_FILE}"
    raw = read_bytes(path, filesystem)
    if raw is None:
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path} is not UTF-8 text ({exc}); repair or remove the damaged bytes") from exc
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path} line {number} is not valid JSON ({exc}); repair or remove that line") from exc
    return entries


def record_decision(root: str, meter_id: str, run_id: str, entry: dict[str, Any]) -> None:
    """Append a run's decision to ``history.jsonl``; recording the same run again replaces its line."""
    filesystem, meter_dir = _meter_dir(root, meter_id)
    kept = [old for old in read_history(root, meter_id) if old.get("run_id") != run_id]
    line = {"run_id": run_id, "recorded_at": datetime.now(timezone.utc).isoformat(), **entry}
    text = "".join(json.dumps(item, sort_keys=True, default=str) + "\n" for item in [*kept, line])
    atomic_write_bytes(f"{meter_dir}/{HISTORY_FILE}", text.encode("utf-8"), filesystem)
