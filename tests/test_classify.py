"""Specification of Classify: catalogue, id families, names, evidence, severity."""

from __future__ import annotations

from typing import Any

import pytest
from apache_beam import Create, FlatMap
from apache_beam.testing.util import assert_that, equal_to

from tests.beam_helpers import local_test_pipeline
from tests.test_normalize import CORPUS_CASES
from transforms.classify import Classify, classify, severity_from_syslog
from transforms.normalize import normalize_event

CLASSIFY_COLUMNS = ("category", "subcategory", "severity")


def classified(record: dict[str, Any]) -> dict[str, Any]:
    """Normalize and classify a copy of a record, as the pipeline does."""
    result = dict(record)
    result.update(normalize_event(result))
    result.update(zip(CLASSIFY_COLUMNS, classify(result), strict=True))
    return result


CLASSIFY_EXPECTATIONS = [
    pytest.param(record, field, value, id=f"{case_id}-{field}")
    for case_id, record, expected in CORPUS_CASES
    for field, value in expected.items()
    if field in CLASSIFY_COLUMNS
]


@pytest.mark.parametrize(("record", "field", "expected"), CLASSIFY_EXPECTATIONS)
def test_corpus_classified_field(record, field, expected):
    result = classified(record)
    assert result[field] == expected, f"{field}: {result[field]!r}"


def test_task_stopped_not_by_component():
    record = {
        "event_type": "000000de",
        "component": "Exploit Prevention",
        "event_type_name": "Task stopped",
        "syslog_severity": "warn",
    }
    assert classify(record) == ("general", "task_state", "warning")


def test_catalogue_severity_beats_tag():
    record = {"event_type": "GNRL_EV_VIRUS_FOUND", "syslog_severity": "info"}
    assert classify(record) == ("security", "detection", "critical")


def test_truncated_msgid_matches_prefix():
    record = {"event_type": "GNRL_EV_APPLICATION_LAUNCH_DENIE"}
    assert classify(record) == ("security", "app_control", "critical")


def test_short_unknown_prefix_not_expanded():
    record = {"event_type": "GNRL_EV_APPLICATION_LAUNCH"}
    assert classify(record) == ("general", None, None)


@pytest.mark.parametrize(
    ("event_type", "category", "subcategory"),
    [
        ("GNRL_EV_VIRUS_FOUND_IN_MAIL", "security", "detection"),
        ("GNRL_EV_OBJECT_RESTORED", "security", "remediation"),
        ("GNRL_EV_UDP_ATTACK_SEEN", "security", "network_attack"),
        ("GNRL_EV_PRINT_DENIED", "security", None),
        ("GNRL_EV_USB_BLOCKED", "security", None),
        ("GNRL_EV_SUSPICIOUS_ACTIVITY", "security", "detection"),
        ("GNRL_EV_MAIL_OUTBREAK", "security", "outbreak"),
        ("GNRL_EV_ADSEC_RULE_CHANGED", "security", "behavior"),
        ("GNRL_EV_WEB_URL_ALLOWED", "security", "web_control"),
        ("GNRL_EV_PASSWD_ARCHIVE_SKIPPED", "security", "scan"),
        ("GNRL_EV_UPDATE_FINISHED", "general", None),
        ("KLSRV_SOMETHING_NEW", "general", None),
        ("KLNAG_EV_NEW_THING", "general", None),
        ("KLAUD_EV_USER_LOGIN", "general", "audit"),
        ("KLPRCI_OtherState", "general", "task_state"),
        ("KLEVP_NewEvent", "general", None),
        ("KSNPROXY_RESTARTED", "general", "operational"),
        ("FSEE_AKPLUGIN_NEW_EVENT", "general", None),
    ],
)
def test_family_rules_for_unlisted_ids(event_type, category, subcategory):
    assert classify({"event_type": event_type}) == (category, subcategory, None)


def test_display_name_for_unknown_id():
    record = {"event_type": "0000ffff", "event_type_name": "NETWORK ATTACK DETECTED"}
    assert classify(record) == ("security", "network_attack", "critical")


def test_russian_display_name_lookup():
    record = {"event_type_name": "Лечение невозможно"}
    assert classify(record) == ("security", "remediation", "critical")


def test_body_name_without_event_type():
    record = {"event_type_name": "Processing error", "result": "error"}
    assert classify(record) == ("general", "scan", None)


def test_object_not_processed_with_threat():
    record = {"event_type_name": "Object not processed", "threat_type": "Virus"}
    assert classify(record) == ("security", "detection", None)


def test_object_not_processed_without_threat():
    record = {"event_type_name": "Object not processed", "reason": "Size"}
    assert classify(record) == ("general", "scan", None)


@pytest.mark.parametrize(
    ("evidence", "subcategory"),
    [
        ({"threat_name": "EICAR-Test-File"}, "detection"),
        ({"threat_type": "Virus"}, "detection"),
        ({"sd_params": {"p5": "HEUR:Trojan.Win32.Generic"}}, "detection"),
        ({"sd_params": {"p8": "61"}}, "detection"),
        ({"result": "detected"}, "detection"),
        ({"result": "blocked"}, "detection"),
        ({"result": "deleted"}, "remediation"),
        ({"result": "disinfected"}, "remediation"),
        ({"result": "quarantined"}, "remediation"),
        ({"result": "not_disinfected"}, "remediation"),
    ],
)
def test_unknown_hex_id_with_evidence(evidence, subcategory):
    record = {"event_type": "000003fb", "syslog_severity": "crit", **evidence}
    assert classify(record) == ("security", subcategory, "critical")


@pytest.mark.parametrize(
    "record",
    [
        {"event_type": "000003fb", "syslog_severity": "notice"},
        {"event_type": "000003fb", "syslog_severity": "notice", "result": "error"},
        {"event_type": "000003fb", "syslog_severity": "notice", "sd_params": {}},
        {"event_type": None, "syslog_severity": "notice", "result": "not_processed"},
    ],
)
def test_unknown_hex_id_without_evidence(record):
    assert classify(record) == ("unknown", None, "info")


def test_unknown_symbolic_id_stays_unknown():
    record = {"event_type": "XYZ_EVENT", "threat_name": "EICAR-Test-File"}
    assert classify(record) == ("unknown", None, None)


def test_body_only_evidence_is_security():
    record = {"event_type": None, "result": "detected", "threat_type": "Virus"}
    assert classify(record) == ("security", "detection", None)


@pytest.mark.parametrize(
    ("word", "severity"),
    [
        ("emerg", "critical"),
        ("alert", "critical"),
        ("crit", "critical"),
        ("err", "error"),
        ("warn", "warning"),
        ("warning", "warning"),
        ("notice", "info"),
        ("info", "info"),
        ("debug", "info"),
        ("WARN", "warning"),
        ("other", None),
        (None, None),
    ],
)
def test_severity_from_syslog_word(word, severity):
    assert severity_from_syslog(word) == severity


def classification_of_batch(batch: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["event_type"], r["category"], r["subcategory"], r["severity"]) for r in batch
    ]


def test_classify_transform_sets_columns():
    records = [
        {"event_type": "000000de", "syslog_severity": "warn"},
        {"event_type": "GNRL_EV_ATTACK_DETECTED", "syslog_severity": "crit"},
        {"event_type": "0000abcd", "syslog_severity": "info"},
    ]
    with local_test_pipeline() as pipeline:
        kept, dead_letters = pipeline | Create([records]) | Classify()
        rows = kept | "Summarize" >> FlatMap(classification_of_batch)
        assert_that(
            rows,
            equal_to(
                [
                    ("000000de", "general", "task_state", "warning"),
                    (
                        "GNRL_EV_ATTACK_DETECTED",
                        "security",
                        "network_attack",
                        "critical",
                    ),
                    ("0000abcd", "unknown", None, "info"),
                ]
            ),
            label="CheckKept",
        )
        assert_that(dead_letters, equal_to([]), label="CheckDeadLetters")
