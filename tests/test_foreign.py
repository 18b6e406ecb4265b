"""RejectForeignLines: what counts as a Kaspersky export and what does not."""

import pytest

from transforms.errors import LineRejected
from transforms.foreign import is_kaspersky, reject_foreign


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
