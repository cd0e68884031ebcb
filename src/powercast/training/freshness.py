"""Whether a meter has readings that no training has seen yet: a night retrains a meter only then.

A training night records the end of the data it learned from in the meter's decision history,
whether or not it promoted a model. Retraining on exactly the same readings with the same seeds
would repeat the same decision, so a night (or a second run started beside it) skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from powercast.core.config import PowercastConfig
from powercast.core.errors import RegistryError
from powercast.models.registry import champion_version, read_card, read_history, verify_model_files
from powercast.store.readings import future_cutoff_utc, store_time_range

# The decision history key holding the (exclusive) end of the readings a training learned from.
DATA_END_KEY = "data_end_utc"


@dataclass(frozen=True)
class Freshness:
    """Whether to retrain a meter tonight, and why, in words for the run's log."""

    retrain: bool
    reason: str


def data_seen_end_utc(root: str, meter_id: str) -> pd.Timestamp | None:
    """Return the end of the newest data any recorded training of the meter learned from, or None."""
    ends = [pd.Timestamp(entry[DATA_END_KEY]) for entry in read_history(root, meter_id) if entry.get(DATA_END_KEY)]
    version = champion_version(root, meter_id)
    if version is not None:
        # Histories written before DATA_END_KEY existed: the champion's card says what it saw.
        ends.append(pd.Timestamp(read_card(root, meter_id, version)["data_range_utc"][1]))
    return max(ends) if ends else None


def training_freshness(config: PowercastConfig, meter_id: str, as_of_utc: datetime | None = None) -> Freshness:
    """Return whether the meter's store holds readings newer than every recorded training saw.

    A champion whose files cannot be read is retrained (tonight's challengers can replace it).
    Readings from the future (``ingest.future_tolerance_h``) are not news, nor, for a night run
    as of a past time (``as_of_utc``), readings from after it: that night would not train on them,
    so running it again would repeat the same training.
    """
    news_end_utc = future_cutoff_utc(config.ingest.future_tolerance_h)
    if as_of_utc is not None:
        news_end_utc = min(news_end_utc, as_of_utc)
    try:
        seen_end_utc = data_seen_end_utc(config.root, meter_id)
        version = champion_version(config.root, meter_id)
        if version is not None:
            verify_model_files(config.root, meter_id, version)  # the weights too, by their sha256
    except (RegistryError, KeyError, TypeError, ValueError) as exc:
        return Freshness(True, f"its registry cannot be read ({exc}): training")
    if seen_end_utc is None:
        return Freshness(True, "no training has seen its readings yet: training")
    if as_of_utc is not None and seen_end_utc > pd.Timestamp(as_of_utc):
        # A backfill: the models on record learned from readings after this night's as-of time.
        return Freshness(True, f"the last training saw data up to {seen_end_utc.isoformat()}, after this night's "
                               f"as-of time {pd.Timestamp(as_of_utc).isoformat()}: training on readings before it")
    _, last_utc = store_time_range(config.root, meter_id, news_end_utc)
    last = pd.Timestamp(last_utc)
    if last >= seen_end_utc:
        return Freshness(True, f"readings up to {last.isoformat()} are newer than the data last trained on "
                               f"(before {seen_end_utc.isoformat()}): training")
    return Freshness(False, f"nothing new since the last training (data before {seen_end_utc.isoformat()}, "
                            f"last reading {last.isoformat()})")
