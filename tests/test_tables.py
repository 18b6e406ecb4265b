"""Specification of the lookup tables: each loads, has unique keys and uses
only the allowed vocabulary."""

from __future__ import annotations

from collections import Counter

import pytest

from transforms import tables


def test_every_table_loads():
    assert len(tables.body_keys()) > 0
    assert len(tables.result_terms()) > 0
    assert len(tables.sd_param_rules()) > 0
    assert len(tables.threat_types()) > 0
    assert len(tables.syslog_severities()) > 0
    assert len(tables.event_catalogue().by_id) > 0
    assert len(tables.event_families()) > 0


@pytest.mark.parametrize(
    ("name", "key_columns"),
    [
        ("body_keys.csv", ("language", "key")),
        ("result_terms.csv", ("language", "term")),
        ("sd_params.csv", ("event_type", "param")),
        ("threat_types.csv", ("code",)),
        ("syslog_severities.csv", ("word",)),
        ("event_families.csv", ("prefix", "keyword")),
    ],
)
def test_table_keys_unique(name, key_columns):
    keys = Counter(
        tuple(tables.normalize_key(row[column]) for column in key_columns)
        for row in tables.read_rows(name)
    )
    repeated = [key for key, count in keys.items() if count > 1]
    assert repeated == [], f"{name}: repeated keys {repeated}"


def test_event_type_ids_unique():
    ids = Counter(
        row["event_type"]
        for row in tables.read_rows("event_types.csv")
        if row["event_type"]
    )
    assert [key for key, count in ids.items() if count > 1] == []


def test_event_display_names_unique():
    names = Counter(
        tables.normalize_key(row[column])
        for row in tables.read_rows("event_types.csv")
        for column in ("name_en", "name_ru")
        if row[column]
    )
    assert [key for key, count in names.items() if count > 1] == []


def test_idless_rows_have_names():
    for row in tables.read_rows("event_types.csv"):
        if not row["event_type"]:
            assert row["name_en"], f"row without id or name: {row}"


def test_body_key_vocabulary():
    for row in tables.read_rows("body_keys.csv"):
        assert row["field"] in tables.BODY_FIELDS, f"field: {row}"
        assert row["language"] in tables.LANGUAGES, f"language: {row}"
        assert row["source"] in {"export", "siem_parser", "inferred"}, f"source: {row}"


def test_shared_key_counts_both_languages():
    keys = tables.body_keys()
    assert keys[tables.normalize_key("Name")].languages == {"en", "de"}


def test_result_term_vocabulary():
    for row in tables.read_rows("result_terms.csv"):
        assert row["result"] in tables.RESULTS, f"result: {row}"
        assert row["language"] in tables.LANGUAGES, f"language: {row}"
        assert row["source"] in {"export", "ui_name", "inferred"}, f"source: {row}"


def test_result_terms_every_language():
    languages = {row["language"] for row in tables.read_rows("result_terms.csv")}
    assert languages == set(tables.LANGUAGES)


def test_every_result_has_english_term():
    results = {
        row["result"]
        for row in tables.read_rows("result_terms.csv")
        if row["language"] == "en"
    }
    assert results == set(tables.RESULTS)


def test_sd_param_vocabulary():
    for rule in tables.sd_param_rules():
        assert rule.param in {f"p{number}" for number in range(1, 10)}, rule
        assert rule.column in tables.SD_COLUMNS, rule
        assert rule.conversion in tables.SD_CONVERSIONS, rule
        assert rule.wins in tables.SD_WINS, rule


def test_event_type_vocabulary():
    for row in tables.read_rows("event_types.csv"):
        assert row["category"] in {"security", "general"}, f"category: {row}"
        assert row["subcategory"] in tables.SUBCATEGORIES, f"subcategory: {row}"
        assert row["severity"] in (*tables.SEVERITIES, ""), f"severity: {row}"
        assert row["if_threat"] in (*tables.SUBCATEGORIES, ""), f"if_threat: {row}"


def test_family_vocabulary():
    for rule in tables.event_families():
        assert rule.category in {"security", "general"}, rule
        assert rule.subcategory in (*tables.SUBCATEGORIES, None), rule


def test_syslog_severity_vocabulary():
    for severity in tables.syslog_severities().values():
        assert severity in tables.SEVERITIES


def test_catalogue_lookup_truncated_id():
    catalogue = tables.event_catalogue()
    entry = catalogue.lookup_id("GNRL_EV_APPLICATION_LAUNCH_DENIE")
    assert entry is not None
    assert entry.event_type == "GNRL_EV_APPLICATION_LAUNCH_DENIED"


def test_catalogue_lookup_name_case():
    entry = tables.event_catalogue().lookup_name("task  STOPPED")
    assert entry is not None
    assert entry.event_type == "000000de"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Result\\Description", "result description"),
        ("\ufeffResult description", "result description"),
        ("  Application\\Process ID ", "application process id"),
    ],
)
def test_normalize_key_forms(key, expected):
    assert tables.normalize_key(key) == expected
