"""RejectForeignLines: what counts as a Kaspersky export and what does not."""

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.beam_helpers import local_test_pipeline
from transforms.errors import LineRejected
from transforms.foreign import RejectForeignLines, is_kaspersky, reject_foreign


@pytest.mark.parametrize(
    ("ident", "sd_id", "params", "expected"),
    [
        ("KES|11.0.0.0", "event@23668", {"et": "GNRL_EV_VIRUS_FOUND"}, True),
        ("KES|", "event@32503", {"et": "000000de"}, True),
        ("KES|12.3.0.493", None, {}, True),
        ("WSEE|10.1.0.0", "event@23668", {"et": "GNRL_EV_OBJECT_NOTCURED"}, True),
        ("weird-app", "event@23668", {"et": "GNRL_EV_VIRUS_FOUND"}, True),
        # VMware hostd: the opID contains "@23668" but the SD-ID is Originator.
        ("Hostd", "Originator@6876", {"opID": "host-17@23668-2a"}, False),
        ("Hostd", None, {}, False),
        ("KES|11.0.0.0", "Originator@6876", {"opID": "x"}, False),
        # Kaspersky Scan Engine: another product with another SD-ID.
        ("KSE|2.0", "KL_HTTPD@23668", {"url": "x"}, False),
        (None, None, {}, False),
    ],
)
def test_kaspersky_recognition(ident, sd_id, params, expected):
    assert is_kaspersky(ident, sd_id, params) is expected


def test_foreign_line_dead_letter_code():
    record = {"_ident": "Hostd", "sd_id": "Originator@6876", "sd_params": {}}
    with pytest.raises(LineRejected) as caught:
        reject_foreign(record)
    assert caught.value.code == "not_kaspersky"


@pytest.mark.parametrize(
    ("record", "code"),
    [
        (
            {
                "_ident": None,
                "sd_id": None,
                "sd_params": {},
                "_record": {
                    "unmatched_line": "<10>1 2022-02-28T15:48:55Z host KES|11 - x -"
                },
            },
            "unmatched_syslog",
        ),
        (
            {
                "_ident": None,
                "sd_id": None,
                "sd_params": {},
                "_record": {},
                "_message": "CEF:0|KasperskyLab|SecurityCenter|13.2|GNRL_EV_X",
            },
            "unsupported_format",
        ),
        ({"_ident": "java|8", "sd_id": None, "sd_params": {}}, "not_kaspersky"),
    ],
)
def test_rejected_line_reason(record, code):
    with pytest.raises(LineRejected) as caught:
        reject_foreign(record)
    assert caught.value.code == code


def test_reject_transform_routes_foreign_line():
    kaspersky = {
        "source_line": 1,
        "_ident": "KES|11.0.0.0",
        "sd_id": "event@23668",
        "sd_params": {"et": "GNRL_EV_VIRUS_FOUND"},
    }
    vmware = {
        "source_line": 2,
        "_ident": "Hostd",
        "sd_id": "Originator@6876",
        "sd_params": {"opID": "host-17@23668-2a"},
    }
    with local_test_pipeline() as pipeline:
        kept, dead = (
            pipeline | beam.Create([[kaspersky, vmware]]) | RejectForeignLines()
        )
        kept_lines = kept | "Kept" >> beam.FlatMap(
            lambda batch: [r["source_line"] for r in batch]
        )
        dead_lines = dead | "Dead" >> beam.FlatMap(
            lambda batch: [(r["source_line"], r["error"]) for r in batch]
        )
        assert_that(kept_lines, equal_to([1]), label="KeptLines")
        assert_that(dead_lines, equal_to([(2, "not_kaspersky")]), label="DeadLines")
