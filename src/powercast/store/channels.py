"""The UCI house as five real meters: its total and the channels measured inside it.

The UCI file holds, besides the house's active power (kW), three sub-meters in Wh of active
energy per minute: kitchen (1), laundry room (2), electric water heater and air conditioner (3).
Their sum falls short of the total by what no sub-meter measures, the "rest" of the house (its
README gives the formula). ``ingest.channel_meters`` names which of these become meters; each
channel meter's rows carry its kW in ``active_power_kw`` and no other measured column, under the
meter id ``<ingest.default_meter_id>.<channel>`` (the total keeps the plain id).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from powercast.core.config import CHANNEL_NAMES
from powercast.core.schemas import MEASURED_COLUMNS, TARGET_COLUMN

TOTAL_CHANNEL = "total"
# Sub-metering column of each measured channel (Wh of active energy in one minute).
SUB_METER_COLUMNS: dict[str, str] = {
    "kitchen": "sub_metering_1_wh",
    "laundry": "sub_metering_2_wh",
    "heater_ac": "sub_metering_3_wh",
}
# One Wh in one minute is an average of 60 W = 0.06 kW.
KW_PER_WH_PER_MINUTE = 60.0 / 1000.0


def channel_meter_id(base_meter_id: str, channel: str) -> str:
    """Return the meter id of a channel (``sceaux_household.kitchen``; the total keeps ``base_meter_id``)."""
    if channel not in CHANNEL_NAMES:
        raise ValueError(f"unknown channel {channel!r}; known: {list(CHANNEL_NAMES)}")
    return base_meter_id if channel == TOTAL_CHANNEL else f"{base_meter_id}.{channel}"


def _channel_kw(readings: pa.Table, channel: str) -> pa.Array:
    """Return a channel's power in kW, null where its inputs are missing."""
    if channel == TOTAL_CHANNEL:
        return readings[TARGET_COLUMN]
    if channel in SUB_METER_COLUMNS:
        return pc.multiply(readings[SUB_METER_COLUMNS[channel]], pa.scalar(KW_PER_WH_PER_MINUTE, pa.float32()))
    sub_metered_kw = pc.multiply(
        pc.add(pc.add(readings["sub_metering_1_wh"], readings["sub_metering_2_wh"]), readings["sub_metering_3_wh"]),
        pa.scalar(KW_PER_WH_PER_MINUTE, pa.float32()),
    )
    # Sub-meters count whole Wh, so the remainder can dip a rounding step below zero; it is no load.
    rest_kw = pc.subtract(readings[TARGET_COLUMN], sub_metered_kw)
    return pc.max_element_wise(rest_kw, pa.scalar(0.0, pa.float32()), skip_nulls=False)


def _channel_rows(readings: pa.Table, channel: str) -> pa.Table:
    """Return the readings as one channel's meter: its id, its kW, other measured columns null."""
    if channel == TOTAL_CHANNEL:
        return readings
    meter_ids = pc.binary_join_element_wise(readings["meter_id"], pa.scalar(f".{channel}"), "")
    columns = {}
    for field in readings.schema:
        if field.name == "meter_id":
            columns[field.name] = meter_ids.cast(field.type)
        elif field.name == TARGET_COLUMN:
            columns[field.name] = _channel_kw(readings, channel).cast(field.type)
        elif field.name in MEASURED_COLUMNS:
            columns[field.name] = pa.nulls(readings.num_rows, field.type)
        else:
            columns[field.name] = readings[field.name]
    return pa.table(columns, schema=readings.schema)


def split_channels(readings: pa.Table, channels: list[str] | tuple[str, ...]) -> pa.Table:
    """Return the rows of every requested channel meter (one row per line and channel), in channel order.

    ``readings`` are validated UCI rows of one house (the total); with ``channels == ["total"]``
    they are returned unchanged.
    """
    unknown = [channel for channel in channels if channel not in CHANNEL_NAMES]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; known: {list(CHANNEL_NAMES)}")
    if list(channels) == [TOTAL_CHANNEL]:
        return readings
    return pa.concat_tables([_channel_rows(readings, channel) for channel in channels])
