"""Row rules: each quarantine reason, missing readings as nulls, timestamps on the source clock, duplicates."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from powercast.core.config import IngestConfig
from powercast.core.schemas import (
    MEASURED_COLUMNS,
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
)
from powercast.store.sources import iter_raw_batches, open_source
from powercast.store.validation import (
    ValidatedBatch,
    parse_uci_dates,
    resolve_duplicates,
    validate_batch,
)

GOOD = "16/12/2006;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000"
CSV_HEADER = "timestamp,meter_id,active_power_kw,voltage_v"


def _validate(write_source, lines: list[str], rules: IngestConfig | None = None, header: str | None = None) -> ValidatedBatch:
    kwargs = {} if header is None else {"header": header}
    path = write_source("rows.csv" if header else "rows.txt", lines, **kwargs)
    source = open_source(str(path), pafs.LocalFileSystem())
    batches = list(iter_raw_batches(source))
    assert len(batches) == 1
    return validate_batch(batches[0], source.source_format, rules or IngestConfig())


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("16/12/2006;17:24:00;4.216;0.418;234.840", REASON_WRONG_COLUMN_COUNT),
        ("31/2/2007;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000", REASON_BAD_TIMESTAMP),
        ("16/12/2006;24:00:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000", REASON_BAD_TIMESTAMP),
        ("2006-12-16;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000", REASON_BAD_TIMESTAMP),
        ("16/12/2006;17:24:00;4,216;0.418;234.840;18.400;0.000;1.000;17.000", REASON_NON_NUMERIC),
        ("16/12/2006;17:24:00;nan;0.418;234.840;18.400;0.000;1.000;17.000", REASON_NON_NUMERIC),
        ("16/12/2006;17:24:00;?;0.418;234.840;18.400;0.000;1.000;17.000", REASON_PARTIAL_MISSING),
        ("16/12/2006;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;", REASON_PARTIAL_MISSING),
        ("16/12/2006;17:24:00;-0.5;0.418;234.840;18.400;0.000;1.000;17.000", REASON_NEGATIVE_POWER),
        ("16/12/2006;17:24:00;4.216;0.418;234.840;18.400;-1.000;1.000;17.000", REASON_NEGATIVE_POWER),
        ("16/12/2006;17:24:00;75.0;0.418;234.840;18.400;0.000;1.000;17.000", REASON_POWER_OUT_OF_RANGE),
        ("16/12/2006;17:24:00;4.216;0.418;20.0;18.400;0.000;1.000;17.000", REASON_VOLTAGE_OUT_OF_RANGE),
        ("16/12/2006;17:24:00;4.216;0.418;400.0;18.400;0.000;1.000;17.000", REASON_VOLTAGE_OUT_OF_RANGE),
    ],
)
def test_uci_line_breaking_a_rule_is_rejected_with_its_reason(write_source, line: str, reason: str) -> None:
    result = _validate(write_source, [GOOD, line])
    assert result.readings.num_rows == 1
    assert result.rejected.to_pylist() == [
        {"line_number": 3, "raw_line": line, "reason": reason, "detail": result.rejected["detail"][0].as_py()}
    ]
    assert result.rejected["detail"][0].as_py()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2010-01-01T00:00:00Z,,1.0,230.0", REASON_MISSING_METER),
        ("2010-01-01T00:00:00Z,../etc,1.0,230.0", REASON_BAD_METER_ID),
        ("2010-13-01T00:00:00Z,m1,1.0,230.0", REASON_BAD_TIMESTAMP),
        ("01/01/2010 00:00,m1,1.0,230.0", REASON_BAD_TIMESTAMP),
        ("2010-01-01T00:00:00Z,m1,?,230.0", REASON_PARTIAL_MISSING),
    ],
)
def test_generic_csv_line_breaking_a_rule_is_rejected_with_its_reason(write_source, line: str, reason: str) -> None:
    result = _validate(write_source, ["2010-01-01T00:01:00Z,m1,1.0,230.0", line], header=CSV_HEADER)
    assert result.rejected["reason"].to_pylist() == [reason]
    assert result.readings["meter_id"].to_pylist() == ["m1"]


def test_question_mark_line_is_a_stored_reading_with_every_value_null(write_source) -> None:
    result = _validate(write_source, ["16/12/2006;17:25:00;?;?;?;?;?;?;"])
    assert result.rejected.num_rows == 0
    row = result.readings.to_pylist()[0]
    assert all(row[name] is None for name in MEASURED_COLUMNS)
    assert row["timestamp"] == datetime(2006, 12, 16, 16, 25, tzinfo=timezone.utc)


def test_uci_clock_is_read_with_the_configured_offset(write_source) -> None:
    result = _validate(write_source, [GOOD], IngestConfig(source_utc_offset="+03:00"))
    assert result.readings["timestamp"][0].as_py() == datetime(2006, 12, 16, 14, 24, tzinfo=timezone.utc)


def test_unpadded_day_and_month_are_read(write_source) -> None:
    result = _validate(write_source, ["1/2/2007;00:01:00;1.0;0.1;240.0;4.0;0.0;0.0;0.0"])
    assert result.readings["timestamp"][0].as_py() == datetime(2007, 1, 31, 23, 1, tzinfo=timezone.utc)


def test_local_time_skipped_by_a_dst_change_is_a_bad_timestamp(write_source) -> None:
    rules = IngestConfig(source_utc_offset="Europe/Paris")
    result = _validate(write_source, ["25/3/2007;02:30:00;1.0;0.1;240.0;4.0;0.0;0.0;0.0", GOOD], rules)
    assert result.rejected["reason"].to_pylist() == [REASON_BAD_TIMESTAMP]
    assert result.readings["timestamp"][0].as_py() == datetime(2006, 12, 16, 16, 24, tzinfo=timezone.utc)


def test_generic_timestamps_honour_their_offset_and_naive_ones_use_the_source_clock(write_source) -> None:
    lines = ["2010-01-01T12:00:00Z,m1,1.0,230.0", "2010-01-01 12:01:00+02:00,m1,1.0,230.0", "2010-01-01T12:02:00,m1,1.0,230.0"]
    result = _validate(write_source, lines, header=CSV_HEADER)
    assert result.readings["timestamp"].to_pylist() == [
        datetime(2010, 1, 1, 12, 0, tzinfo=timezone.utc),
        datetime(2010, 1, 1, 10, 1, tzinfo=timezone.utc),
        datetime(2010, 1, 1, 11, 2, tzinfo=timezone.utc),
    ]


def test_generic_columns_absent_from_the_file_are_null(write_source) -> None:
    result = _validate(write_source, ["2010-01-01T00:00:00Z,m1,1.5,231.0"], header=CSV_HEADER)
    row = result.readings.to_pylist()[0]
    assert (row["active_power_kw"], row["voltage_v"], row["intensity_a"]) == (1.5, 231.0, None)


def test_limits_come_from_the_configuration(write_source) -> None:
    result = _validate(write_source, [GOOD], IngestConfig(max_active_power_kw=4.0))
    assert result.rejected["reason"].to_pylist() == [REASON_POWER_OUT_OF_RANGE]


def test_first_failing_rule_gives_the_reason(write_source) -> None:
    result = _validate(write_source, ["31/2/2007;17:24:00;abc;0.418;234.840;18.400;0.000;1.000;17.000"])
    assert result.rejected["reason"].to_pylist() == [REASON_BAD_TIMESTAMP]


def test_exact_copies_keep_the_first_line_and_quarantine_the_rest(write_source) -> None:
    result = _validate(write_source, [GOOD, GOOD, GOOD])
    kept, removed = resolve_duplicates(result.readings)
    assert kept["line_number"].to_pylist() == [2]
    assert removed["reason"].to_pylist() == [REASON_DUPLICATE_ROW, REASON_DUPLICATE_ROW]
    assert sorted(removed["line_number"].to_pylist()) == [3, 4]


def test_disagreeing_copies_are_all_quarantined_as_conflicting(write_source) -> None:
    other = GOOD.replace("4.216", "4.300")
    result = _validate(write_source, [GOOD, "16/12/2006;17:25:00;?;?;?;?;?;?;", other])
    kept, removed = resolve_duplicates(result.readings)
    assert kept["line_number"].to_pylist() == [3]
    assert sorted(removed["line_number"].to_pylist()) == [2, 4]
    assert set(removed["reason"].to_pylist()) == {REASON_CONFLICTING_DUPLICATE}


def test_same_timestamp_on_two_meters_is_not_a_duplicate(write_source) -> None:
    lines = ["2010-01-01T00:00:00Z,m1,1.0,230.0", "2010-01-01T00:00:00Z,m2,2.0,230.0"]
    kept, removed = resolve_duplicates(_validate(write_source, lines, header=CSV_HEADER).readings)
    assert (kept.num_rows, removed.num_rows) == (2, 0)


def test_uci_dates_parse_to_days_and_invalid_ones_to_null() -> None:
    parsed = parse_uci_dates(pa.array(["1/1/2007", "29/2/2007", "29/2/2008", "x"]))
    assert parsed.to_pylist() == [date(2007, 1, 1), None, date(2008, 2, 29), None]


def test_a_line_stamped_at_or_after_the_future_cutoff_is_quarantined_with_the_cutoff(write_source) -> None:
    cutoff = datetime(2010, 1, 2, tzinfo=timezone.utc)
    lines = ["2010-01-01T23:59:00Z,m1,1.0,230.0", "2010-01-02T00:00:00Z,m1,1.0,230.0", "2031-05-01T00:00:00Z,m1,1.0,230.0"]
    batch = _validate_at(write_source, lines, cutoff)
    assert batch.readings["timestamp"].to_pylist() == [datetime(2010, 1, 1, 23, 59, tzinfo=timezone.utc)]
    assert batch.rejected["reason"].to_pylist() == [REASON_FUTURE_TIMESTAMP, REASON_FUTURE_TIMESTAMP]
    assert batch.rejected["detail"].to_pylist()[1] == (
        "stamped 2031-05-01T00:00:00Z, at or after 2010-01-02T00:00:00Z "
        "(ingest time + ingest.future_tolerance_h=2 h)"
    )


def test_a_bad_timestamp_keeps_its_own_reason_before_the_future_rule(write_source) -> None:
    batch = _validate_at(write_source, ["2010-13-01T00:00:00Z,m1,1.0,230.0"], datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert batch.rejected["reason"].to_pylist() == [REASON_BAD_TIMESTAMP]


def _validate_at(write_source, lines: list[str], future_from_utc: datetime) -> ValidatedBatch:
    path = write_source("rows.csv", lines, header=CSV_HEADER)
    source = open_source(str(path), pafs.LocalFileSystem())
    (batch,) = list(iter_raw_batches(source))
    return validate_batch(batch, source.source_format, IngestConfig(), future_from_utc)
