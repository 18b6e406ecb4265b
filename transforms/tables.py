"""Loaders for the lookup tables in `transforms/data/`.

Each table is a UTF-8 CSV file with a header row; lines that start with `#`
above the header document the columns. For example `result_terms.csv` maps
the outcome word a Russian console writes to the canonical result:

    result,language,term,source
    blocked,ru,Запрещено,export

Every loader reads its file once per process and returns immutable objects,
so Beam workers can call them from inside a step.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

DATA_DIR = Path(__file__).parent / "data"

SUBCATEGORIES = (
    "detection",
    "remediation",
    "network_attack",
    "web_threat",
    "app_control",
    "device_control",
    "web_control",
    "network_control",
    "behavior",
    "outbreak",
    "incident",
    "task_state",
    "update",
    "license",
    "audit",
    "inventory",
    "operational",
    "posture",
    "scan",
)
SEVERITIES = ("critical", "error", "warning", "info")
RESULTS = (
    "detected",
    "blocked",
    "deleted",
    "disinfected",
    "quarantined",
    "not_disinfected",
    "not_processed",
    "allowed",
    "error",
)
LANGUAGES = ("en", "ru", "es", "fr", "de")

# Canonical names of message body fields (first column of body_keys.csv).
BODY_FIELDS = (
    "event_type_name",
    "component",
    "application",
    "application_type",
    "process_name",
    "process_path",
    "process_pid",
    "user",
    "result_description",
    "result",
    "threat_type",
    "threat_name",
    "name",
    "threat_level",
    "precision",
    "decision",
    "operation",
    "object",
    "object_type",
    "object_name",
    "object_path",
    "object_folder",
    "object_additional",
    "object_detected",
    "file_sha256",
    "file_md5",
    "bases_release_date",
    "reason",
    "error",
    "comment",
    "kl_category",
    "kl_category_source",
    "rule_category",
    "rule_type",
    "device_category",
    "device_type",
    "device_id",
    "device_vid_pid",
)

# Output columns that a structured-data parameter may fill (sd_params.csv);
# `user` stands for user_domain, user_name and user_role together.
SD_COLUMNS = (
    "threat_name",
    "threat_type",
    "object_path",
    "object_name",
    "file_sha256",
    "file_md5",
    "user",
    "network_protocol",
    "remote_ip",
    "local_ip",
    "local_port",
)
SD_CONVERSIONS = (
    "text",
    "sha256",
    "semicolon_sha256",
    "json_md5",
    "threat_type_code",
    "ipv4_int",
    "int",
    "user",
)
SD_WINS = ("sd", "body")

_SPACES = re.compile(r"\s+")


def normalize_key(key: str) -> str:
    """Return the lookup form of a body key or display name.

    Case is folded, a backslash counts as a space and runs of white space
    collapse, so `Result\\Description` and `result  description` are equal.
    """
    key = key.replace("\ufeff", "").replace("\\", " ")
    return _SPACES.sub(" ", key).strip().casefold()


def normalize_term(term: str) -> str:
    """Return the lookup form of an outcome word: folded case, no final period."""
    return normalize_key(term).rstrip(".").strip()


def read_rows(name: str) -> Iterator[dict[str, str]]:
    """Yield the rows of `transforms/data/<name>` as dicts keyed by header."""
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        for row in csv.DictReader(lines):
            yield {column: (value or "").strip() for column, value in row.items()}


@dataclass(frozen=True)
class BodyKey:
    """Canonical field of a body key and the languages that use that key."""

    field: str
    languages: frozenset[str]


@functools.cache
def body_keys() -> Mapping[str, BodyKey]:
    """Load body_keys.csv as {normalized key: BodyKey}.

    Raises ValueError when one key stands for two different fields.
    """
    fields: dict[str, str] = {}
    languages: dict[str, set[str]] = {}
    for row in read_rows("body_keys.csv"):
        key = normalize_key(row["key"])
        known = fields.setdefault(key, row["field"])
        if known != row["field"]:
            raise ValueError(
                f"body key {row['key']!r} maps to both {known!r} and {row['field']!r}"
            )
        languages.setdefault(key, set()).add(row["language"])
    return MappingProxyType(
        {
            key: BodyKey(field, frozenset(languages[key]))
            for key, field in fields.items()
        }
    )


@functools.cache
def result_terms() -> Mapping[str, str]:
    """Load result_terms.csv as {normalized term: canonical result}.

    Raises ValueError when one term stands for two different results.
    """
    terms: dict[str, str] = {}
    for row in read_rows("result_terms.csv"):
        term = normalize_term(row["term"])
        known = terms.setdefault(term, row["result"])
        if known != row["result"]:
            raise ValueError(
                f"result term {row['term']!r} maps to both {known!r} "
                f"and {row['result']!r}"
            )
    return MappingProxyType(terms)


@dataclass(frozen=True)
class SdParamRule:
    """Meaning of one structured-data parameter for a group of event types."""

    event_type: str
    param: str
    column: str
    conversion: str
    wins: str

    def applies_to(self, event_type: str) -> bool:
        return fnmatch.fnmatchcase(event_type, self.event_type)


@functools.cache
def sd_param_rules() -> tuple[SdParamRule, ...]:
    """Load sd_params.csv in file order."""
    return tuple(
        SdParamRule(
            event_type=row["event_type"],
            param=row["param"],
            column=row["column"],
            conversion=row["conversion"],
            wins=row["wins"],
        )
        for row in read_rows("sd_params.csv")
    )


@functools.cache
def event_results() -> Mapping[str, str]:
    """Load event_results.csv as {event type: canonical result}.

    Raises ValueError for a result outside the vocabulary or a repeated type.
    """
    results: dict[str, str] = {}
    for row in read_rows("event_results.csv"):
        if row["result"] not in RESULTS:
            raise ValueError(f"event_results.csv: unknown result {row['result']!r}")
        if row["event_type"] in results:
            raise ValueError(f"event_results.csv: {row['event_type']!r} repeats")
        results[row["event_type"]] = row["result"]
    return results


@functools.cache
def threat_types() -> Mapping[str, str]:
    """Load threat_types.csv as {numeric code as sent: class name}."""
    return MappingProxyType(
        {row["code"]: row["threat_type"] for row in read_rows("threat_types.csv")}
    )


@functools.cache
def syslog_severities() -> Mapping[str, str]:
    """Load syslog_severities.csv as {FluentD severity word: event severity}."""
    return MappingProxyType(
        {row["word"]: row["severity"] for row in read_rows("syslog_severities.csv")}
    )


@dataclass(frozen=True)
class EventType:
    """One row of the event-type catalogue."""

    event_type: str | None
    category: str
    subcategory: str | None
    severity: str | None
    if_threat: str | None
    name_en: str | None
    name_ru: str | None
    source: str


@dataclass(frozen=True)
class EventCatalogue:
    """Event-type catalogue indexed by id and by display name."""

    by_id: Mapping[str, EventType]
    by_name: Mapping[str, EventType]

    def lookup_id(self, event_type: str) -> EventType | None:
        """Find the row of an event type id, also when the id was cut short.

        A MSGID contains at most 32 characters, so a 32-character id without an
        exact match is taken as the start of a longer id when exactly one
        catalogue id starts with it.
        """
        row = self.by_id.get(event_type)
        if row is not None or len(event_type) != 32:
            return row
        matches = [row for key, row in self.by_id.items() if key.startswith(event_type)]
        return matches[0] if len(matches) == 1 else None

    def lookup_name(self, display_name: str) -> EventType | None:
        """Find the row whose English or Russian display name matches."""
        return self.by_name.get(normalize_key(display_name))


@functools.cache
def event_catalogue() -> EventCatalogue:
    """Load event_types.csv.

    Raises ValueError on a repeated id or a display name used by two rows.
    """
    by_id: dict[str, EventType] = {}
    by_name: dict[str, EventType] = {}
    for row in read_rows("event_types.csv"):
        entry = EventType(
            event_type=row["event_type"] or None,
            category=row["category"],
            subcategory=row["subcategory"] or None,
            severity=row["severity"] or None,
            if_threat=row["if_threat"] or None,
            name_en=row["name_en"] or None,
            name_ru=row["name_ru"] or None,
            source=row["source"],
        )
        if entry.event_type is not None:
            if entry.event_type in by_id:
                raise ValueError(f"event type {entry.event_type!r} is listed twice")
            by_id[entry.event_type] = entry
        for name in (entry.name_en, entry.name_ru):
            if name is None:
                continue
            key = normalize_key(name)
            if key in by_name:
                raise ValueError(f"display name {name!r} is listed twice")
            by_name[key] = entry
    return EventCatalogue(MappingProxyType(by_id), MappingProxyType(by_name))


@dataclass(frozen=True)
class FamilyRule:
    """Class of unlisted event type ids that share a prefix and a keyword."""

    prefix: str
    keyword: str
    category: str
    subcategory: str | None

    def matches(self, event_type: str) -> bool:
        return event_type.startswith(self.prefix) and self.keyword in event_type


@functools.cache
def event_families() -> tuple[FamilyRule, ...]:
    """Load event_families.csv in file order (the first matching rule wins)."""
    return tuple(
        FamilyRule(
            prefix=row["prefix"],
            keyword=row["keyword"],
            category=row["category"],
            subcategory=row["subcategory"] or None,
        )
        for row in read_rows("event_families.csv")
    )
