"""Split a FluentD output line into its time, tag and JSON record.

FluentD's `out_file` formatter (the default of out_file, out_s3, out_gcs and the
Azure append-blob output) writes one event a line as time, tag and the JSON
record, separated by TABs:

    2022-02-28T15:48:55+00:00<TAB>kav_logs.user.crit<TAB>{"host":"host-01", ...}

The same formatter can use a space as the delimiter, and `<format> @type json`
writes the record alone, with time and tag injected as fields
(`{"time":1646063335.0,"tag":"kav_logs.user.crit","host":...}`). All three
forms are accepted. Times are ISO 8601 with `Z`, `+hh:mm` or `+hhmm`, with or
without a fraction of a second, or a float epoch, and are kept as UTC
microseconds since the epoch.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

import apache_beam as beam
import orjson

from transforms.batches import Record, apply_step
from transforms.errors import LineRejected

# Keys that FluentD's `inject` section commonly uses for time and tag when the
# record is written as JSON on its own.
INJECTED_TIME_KEYS = ("time", "@timestamp", "timestamp")
INJECTED_TAG_KEYS = ("tag", "fluentd_tag")

_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r" ?(Z|z|[+-]\d{2}:?\d{2})?"
)
_EPOCH_TIME = re.compile(r"-?\d{9,11}(?:\.\d{1,9})?")
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MICROS_PER_SECOND = 1_000_000
# pyarrow timestamps and Python datetimes both end at year 9999.
_MAX_EPOCH_SECONDS = 253_402_300_799
_MIN_EPOCH_SECONDS = -62_135_596_800

# Maximum length of an offending value quoted in a dead-letter detail.
_DETAIL_VALUE_CHARS = 120


class FluentdLine(NamedTuple):
    """A FluentD line split into its parts."""

    event_time: int
    tag: str | None
    record: dict[str, Any]
    issues: tuple[str, ...]


def _quote(value: str) -> str:
    if len(value) > _DETAIL_VALUE_CHARS:
        value = value[:_DETAIL_VALUE_CHARS] + "..."
    return repr(value)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Count days from 1970-01-01 to a proleptic Gregorian date."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def parse_iso_time(text: str) -> tuple[int, bool]:
    """Parse an ISO 8601 date-time into UTC microseconds since the epoch.

    Returns the time and whether the text carried a UTC offset; a time
    without one is read as UTC. Raises `LineRejected("invalid_time", ...)`.
    """
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        raise LineRejected("invalid_time", f"time {_quote(text)} is not ISO 8601")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    if not 1 <= month <= 12:
        raise LineRejected("invalid_time", f"time {_quote(text)} has month {month}")
    days_in_month = _DAYS_IN_MONTH[month - 1] + (month == 2 and _is_leap(year))
    if not 1 <= day <= days_in_month or year == 0:
        raise LineRejected("invalid_time", f"time {_quote(text)} has no such day")
    if hour > 23 or minute > 59 or second > 59:
        raise LineRejected(
            "invalid_time", f"time {_quote(text)} has no such time of day"
        )
    seconds = (
        _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    )
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        offset_hours, offset_minutes = int(digits[:2]), int(digits[2:])
        if offset_hours > 23 or offset_minutes > 59:
            raise LineRejected(
                "invalid_time", f"time {_quote(text)} has offset {offset}"
            )
        seconds -= sign * (offset_hours * 3600 + offset_minutes * 60)
    if not _MIN_EPOCH_SECONDS <= seconds <= _MAX_EPOCH_SECONDS:
        raise LineRejected("invalid_time", f"time {_quote(text)} is out of range")
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    return seconds * _MICROS_PER_SECOND + micros, offset is not None


# The one shape that FluentD's out_file writes by default, with ASCII digits.
_FLUENTD_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}"
)
_FLUENTD_TIME_CHARS = 25
_MAX_EPOCH_MICROS = _MAX_EPOCH_SECONDS * _MICROS_PER_SECOND


@functools.lru_cache(maxsize=1024)
def _hour_start_micros(hour: str, offset: str) -> int | None:
    """Return `parse_iso_time` of `<hour>:00:00<offset>`, or None if it raises."""
    try:
        return parse_iso_time(f"{hour}:00:00{offset}")[0]
    except LineRejected:
        return None


def _parse_fluentd_time(text: str) -> int | None:
    """Parse `2024-03-11T10:00:02-03:00` as `parse_iso_time` does, or return None.

    A fast path for the shape of nearly every line: the date, hour and offset
    are converted once per hour and cached, so a line costs one regex match
    and two int() calls. None means the general parser must decide.
    """
    if len(text) != _FLUENTD_TIME_CHARS or _FLUENTD_TIME.fullmatch(text) is None:
        return None
    hour_start = _hour_start_micros(text[:13], text[19:])
    minute, second = int(text[14:16]), int(text[17:19])
    if hour_start is None or minute > 59 or second > 59:
        return None
    micros = hour_start + (minute * 60 + second) * _MICROS_PER_SECOND
    if micros > _MAX_EPOCH_MICROS:
        return None
    return micros


def parse_epoch_time(value: float | int) -> int:
    """Convert a FluentD float (or integer) epoch in seconds to microseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LineRejected("invalid_time", f"time {value!r} is not a number")
    if value != value or not _MIN_EPOCH_SECONDS <= value <= _MAX_EPOCH_SECONDS:
        raise LineRejected("invalid_time", f"epoch time {value!r} is out of range")
    if isinstance(value, int):
        return value * _MICROS_PER_SECOND
    return round(value * _MICROS_PER_SECOND)


def _parse_time_field(value: Any) -> tuple[int, bool]:
    if isinstance(value, str):
        try:
            return parse_epoch_time(float(value)), True
        except ValueError:
            return parse_iso_time(value)
    return parse_epoch_time(value), True


def _decode_record(text: str) -> dict[str, Any]:
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise LineRejected(
            "invalid_json", f"record {_quote(text)} is not valid JSON: {error}"
        ) from None
    if not isinstance(record, dict):
        kind = type(record).__name__
        raise LineRejected(
            "invalid_record", f"record {_quote(text)} is a JSON {kind}, not an object"
        )
    return record


def _split_json_only(line: str) -> FluentdLine:
    record = _decode_record(line)
    issues: list[str] = []
    time_key = next((k for k in INJECTED_TIME_KEYS if k in record), None)
    if time_key is None:
        raise LineRejected(
            "missing_time", f"JSON line {_quote(line)} has no time field"
        )
    event_time, has_offset = _parse_time_field(record.pop(time_key))
    if not has_offset:
        issues.append("time_without_offset")
    tag_key = next((k for k in INJECTED_TAG_KEYS if k in record), None)
    tag = record.pop(tag_key) if tag_key else None
    if tag is not None and not isinstance(tag, str):
        tag = str(tag)
    return FluentdLine(event_time, tag, record, tuple(issues))


def _default_line_parts(line: str) -> tuple[int, str | None, dict[str, Any]] | None:
    """Return time, tag and record of a line of out_file's default shape, or None.

    A fast path for `<time>TAB<tag>TAB<record>` with the time in the shape
    of `_parse_fluentd_time`. None means `_split_any_line` must split the
    line, and also rejects it with the usual detail when it is broken.
    """
    if line[_FLUENTD_TIME_CHARS : _FLUENTD_TIME_CHARS + 1] != "\t":
        return None
    event_time = _parse_fluentd_time(line[:_FLUENTD_TIME_CHARS])
    if event_time is None:
        return None
    tag_end = line.find("\t", _FLUENTD_TIME_CHARS + 1)
    if tag_end < 0:
        return None
    try:
        record = orjson.loads(line[tag_end + 1 :])
    except orjson.JSONDecodeError:
        return None
    if type(record) is not dict:
        return None
    tag = line[_FLUENTD_TIME_CHARS + 1 : tag_end].strip() or None
    return event_time, tag, record


def split_fluentd_line(line: str) -> FluentdLine:
    """Split one FluentD line; raise `LineRejected` when it is not one."""
    parts = _default_line_parts(line)
    if parts is not None:
        return FluentdLine(*parts, ())
    return _split_any_line(line)


def _split_any_line(line: str) -> FluentdLine:
    """Split a line of any accepted form, or raise `LineRejected`."""
    if line.endswith("\r"):
        line = line[:-1]
    # A file saved by a Windows editor starts with a UTF-8 byte order mark.
    line = line.removeprefix("\ufeff")
    if not line.strip():
        raise LineRejected("empty_line", "line is empty or only whitespace")
    if line.lstrip().startswith("{"):
        return _split_json_only(line.strip())

    delimiter = "\t" if "\t" in line else " "
    parts = line.split(delimiter, 2)
    if len(parts) < 3:
        raise LineRejected(
            "invalid_line",
            f"line {_quote(line)} has {len(parts)} of the 3 fields time, tag, record",
        )
    time_text, tag, record_text = parts
    time_text = time_text.strip()
    if _EPOCH_TIME.fullmatch(time_text):
        # out_file with `time_type unixtime` or `float` writes epoch seconds.
        event_time, has_offset = parse_epoch_time(float(time_text)), True
    else:
        event_time, has_offset = parse_iso_time(time_text)
    record = _decode_record(record_text)
    issues = () if has_offset else ("time_without_offset",)
    return FluentdLine(event_time, tag.strip() or None, record, issues)


_TIME_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}")
_SYSLOG_KEYS = ('"host"', '"ident"', '"extradata"', '"message"')


def _starts_mid_record(line: str, error: LineRejected) -> bool:
    """Tell whether a rejected first line is the tail of a line cut in two.

    A whole FluentD line starts with a full date-time, or is a JSON record
    with its own time field. The tail of a cut line starts anywhere else, or
    is the record part of a TAB-form line, which has syslog keys but no time.
    """
    stripped = line.lstrip()
    if not stripped:
        return False
    if stripped.startswith("{"):
        return error.code == "missing_time" and any(k in line for k in _SYSLOG_KEYS)
    return _TIME_SHAPE.match(stripped) is None


def _split_or_reject_fragment(record: Record, raw: str) -> FluentdLine:
    """Split a line with `_split_any_line`, naming fragments `partial_line`."""
    try:
        return _split_any_line(raw)
    except LineRejected as error:
        # A blob that FluentD is still appending to ends in a partial line, and a
        # line cut at a blob boundary starts the next blob mid-record.
        cut_at_end = record.get("_unterminated") and error.code != "empty_line"
        cut_at_start = record.get("source_line") == 1 and _starts_mid_record(raw, error)
        if cut_at_end or cut_at_start:
            raise LineRejected(
                "partial_line",
                "line is a fragment of a record cut at an object boundary "
                f"({error.detail})",
            ) from None
        raise


def split_record(record: Record) -> None:
    """Add event_time, fluentd_tag, _record and parse_issues to a line record."""
    raw = record["raw"]
    parts = _default_line_parts(raw)
    if parts is not None:
        record["event_time"], record["fluentd_tag"], record["_record"] = parts
        record.setdefault("parse_issues", [])
        return

    line = _split_or_reject_fragment(record, raw)
    record["event_time"] = line.event_time
    record["fluentd_tag"] = line.tag
    record["_record"] = line.record
    issues = record.setdefault("parse_issues", [])
    issues.extend(line.issues)


class SplitLines(beam.PTransform):
    """Split batches of raw lines; lines that are not FluentD become dead letters."""

    def expand(self, batches: beam.PCollection):
        return apply_step(batches, "SplitFluentdLines", split_record)
