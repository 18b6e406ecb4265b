"""SplitLines: FluentD line forms, times and the dead letters of bad lines."""

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.beam_helpers import local_test_pipeline
from transforms.errors import LineRejected
from transforms.split_lines import (
    FluentdLine,
    SplitLines,
    _default_line_parts,
    _parse_fluentd_time,
    _split_any_line,
    parse_epoch_time,
    parse_iso_time,
    split_fluentd_line,
    split_record,
)

# 2022-02-28T15:48:55Z in microseconds since the epoch.
T_2022_02_28 = 1646063335_000000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-02-28T15:48:55+00:00", T_2022_02_28),
        ("2022-02-28T15:48:55Z", T_2022_02_28),
        ("2022-02-28T12:48:55-03:00", T_2022_02_28),
        ("2022-02-28T12:48:55-0300", T_2022_02_28),
        ("2022-02-28T21:18:55+05:30", T_2022_02_28),
        ("2022-02-28T15:48:55.000Z", T_2022_02_28),
        ("2022-02-28T15:48:55.5Z", T_2022_02_28 + 500000),
        ("2022-02-28T15:48:55.123456789+00:00", T_2022_02_28 + 123456),
        ("2022-02-28 15:48:55+00:00", T_2022_02_28),
        ("2024-02-29T00:00:00Z", 1709164800_000000),
    ],
)
def test_iso_time_forms(text, expected):
    assert parse_iso_time(text) == (expected, True)


def test_iso_time_without_offset_is_utc():
    assert parse_iso_time("2022-02-28T15:48:55") == (T_2022_02_28, False)


@pytest.mark.parametrize(
    "text",
    [
        "2022-13-01T00:00:00Z",
        "2022-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2022-02-28T24:00:00Z",
        "2022-02-28T23:60:00Z",
        "2022-02-28T23:59:61Z",
        "2022-02-28T15:48:55+25:00",
        "0000-01-01T00:00:00Z",
        "yesterday",
        "2022-02-28",
    ],
)
def test_iso_time_impossible_rejected(text):
    with pytest.raises(LineRejected) as caught:
        parse_iso_time(text)
    assert caught.value.code == "invalid_time"


def test_epoch_time_float_to_micros():
    assert parse_epoch_time(1646063335.25) == T_2022_02_28 + 250000


@pytest.mark.parametrize("value", [float("nan"), 1e20, -1e20, True, "x"])
def test_epoch_time_invalid_rejected(value):
    with pytest.raises(LineRejected) as caught:
        parse_epoch_time(value)
    assert caught.value.code == "invalid_time"


def test_tab_form_splits_three_fields():
    line = '2022-02-28T15:48:55+00:00\tkav_logs.user.crit\t{"host":"h\\tx"}'
    parts = split_fluentd_line(line)
    assert parts.event_time == T_2022_02_28
    assert parts.tag == "kav_logs.user.crit"
    assert parts.record == {"host": "h\tx"}


def test_space_form_splits_three_fields():
    line = '2022-02-28T15:48:55+00:00 kav_logs.user.crit {"host": "a b"}'
    parts = split_fluentd_line(line)
    assert parts.tag == "kav_logs.user.crit"
    assert parts.record == {"host": "a b"}


def test_json_form_float_epoch_injected():
    line = '{"time":1646063335.0,"tag":"kav_logs.user.crit","host":"h"}'
    parts = split_fluentd_line(line)
    assert parts.event_time == T_2022_02_28
    assert parts.tag == "kav_logs.user.crit"
    assert parts.record == {"host": "h"}


def test_json_form_iso_time_injected():
    line = '{"time":"2022-02-28T15:48:55Z","tag":"kav.user.warn","host":"h"}'
    assert split_fluentd_line(line).event_time == T_2022_02_28


def test_trailing_carriage_return_stripped():
    line = '2022-02-28T15:48:55+00:00\tkav.user.warn\t{"host":"h"}\r'
    assert split_fluentd_line(line).record == {"host": "h"}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("", "empty_line"),
        ("   \t ", "empty_line"),
        ("2022-02-28T15:48:55+00:00\tkav.user.warn", "invalid_line"),
        ('2022-02-28T15:48:55+00:00\tkav.user.warn\t{"host":"h"', "invalid_json"),
        ("2022-02-28T15:48:55+00:00\tkav.user.warn\t[1,2]", "invalid_record"),
        ('2022-02-28T15:48:55+00:00\tkav.user.warn\t"text"', "invalid_record"),
        ('2022-02-31T15:48:55+00:00\tkav.user.warn\t{"host":"h"}', "invalid_time"),
        ('{"host":"h"}', "missing_time"),
        ('{"time":"soon","host":"h"}', "invalid_time"),
    ],
)
def test_bad_line_rejected_with_code(line, code):
    with pytest.raises(LineRejected) as caught:
        split_fluentd_line(line)
    assert caught.value.code == code


def test_unterminated_last_line_is_partial():
    record = {
        "source_uri": "azfs://acct/logs/kav-0.log",
        "source_line": 7,
        "raw": '2022-02-28T15:48:55+00:00\tkav.user.warn\t{"host":"h","mess',
        "_unterminated": True,
    }
    with pytest.raises(LineRejected) as caught:
        split_record(record)
    assert caught.value.code == "partial_line"


@pytest.mark.parametrize(
    "cut",
    [
        "02-28T15:48:55+00:00\tkav.user.warn\t{}",
        "5:48:55+00:00\tkav.user.warn\t{}",
        "\tkav.user.warn\t{}",
        '{"host":"h","ident":"KES|","msgid":"-","extradata":"-","message":"m"}',
    ],
)
def test_first_line_tail_of_cut_line(cut):
    record = {"source_uri": "azfs://a/c/kav-1.log", "source_line": 1, "raw": cut}
    with pytest.raises(LineRejected) as caught:
        split_record(record)
    assert caught.value.code == "partial_line"


def test_first_line_impossible_time_stays_invalid():
    record = {
        "source_uri": "f.log",
        "source_line": 1,
        "raw": '2022-13-45T15:48:55+00:00\tkav.user.warn\t{"host":"h"}',
    }
    with pytest.raises(LineRejected) as caught:
        split_record(record)
    assert caught.value.code == "invalid_time"


def test_blob_starting_mid_record_is_partial():
    record = {"source_uri": "x", "source_line": 1, "raw": 'sage":"tail"}'}
    with pytest.raises(LineRejected) as caught:
        split_record(record)
    assert caught.value.code == "partial_line"


def test_split_lines_transform_routes_dead_letters():
    good = {
        "source_uri": "f.log",
        "source_line": 1,
        "raw": '2022-02-28T15:48:55+00:00\tkav.user.crit\t{"host":"h"}',
    }
    bad = {"source_uri": "f.log", "source_line": 2, "raw": "2022-02-28T15:48:55Z\tx"}
    with local_test_pipeline() as pipeline:
        kept, dead = pipeline | "Batches" >> beam.Create([[good, bad]]) | SplitLines()
        kept_times = kept | "Times" >> beam.FlatMap(
            lambda batch: [(r["source_line"], r["event_time"]) for r in batch]
        )
        dead_codes = dead | "Codes" >> beam.FlatMap(
            lambda batch: [(r["source_line"], r["error"]) for r in batch]
        )
        assert_that(kept_times, equal_to([(1, T_2022_02_28)]), label="KeptLines")
        assert_that(dead_codes, equal_to([(2, "invalid_line")]), label="DeadLines")


@pytest.mark.parametrize(
    ("time_text", "expected"),
    [
        ("1646063335", T_2022_02_28),
        ("1646063335.25", T_2022_02_28 + 250000),
        ("2022-02-28 15:48:55 +0000", T_2022_02_28),
    ],
)
def test_tab_form_other_time_formats(time_text, expected):
    line = f'{time_text}\tkav_logs.user.crit\t{{"host":"h"}}'
    assert split_fluentd_line(line).event_time == expected


def test_blank_first_line_is_empty_line():
    record = {"source_uri": "f.log", "source_line": 1, "raw": ""}
    with pytest.raises(LineRejected) as caught:
        split_record(record)
    assert caught.value.code == "empty_line"


# ---------------------------------------------------------------------------
# Fast paths for out_file's default line shape and their general fallbacks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-02-28T12:48:55-03:00", T_2022_02_28),
        ("9999-12-31T23:59:59+00:00", 253402300799_000000),
        ("0001-01-01T00:00:00+00:00", -62135596800_000000),
        # The hour starts before year 1 in UTC, but the time itself does not.
        ("0001-01-01T00:45:00+00:30", -62135596800_000000 + 15 * 60_000000),
    ],
)
def test_default_shape_time_boundaries(text, expected):
    assert split_fluentd_line(f"{text}\tt\t{{}}").event_time == expected


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:59:59+01:00",
        "2023-02-29T00:00:00+00:00",
        "2022-02-28T15:60:00+00:00",
        "2022-02-28T15:48:55+24:00",
    ],
)
def test_default_shape_bad_time_rejected(text):
    with pytest.raises(LineRejected) as caught:
        split_fluentd_line(f"{text}\tt\t{{}}")
    assert caught.value.code == "invalid_time"


def _two_digits(low, high):
    return st.integers(min_value=low, max_value=high).map("{:02d}".format)


# Each field runs one step past its valid range, so that some times are invalid.
default_shape_times = st.builds(
    "{}-{}-{}T{}:{}:{}{}{}:{}".format,
    st.integers(min_value=0, max_value=9999).map("{:04d}".format)
    | st.sampled_from(["0001", "9999", "2024", "2100"]),
    _two_digits(0, 13),
    _two_digits(0, 32),
    _two_digits(0, 24),
    _two_digits(0, 60),
    _two_digits(0, 60),
    st.sampled_from("+-"),
    _two_digits(0, 24),
    _two_digits(0, 60),
)


def _general_time(text):
    try:
        return parse_iso_time(text)
    except LineRejected:
        return None


@settings(deadline=None)
@given(text=default_shape_times)
def test_fast_time_agrees_with_general(text):
    fast = _parse_fluentd_time(text)
    general = _general_time(text)
    if fast is not None:
        assert general == (fast, True)
    if general is None:
        assert fast is None


def _split_or_code(split, line):
    try:
        return split(line)
    except LineRejected as error:
        return error.code


line_times = default_shape_times | st.sampled_from(
    ["2022-02-28T15:48:55+00:00", "2022-02-28T15:48:55Z", "\ufeff2022-02-28T15:48"]
)
line_tags = st.sampled_from(["kav_logs.user.crit", " kav.user.warn ", "", "a\tb"])
line_records = st.one_of(
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3).map(
        lambda record: orjson.dumps(record).decode()
    ),
    st.sampled_from(['{"host":"h"}', '{"host":', "[1]", '"x"', "", " {} "]),
)


@settings(deadline=None)
@given(
    time_text=line_times,
    tag=line_tags,
    record_text=line_records,
    end=st.sampled_from(["", "\r", " ", "\t"]),
)
def test_fast_split_agrees_with_general(time_text, tag, record_text, end):
    line = f"{time_text}\t{tag}\t{record_text}{end}"
    fast = _default_line_parts(line)
    general = _split_or_code(_split_any_line, line)
    if fast is not None:
        assert FluentdLine(*fast, ()) == general
    assert _split_or_code(split_fluentd_line, line) == general
