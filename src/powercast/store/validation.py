"""Row rules: which source lines become readings and which are quarantined, with a reason code.

Every line ends up in exactly one of the two tables; nothing is dropped. A line gets the first
reason that applies, in this order:

1. ``wrong_column_count``: not as many fields as the header.
2. ``missing_meter_id`` / ``bad_meter_id`` (generic CSV): an empty meter id, or one with
   characters other than letters, digits, ``_``, ``-`` and ``.`` (it names a store folder).
3. ``bad_timestamp``: not the format's timestamp pattern, an impossible date or time of day, or
   (IANA source clocks only) a local time skipped by a daylight-saving change.
   ``future_timestamp``: at or after the ingest time plus ``ingest.future_tolerance_h`` (a meter
   whose clock jumped ahead; stored, such a row would end every later window in the future).
4. ``non_numeric``: a measured field that is neither a number nor a missing marker.
5. ``partially_missing``: some measured fields missing (``?`` or empty) and others present. The UCI
   logger writes all seven values or none (``?;?;?;?;?;?;``), so a mixed line is a damaged
   line, not a gap; the generic CSV follows the same rule (a line reports every column it has, or none).
6. ``negative_power``: active power, intensity or a sub-metering energy below zero (reactive
   power is left alone: it can legitimately be signed).
7. ``power_out_of_range``: active power above ``ingest.max_active_power_kw``.
8. ``voltage_out_of_range``: voltage outside ``[ingest.voltage_min_v, ingest.voltage_max_v]``.

Rules 2 to 8 are declared, in this order, in the table ``_ROW_RULES``.

A line whose measured fields are *all* missing is not bad: it is stored as a missing reading
(nulls), so gaps stay visible downstream.

Within one file, lines with the same meter and timestamp are resolved by
:func:`resolve_duplicates`: exact copies keep the first line and quarantine the others as
``duplicate_row``; copies that disagree are all quarantined as ``conflicting_duplicate``
(neither can be trusted over the other, so a reading already in the store stays as it is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial, reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from powercast.core.config import IngestConfig, parse_timezone
from powercast.core.schemas import (
    MEASURED_COLUMNS,
    METER_ID_PATTERN,
    METER_ID_RULE,
    READINGS_SCHEMA,
    REASON_BAD_METER_ID,
    REASON_BAD_TIMESTAMP,
    REASON_CONFLICTING_DUPLICATE,
    REASON_DUPLICATE_ROW,
    REASON_FUTURE_TIMESTAMP,
    REASON_MISSING_METER,
    REASON_NEGATIVE_POWER,
    REASON_NON_NUMERIC,
    REASON_PARTIAL_MISSING,
    REASON_POWER_OUT_OF_RANGE,
    REASON_VOLTAGE_OUT_OF_RANGE,
    REASON_WRONG_COLUMN_COUNT,
    TARGET_COLUMN,
    UTC_US,
)
from powercast.store.sources import MISSING_MARKERS, FieldBatch, RawBatch, SourceFormat

NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
NON_NEGATIVE_COLUMNS: tuple[str, ...] = (
    "active_power_kw",
    "intensity_a",
    "sub_metering_1_wh",
    "sub_metering_2_wh",
    "sub_metering_3_wh",
)
_UCI_DATE_PATTERN = r"^\s*(?P<day>\d{1,2})/(?P<month>\d{1,2})/(?P<year>\d{4})\s*$"
_UCI_TIME_PATTERN = r"^\s*(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})\s*$"
_ISO_PATTERN = (
    r"^\s*(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[T ](?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:(?P<zulu>Z)|(?P<sign>[+-])(?P<offset_hours>\d{2}):?(?P<offset_minutes>\d{2}))?\s*$"
)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_US_PER_S = 1_000_000

# In-memory tables handed from validation to ingest (the on-disk schemas live in schemas.py).
# A stored reading's columns, except that the source line stands where the file's sha256 will.
VALIDATED_SCHEMA = pa.schema(
    [
        *[field for field in READINGS_SCHEMA if field.name != "source_sha256"],
        pa.field("line_number", pa.int64(), nullable=False),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("raw_line", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class ValidatedBatch:
    """The lines of one raw batch split into readings (``VALIDATED_SCHEMA``) and rejects (``REJECTED_SCHEMA``)."""

    readings: pa.Table
    rejected: pa.Table


class _Verdicts:
    """First-failing-rule bookkeeping: one reason and one detail per line, null while the line is good."""

    def __init__(self, n_rows: int) -> None:
        self.reason = pa.nulls(n_rows, pa.string())
        self.detail = pa.nulls(n_rows, pa.string())
        self.any_flagged = False

    def flag(self, failing: pa.Array, reason: str, detail: Callable[[], pa.Array] | str) -> None:
        """Give ``reason`` to failing lines that have none yet; ``detail`` is built only if one fails."""
        fresh = pc.and_(pc.is_null(self.reason), pc.fill_null(failing, False))
        if not pc.any(fresh).as_py():
            return
        self.reason = pc.if_else(fresh, reason, self.reason)
        self.detail = pc.if_else(fresh, detail if isinstance(detail, str) else detail(), self.detail)
        self.any_flagged = True

    @property
    def good(self) -> pa.Array:
        return pc.is_null(self.reason)


def _joined(*pieces: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*(_plain(piece) for piece in pieces), "")


def _plain(values: pa.Array | str) -> pa.Array | str:
    """Return dictionary-encoded text decoded (string kernels take plain text); anything else as it is."""
    if isinstance(values, pa.Array) and pa.types.is_dictionary(values.type):
        return values.dictionary_decode()
    return values


def _encoded(values: pa.Array) -> pa.DictionaryArray:
    """Return text dictionary-encoded (the field reader's texts already are)."""
    return values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)


def _int_component(parts: pa.Array, name: str) -> np.ndarray:
    text = pc.struct_field(parts, name)
    text = pc.fill_null(pc.if_else(pc.equal(text, ""), "0", text), "0")
    return pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)


def _local_microseconds(parts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return (microseconds since 1970-01-01 on the wall clock, valid mask) from date/time parts."""
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    year, month, day = (_int_component(parts, name) for name in ("year", "month", "day"))
    hour, minute, second = (_int_component(parts, name) for name in ("hour", "minute", "second"))
    month_ok = (month >= 1) & (month <= 12)
    safe_month = np.where(month_ok, month, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days_in_month = _DAYS_IN_MONTH[safe_month - 1] + ((safe_month == 2) & leap)
    valid = matched & month_ok & (day >= 1) & (day <= days_in_month) & (hour <= 23) & (minute <= 59) & (second <= 59)
    year, month, day = np.where(valid, year, 1970), np.where(valid, month, 1), np.where(valid, day, 1)
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    shifted_year = year - (month <= 2)
    era = np.floor_divide(shifted_year, 400)
    year_of_era = shifted_year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146_097 + day_of_era - 719_468
    seconds = days * 86_400 + np.where(valid, hour * 3600 + minute * 60 + second, 0)
    return seconds * _US_PER_S, valid


def parse_uci_dates(date_text: pa.Array) -> pa.Array:
    """Return the ``d/m/yyyy`` texts as date32 values, null where a text is not a valid date."""
    parts = pc.extract_regex(date_text, _UCI_DATE_PATTERN)
    midnight = pa.repeat(pa.scalar("0"), len(date_text))
    with_time = pa.StructArray.from_arrays(
        [pc.struct_field(parts, name) for name in ("year", "month", "day")] + [midnight, midnight, midnight],
        names=["year", "month", "day", "hour", "minute", "second"],
        mask=pc.invert(parts.is_valid()),
    )
    local_us, valid = _local_microseconds(with_time)
    days = local_us // (86_400 * _US_PER_S)
    return pa.array(days.astype(np.int32), mask=~valid).cast(pa.date32())


def _source_clock_to_utc(local_us: np.ndarray, clock: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (UTC microseconds, exists mask) for wall-clock microseconds on the source clock."""
    zone = parse_timezone(clock)
    if isinstance(zone, timezone):
        offset = zone.utcoffset(None)
        return local_us - offset // timedelta(microseconds=1), np.ones(len(local_us), dtype=bool)
    naive = pa.array(local_us, type=pa.timestamp("us"))
    earliest = pc.assume_timezone(naive, timezone=clock, ambiguous="earliest", nonexistent="earliest")
    latest = pc.assume_timezone(naive, timezone=clock, ambiguous="earliest", nonexistent="latest")
    exists = pc.equal(earliest, latest).to_numpy(zero_copy_only=False)
    return pc.cast(earliest, pa.int64()).to_numpy(zero_copy_only=False), exists


def _uci_timestamps(fields: dict[str, pa.Array], rules: IngestConfig) -> tuple[pa.Array, pa.Array, Callable[[], pa.Array]]:
    # A day has 1,440 lines with one date text and every time text recurs daily: parse each
    # distinct text once, then index.
    dates = _encoded(fields["Date"])
    times = _encoded(fields["Time"])
    day_values = parse_uci_dates(dates.dictionary)
    day_numbers = pc.fill_null(pc.cast(day_values, pa.int32()), 0).to_numpy().astype(np.int64)
    day_valid = day_values.is_valid().to_numpy(zero_copy_only=False)
    time_parts = pc.extract_regex(times.dictionary, _UCI_TIME_PATTERN)
    hour, minute, second = (_int_component(time_parts, name) for name in ("hour", "minute", "second"))
    time_valid = time_parts.is_valid().to_numpy(zero_copy_only=False) & (hour <= 23) & (minute <= 59) & (second <= 59)
    seconds_of_day = np.where(time_valid, hour * 3600 + minute * 60 + second, 0)
    date_index = dates.indices.to_numpy()
    time_index = times.indices.to_numpy()
    local_us = (day_numbers[date_index] * 86_400 + seconds_of_day[time_index]) * _US_PER_S
    valid = day_valid[date_index] & time_valid[time_index]
    utc_us, exists = _source_clock_to_utc(local_us, rules.source_utc_offset)

    def detail() -> pa.Array:
        return _joined("date/time '", fields["Date"], " ", fields["Time"], "' is not a valid d/m/yyyy HH:MM:SS")

    return pa.array(utc_us, type=pa.int64()).cast(UTC_US), pa.array(valid & exists), detail


def _iso_timestamps(text: pa.Array, rules: IngestConfig) -> tuple[pa.Array, pa.Array, Callable[[], pa.Array]]:
    parts = pc.extract_regex(text, _ISO_PATTERN)
    local_us, valid = _local_microseconds(parts)
    clock_us, exists = _source_clock_to_utc(local_us, rules.source_utc_offset)
    zulu = pc.equal(pc.fill_null(pc.struct_field(parts, "zulu"), ""), "Z").to_numpy(zero_copy_only=False)
    sign_text = pc.fill_null(pc.struct_field(parts, "sign"), "")
    has_offset = pc.not_equal(sign_text, "").to_numpy(zero_copy_only=False)
    sign = np.where(pc.equal(sign_text, "-").to_numpy(zero_copy_only=False), -1, 1)
    offset_minutes = _int_component(parts, "offset_hours") * 60 + _int_component(parts, "offset_minutes")
    offset_ok = ~has_offset | (offset_minutes <= 14 * 60)
    explicit_us = local_us - sign * offset_minutes * 60 * _US_PER_S
    utc_us = np.where(zulu | has_offset, explicit_us, clock_us)
    ok = valid & offset_ok & (zulu | has_offset | exists)

    def detail() -> pa.Array:
        return _joined("timestamp '", text, "' is not ISO 8601 YYYY-MM-DDTHH:MM:SS[Z|+HH:MM]")

    return pa.array(utc_us, type=pa.int64()).cast(UTC_US), pa.array(ok), detail


def _parse_measured(text: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Return (is missing marker, is a number, float32 value or null) for each text of a measured field.

    A field the field reader already parsed (float32, null where missing: it reads nothing else)
    is passed through.
    """
    if pa.types.is_floating(text.type):
        return text.is_null(), text.is_valid(), text
    # Readings repeat (3 decimals, a few thousand distinct texts per batch): decide each distinct text once.
    encoded = _encoded(text)
    distinct = pc.utf8_trim_whitespace(encoded.dictionary)
    is_missing = pc.is_in(distinct, value_set=pa.array(MISSING_MARKERS))
    is_number = pc.match_substring_regex(distinct, NUMBER_PATTERN)
    value = pc.cast(pc.if_else(is_number, distinct, pa.scalar(None, pa.string())), pa.float32())
    values = value.take(encoded.indices)
    if pc.all(pc.or_(is_missing, is_number)).as_py():
        # Every text is a number or a missing marker (the usual batch): a value is null exactly
        # where its text is missing, so the two flags come from the values' validity, not two more takes.
        return values.is_null(), values.is_valid(), values
    return is_missing.take(encoded.indices), is_number.take(encoded.indices), values


@dataclass(frozen=True)
class _Lines:
    """The well-formed lines of one batch, parsed: what the row rules read and the output tables keep."""

    n_rows: int
    raw_lines: Callable[[pa.Array], pa.Array] | None  # mask -> the raw text of those lines; None: not kept
    line_numbers: pa.Array
    meter_ids: pa.Array
    meter_id_in_file: bool  # False for UCI: its meter id is ingest.default_meter_id, not a field to check
    timestamps: pa.Array
    timestamp_ok: pa.Array
    timestamp_detail: Callable[[], pa.Array]
    field_names: dict[str, str]  # measured column -> the file's name for it, in file order
    texts: dict[str, pa.Array]  # measured column -> the field's raw text (or float32 when already parsed)
    is_missing: dict[str, pa.Array]
    is_number: dict[str, pa.Array]
    values: dict[str, pa.Array]  # measured column -> float32, null unless a number
    limits: IngestConfig
    future_from: pa.Scalar | None  # timestamps at or after this are from the future (None: not checked)


# ---- the row rules ---------------------------------------------------------------------------
# Each rule reads the lines and, for one column at a time, returns the mask of lines it fails
# and (built only when some line fails) their detail text. A rule's columns come from a selector,
# because which columns a batch has depends on its format.


@dataclass(frozen=True)
class _RowRule:
    """One row rule: lines that fail it on any of its columns get ``reason`` unless they already have one."""

    reason: str
    columns: Callable[[_Lines], tuple[str, ...]]  # checked one at a time, in this order
    failing: Callable[[_Lines, str], pa.Array]
    detail: Callable[[_Lines, str], pa.Array | str]


_WHOLE_LINE = "line"  # the one "column" of a rule that reads the whole line


def _meter_id_field(lines: _Lines) -> tuple[str, ...]:
    return ("meter_id",) if lines.meter_id_in_file else ()


def _timestamp_field(lines: _Lines) -> tuple[str, ...]:
    return ("timestamp",)


def _each_measured_field(lines: _Lines) -> tuple[str, ...]:
    return tuple(lines.values)  # file order, so a line's detail names its first bad field


def _whole_line(lines: _Lines) -> tuple[str, ...]:
    return (_WHOLE_LINE,)


def _measured_among(*columns: str) -> Callable[[_Lines], tuple[str, ...]]:
    """Return a selector of those of ``columns`` the file has, in the order given."""

    def present(lines: _Lines) -> tuple[str, ...]:
        return tuple(column for column in columns if column in lines.values)

    return present


def _meter_id_empty(lines: _Lines, column: str) -> pa.Array:
    return pc.equal(lines.meter_ids, "")


def _meter_id_empty_detail(lines: _Lines, column: str) -> str:
    return "meter_id is empty"


def _meter_id_malformed(lines: _Lines, column: str) -> pa.Array:
    return pc.invert(pc.match_substring_regex(lines.meter_ids, METER_ID_PATTERN))


def _meter_id_malformed_detail(lines: _Lines, column: str) -> pa.Array:
    return _joined("meter_id '", lines.meter_ids, f"' is not a valid meter id: use {METER_ID_RULE}")


def _timestamp_invalid(lines: _Lines, column: str) -> pa.Array:
    return pc.invert(lines.timestamp_ok)


def _timestamp_invalid_detail(lines: _Lines, column: str) -> pa.Array:
    return lines.timestamp_detail()


def _timestamp_in_future(lines: _Lines, column: str) -> pa.Array:
    if lines.future_from is None:
        return pa.repeat(pa.scalar(False), lines.n_rows)
    return pc.greater_equal(lines.timestamps, lines.future_from)


def _timestamp_in_future_detail(lines: _Lines, column: str) -> pa.Array:
    cutoff = f"{lines.future_from.as_py():%Y-%m-%dT%H:%M:%SZ}" if lines.future_from is not None else "-"
    whole_seconds = pc.cast(lines.timestamps, pa.timestamp("s", tz="UTC"), safe=False)
    return _joined(
        "stamped ",
        pc.strftime(whole_seconds, format="%Y-%m-%dT%H:%M:%SZ"),
        f", at or after {cutoff} (ingest time + ingest.future_tolerance_h={lines.limits.future_tolerance_h:g} h)",
    )


def _not_numeric(lines: _Lines, column: str) -> pa.Array:
    return pc.invert(pc.or_(lines.is_missing[column], lines.is_number[column]))


def _not_numeric_detail(lines: _Lines, column: str) -> pa.Array:
    text = pc.utf8_trim_whitespace(_plain(lines.texts[column]))
    return _joined(f"{lines.field_names[column]}='", text, "' is not a number, '?' or empty")


def _partly_missing(lines: _Lines, column: str) -> pa.Array:
    missing_flags = list(lines.is_missing.values())
    all_missing = reduce(pc.and_, missing_flags)
    any_missing = reduce(pc.or_, missing_flags)
    return pc.and_(any_missing, pc.invert(all_missing))


def _partly_missing_detail(lines: _Lines, column: str) -> str:
    return "some measured values are missing ('?' or empty) and others are not"


def _negative(lines: _Lines, column: str) -> pa.Array:
    return pc.less(lines.values[column], 0)


def _negative_detail(lines: _Lines, column: str) -> pa.Array:
    return _joined(f"{column}=", pc.cast(lines.values[column], pa.string()), " is negative")


def _power_above_max(lines: _Lines, column: str) -> pa.Array:
    return pc.greater(lines.values[column], lines.limits.max_active_power_kw)


def _power_above_max_detail(lines: _Lines, column: str) -> pa.Array:
    limit_kw = lines.limits.max_active_power_kw
    return _joined(f"{column}=", pc.cast(lines.values[column], pa.string()), f" is above {limit_kw:g} kW")


def _voltage_outside_range(lines: _Lines, column: str) -> pa.Array:
    voltage = lines.values[column]
    return pc.or_(pc.less(voltage, lines.limits.voltage_min_v), pc.greater(voltage, lines.limits.voltage_max_v))


def _voltage_outside_range_detail(lines: _Lines, column: str) -> pa.Array:
    low_v, high_v = lines.limits.voltage_min_v, lines.limits.voltage_max_v
    return _joined(f"{column}=", pc.cast(lines.values[column], pa.string()), f" is outside [{low_v:g}, {high_v:g}] V")


# Every rule after wrong_column_count, in order of precedence (see the module docstring). That
# first rule is applied by _split_off_wrong_column_count: a line without the header's fields
# cannot be parsed, so it never reaches this table.
_ROW_RULES: tuple[_RowRule, ...] = (
    _RowRule(REASON_MISSING_METER, _meter_id_field, _meter_id_empty, _meter_id_empty_detail),
    _RowRule(REASON_BAD_METER_ID, _meter_id_field, _meter_id_malformed, _meter_id_malformed_detail),
    _RowRule(REASON_BAD_TIMESTAMP, _timestamp_field, _timestamp_invalid, _timestamp_invalid_detail),
    _RowRule(REASON_FUTURE_TIMESTAMP, _timestamp_field, _timestamp_in_future, _timestamp_in_future_detail),
    _RowRule(REASON_NON_NUMERIC, _each_measured_field, _not_numeric, _not_numeric_detail),
    _RowRule(REASON_PARTIAL_MISSING, _whole_line, _partly_missing, _partly_missing_detail),
    _RowRule(REASON_NEGATIVE_POWER, _measured_among(*NON_NEGATIVE_COLUMNS), _negative, _negative_detail),
    _RowRule(REASON_POWER_OUT_OF_RANGE, _measured_among(TARGET_COLUMN), _power_above_max, _power_above_max_detail),
    _RowRule(
        REASON_VOLTAGE_OUT_OF_RANGE, _measured_among("voltage_v"), _voltage_outside_range, _voltage_outside_range_detail
    ),
)


def _split_off_wrong_column_count(batch: RawBatch, source_format: SourceFormat) -> tuple[pa.Array, pa.Table]:
    """Return (mask of lines with the header's field count, rejected table of the other lines)."""
    counts = pc.list_value_length(batch.fields)
    well_formed = pc.equal(counts, source_format.n_fields)
    malformed = pc.invert(well_formed)
    wrong_count = pa.table(
        {
            "line_number": batch.line_numbers.filter(malformed),
            "raw_line": batch.lines.filter(malformed),
            "reason": pa.repeat(pa.scalar(REASON_WRONG_COLUMN_COUNT), int(pc.sum(malformed).as_py() or 0)),
            "detail": _joined(
                f"expected {source_format.n_fields} fields, found ", pc.cast(counts.filter(malformed), pa.string())
            ),
        },
        schema=REJECTED_SCHEMA,
    )
    return well_formed, wrong_count


def _well_formed_fields(batch: RawBatch, well_formed: pa.Array, source_format: SourceFormat) -> dict[str, pa.Array]:
    """Return the text of every field of the lines of ``batch`` that have the header's field count."""
    split = batch.fields.filter(well_formed)
    return {name: pc.list_element(split, index) for index, name in enumerate(source_format.field_names)}


def _parse_lines(
    fields: dict[str, pa.Array],
    line_numbers: pa.Array,
    raw_lines: Callable[[pa.Array], pa.Array] | None,
    source_format: SourceFormat,
    rules: IngestConfig,
    future_from_utc: datetime | None,
) -> _Lines:
    """Return lines (their fields, line numbers and raw text) with meter ids, timestamps and measured values parsed."""
    n_rows = len(line_numbers)
    if source_format.kind == "uci":
        meter_ids = pa.repeat(pa.scalar(rules.default_meter_id), n_rows)
        timestamps, timestamp_ok, timestamp_detail = _uci_timestamps(fields, rules)
    else:
        meter_ids = pc.utf8_trim_whitespace(_plain(fields["meter_id"]))
        timestamps, timestamp_ok, timestamp_detail = _iso_timestamps(fields["timestamp"], rules)
    # The measured fields are the last ones, in the order of source_format.measured_columns.
    measured_fields = source_format.field_names[len(source_format.field_names) - len(source_format.measured_columns) :]
    field_names = dict(zip(source_format.measured_columns, measured_fields, strict=True))
    texts = {column: fields[field_name] for column, field_name in field_names.items()}
    is_missing: dict[str, pa.Array] = {}
    is_number: dict[str, pa.Array] = {}
    values: dict[str, pa.Array] = {}
    for column, text in texts.items():
        is_missing[column], is_number[column], values[column] = _parse_measured(text)
    return _Lines(
        n_rows=n_rows,
        raw_lines=raw_lines,
        line_numbers=line_numbers,
        meter_ids=meter_ids,
        meter_id_in_file=source_format.kind != "uci",
        timestamps=timestamps,
        timestamp_ok=timestamp_ok,
        timestamp_detail=timestamp_detail,
        field_names=field_names,
        texts=texts,
        is_missing=is_missing,
        is_number=is_number,
        values=values,
        limits=rules,
        future_from=None if future_from_utc is None else pa.scalar(future_from_utc, type=UTC_US),
    )


def _apply_row_rules(lines: _Lines) -> _Verdicts:
    """Return each line's first failing rule (reason and detail), null for a good line."""
    verdicts = _Verdicts(lines.n_rows)
    for rule in _ROW_RULES:
        for column in rule.columns(lines):
            verdicts.flag(rule.failing(lines, column), rule.reason, partial(rule.detail, lines, column))
    return verdicts


def _readings_table(lines: _Lines, verdicts: _Verdicts) -> pa.Table:
    """Return the good lines as a ``VALIDATED_SCHEMA`` table; measured columns the file lacks are null."""
    absent = pa.nulls(lines.n_rows, pa.float32())
    table = pa.table(
        {
            "meter_id": lines.meter_ids,
            "timestamp": lines.timestamps,
            **{name: lines.values.get(name, absent) for name in MEASURED_COLUMNS},
            "line_number": lines.line_numbers,
        },
        schema=VALIDATED_SCHEMA,
    )
    return table.filter(verdicts.good) if verdicts.any_flagged else table


def _rejected_table(lines: _Lines, verdicts: _Verdicts) -> pa.Table:
    """Return the lines that failed a rule as a ``REJECTED_SCHEMA`` table."""
    if not verdicts.any_flagged:
        return REJECTED_SCHEMA.empty_table()
    bad = pc.invert(verdicts.good)
    n_bad = lines.n_rows - pc.sum(verdicts.good).as_py()
    return pa.table(
        {
            "line_number": lines.line_numbers.filter(bad),
            "raw_line": lines.raw_lines(bad) if lines.raw_lines else pa.repeat(pa.scalar(""), n_bad),
            "reason": verdicts.reason.filter(bad),
            "detail": verdicts.detail.filter(bad),
        },
        schema=REJECTED_SCHEMA,
    )


def validate_batch(
    batch: RawBatch | FieldBatch,
    source_format: SourceFormat,
    rules: IngestConfig,
    future_from_utc: datetime | None = None,
) -> ValidatedBatch:
    """Return the batch's lines split into readings and rejected lines (each with a reason code).

    Parameters
    ----------
    batch : RawBatch or FieldBatch
        Consecutive lines of one source file: raw lines (any field count), or lines the field
        reader split and parsed (each with the header's field count). A FieldBatch keeps no raw
        text: its rejected lines have an empty ``raw_line`` for the caller to fill in (ingest reads
        those lines again).
    source_format : SourceFormat
        The file's format (from its header).
    rules : IngestConfig
        Physical limits and the source clock.
    future_from_utc : datetime, optional
        Lines stamped at or after this are quarantined as ``future_timestamp`` (ingest passes its
        clock plus ``rules.future_tolerance_h``, see :func:`future_cutoff_utc`); None checks nothing.
    """
    if isinstance(batch, FieldBatch):
        fields, wrong_count, raw_lines = batch.fields, REJECTED_SCHEMA.empty_table(), None
        line_numbers = batch.line_numbers
    else:
        well_formed, wrong_count = _split_off_wrong_column_count(batch, source_format)
        fields = _well_formed_fields(batch, well_formed, source_format)
        line_numbers = batch.line_numbers.filter(well_formed)
        raw_lines = batch.lines.filter(well_formed).filter
    lines = _parse_lines(fields, line_numbers, raw_lines, source_format, rules, future_from_utc)
    verdicts = _apply_row_rules(lines)
    rejected = _rejected_table(lines, verdicts)
    return ValidatedBatch(
        readings=_readings_table(lines, verdicts),
        rejected=pa.concat_tables([wrong_count, rejected]) if wrong_count.num_rows else rejected,
    )


def _in_key_order(readings: pa.Table) -> bool:
    """Return True when one meter's rows are already in timestamp order (a chronological file: no sort, no copy)."""
    if readings.num_rows < 2 or pc.count_distinct(readings["meter_id"]).as_py() != 1:
        return readings.num_rows < 2
    times = pc.cast(readings["timestamp"], pa.int64()).to_numpy()
    lines = readings["line_number"].to_numpy()
    return bool(np.all(times[1:] >= times[:-1]) and np.all(lines[1:] > lines[:-1]))


def resolve_duplicates(readings: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Return (readings sorted by meter and timestamp with one line per key, duplicate lines).

    The second table has ``line_number``, ``reason`` and ``detail`` for every line taken out:
    extra exact copies (``duplicate_row``) and every copy of a disagreeing key
    (``conflicting_duplicate``).
    """
    ordered = readings if _in_key_order(readings) else readings.sort_by(
        [("meter_id", "ascending"), ("timestamp", "ascending"), ("line_number", "ascending")]
    )
    empty = pa.table(
        {"line_number": pa.array([], pa.int64()), "reason": pa.array([], pa.string()), "detail": pa.array([], pa.string())}
    )
    if ordered.num_rows < 2:
        return ordered, empty
    times = pc.cast(ordered["timestamp"], pa.int64()).to_numpy()
    meters = ordered["meter_id"]
    same_as_next = (times[:-1] == times[1:]) & pc.equal(meters[:-1], meters[1:]).to_numpy(zero_copy_only=False)
    if not same_as_next.any():
        return ordered, empty
    in_group = np.zeros(ordered.num_rows, dtype=bool)
    in_group[:-1] |= same_as_next
    in_group[1:] |= same_as_next
    frame = ordered.filter(pa.array(in_group)).to_pandas()
    keys = [frame["meter_id"], frame["timestamp"]]
    distinct = frame.groupby(keys)[list(MEASURED_COLUMNS)].transform(lambda col: col.nunique(dropna=False))
    conflicting = (distinct > 1).any(axis=1)
    first_line = frame.groupby(keys)["line_number"].transform("min")
    lines_text = frame["line_number"].astype(str)
    group_lines = lines_text.groupby(keys).transform(lambda col: ", ".join(col))
    is_copy = ~conflicting & (frame["line_number"] != first_line)
    taken = frame[conflicting | is_copy]
    reason = np.where(conflicting[taken.index], REASON_CONFLICTING_DUPLICATE, REASON_DUPLICATE_ROW)
    detail = np.where(
        conflicting[taken.index],
        "same meter and timestamp with different values on lines " + group_lines[taken.index],
        "exact copy of line " + first_line[taken.index].astype(str),
    )
    removed = pa.table(
        {
            "line_number": pa.array(taken["line_number"].to_numpy(), pa.int64()),
            "reason": pa.array(reason.tolist(), pa.string()),
            "detail": pa.array(detail.tolist(), pa.string()),
        }
    )
    kept = ordered.filter(pc.invert(pc.is_in(ordered["line_number"], value_set=removed["line_number"])))
    return kept, removed
