"""Classify events as security, general or unknown, with subcategory and severity.

Input is a record after Normalize, for example the KES "Task stopped" event

    {"event_type": "000000de", "event_type_name": "Task stopped",
     "component": "Exploit Prevention", "syslog_severity": "warn", ...}

which `classify` turns into ("general", "task_state", "warning"): the id is in
the catalogue as a task-state event without a default importance, so the
severity comes from the syslog severity word of the FluentD tag. The
component name is never used, because protection components also send task
and status events.

The procedure, first match wins:

1. the event type id in `data/event_types.csv`, also as the start of a longer
   id when the MSGID was cut at 32 characters;
2. the id prefix and keyword rules of `data/event_families.csv`;
3. the display name (`etdn`, else the body's "Event type") in the catalogue;
4. for 8-hex-digit KES ids that are not listed, and for events without an
   event type: evidence of a threat makes the event security. Evidence is a
   threat name or type, `p5`/`p8` in the structured data, or a detect, block,
   delete, disinfect or quarantine outcome. The subcategory is remediation
   when the outcome acted on the object, and detection otherwise;
5. anything else is "unknown" and is kept.
"""

from __future__ import annotations

import re

import apache_beam as beam

from transforms import tables
from transforms.batches import Record, apply_step

Classification = tuple[str, str | None, str | None]

_KES_HEX_ID = re.compile(r"^[0-9A-Fa-f]{8}$")

DETECTION_RESULTS = frozenset({"detected", "blocked"})
REMEDIATION_RESULTS = frozenset(
    {"deleted", "disinfected", "quarantined", "not_disinfected"}
)


def severity_from_syslog(word: str | None) -> str | None:
    """Map the tag's syslog severity word (`crit`, `warn`, ...) to a severity."""
    if not word:
        return None
    return tables.syslog_severities().get(word.strip().lower())


def names_threat(record: Record) -> bool:
    """Tell whether the event names a threat: a threat name or threat type
    column, or the threat parameters p5/p8 in the structured data."""
    if record.get("threat_name") or record.get("threat_type"):
        return True
    sd_params = record.get("sd_params") or {}
    return bool(sd_params.get("p5") or sd_params.get("p8"))


def evidence_subcategory(record: Record) -> str | None:
    """Return detection or remediation when the event shows security evidence,
    else None."""
    result = record.get("result")
    if result in REMEDIATION_RESULTS:
        return "remediation"
    if result in DETECTION_RESULTS or names_threat(record):
        return "detection"
    return None


def _from_entry(entry: tables.EventType, record: Record) -> Classification:
    severity = entry.severity or severity_from_syslog(record.get("syslog_severity"))
    if entry.if_threat and names_threat(record):
        return "security", entry.if_threat, severity
    return entry.category, entry.subcategory, severity


def classify(record: Record) -> Classification:
    """Return (category, subcategory, severity) of a normalized event."""
    catalogue = tables.event_catalogue()
    event_type = record.get("event_type") or None
    syslog_severity = severity_from_syslog(record.get("syslog_severity"))

    if event_type is not None:
        entry = catalogue.lookup_id(event_type)
        if entry is not None:
            return _from_entry(entry, record)
        for rule in tables.event_families():
            if rule.matches(event_type):
                return rule.category, rule.subcategory, syslog_severity

    display_name = record.get("event_type_name")
    if display_name:
        entry = catalogue.lookup_name(display_name)
        if entry is not None:
            return _from_entry(entry, record)

    if event_type is None or _KES_HEX_ID.match(event_type):
        subcategory = evidence_subcategory(record)
        if subcategory is not None:
            return "security", subcategory, syslog_severity

    return "unknown", None, syslog_severity


def classify_step(record: Record) -> None:
    """Set category, subcategory and severity on a record in place."""
    category, subcategory, severity = classify(record)
    record["category"] = category
    record["subcategory"] = subcategory
    record["severity"] = severity


class Classify(beam.PTransform):
    """Set category, subcategory and severity on every record of each batch.

    Expands to (kept batches, dead-letter batches).
    """

    def expand(
        self, pcoll: beam.PCollection
    ) -> tuple[beam.PCollection, beam.PCollection]:
        return apply_step(pcoll, "Classify", classify_step)
