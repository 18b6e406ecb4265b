r"""Parse the RFC 5424 STRUCTURED-DATA that FluentD stores as `extradata`.

Kaspersky Security Center sends one SD-ELEMENT per event. The `extradata`
value of a FluentD record (after JSON decoding, one line wrapped here) reads

    [event@23668 p1="275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F"
     p2="C:\\Users\\user1\\eicar.com" p5="EICAR-Test-File" p7="EXAMPLE\\user1"
     p8="60" p9="{\"engine\":1,\"method\":0,\"blacklist\":false,\"cloud_sb\":false,
     \"md5\":\"44D88612FEA8A8F36DE82E1278ABB02F\"}" et="GNRL_EV_OBJECT_DELETED"
     tdn="File Threat Protection" etdn="Object deleted" hdn="HOST-08 - USER"
     hip="10.0.0.3" gn="BITLOCKER - SEM CRIPTO" kscfqdn="ksc-server"]

with the RFC 5424 escapes `\\` and `\"` intact. This step parses that text
into elements and parameters, picks the Kaspersky element (SD-ID
`event@<digits>`), and decodes the parameter values that are JSON (p5, p9).

The grammar is RFC 5424 section 6.3 with three relaxations seen in real
exports: parameters may be separated by more than one space, whitespace may
stand between and around elements, and an SD-NAME may be longer than 32
characters. Text that still does not parse goes through a lenient scan that
recovers what FluentD's `string` parser engine and cut lines leave.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam
import orjson

from transforms.batches import Record, apply_step
from transforms.errors import StructuredDataError

# Issue codes appended to record["parse_issues"].
ISSUE_LENIENT = "sd_lenient"
ISSUE_UNCLOSED = "sd_unclosed"
# No element could be read at all (the text does not start with `[`).
ISSUE_INVALID = "sd_invalid"

KASPERSKY_SD_PREFIX = "event@"

# Characters that RFC 5424 excludes from SD-NAME, besides space and controls.
_NAME_EXCLUDED = '="]'
# Escapes that RFC 5424 defines inside PARAM-VALUE. Any other backslash is text.
_ESCAPED = '"\\]'
_ELEMENT_SPACE = " \t\r\n"

# The strict grammar below as regular expressions, for the common case of
# well-formed text: `re` scans it in C, several times faster than the
# character loop of `_read_element`. Text that they do not match goes through
# that loop, which gives the same elements or raises with the offset.
# An SD-NAME character: printable US-ASCII except `=`, `"` and `]`.
_NAME = r"[!#-<>-\\^-~]+"
# A PARAM-VALUE: any character but `"` and `\`, or a backslash and the
# character after it.
_VALUE = r'[^"\\]*(?:\\[\s\S][^"\\]*)*'
_PARAM_RE = re.compile(rf' +({_NAME})="({_VALUE})"')
_ELEMENT_RE = re.compile(rf"\[({_NAME})((?: +{_NAME}=\"{_VALUE}\")*) *\]")
# An element whose values are all empty: what `_parse_single_element` matches.
_SKELETON_RE = re.compile(rf'\[({_NAME})((?: +{_NAME}="")*) *\]')
_EMPTY_PARAM_RE = re.compile(rf' +({_NAME})=""')
_STRUCTURED_DATA_RE = re.compile(
    rf"[ \t\r\n]*(?:\[{_NAME}(?: +{_NAME}=\"{_VALUE}\")* *\][ \t\r\n]*)+"
)
_ESCAPE_RE = re.compile(r'\\(["\\\]])')
_JSON_START = frozenset("{[")
# `="` and a character that `_json_values` tries as the start of JSON.
_JSON_CANDIDATE_RE = re.compile(r'="[{\[\s]')
# Stands for an escaped backslash while `_unescape` decodes the other escapes.
_PLACEHOLDER = "\x00"
# Markers that `_parse_single_element` puts in place of `\\` and `\"`, and
# the separator it joins values with. Text that already contains one of the
# three goes the general way.
_BACKSLASH_MARK = "\x00"
_QUOTE_MARK = "\x01"
_VALUE_SEPARATOR = "\x02"


@dataclass(frozen=True, slots=True)
class SdElement:
    """One SD-ELEMENT: its SD-ID and its parameters in the order sent.

    A parameter name that occurs more than once keeps every occurrence.
    """

    sd_id: str
    params: tuple[tuple[str, str], ...]


def _is_name_char(char: str) -> bool:
    """Return whether `char` may appear in an RFC 5424 SD-NAME."""
    return "!" <= char <= "~" and char not in _NAME_EXCLUDED


def _describe(text: str, pos: int) -> str:
    """Name the character at `pos` for an error message."""
    if pos >= len(text):
        return "end of text"
    return repr(text[pos])


def _error(text: str, pos: int, expected: str) -> StructuredDataError:
    return StructuredDataError(
        f"invalid structured data at offset {pos}: expected {expected}, "
        f"found {_describe(text, pos)}"
    )


def _skip(text: str, pos: int, chars: str) -> int:
    end = len(text)
    while pos < end and text[pos] in chars:
        pos += 1
    return pos


def _read_name(text: str, pos: int) -> int:
    """Return the offset just past the SD-NAME that starts at `pos`."""
    end = len(text)
    while pos < end and _is_name_char(text[pos]):
        pos += 1
    return pos


def _unescape_char(next_char: str) -> str:
    """Return the text that a backslash followed by `next_char` decodes to."""
    if next_char in _ESCAPED:
        return next_char
    return "\\" + next_char


def _read_value(text: str, pos: int) -> tuple[str, int]:
    """Read a PARAM-VALUE whose opening quote is just before `pos`.

    Returns the unescaped value and the offset just past the closing quote.
    """
    opened_at = pos - 1
    parts: list[str] = []
    quote = text.find('"', pos)
    while True:
        if quote < 0:
            raise StructuredDataError(
                f"invalid structured data: the value opened at offset {opened_at} "
                "is never closed (expected a closing '\"', found end of text)"
            )
        backslash = text.find("\\", pos, quote)
        if backslash < 0:
            parts.append(text[pos:quote])
            return "".join(parts), quote + 1

        # The backslash comes before `quote`, so a character follows it.
        parts.append(text[pos:backslash])
        parts.append(_unescape_char(text[backslash + 1]))
        pos = backslash + 2
        if quote < pos:
            quote = text.find('"', pos)


def _read_param(text: str, pos: int) -> tuple[tuple[str, str], int]:
    """Read `name="value"` starting at `pos`, a non-space character."""
    name_end = _read_name(text, pos)
    if name_end == pos:
        raise _error(text, pos, 'a parameter name (printable US-ASCII except =]")')
    name = text[pos:name_end]

    pos = name_end
    if pos >= len(text) or text[pos] != "=":
        raise _error(text, pos, f"'=' after parameter name {name!r}")

    pos += 1
    if pos >= len(text) or text[pos] != '"':
        raise _error(text, pos, f"'\"' to open the value of parameter {name!r}")

    value, pos = _read_value(text, pos + 1)
    return (name, value), pos


def _read_element(text: str, pos: int) -> tuple[SdElement, int]:
    """Read one `[SD-ID params...]` whose `[` is at `pos`."""
    opened_at = pos
    pos += 1
    id_end = _read_name(text, pos)
    if id_end == pos:
        raise _error(text, pos, 'an SD-ID (printable US-ASCII except =]" and space)')
    sd_id = text[pos:id_end]
    pos = id_end

    params: list[tuple[str, str]] = []
    end = len(text)
    while True:
        if pos >= end:
            raise StructuredDataError(
                f"invalid structured data: the element {sd_id!r} opened at offset "
                f"{opened_at} is never closed (expected ']', found end of text)"
            )
        if text[pos] == "]":
            return SdElement(sd_id, tuple(params)), pos + 1
        if text[pos] != " ":
            raise _error(text, pos, f"a space or ']' in element {sd_id!r}")

        pos = _skip(text, pos, " ")
        if pos < end and text[pos] != "]":
            param, pos = _read_param(text, pos)
            params.append(param)


def _unescape(value: str) -> str:
    """Decode the escapes of a value that `_VALUE` matched.

    In such a value every backslash starts a pair, so after the `\\\\` pairs
    are set aside the remaining `\\"` and `\\]` are escapes too.
    """
    if "\\" not in value:
        return value
    if _PLACEHOLDER in value:
        return _ESCAPE_RE.sub(_escaped_char, value)
    return (
        value.replace("\\\\", _PLACEHOLDER)
        .replace('\\"', '"')
        .replace("\\]", "]")
        .replace(_PLACEHOLDER, "\\")
    )


def _escaped_char(match: re.Match) -> str:
    return match[1]


def _unescape_params(params: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (name, _unescape(value)) if "\\" in value else (name, value)
        for name, value in params
    ]


def _elements_of_valid(text: str) -> list[SdElement]:
    """Split text that `_STRUCTURED_DATA_RE` matched in full into elements."""
    elements = []
    for match in _ELEMENT_RE.finditer(text):
        params_text = match[2]
        params = _PARAM_RE.findall(params_text)
        if "\\" in params_text:
            params = _unescape_params(params)
        elements.append(SdElement(match[1], tuple(params)))
    return elements


def _parse_single_element(text: str) -> SdElement | None:
    r"""Parse text that is one element and nothing else, or return None.

    A fast path for the shape Kaspersky sends. `str.split` cuts the values
    out without the per-character work of the regular expression engine,
    once the escape pairs `\\` and `\"` are replaced by markers so that
    every `"` left in the text delimits a value. Only the short skeleton
    without the values is then matched against the grammar. None means
    `_parse_general` must decide, which it also does for any text that
    already contains a marker.
    """
    if _BACKSLASH_MARK in text or _QUOTE_MARK in text or _VALUE_SEPARATOR in text:
        return None
    escaped = "\\" in text
    marked = text
    if escaped:
        # str.replace pairs backslashes left to right, as the grammar does
        # inside a value. A marker outside a value makes the skeleton fail.
        marked = text.replace("\\\\", _BACKSLASH_MARK).replace('\\"', _QUOTE_MARK)
    # [`[SD-ID name=`, value, ` name=`, value, ..., ` ]`]
    pieces = marked.split('"')
    if len(pieces) % 2 == 0:
        return None
    skeleton = '""'.join(pieces[0::2])
    match = _SKELETON_RE.fullmatch(skeleton)
    if match is None or _BACKSLASH_MARK in skeleton or _QUOTE_MARK in skeleton:
        return None

    values = pieces[1::2]
    if escaped and values:
        joined = _VALUE_SEPARATOR.join(values)
        joined = (
            joined.replace("\\]", "]")
            .replace(_BACKSLASH_MARK, "\\")
            .replace(_QUOTE_MARK, '"')
        )
        values = joined.split(_VALUE_SEPARATOR)
    names = _EMPTY_PARAM_RE.findall(match[2])
    return SdElement(match[1], tuple(zip(names, values, strict=True)))


def _parse_general(text: str) -> list[SdElement]:
    """Parse any STRUCTURED-DATA as `parse_structured_data` documents."""
    if text.strip(_ELEMENT_SPACE) == "-":
        return []
    if _STRUCTURED_DATA_RE.fullmatch(text):
        return _elements_of_valid(text)
    return _parse_by_characters(text)


def _parse_by_characters(text: str) -> list[SdElement]:
    """Parse elements with the character loop, which names the first error."""
    elements: list[SdElement] = []
    pos = _skip(text, 0, _ELEMENT_SPACE)
    if pos >= len(text):
        raise _error(text, pos, "'-' or '[' to start the structured data")

    while pos < len(text):
        if text[pos] != "[":
            raise _error(text, pos, "'[' or the end of the structured data")
        element, pos = _read_element(text, pos)
        elements.append(element)
        pos = _skip(text, pos, _ELEMENT_SPACE)
    return elements


def parse_structured_data(text: str) -> list[SdElement]:
    r"""Parse RFC 5424 STRUCTURED-DATA into its elements, unescaping values.

    `-` (the NILVALUE) gives []. Inside a value `\"`, `\\` and `\]` decode
    to the character after the backslash, and any other backslash is kept
    together with the character after it. Raises `StructuredDataError`, with
    the offset and what was expected there, for any other text.
    """
    single = _parse_single_element(text)
    if single is not None:
        return [single]
    return _parse_general(text)


# ---------------------------------------------------------------------------
# Lenient scan


def _closes_element(text: str, pos: int) -> bool:
    """Return whether the `]` at `pos` ends an element.

    It does when only whitespace follows, or whitespace and the next `[`.
    """
    after = _skip(text, pos + 1, _ELEMENT_SPACE)
    return after >= len(text) or text[after] == "["


def _closes_value(text: str, pos: int) -> bool:
    """Return whether the unescaped `"` at `pos` ends a value.

    It does when `]` closing the element follows, or spaces and `name=`, or
    the end of the text (a line cut after the value).
    """
    # NOTE: a value that itself contains `" name=` (a quote, spaces, a name
    # and `=`) ends early here, because the `string` engine removed the
    # backslash that distinguished that quote from the closing one.
    end = len(text)
    after = pos + 1
    if after >= end:
        return True
    if text[after] == "]":
        return _closes_element(text, after)
    if text[after] != " ":
        return False

    after = _skip(text, after, " ")
    if after >= end:
        return True
    if text[after] == "]":
        return _closes_element(text, after)
    name_end = _read_name(text, after)
    if name_end == after:
        return False
    return name_end >= end or text[name_end] == "="


class _LenientScanner:
    """Recover elements from structured data that the strict parser rejects."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.issues: list[str] = []

    def flag(self, issue: str) -> None:
        if issue not in self.issues:
            self.issues.append(issue)

    def scan(self) -> list[SdElement]:
        text = self.text
        elements: list[SdElement] = []
        self.pos = _skip(text, 0, _ELEMENT_SPACE)
        if self.pos >= len(text) or text[self.pos] != "[":
            self.flag(ISSUE_INVALID)
            return elements

        while self.pos < len(text):
            if text[self.pos] != "[":
                # Text after the last element: keep what was read before it.
                self.flag(ISSUE_LENIENT)
                break
            elements.append(self.read_element())
            self.pos = _skip(text, self.pos, _ELEMENT_SPACE)
        return elements

    def read_element(self) -> SdElement:
        text = self.text
        end = len(text)
        self.pos += 1
        start = self.pos
        while self.pos < end and text[self.pos] not in " ]":
            self.pos += 1
        sd_id = text[start : self.pos]
        if not sd_id or _read_name(sd_id, 0) != len(sd_id):
            self.flag(ISSUE_LENIENT)

        params: list[tuple[str, str]] = []
        while True:
            self.pos = _skip(text, self.pos, " ")
            if self.pos >= end:
                self.flag(ISSUE_UNCLOSED)
                break
            if text[self.pos] == "]":
                self.pos += 1
                break
            param = self.read_param()
            if param is not None:
                params.append(param)
        return SdElement(sd_id, tuple(params))

    def read_param(self) -> tuple[str, str] | None:
        """Read one parameter, or skip a stray character and return None.

        A parameter cut off by the end of the text is dropped, because its
        value would be partial.
        """
        text = self.text
        end = len(text)
        start = self.pos
        name_end = _read_name(text, start)
        self.pos = name_end
        if name_end >= end:
            return None
        if text[name_end] != "=":
            self.flag(ISSUE_LENIENT)
            if name_end == start:
                self.pos += 1
            return None

        name = text[start:name_end]
        self.pos = name_end + 1
        if self.pos >= end:
            return None
        if text[self.pos] != '"':
            return self.read_unquoted(name)
        return self.read_quoted(name)

    def read_unquoted(self, name: str) -> tuple[str, str] | None:
        text = self.text
        self.flag(ISSUE_LENIENT)
        start = self.pos
        while self.pos < len(text) and text[self.pos] not in " ]":
            self.pos += 1
        if self.pos >= len(text):
            return None
        return name, text[start : self.pos]

    def read_quoted(self, name: str) -> tuple[str, str] | None:
        r"""Read a value that may hold quotes that lost their backslash.

        FluentD's `string` parser engine deletes every backslash from the
        structured data, so `p9="{\"engine\":1}"` arrives as
        `p9="{"engine":1}"`. A `"` ends the value only where `_closes_value`
        returns True, and any other `"` is kept as part of the value. When
        no `"` does, the first `"` followed by `]` and whitespace ends it, so
        that text after the last element does not swallow the value.
        """
        text = self.text
        end = len(text)
        parts: list[str] = []
        fallback: tuple[int, int] | None = None
        pos = self.pos + 1
        while pos < end:
            char = text[pos]
            if char == "\\":
                if pos + 1 >= end:
                    break
                parts.append(_unescape_char(text[pos + 1]))
                pos += 2
            elif char == '"':
                if _closes_value(text, pos):
                    self.pos = pos + 1
                    return name, "".join(parts)
                self.flag(ISSUE_LENIENT)
                if fallback is None and text[pos + 1 : pos + 3] in ("] ", "]\t"):
                    fallback = (pos, len(parts))
                parts.append(char)
                pos += 1
            else:
                parts.append(char)
                pos += 1

        if fallback is not None:
            quote, kept_parts = fallback
            self.pos = quote + 1
            return name, "".join(parts[:kept_parts])
        self.pos = end
        return None


def _scan_lenient(text: str) -> tuple[list[SdElement], list[str]]:
    scanner = _LenientScanner(text)
    elements = scanner.scan()
    if not scanner.issues:
        # The strict parser rejected the text, so a caller must see an issue
        # even where the scan found nothing to recover.
        scanner.flag(ISSUE_LENIENT)
    return elements, scanner.issues


def parse_structured_data_lenient(text: str) -> tuple[list[SdElement], list[str]]:
    """Parse structured data as far as it goes, without raising.

    Well-formed text gives the same elements as `parse_structured_data` and
    no issues. Otherwise the returned issue codes name what was recovered:
    `sd_lenient` when values were read past quotes that lost their escaping
    backslash (FluentD's `string` parser engine) or stray text was skipped,
    `sd_unclosed` when the last element never closes (a cut line; the
    parameters read before the cut are kept and a partial one is dropped),
    and `sd_invalid` when the text contains no element at all.
    """
    try:
        return parse_structured_data(text), []
    except StructuredDataError:
        return _scan_lenient(text)


def escape_param_value(value: str) -> str:
    r"""Escape `\`, `"` and `]` for an RFC 5424 PARAM-VALUE."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def decode_json_value(value: str) -> object | None:
    r"""Decode a parameter value that is a JSON object or array, else return None.

    Kaspersky puts JSON in some parameters, for example
    `p9="{\"engine\":1,\"method\":3,\"md5\":\"44D8...\"}"`.
    """
    stripped = value.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        decoded = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    if isinstance(decoded, (dict, list)):
        return decoded
    return None


def is_kaspersky_sd_id(sd_id: str) -> bool:
    """Return whether `sd_id` has the form `event@<digits>`."""
    number = sd_id[len(KASPERSKY_SD_PREFIX) :]
    return (
        sd_id.startswith(KASPERSKY_SD_PREFIX) and number.isascii() and number.isdigit()
    )


def select_kaspersky_element(elements: list[SdElement]) -> SdElement | None:
    """Return the first `event@<digits>` element, else the first element."""
    for element in elements:
        if is_kaspersky_sd_id(element.sd_id):
            return element
    return elements[0] if elements else None


def _first_values(element: SdElement) -> dict[str, str]:
    """Map each parameter name of `element` to its first value."""
    params = dict(element.params)
    if len(params) != len(element.params):
        # A repeated name keeps its first value, which dict() would replace.
        params = {}
        for name, value in element.params:
            params.setdefault(name, value)
    return params


def _json_values(params: dict[str, str]) -> dict[str, object]:
    """Decode the values of `params` that are JSON objects or arrays."""
    sd_json: dict[str, object] = {}
    for name, value in params.items():
        # Most values are not JSON: skip the call unless one could be.
        start = value[:1]
        if start not in _JSON_START and not start.isspace():
            continue
        decoded = decode_json_value(value)
        if decoded is not None:
            sd_json[name] = decoded
    return sd_json


def parse_extradata(record: Record) -> None:
    """Add sd_id, sd_params, _sd_elements and _sd_json from `_extradata`.

    It never rejects a line. Text that the strict parser rejects is scanned
    leniently and the issue codes go to `parse_issues`.
    """
    text = record.get("_extradata")
    elements: list[SdElement] = []
    issues: list[str] = []
    if text is not None:
        try:
            elements = parse_structured_data(text)
        except StructuredDataError:
            elements, issues = _scan_lenient(text)

    if issues:
        parse_issues = record.get("parse_issues")
        if parse_issues is None:
            parse_issues = record["parse_issues"] = []
        parse_issues.extend(issues)

    # One element is the one selected, whatever its SD-ID.
    if len(elements) == 1:
        element: SdElement | None = elements[0]
    else:
        element = select_kaspersky_element(elements)

    params: dict[str, str] = {}
    sd_json: dict[str, object] = {}
    if element is not None:
        params = _first_values(element)
        # A strictly parsed value that starts with `{`, `[` or whitespace
        # starts so in the text too, right after `="`. When the text has no
        # such value, the loop over every value can be skipped.
        if issues or _JSON_CANDIDATE_RE.search(text):
            sd_json = _json_values(params)

    record["sd_id"] = element.sd_id if element is not None else None
    record["sd_params"] = params
    record["_sd_elements"] = elements
    record["_sd_json"] = sd_json


class ParseExtradata(beam.PTransform):
    """Parse the structured data of each record without rejecting any line."""

    def expand(
        self, batches: beam.PCollection
    ) -> tuple[beam.PCollection, beam.PCollection]:
        return apply_step(batches, "ParseExtradata", parse_extradata)
