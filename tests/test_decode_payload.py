"""DecodePayload: syslog fields of the FluentD record, product, tag and id."""

import hashlib

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.beam_helpers import local_test_pipeline
from transforms.decode_payload import (
    EVENT_ID_VERSION,
    PRI_KEYS,
    SYSLOG_KEYS,
    DecodePayload,
    compute_event_id,
    decode_payload,
    split_ident,
    split_tag,
)

RECORD = {
    "host": "host-01.example.local",
    "ident": "KES|11.0.0.0",
    "pid": "-",
    "msgid": "GNRL_EV_VIRUS_FOUND",
    "extradata": '[event@23668 et="GNRL_EV_VIRUS_FOUND"]',
    "message": "Result description: Detected",
}


def _line_record(payload, tag="kav_logs.user.crit"):
    return {
        "source_uri": "f.log",
        "source_line": 1,
        "raw": "",
        "event_time": 1646063335_000000,
        "fluentd_tag": tag,
        "_record": payload,
    }


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("KES|11.0.0.0", ("KES", "11.0.0.0")),
        ("KES|", ("KES", None)),
        ("WSEE|10.1.0.0", ("WSEE", "10.1.0.0")),
        ("Hostd", ("Hostd", None)),
        ("-", (None, None)),
        (None, (None, None)),
    ],
)
def test_ident_product_and_version(ident, expected):
    assert split_ident(ident) == expected


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("kav_logs.user.warn", ("user", "warn")),
        ("a.b.kav.local0.crit", ("local0", "crit")),
        ("kav_logs", (None, None)),
        ("kav.user.loud", (None, None)),
        (None, (None, None)),
    ],
)
def test_tag_facility_and_severity(tag, expected):
    assert split_tag(tag) == expected


def test_decode_sets_syslog_columns():
    record = _line_record(dict(RECORD))
    decode_payload(record)
    assert record["host"] == "host-01.example.local"
    assert record["product"] == "KES"
    assert record["product_version"] == "11.0.0.0"
    assert record["syslog_facility"] == "user"
    assert record["syslog_severity"] == "crit"
    assert record["_msgid"] == "GNRL_EV_VIRUS_FOUND"
    assert record["_extradata"] == '[event@23668 et="GNRL_EV_VIRUS_FOUND"]'
    assert record["extra_fields"] is None


def test_decode_nil_extradata_is_none():
    record = _line_record(dict(RECORD, extradata="-", msgid="-"))
    decode_payload(record)
    assert record["_extradata"] is None
    assert record["_msgid"] is None


def test_decode_keeps_extra_keys():
    record = _line_record(dict(RECORD, source_ip="10.0.0.9", port=514))
    decode_payload(record)
    assert record["extra_fields"] == {"source_ip": "10.0.0.9", "port": "514"}


def test_decode_non_text_field_flagged():
    record = _line_record(dict(RECORD, host=42))
    decode_payload(record)
    assert record["host"] == "42"
    assert "host_not_text" in record["parse_issues"]


def test_event_id_ignores_key_order():
    reordered = dict(reversed(list(RECORD.items())))
    assert compute_event_id(1, "t", RECORD) == compute_event_id(1, "t", reordered)


def test_event_id_depends_on_time():
    assert compute_event_id(1, "t", RECORD) != compute_event_id(2, "t", RECORD)


def test_event_id_depends_on_message():
    other = dict(RECORD, message="Result description: Deleted")
    assert compute_event_id(1, "t", RECORD) != compute_event_id(1, "t", other)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("kav_logs.user.crit", "e600dbeb99ee49ead449b2cf113b6bb9"),
        (None, "bc8aed94ef452cca876cd55ffec260e6"),
    ],
)
def test_event_id_pinned_values(tag, expected):
    # Ids stored by earlier runs must match, so the hash never changes.
    assert compute_event_id(1646063335_000000, tag, RECORD) == expected


def _event_id_part_by_part(event_time, tag, record):
    digest = hashlib.blake2b(digest_size=16)
    for part in (
        EVENT_ID_VERSION,
        (tag or "").encode(),
        str(event_time).encode(),
    ):
        digest.update(part)
        digest.update(b"\x1f")
    digest.update(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
payloads = st.dictionaries(
    st.sampled_from(SYSLOG_KEYS + PRI_KEYS) | st.text(max_size=8),
    json_values,
    max_size=8,
)


@settings(deadline=None)
@given(
    event_time=st.integers(-(2**62), 2**62),
    tag=st.none() | st.text(max_size=20),
    record=payloads,
)
def test_event_id_equals_part_hashes(event_time, tag, record):
    assert compute_event_id(event_time, tag, record) == _event_id_part_by_part(
        event_time, tag, record
    )


@settings(deadline=None)
@given(payload=payloads)
def test_decode_extra_fields_other_keys(payload):
    record = _line_record(payload)
    decode_payload(record)
    expected = {
        key: value
        if value is None or isinstance(value, str)
        else orjson.dumps(value).decode()
        for key, value in payload.items()
        if key not in SYSLOG_KEYS and key not in PRI_KEYS
    }
    assert record["extra_fields"] == (expected or None)


def test_decode_transform_keeps_every_line():
    with local_test_pipeline() as pipeline:
        kept, dead = (
            pipeline
            | beam.Create([[_line_record(dict(RECORD)), _line_record({"host": "x"})]])
            | DecodePayload()
        )
        products = kept | "Products" >> beam.FlatMap(
            lambda batch: [r["product"] for r in batch]
        )
        assert_that(products, equal_to(["KES", None]), label="Products")
        assert_that(dead, equal_to([]), label="NoDeadLetters")
