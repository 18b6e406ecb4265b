r"""Specification of the message body parser and ParseMessageBody.

Inputs are written as raw strings, so they read as the `message` value of a
FluentD record after JSON decoding: `\r\n` is the four-character separator
that KSC writes, and any other backslash is a literal backslash.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.message_body import (
    LITERAL_CRLF,
    ParseMessageBody,
    _parse_common_body,
    _parse_items,
    _split_items,
    parse_message,
    parse_message_body,
    split_item,
)

CORPUS = Path(__file__).parent / "data" / "corpus"
PIPELINE_ARGS = ["--prism_location=/nonexistent/prism.zip"]


def _corpus_message(file_name: str, line_number: int) -> str:
    path = CORPUS / file_name
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if number == line_number:
                return json.loads(line.split("\t", 2)[2])["message"]
    raise LookupError(f"{file_name} has no line {line_number}")


# ---------------------------------------------------------------------------
# Body parser: input and the items it gives

BODY_CASES = [
    (
        "flat keys",
        r"Result description: Detected\r\nType: Virus\r\nName: EICAR-Test-File",
        [
            ("Result description", "Detected"),
            ("Type", "Virus"),
            ("Name", "EICAR-Test-File"),
        ],
    ),
    (
        "leading bom",
        "\ufeffResult description: Detected\\r\\nType: Virus",
        [("Result description", "Detected"), ("Type", "Virus")],
    ),
    (
        "hierarchical keys many spaces",
        r"Result\Description:     Task stopped\r\nObject\Type:     Subsystem\r\n",
        [("Result\\Description", "Task stopped"), ("Object\\Type", "Subsystem")],
    ),
    (
        "trailing backslash before separator",
        r"Application\Path:     C:\Program Files (x86)\Kaspersky Lab\Kaspersky Endpoint"
        r" Security for Windows\\r\nUser:     NT AUTHORITY\SYSTEM (Initiator)",
        [
            (
                "Application\\Path",
                "C:\\Program Files (x86)\\Kaspersky Lab\\Kaspersky Endpoint Security"
                " for Windows\\",
            ),
            ("User", "NT AUTHORITY\\SYSTEM (Initiator)"),
        ],
    ),
    (
        "unc path",
        r"Path to object: \\server.example.com\profiles$\User1\Outlook"
        r"\r\nReason: Read error",
        [
            ("Path to object", "\\\\server.example.com\\profiles$\\User1\\Outlook"),
            ("Reason", "Read error"),
        ],
    ),
    (
        "backslash root in path",
        r"Application path: C:\Program Files\Microsoft Office\root\Office16"
        r"\r\nProcess ID: 1",
        [
            ("Application path", "C:\\Program Files\\Microsoft Office\\root\\Office16"),
            ("Process ID", "1"),
        ],
    ),
    (
        "drive root at end",
        r"Object: D:\\r\nType: Virus",
        [("Object", "D:\\"), ("Type", "Virus")],
    ),
    (
        "real crlf separator",
        "Type: Virus\r\nName: EICAR-Test-File",
        [("Type", "Virus"), ("Name", "EICAR-Test-File")],
    ),
    (
        "real lf and cr separators",
        "Type: Virus\nName: EICAR-Test-File\rReason: Expert analysis",
        [("Type", "Virus"), ("Name", "EICAR-Test-File"), ("Reason", "Expert analysis")],
    ),
    (
        "sentence before inner key",
        r"Object not disinfected. Reason: object cannot be disinfected\r\nType: Virus",
        [
            ("", "Object not disinfected."),
            ("Reason", "object cannot be disinfected"),
            ("Type", "Virus"),
        ],
    ),
    (
        "keyless path item",
        r"C:\Users\user1\eicar.com\r\nType: Virus",
        [("", "C:\\Users\\user1\\eicar.com"), ("Type", "Virus")],
    ),
    (
        "keyless free sentence",
        r"Object not disinfected\r\nType: Virus",
        [("", "Object not disinfected"), ("Type", "Virus")],
    ),
    (
        "empty items skipped",
        r"Type: Virus\r\n\r\n   \r\nName: EICAR-Test-File\r\n",
        [("Type", "Virus"), ("Name", "EICAR-Test-File")],
    ),
    (
        "value with colon",
        r"Result: Detected: EICAR",
        [("Result", "Detected: EICAR")],
    ),
    (
        "colons without space in value",
        r"Database release date: 01/09/2021 15:34:10\r\nObject: https://www.example.com/",
        [
            ("Database release date", "01/09/2021 15:34:10"),
            ("Object", "https://www.example.com/"),
        ],
    ),
    (
        "tab after colon",
        "Type:\tVirus\\r\\nName:\t  EICAR",
        [("Type", "Virus"), ("Name", "EICAR")],
    ),
    (
        "empty value",
        r"Comment: \r\nType: Virus",
        [("Comment", ""), ("Type", "Virus")],
    ),
    (
        "trailing whitespace removed",
        "Type: Virus   \\r\\nName: EICAR\t",
        [("Type", "Virus"), ("Name", "EICAR")],
    ),
    (
        "russian keys",
        r"Описание результата: Обнаружено\r\nТип: Вирус\r\n"
        r"Пользователь: EXAMPLE\user1 (Инициатор)",
        [
            ("Описание результата", "Обнаружено"),
            ("Тип", "Вирус"),
            ("Пользователь", "EXAMPLE\\user1 (Инициатор)"),
        ],
    ),
    (
        "spanish time value",
        r"Fecha de publicación de las bases de datos: 1/12/2022 9:52:00 a. m.",
        [("Fecha de publicación de las bases de datos", "1/12/2022 9:52:00 a. m.")],
    ),
    ("empty body", "", []),
    ("bom only", "\ufeff", []),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in BODY_CASES],
    ids=[case[0] for case in BODY_CASES],
)
def test_message_body_items(text: str, expected: list[tuple[str, str]]) -> None:
    assert parse_message_body(text) == expected


ITEM_CASES = [
    ("key and value", "Type: Virus", ("Type", "Virus")),
    ("key padded", "  Type :  Virus", ("Type", "Virus")),
    ("colon at end", "Comment:", ("", "Comment:")),
    ("drive letter only", r"C:\path", ("", "C:\\path")),
    ("url only", "https://www.example.com", ("", "https://www.example.com")),
]


@pytest.mark.parametrize(
    ("item", "expected"),
    [case[1:] for case in ITEM_CASES],
    ids=[case[0] for case in ITEM_CASES],
)
def test_split_item_cases(item: str, expected: tuple[str, str]) -> None:
    assert split_item(item) == expected


# ---------------------------------------------------------------------------
# Real corpus lines

CORPUS_CASES = [
    (
        "fluentd-s3-20210522_0.log",
        1,
        [
            ("Event type", "Task stopped"),
            ("Application", "Kaspersky Endpoint Security for Windows"),
            ("Application\\Name", "avp.exe"),
            (
                "Application\\Path",
                "C:\\Program Files (x86)\\Kaspersky Lab\\Kaspersky Endpoint Security"
                " for Windows\\",
            ),
            ("User", "NT AUTHORITY\\SYSTEM (Initiator)"),
            ("Component", "Exploit Prevention"),
            ("Result\\Description", "Task stopped"),
            ("Object", "Exploit Prevention"),
            ("Object\\Type", "Subsystem"),
            ("Object\\Name", "Exploit Prevention"),
        ],
    ),
    (
        "fluentd-s3-20220228_1.log.gz",
        1,
        [
            ("Result description", "Detected"),
            ("Type", "Virus"),
            ("Name", "EICAR-Test-File"),
            ("User", "EXAMPLE\\user1 (Active user)"),
            (
                "Object",
                r"C:\Users\user1\AppData\Local\Temp\Temp1_eicar - Copy.zip\eicar.com",
            ),
            ("Reason", "Expert analysis"),
            ("Database release date", "1/12/2022 9:52:00 AM"),
            (
                "SHA256",
                "275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F",
            ),
            ("MD5", "44D88612FEA8A8F36DE82E1278ABB02F"),
        ],
    ),
    (
        "fluentd-gcs-20231214_0.log",
        3,
        [
            ("Event type", "Processing error"),
            ("Name", "WINWORD.EXE"),
            ("Application path", "C:\\Program Files\\Microsoft Office\\root\\Office16"),
            ("Process ID", "12820"),
            ("User", "EXAMPLE\\User1 (Initiator)"),
            ("Component", "File Threat Protection"),
            ("Result description", "Processing error"),
            ("Object type", "File"),
            ("Path to object", "\\\\server.example.com\\profiles$\\User1\\Outlook"),
            ("Object name", "User1@example.org.ost"),
            ("Reason", "Read error"),
        ],
    ),
]


@pytest.mark.parametrize(("file_name", "line_number", "expected"), CORPUS_CASES)
def test_corpus_message_body_items(
    file_name: str, line_number: int, expected: list[tuple[str, str]]
) -> None:
    assert parse_message_body(_corpus_message(file_name, line_number)) == expected


def test_corpus_bodies_have_keys() -> None:
    for path in sorted(CORPUS.glob("*.log*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                message = json.loads(line.split("\t", 2)[2])["message"]
                fields = parse_message_body(message)
                assert fields, f"{path.name}:{number}"
                keys = [key for key, _ in fields]
                assert "" not in keys, f"{path.name}:{number}"


# ---------------------------------------------------------------------------
# Record step

RECORD_CASES = [
    ("no message", None, []),
    ("empty message", "", []),
    ("one item", "Type: Virus", [("Type", "Virus")]),
]


@pytest.mark.parametrize(
    ("message", "expected"),
    [case[1:] for case in RECORD_CASES],
    ids=[case[0] for case in RECORD_CASES],
)
def test_parse_message_record_fields(
    message: str | None, expected: list[tuple[str, str]]
) -> None:
    record = {"_message": message}
    parse_message(record)
    assert record["message_fields"] == expected


# ---------------------------------------------------------------------------
# Properties


def _is_trimmed(text: str) -> bool:
    return text == text.strip()


_no_line_breaks = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\r\n"
)
body_keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=":\r\n"),
    min_size=1,
    max_size=20,
).filter(
    lambda key: (
        _is_trimmed(key)
        and LITERAL_CRLF not in key
        and not key.startswith("\ufeff")
        and ". " not in key
    )
)
body_values = st.text(alphabet=_no_line_breaks, max_size=30).filter(
    lambda value: _is_trimmed(value) and LITERAL_CRLF not in value
)
separators = st.sampled_from([LITERAL_CRLF, "\r\n", "\n", "\r"])
key_separators = st.sampled_from([": ", ":     ", ":\t", ": \t "])


@settings(deadline=None)
@given(
    pairs=st.lists(st.tuples(body_keys, body_values), min_size=1, max_size=6),
    data=st.data(),
    bom=st.booleans(),
)
def test_body_roundtrip_keeps_characters(
    pairs: list[tuple[str, str]], data: st.DataObject, bom: bool
) -> None:
    items = [key + data.draw(key_separators) + value for key, value in pairs]
    body = items[0]
    for item in items[1:]:
        body += data.draw(separators) + item
    if bom:
        body = "\ufeff" + body
    assert parse_message_body(body) == pairs


@settings(deadline=None)
@given(text=st.one_of(st.text(), st.text(alphabet="\\rn: \t\r\nab\ufeff", max_size=60)))
def test_body_parser_never_raises(text: str) -> None:
    fields = parse_message_body(text)
    for key, value in fields:
        assert isinstance(key, str)
        assert isinstance(value, str)
        assert key == key.strip()
        assert value == value.rstrip()


def test_beam_parse_message_body_transform() -> None:
    batch = [
        {
            "source_line": 1,
            "_message": "\ufeffResult description: Detected\\r\\nType: Virus",
        },
        {"source_line": 2, "_message": None},
    ]
    expected = [
        [
            {
                "source_line": 1,
                "_message": batch[0]["_message"],
                "message_fields": [
                    ("Result description", "Detected"),
                    ("Type", "Virus"),
                ],
            },
            {"source_line": 2, "_message": None, "message_fields": []},
        ]
    ]
    with TestPipeline(options=PipelineOptions(PIPELINE_ARGS)) as pipeline:
        kept, dead_letters = (
            pipeline | "CreateBatches" >> beam.Create([batch]) | ParseMessageBody()
        )
        assert_that(kept, equal_to(expected), label="CheckKeptBatches")
        assert_that(dead_letters, equal_to([]), label="CheckNoDeadLetters")


def test_sentence_before_key_split_off():
    body = r"Object not disinfected. Reason: object cannot be disinfected"
    assert parse_message_body(body) == [
        ("", "Object not disinfected."),
        ("Reason", "object cannot be disinfected"),
    ]


# Characters that steer the parser: the separator's parts, colons, spaces,
# sentence ends, Unicode white space and a BOM. Tabs and real line breaks are
# left out, because bodies with them take the general path.
_COMMON_BODY_CHARS = "\\rn: .ab\x0b\x85\u2028\u3000\ufeff"


@settings(deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet=_COMMON_BODY_CHARS, max_size=60),
        st.text(alphabet=st.characters(blacklist_characters="\t\r\n"), max_size=60),
    )
)
def test_common_body_path_matches_general(text: str) -> None:
    assert _parse_common_body(text) == _parse_items(_split_items(text))


@settings(deadline=None)
@given(text=st.text(alphabet=_COMMON_BODY_CHARS + "\t\r\n", max_size=60))
def test_body_with_tabs_matches_general(text: str) -> None:
    stripped = text[1:] if text.startswith("\ufeff") else text
    assert parse_message_body(text) == _parse_items(_split_items(stripped))
