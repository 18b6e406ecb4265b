r"""Property tests: no generated line crashes a step or goes missing.

The strategies build FluentD lines such as

    2022-02-28T15:48:55+00:00<TAB>kav_logs.user.crit<TAB>{"host":"HOST-01",
     "ident":"KES|11.0.0.0","extradata":"[event@23668 et=\"GNRL_EV_VIRUS_FOUND\"]",
     "message":"Result: Detected\\r\\nName: EICAR-Test-File"}

with hostile text in every field (backslashes, quotes, brackets, colons, the
literal `\r\n` separator, real CR LF, non-ASCII text, byte order marks), and
then break them (cut, spliced, doubled). Each property runs a bounded number
of examples so that the file stays fast.
"""

from __future__ import annotations

import json

import apache_beam as beam
import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from transforms.batches import DEAD_LETTERS, ApplyToBatch, Record
from transforms.classify import classify_step
from transforms.decode_payload import decode_payload
from transforms.deduplicate import encode_rows
from transforms.errors import LineRejected
from transforms.foreign import reject_foreign
from transforms.message_body import LITERAL_CRLF, parse_message, parse_message_body
from transforms.normalize import normalize_step
from transforms.schema import DEAD_LETTER_SCHEMA, EVENT_SCHEMA
from transforms.split_lines import split_record
from transforms.structured_data import (
    SdElement,
    escape_param_value,
    parse_extradata,
    parse_structured_data,
)

# The record steps of the pipeline, in the order that pipeline/wiring.py applies.
STEPS = (
    ("SplitFluentdLines", split_record),
    ("DecodeSyslogPayload", decode_payload),
    ("ParseExtradata", parse_extradata),
    ("RejectForeignLines", reject_foreign),
    ("ParseMessageBody", parse_message),
    ("Normalize", normalize_step),
    ("Classify", classify_step),
)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    # Hostile text is filtered to the shapes each property covers, and on
    # some draws most of it is rejected.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# Characters that parsers treat specially, mixed into every generated text.
_SPECIAL = st.sampled_from(
    [
        "\\",
        '"',
        "[",
        "]",
        ":",
        ": ",
        "=",
        "\\r\\n",
        "\r\n",
        "\r",
        "\n",
        "\t",
        " ",
        "\ufeff",
        "{",
        "}",
        "@",
        "|",
        "-",
        "ü",
        "Описание",
        "测试",
        "\x00",
        "\\\\",
    ]
)
HOSTILE_TEXT = st.lists(st.one_of(_SPECIAL, st.text(max_size=8)), max_size=12).map(
    "".join
)

ISO_TIMES = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{off}"
    ),
    st.integers(1, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
    st.sampled_from(["", ".5", ".123456", ".123456789"]),
    st.sampled_from(["", "Z", "+00:00", "-0530", "+23:59", "+24:00"]),
)
TAGS = st.one_of(
    st.sampled_from(["kav_logs.user.crit", "kav_logs.local0.warn", "x", ""]),
    HOSTILE_TEXT.filter(lambda tag: "\t" not in tag and "\n" not in tag),
)
SD_NAMES = st.text(
    alphabet=st.characters(
        min_codepoint=33, max_codepoint=126, exclude_characters='="]'
    ),
    min_size=1,
    max_size=10,
)


@st.composite
def sd_elements(draw) -> list[SdElement]:
    """Draw RFC 5424 elements whose values contain hostile text."""
    count = draw(st.integers(1, 3))
    elements = []
    for index in range(count):
        sd_id = "event@23668" if index == 0 else draw(SD_NAMES)
        names = draw(st.lists(SD_NAMES, max_size=5))
        params = tuple((name, draw(HOSTILE_TEXT)) for name in names)
        elements.append(SdElement(sd_id, params))
    return elements


def format_structured_data(elements: list[SdElement]) -> str:
    """Write elements as RFC 5424 STRUCTURED-DATA, escaping each value."""
    parts = []
    for element in elements:
        params = "".join(
            f' {name}="{escape_param_value(value)}"' for name, value in element.params
        )
        parts.append(f"[{element.sd_id}{params}]")
    return "".join(parts)


EXTRADATA = st.one_of(
    sd_elements().map(format_structured_data),
    HOSTILE_TEXT,
    sd_elements()
    .map(format_structured_data)
    .flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])),
    st.just("-"),
)
BODIES = st.lists(
    st.tuples(HOSTILE_TEXT, HOSTILE_TEXT).map(lambda item: f"{item[0]}: {item[1]}"),
    max_size=6,
).map(LITERAL_CRLF.join)
JSON_VALUES = st.one_of(
    HOSTILE_TEXT,
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)


@st.composite
def records(draw) -> dict:
    """Draw a FluentD syslog record with hostile or mistyped fields."""
    record = {
        "host": draw(st.one_of(HOSTILE_TEXT, JSON_VALUES)),
        "ident": draw(st.sampled_from(["KES|11.0.0.0", "KES|", "-", "sshd"])),
        "pid": draw(st.one_of(st.just("-"), JSON_VALUES)),
        "msgid": draw(st.one_of(st.just("GNRL_EV_VIRUS_FOUND"), HOSTILE_TEXT)),
        "extradata": draw(st.one_of(EXTRADATA, JSON_VALUES)),
        "message": draw(st.one_of(BODIES, JSON_VALUES)),
    }
    extra = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3))
    return {**extra, **record}


@st.composite
def fluentd_lines(draw) -> str:
    """Draw a FluentD line, well formed or broken in one of several ways."""
    # The standard library writes integers of any size, and non-ASCII text
    # either as it is or as `\\u` escapes.
    ascii_only = draw(st.booleans())
    record = draw(records())
    record_text = json.dumps(record, ensure_ascii=ascii_only)
    form = draw(st.sampled_from(["tab", "space", "json", "bare"]))
    time_text = draw(ISO_TIMES)
    tag = draw(TAGS)
    if form == "json":
        time_value = draw(st.one_of(st.floats(), st.integers(), HOSTILE_TEXT))
        line = json.dumps({"time": time_value, "tag": tag, **record})
    elif form == "bare":
        line = draw(HOSTILE_TEXT)
    else:
        delimiter = "\t" if form == "tab" else " "
        line = delimiter.join((time_text, tag, record_text))
    damage = draw(st.sampled_from(["none", "cut", "splice", "double", "prefix"]))
    if damage == "cut":
        line = line[: draw(st.integers(0, len(line)))]
    elif damage == "splice":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(HOSTILE_TEXT) + line[at:]
    elif damage == "double":
        line = line + line
    elif damage == "prefix":
        line = draw(st.sampled_from(["\ufeff", " ", "\r", "[", '"'])) + line
    # The reader splits on LF, so a line never contains one.
    return line.replace("\n", "")


def new_record(raw: str, number: int = 2, terminated: bool = True) -> Record:
    """Build the record that ReadLines makes of one input line."""
    record: Record = {"source_uri": "/data/fuzz.log", "source_line": number, "raw": raw}
    if not terminated:
        record["_unterminated"] = True
    return record


def process_line(record: Record) -> Record:
    """Apply every record step in pipeline order and return the event record."""
    for _, step in STEPS:
        step(record)
    return record


@FUZZ
@given(fluentd_lines(), st.integers(1, 3), st.booleans())
def test_line_steps_raise_only_rejections(raw, number, terminated):
    record = new_record(raw, number, terminated)
    try:
        event = process_line(record)
    except LineRejected as error:
        assert error.code, error
        assert error.detail, error
        return
    # An event must also encode with the output schema at KeyByPartition.
    encode_rows([event], EVENT_SCHEMA)


def run_batch_steps(batch: list[Record]) -> tuple[list[Record], list[Record]]:
    """Run every step's ApplyToBatch.process on a batch; return (events, letters)."""
    letters: list[Record] = []
    for name, step in STEPS:
        kept: list[Record] = []
        for output in ApplyToBatch(name, step).process(batch):
            if isinstance(output, beam.pvalue.TaggedOutput):
                assert output.tag == DEAD_LETTERS
                letters.extend(output.value)
            else:
                kept.extend(output)
        batch = kept
    return batch, letters


@FUZZ
@given(st.lists(fluentd_lines(), min_size=1, max_size=8))
def test_batch_steps_account_every_line(lines):
    batch = [new_record(raw, number) for number, raw in enumerate(lines, start=1)]
    events, letters = run_batch_steps(batch)
    outcomes = sorted(row["source_line"] for row in [*events, *letters])
    assert outcomes == list(range(1, len(lines) + 1))


@FUZZ
@given(st.lists(fluentd_lines(), min_size=1, max_size=8))
def test_batch_steps_raise_no_internal_error(lines):
    batch = [new_record(raw, number) for number, raw in enumerate(lines, start=1)]
    _, letters = run_batch_steps(batch)
    internal = [
        letter["detail"] for letter in letters if letter["error"] == "internal_error"
    ]
    assert internal == []


@FUZZ
@given(st.lists(fluentd_lines(), min_size=1, max_size=8))
def test_dead_letters_encode_with_schema(lines):
    batch = [new_record(raw, number) for number, raw in enumerate(lines, start=1)]
    _, letters = run_batch_steps(batch)
    for letter in letters:
        letter["run_id"] = "fuzz"
    if letters:
        encode_rows(letters, DEAD_LETTER_SCHEMA)


@FUZZ
@given(sd_elements())
def test_structured_data_survives_escaping(elements):
    text = format_structured_data(elements)
    assert parse_structured_data(text) == elements


@FUZZ
@given(sd_elements())
def test_extradata_in_json_survives(elements):
    text = format_structured_data(elements)
    payload = orjson.dumps({"host": "h", "ident": "KES|11", "extradata": text})
    line = "2022-02-28T15:48:55+00:00\tkav_logs.user.crit\t" + payload.decode()
    record = new_record(line)
    for _, step in STEPS[:3]:
        step(record)
    assert record["sd_params"] == dict(reversed(elements[0].params))
    assert "sd_lenient" not in record["parse_issues"]


BODY_KEYS = HOSTILE_TEXT.filter(
    lambda key: (
        key
        and key == key.strip()
        and key[0] != "\ufeff"
        and ": " not in key + " "
        and ":\t" not in key
        and "\r" not in key
        and "\n" not in key
        and LITERAL_CRLF not in key
        # A key never contains a sentence end: the text before one is an item.
        and ". " not in key
    )
)
BODY_VALUES = HOSTILE_TEXT.filter(
    lambda value: (
        value and value == value.strip() and "\r" not in value and "\n" not in value
    )
)


@FUZZ
@given(st.lists(st.tuples(BODY_KEYS, BODY_VALUES), min_size=1, max_size=6))
def test_body_parser_keeps_value_characters(items):
    for key, value in items:
        # A separator inside the item itself is an item break by definition.
        assume((value + LITERAL_CRLF).find(LITERAL_CRLF) == len(value))
        assume((key + ": " + value).find(LITERAL_CRLF) < 0)
    text = LITERAL_CRLF.join(f"{key}: {value}" for key, value in items)
    assert parse_message_body(text) == items


@FUZZ
@given(st.lists(st.tuples(BODY_KEYS, BODY_VALUES), min_size=1, max_size=4))
def test_body_parser_ignores_leading_bom(items):
    for key, value in items:
        assume((value + LITERAL_CRLF).find(LITERAL_CRLF) == len(value))
        assume((key + ": " + value).find(LITERAL_CRLF) < 0)
    text = LITERAL_CRLF.join(f"{key}: {value}" for key, value in items)
    assert parse_message_body("\ufeff" + text) == items
