"""Decode the JSON record that FluentD's syslog input makes of a KSC export.

FluentD's `in_syslog` with `message_format rfc5424` turns one syslog message
into a record such as

    {"host": "host-01.example.local", "ident": "KES|11.0.0.0", "pid": "-",
     "msgid": "GNRL_EV_VIRUS_FOUND",
     "extradata": "[event@23668 et=\\"GNRL_EV_VIRUS_FOUND\\" ...]",
     "message": "Result description: Detected\\\\r\\\\nType: Virus ..."}

and tags it `<prefix>.<facility>.<severity>` (`kav_logs.user.crit`). This step
reads those fields, splits the RFC 5424 APP-NAME `KES|11.0.0.0` into product
and version, takes facility and severity from the tag, keeps any other keys
of the record, and computes the event id.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import apache_beam as beam
import orjson

from transforms.batches import Record, apply_step

# FluentD's names for syslog facilities and severities (in_syslog.rb).
FACILITIES = frozenset(
    "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp audit "
    "alert at local0 local1 local2 local3 local4 local5 local6 local7".split()
)
SEVERITIES = frozenset("emerg alert crit err warn notice info debug".split())

# Record keys that FluentD's syslog parser fills; the rest are kept apart.
SYSLOG_KEYS = ("host", "ident", "pid", "msgid", "extradata", "message")
# Record keys that in_syslog adds when `severity_key`/`facility_key` are set.
PRI_KEYS = ("severity", "facility", "pri")

EVENT_ID_VERSION = b"kav-event-v1"


def _text(value: Any) -> str | None:
    """Return a record value as text: None stays None, JSON values are encoded."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _nil(value: str | None) -> str | None:
    """Map RFC 5424's NILVALUE `-` and empty text to None."""
    if value is None or value == "-" or value == "":
        return None
    return value


def split_ident(ident: str | None) -> tuple[str | None, str | None]:
    """Split the RFC 5424 APP-NAME `KES|11.0.0.0` into product and version."""
    ident = _nil(ident)
    if ident is None:
        return None, None
    product, bar, version = ident.partition("|")
    if not bar:
        return ident, None
    return product or None, version or None


def split_tag(tag: str | None) -> tuple[str | None, str | None]:
    """Return (facility, severity) from a tag such as `kav_logs.user.warn`."""
    if not tag:
        return None, None
    parts = tag.split(".")
    if len(parts) < 3:
        return None, None
    facility, severity = parts[-2], parts[-1]
    if facility not in FACILITIES or severity not in SEVERITIES:
        return None, None
    return facility, severity


def compute_event_id(event_time: int, tag: str | None, record: dict[str, Any]) -> str:
    """Hash an event's content into a stable id.

    The id covers the tag, the event time in microseconds and the record with
    its keys sorted, and nothing about the file or line it was read from, so
    a chunk that FluentD uploads twice gives the same ids. Two events that
    are identical in every field within the same second share an id.
    """
    # One update of the joined parts hashes the same bytes as one update per
    # part, with fewer calls.
    content = b"\x1f".join(
        (
            EVENT_ID_VERSION,
            (tag or "").encode(),
            str(event_time).encode(),
            orjson.dumps(record, option=orjson.OPT_SORT_KEYS),
        )
    )
    return hashlib.blake2b(content, digest_size=16).hexdigest()


# Tags and idents repeat on nearly every line, so their splits are cached.
_split_ident_cached = functools.lru_cache(maxsize=256)(split_ident)
_split_tag_cached = functools.lru_cache(maxsize=256)(split_tag)
_KNOWN_KEYS = frozenset(SYSLOG_KEYS + PRI_KEYS)


_TEXT_TYPES = frozenset((str, type(None)))


def _syslog_texts(payload: dict[str, Any], issues: list[str]) -> list[str | None]:
    """Return the SYSLOG_KEYS values as text, flagging each one that is not."""
    texts = list(map(payload.get, SYSLOG_KEYS))
    if _TEXT_TYPES.issuperset(map(type, texts)):
        return texts
    for index, value in enumerate(texts):
        if value is not None and not isinstance(value, str):
            issues.append(f"{SYSLOG_KEYS[index]}_not_text")
            texts[index] = _text(value)
    return texts


def decode_payload(record: Record) -> None:
    """Add host, product, facility, the raw syslog parts and event_id."""
    payload: dict[str, Any] = record["_record"]
    issues = record.setdefault("parse_issues", [])

    host, ident, _pid, msgid, extradata, message = _syslog_texts(payload, issues)
    record["host"] = _nil(host)
    record["product"], record["product_version"] = _split_ident_cached(ident)
    record["_ident"] = ident
    record["_msgid"] = _nil(msgid)
    record["_extradata"] = _nil(extradata)
    record["_message"] = message

    tag = record.get("fluentd_tag")
    facility, severity = _split_tag_cached(tag)
    if facility is None and isinstance(payload.get("facility"), str):
        facility = payload["facility"]
    if severity is None and isinstance(payload.get("severity"), str):
        severity = payload["severity"]
    record["syslog_facility"] = facility
    record["syslog_severity"] = severity

    extra = None
    if not payload.keys() <= _KNOWN_KEYS:
        extra = {
            key: _text(value)
            for key, value in payload.items()
            if key not in _KNOWN_KEYS
        }
    record["extra_fields"] = extra
    record["event_id"] = compute_event_id(record["event_time"], tag, payload)


class DecodePayload(beam.PTransform):
    """Decode the syslog fields of each record; it rejects no line."""

    def expand(self, batches: beam.PCollection):
        return apply_step(batches, "DecodeSyslogPayload", decode_payload)
