r"""Specification of the RFC 5424 STRUCTURED-DATA parser and ParseExtradata.

Inputs are written as raw strings, so they read as the `extradata` value of a
FluentD record after JSON decoding: `\\` is an escaped backslash, `\"` an
escaped quote.
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

from transforms.errors import StructuredDataError
from transforms.structured_data import (
    ParseExtradata,
    SdElement,
    _first_values,
    _json_values,
    _parse_by_characters,
    _parse_single_element,
    decode_json_value,
    escape_param_value,
    parse_extradata,
    parse_structured_data,
    parse_structured_data_lenient,
    select_kaspersky_element,
)

CORPUS = Path(__file__).parent / "data" / "corpus"
PIPELINE_ARGS = ["--prism_location=/nonexistent/prism.zip"]
ISSUE_CODES = {"sd_lenient", "sd_unclosed", "sd_invalid"}


def _element(sd_id: str, *params: tuple[str, str]) -> SdElement:
    return SdElement(sd_id, tuple(params))


def _corpus_extradata(file_name: str, line_number: int) -> str:
    path = CORPUS / file_name
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if number == line_number:
                return json.loads(line.split("\t", 2)[2])["extradata"]
    raise LookupError(f"{file_name} has no line {line_number}")


def _all_corpus_extradata() -> list[tuple[str, str]]:
    found = []
    for path in sorted(CORPUS.glob("*.log*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                record = json.loads(line.split("\t", 2)[2])
                found.append((f"{path.name}:{number}", record["extradata"]))
    return found


# ---------------------------------------------------------------------------
# Strict parser: input and the elements it gives

STRICT_CASES = [
    ("nil value", "-", []),
    (
        "double space between params",
        r'[event@32503 et="000000de" tdn="Exploit Prevention" etdn="Task stopped"'
        r'  gn="Tier Two"]',
        [
            _element(
                "event@32503",
                ("et", "000000de"),
                ("tdn", "Exploit Prevention"),
                ("etdn", "Task stopped"),
                ("gn", "Tier Two"),
            )
        ],
    ),
    (
        "escaped backslash and json",
        r'[event@23668 p2="NT AUTHORITY\\SYSTEM"'
        r' p5="{\"CertSerial\":\"\" ,\"CertThumbprint\":\"\"}"]',
        [
            _element(
                "event@23668",
                ("p2", "NT AUTHORITY\\SYSTEM"),
                ("p5", '{"CertSerial":"" ,"CertThumbprint":""}'),
            )
        ],
    ),
    ("escaped bracket", r'[a p="x\]y"]', [_element("a", ("p", "x]y"))]),
    ("escaped quote", r'[a p="say \"hi\""]', [_element("a", ("p", 'say "hi"'))]),
    ("escaped backslash at end", r'[a p="C:\\"]', [_element("a", ("p", "C:\\"))]),
    (
        "other backslash kept",
        r'[a p="line\nnext"]',
        [_element("a", ("p", r"line\nnext"))],
    ),
    (
        "backslash before letter",
        r'[a p="C:\Users"]',
        [_element("a", ("p", r"C:\Users"))],
    ),
    ("empty value", r'[a p="" q="1"]', [_element("a", ("p", ""), ("q", "1"))]),
    ("element without params", "[exampleSDID@32473]", [_element("exampleSDID@32473")]),
    (
        "several elements",
        r'[exampleSDID@32473 iut="3" eventSource="Application"][examplePriority@32473'
        r' class="high"]',
        [
            _element("exampleSDID@32473", ("iut", "3"), ("eventSource", "Application")),
            _element("examplePriority@32473", ("class", "high")),
        ],
    ),
    (
        "whitespace between elements",
        r' [a x="1"]  [b y="2"] ',
        [_element("a", ("x", "1")), _element("b", ("y", "2"))],
    ),
    (
        "repeated name kept",
        r'[a ip="10.0.0.1" ip="10.0.0.2"]',
        [_element("a", ("ip", "10.0.0.1"), ("ip", "10.0.0.2"))],
    ),
    ("unescaped bracket in value", r'[a p="x]y"]', [_element("a", ("p", "x]y"))]),
    ("space before closing bracket", r'[a p="1" ]', [_element("a", ("p", "1"))]),
    (
        "unicode value",
        r'[a etdn="Загрузка объекта запрещена"]',
        [_element("a", ("etdn", "Загрузка объекта запрещена"))],
    ),
    (
        "vmware originator element",
        r'[Originator@6876 sub="Vimsvc.TaskManager" opID="host-17@23668-2a"]',
        [
            _element(
                "Originator@6876",
                ("sub", "Vimsvc.TaskManager"),
                ("opID", "host-17@23668-2a"),
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in STRICT_CASES],
    ids=[case[0] for case in STRICT_CASES],
)
def test_strict_parser_valid_text(text: str, expected: list[SdElement]) -> None:
    assert parse_structured_data(text) == expected


STRICT_ERRORS = [
    ("unclosed element", r'[a p="1"', "element 'a' opened at offset 0 is never closed"),
    ("missing equals sign", r'[a p "1"]', "expected '=' after parameter name 'p'"),
    ("missing equals at end", "[a p", "expected '=' after parameter name 'p'"),
    (
        "missing opening quote",
        "[a p=1]",
        "expected '\"' to open the value of parameter 'p'",
    ),
    ("value never closed", r'[a p="1\"]', "value opened at offset 5 is never closed"),
    ("backslash at end", '[a p="1\\', "value opened at offset 5 is never closed"),
    ("invalid sd id", r'[ p="1"]', "offset 1: expected an SD-ID"),
    ("invalid param name", r'[a ="1"]', "offset 3: expected a parameter name"),
    (
        "non ascii param name",
        r'[a pä="1"]',
        "offset 4: expected '=' after parameter name 'p'",
    ),
    ("quote right after value", r'[a p="1"q="2"]', "offset 8: expected a space or ']'"),
    ("tab between params", '[a p="1"\tq="2"]', "offset 8: expected a space or ']'"),
    (
        "text after last element",
        r'[a p="1"] tail',
        "offset 10: expected '[' or the end",
    ),
    ("empty text", "", "offset 0: expected '-' or '['"),
    ("no element", "plain text", "offset 0: expected '[' or the end"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [case[1:] for case in STRICT_ERRORS],
    ids=[case[0] for case in STRICT_ERRORS],
)
def test_strict_parser_rejects_text(text: str, message: str) -> None:
    with pytest.raises(StructuredDataError) as raised:
        parse_structured_data(text)
    assert message in str(raised.value)


# ---------------------------------------------------------------------------
# Real corpus lines

CORPUS_CASES = [
    (
        "fluentd-s3-20210522_0.log",
        1,
        "event@32503",
        {"et": "000000de", "etdn": "Task stopped", "gn": "Tier Two"},
    ),
    (
        "fluentd-s3-20220228_0.log",
        1,
        "event@23668",
        {
            "p2": r"C:\Users\user1\AppData\Local\Temp\Temp1_eicar - Copy.zip\eicar.com",
            "p7": r"EXAMPLE\user1",
            "et": "GNRL_EV_VIRUS_FOUND",
            "hdn": "HOST-01",
            "engine": "1",
        },
    ),
    (
        "fluentd-s3-20220228_1.log.gz",
        1,
        "event@23668",
        {"p5": "EICAR-Test-File", "hip": "10.0.0.7", "gn": "Group A"},
    ),
    (
        "fluentd-s3-20220318_0.log",
        1,
        "event@23668",
        {
            "p2": r"NT AUTHORITY\SYSTEM",
            "p5": '{"CertSerial":"" ,"CertThumbprint":"" ,"CertIssuer":"" ,'
            '"CertSubject":"" ,"ParentProcess":""}',
            "et": "GNRL_EV_APPLICATION_LAUNCH_DENIED",
        },
    ),
    (
        "fluentd-s3-20210908_0.log",
        1,
        "event@23668",
        {"p2": "https://www.example.com/favicon.ico", "hip": "192.168.1.2"},
    ),
    (
        "fluentd-s3-20230323_0.log",
        1,
        "event@23668",
        {
            "hdn": "HOST-08 - USER",
            "gn": "BITLOCKER - SEM CRIPTO",
            "kscfqdn": "ksc-server",
        },
    ),
]


@pytest.mark.parametrize(("file_name", "line_number", "sd_id", "params"), CORPUS_CASES)
def test_corpus_extradata_parses_strictly(
    file_name: str, line_number: int, sd_id: str, params: dict[str, str]
) -> None:
    elements = parse_structured_data(_corpus_extradata(file_name, line_number))
    assert len(elements) == 1
    assert elements[0].sd_id == sd_id
    parsed = dict(elements[0].params)
    for name, value in params.items():
        assert parsed.get(name) == value, name


@pytest.mark.parametrize(("where", "text"), _all_corpus_extradata())
def test_corpus_extradata_strict_no_issues(where: str, text: str) -> None:
    elements, issues = parse_structured_data_lenient(text)
    assert issues == [], where
    assert elements == parse_structured_data(text), where


def test_corpus_p9_decodes_as_json() -> None:
    elements = parse_structured_data(_corpus_extradata("fluentd-s3-20220228_0.log", 1))
    p9 = dict(elements[0].params)["p9"]
    assert decode_json_value(p9) == {
        "engine": 1,
        "method": 3,
        "edr_ver": 1,
        "edr": {"id": "93bd30af-5cd5-4325-bb75-31b296d7f257"},
        "md5": "44D88612FEA8A8F36DE82E1278ABB02F",
    }


@pytest.mark.parametrize(
    ("where", "text"),
    [(where, text) for where, text in _all_corpus_extradata() if text != "-"],
)
def test_string_engine_corpus_text_recovered(where: str, text: str) -> None:
    # FluentD's `string` parser engine deletes every backslash from extradata.
    expected = [
        SdElement(
            element.sd_id,
            tuple((name, value.replace("\\", "")) for name, value in element.params),
        )
        for element in parse_structured_data(text)
    ]
    elements, issues = parse_structured_data_lenient(text.replace("\\", ""))
    assert elements == expected, where
    assert set(issues) <= {"sd_lenient"}, where


# ---------------------------------------------------------------------------
# Lenient parser: input, the elements and the issue codes

LENIENT_CASES = [
    (
        "well formed text",
        r'[a p="1"]',
        [_element("a", ("p", "1"))],
        [],
    ),
    (
        "string engine json",
        '[event@23668 p5="EICAR-Test-File" p9="{"engine":1,"method":3,'
        '"md5":"44D88612FEA8A8F36DE82E1278ABB02F"}" et="GNRL_EV_VIRUS_FOUND"]',
        [
            _element(
                "event@23668",
                ("p5", "EICAR-Test-File"),
                (
                    "p9",
                    '{"engine":1,"method":3,"md5":"44D88612FEA8A8F36DE82E1278ABB02F"}',
                ),
                ("et", "GNRL_EV_VIRUS_FOUND"),
            )
        ],
        ["sd_lenient"],
    ),
    (
        "string engine empty json strings",
        '[event@23668 p5="{"CertSerial":"" ,"ParentProcess":""}" p6="rm.bat"]',
        [
            _element(
                "event@23668",
                ("p5", '{"CertSerial":"" ,"ParentProcess":""}'),
                ("p6", "rm.bat"),
            )
        ],
        ["sd_lenient"],
    ),
    (
        "string engine json array",
        '[event@23668 p9="{"ids":["a","b"],"n":1}" et="X"]',
        [_element("event@23668", ("p9", '{"ids":["a","b"],"n":1}'), ("et", "X"))],
        ["sd_lenient"],
    ),
    (
        "string engine json last",
        '[event@23668 et="X" p9="{"engine":1}"]',
        [_element("event@23668", ("et", "X"), ("p9", '{"engine":1}'))],
        ["sd_lenient"],
    ),
    (
        "cut inside a value",
        r'[event@23668 p1="275A" p2="C:\\Users\\us',
        [_element("event@23668", ("p1", "275A"))],
        ["sd_unclosed"],
    ),
    (
        "cut after a value",
        r'[event@23668 p1="275A" p2="C:\\Users"',
        [_element("event@23668", ("p1", "275A"), ("p2", "C:\\Users"))],
        ["sd_unclosed"],
    ),
    (
        "cut inside a name",
        r'[event@23668 p1="275A" et',
        [_element("event@23668", ("p1", "275A"))],
        ["sd_unclosed"],
    ),
    (
        "cut after an escape",
        '[event@23668 p1="275A" p2="C:\\',
        [_element("event@23668", ("p1", "275A"))],
        ["sd_unclosed"],
    ),
    (
        "cut second element",
        r'[a x="1"][b y="2" z="',
        [_element("a", ("x", "1")), _element("b", ("y", "2"))],
        ["sd_unclosed"],
    ),
    (
        "text after last element",
        r'[a p="1"] tail',
        [_element("a", ("p", "1"))],
        ["sd_lenient"],
    ),
    (
        "unquoted value",
        '[a p=1 q="2"]',
        [_element("a", ("p", "1"), ("q", "2"))],
        ["sd_lenient"],
    ),
    (
        "param without value skipped",
        '[a flag q="2"]',
        [_element("a", ("q", "2"))],
        ["sd_lenient"],
    ),
    ("no element", "plain text", [], ["sd_invalid"]),
    ("empty text", "", [], ["sd_invalid"]),
]


@pytest.mark.parametrize(
    ("text", "expected", "issues"),
    [case[1:] for case in LENIENT_CASES],
    ids=[case[0] for case in LENIENT_CASES],
)
def test_lenient_parser_recovers_params(
    text: str, expected: list[SdElement], issues: list[str]
) -> None:
    assert parse_structured_data_lenient(text) == (expected, issues)


# ---------------------------------------------------------------------------
# Escaping and JSON values

ESCAPE_CASES = [
    ("plain", "Tier Two", "Tier Two"),
    ("backslash", "NT AUTHORITY\\SYSTEM", "NT AUTHORITY\\\\SYSTEM"),
    ("quote", 'say "hi"', 'say \\"hi\\"'),
    ("bracket", "a]b", "a\\]b"),
    ("backslash n", "line\\nnext", "line\\\\nnext"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(
    ("value", "escaped"),
    [case[1:] for case in ESCAPE_CASES],
    ids=[case[0] for case in ESCAPE_CASES],
)
def test_escape_param_value_cases(value: str, escaped: str) -> None:
    assert escape_param_value(value) == escaped


JSON_CASES = [
    ("object", '{"engine":1,"method":3}', {"engine": 1, "method": 3}),
    ("array", '[1, "a"]', [1, "a"]),
    ("object with spaces", ' {"a": ""} ', {"a": ""}),
    ("plain text", "EICAR-Test-File", None),
    ("number", "60", None),
    ("json string", '"text"', None),
    ("broken object", '{"engine":1', None),
    ("empty", "", None),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [case[1:] for case in JSON_CASES],
    ids=[case[0] for case in JSON_CASES],
)
def test_decode_json_value_cases(value: str, expected: object) -> None:
    assert decode_json_value(value) == expected


# ---------------------------------------------------------------------------
# Record step

RECORD_CASES = [
    (
        "no structured data",
        None,
        {"sd_id": None, "sd_params": {}, "_sd_json": {}, "parse_issues": []},
    ),
    (
        "kaspersky element",
        r'[event@23668 et="GNRL_EV_VIRUS_FOUND" p9="{\"engine\":1}"]',
        {
            "sd_id": "event@23668",
            "sd_params": {"et": "GNRL_EV_VIRUS_FOUND", "p9": '{"engine":1}'},
            "_sd_json": {"p9": {"engine": 1}},
            "parse_issues": [],
        },
    ),
    (
        "kaspersky element second",
        r'[meta sequenceId="1"][event@23668 et="000000de"]',
        {
            "sd_id": "event@23668",
            "sd_params": {"et": "000000de"},
            "_sd_json": {},
            "parse_issues": [],
        },
    ),
    (
        "foreign element first",
        r'[Originator@6876 sub="Vimsvc.TaskManager" opID="host-17@23668-2a"]',
        {
            "sd_id": "Originator@6876",
            "sd_params": {"sub": "Vimsvc.TaskManager", "opID": "host-17@23668-2a"},
            "_sd_json": {},
            "parse_issues": [],
        },
    ),
    (
        "event without digits",
        r'[event@abc et="1"][other x="2"]',
        {
            "sd_id": "event@abc",
            "sd_params": {"et": "1"},
            "_sd_json": {},
            "parse_issues": [],
        },
    ),
    (
        "first occurrence wins",
        r'[event@23668 hip="10.0.0.1" hip="10.0.0.2"]',
        {
            "sd_id": "event@23668",
            "sd_params": {"hip": "10.0.0.1"},
            "_sd_json": {},
            "parse_issues": [],
        },
    ),
    (
        "string engine flagged",
        '[event@23668 p9="{"engine":1}" et="X"]',
        {
            "sd_id": "event@23668",
            "sd_params": {"p9": '{"engine":1}', "et": "X"},
            "_sd_json": {"p9": {"engine": 1}},
            "parse_issues": ["sd_lenient"],
        },
    ),
    (
        "cut line flagged",
        r'[event@23668 et="GNRL_EV_VIRUS_FOUND" p2="C:\\Us',
        {
            "sd_id": "event@23668",
            "sd_params": {"et": "GNRL_EV_VIRUS_FOUND"},
            "_sd_json": {},
            "parse_issues": ["sd_unclosed"],
        },
    ),
    (
        "nothing recoverable",
        "garbage",
        {
            "sd_id": None,
            "sd_params": {},
            "_sd_json": {},
            "parse_issues": ["sd_invalid"],
        },
    ),
]


@pytest.mark.parametrize(
    ("extradata", "expected"),
    [case[1:] for case in RECORD_CASES],
    ids=[case[0] for case in RECORD_CASES],
)
def test_parse_extradata_record_fields(
    extradata: str | None, expected: dict[str, object]
) -> None:
    record = {"_extradata": extradata, "parse_issues": []}
    parse_extradata(record)
    for key, value in expected.items():
        assert record[key] == value, key


def test_parse_extradata_keeps_all_elements() -> None:
    record = {"_extradata": r'[a x="1"][event@23668 et="2"]'}
    parse_extradata(record)
    assert record["_sd_elements"] == [
        _element("a", ("x", "1")),
        _element("event@23668", ("et", "2")),
    ]


def test_parse_extradata_creates_issue_list() -> None:
    record = {"_extradata": r'[event@23668 et="1"'}
    parse_extradata(record)
    assert record["parse_issues"] == ["sd_unclosed"]


def test_parse_extradata_appends_to_issues() -> None:
    record = {"_extradata": r'[event@23668 et="1"', "parse_issues": ["msgid_not_text"]}
    parse_extradata(record)
    assert record["parse_issues"] == ["msgid_not_text", "sd_unclosed"]


# ---------------------------------------------------------------------------
# Properties

SD_ALPHABET = '[]"=\\ \tab@1é'
sd_like_text = st.one_of(st.text(), st.text(alphabet=SD_ALPHABET, max_size=60))
sd_names = st.text(
    alphabet=[chr(code) for code in range(33, 127) if chr(code) not in '="]'],
    min_size=1,
    max_size=12,
)


@settings(deadline=None)
@given(text=sd_like_text)
def test_strict_raises_only_structured_data_error(text: str) -> None:
    try:
        elements = parse_structured_data(text)
    except StructuredDataError:
        return
    assert all(isinstance(element, SdElement) for element in elements)


@settings(deadline=None)
@given(text=sd_like_text)
def test_lenient_parser_never_raises(text: str) -> None:
    elements, issues = parse_structured_data_lenient(text)
    assert all(isinstance(element, SdElement) for element in elements)
    assert set(issues) <= ISSUE_CODES
    try:
        strict = parse_structured_data(text)
    except StructuredDataError:
        assert issues != []
    else:
        assert (elements, issues) == (strict, [])


@settings(deadline=None)
@given(
    sd_id=sd_names,
    params=st.lists(st.tuples(sd_names, st.text()), max_size=6),
    gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=6, max_size=6),
)
def test_escape_then_parse_roundtrip(
    sd_id: str, params: list[tuple[str, str]], gaps: list[int]
) -> None:
    text = "[" + sd_id
    for (name, value), gap in zip(params, gaps, strict=False):
        text += " " * gap + f'{name}="{escape_param_value(value)}"'
    text += "]"
    assert parse_structured_data(text) == [SdElement(sd_id, tuple(params))]


@settings(deadline=None)
@given(
    sd_id=sd_names,
    params=st.lists(st.tuples(sd_names, st.text()), min_size=1, max_size=4),
    data=st.data(),
)
def test_cut_element_keeps_complete_params(
    sd_id: str, params: list[tuple[str, str]], data: st.DataObject
) -> None:
    text = "[" + sd_id
    for name, value in params:
        text += f' {name}="{escape_param_value(value)}"'
    cut = data.draw(st.integers(min_value=len(sd_id) + 1, max_value=len(text)))
    elements, issues = parse_structured_data_lenient(text[:cut])
    assert issues == ["sd_unclosed"]
    assert len(elements) == 1
    kept_params = list(elements[0].params)
    assert kept_params == params[: len(kept_params)]


# Raw PARAM-VALUE text as sent: backslashes may or may not form escapes, and
# a stray `"` makes the element invalid.
raw_values = st.text(alphabet='ab\\"] ={[\t\x00\x01é', max_size=12) | st.sampled_from(
    ["{}", " [1]", "\t{}", "\u3000[]", '{\\"a\\":[2]}', "[\\]", "\\[]", "{"]
)
element_texts = st.builds(
    lambda sd_id, params, tail: (
        "["
        + sd_id
        + "".join(f'{" " * gap}{name}="{value}"' for gap, name, value in params)
        + tail
    ),
    sd_names,
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2), sd_names, raw_values),
        max_size=5,
    ),
    st.sampled_from(["]", " ]", "  ]", "", "] ", "]]", '"]', "][x]"]),
)


def _parse_or_error(parse, text: str) -> object:
    try:
        return parse(text)
    except StructuredDataError:
        return StructuredDataError


@settings(deadline=None)
@given(text=element_texts | sd_like_text)
def test_single_element_path_agrees(text: str) -> None:
    single = _parse_single_element(text)
    by_characters = _parse_or_error(_parse_by_characters, text)
    if single is not None:
        assert [single] == by_characters
    if text.strip(" \t\r\n") != "-":
        assert _parse_or_error(parse_structured_data, text) == by_characters


@settings(deadline=None)
@given(text=element_texts | sd_like_text)
def test_json_values_skip_agrees(text: str) -> None:
    record = {"_extradata": text, "parse_issues": []}
    parse_extradata(record)
    element = select_kaspersky_element(record["_sd_elements"])
    expected = _json_values(_first_values(element)) if element is not None else {}
    assert record["_sd_json"] == expected


def test_beam_parse_extradata_transform() -> None:
    batch = [
        {
            "source_line": 1,
            "_extradata": r'[event@23668 et="GNRL_EV_VIRUS_FOUND" p9="{\"engine\":1}"]',
            "parse_issues": [],
        },
        {"source_line": 2, "_extradata": None, "parse_issues": []},
        {"source_line": 3, "_extradata": r'[event@23668 et="1"', "parse_issues": []},
    ]
    expected = [
        [
            {
                "source_line": 1,
                "_extradata": batch[0]["_extradata"],
                "parse_issues": [],
                "sd_id": "event@23668",
                "sd_params": {"et": "GNRL_EV_VIRUS_FOUND", "p9": '{"engine":1}'},
                "_sd_elements": [
                    _element(
                        "event@23668",
                        ("et", "GNRL_EV_VIRUS_FOUND"),
                        ("p9", '{"engine":1}'),
                    )
                ],
                "_sd_json": {"p9": {"engine": 1}},
            },
            {
                "source_line": 2,
                "_extradata": None,
                "parse_issues": [],
                "sd_id": None,
                "sd_params": {},
                "_sd_elements": [],
                "_sd_json": {},
            },
            {
                "source_line": 3,
                "_extradata": batch[2]["_extradata"],
                "parse_issues": ["sd_unclosed"],
                "sd_id": "event@23668",
                "sd_params": {"et": "1"},
                "_sd_elements": [_element("event@23668", ("et", "1"))],
                "_sd_json": {},
            },
        ]
    ]
    with TestPipeline(options=PipelineOptions(PIPELINE_ARGS)) as pipeline:
        kept, dead_letters = (
            pipeline | "CreateBatches" >> beam.Create([batch]) | ParseExtradata()
        )
        assert_that(kept, equal_to(expected), label="CheckKeptBatches")
        assert_that(dead_letters, equal_to([]), label="CheckNoDeadLetters")
