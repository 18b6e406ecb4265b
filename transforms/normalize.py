"""Map the parsed structured data and message body onto the output columns.

Input is a record after ParseMessageBody, for example (values shortened):

    {"_msgid": "GNRL_EV_VIRUS_FOUND", "host": "host-01.example.local",
     "sd_params": {"et": "GNRL_EV_VIRUS_FOUND", "p1": "275A021B...FD0F",
                   "p2": "C:\\Users\\user1\\eicar.com", "p5": "EICAR-Test-File",
                   "p7": "EXAMPLE\\user1", "p8": "60", "hdn": "HOST-01", ...},
     "_sd_json": {"p9": {"engine": 1, "method": 3, "md5": "44D88612...B02F"}},
     "message_fields": [("Result description", "Detected"), ("Type", "Virus"),
                        ("User", "EXAMPLE\\user1 (Active user)"), ...]}

and `normalize_event` returns `event_type="GNRL_EV_VIRUS_FOUND"`,
`threat_name="EICAR-Test-File"`, `threat_type="Virus"`, `result="detected"`,
`user_domain="EXAMPLE"`, `user_name="user1"`, `user_role="Active user"`,
lower-case hashes, `language="en"` and the other columns of the event schema.

Structured-data parameters are language-independent, so they win over body
text where both have a value. Which parameter means what depends on the event
type (`data/sd_params.csv`). Body keys are localized and are mapped to
canonical names through `data/body_keys.csv`.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import apache_beam as beam

from transforms import tables
from transforms.batches import Record, apply_step

# RFC 5424 limits the MSGID to 32 characters, so longer event types arrive cut.
MSGID_LENGTH = 32

# Columns that `normalize_event` returns, in schema order.
NORMALIZED_COLUMNS = (
    "event_type",
    "event_type_name",
    "component",
    "host_name",
    "host_ip",
    "group_name",
    "ksc_server",
    "threat_name",
    "threat_type",
    "result",
    "result_description",
    "object_type",
    "object_name",
    "object_path",
    "file_sha256",
    "file_md5",
    "url",
    "url_domain",
    "process_name",
    "process_path",
    "process_pid",
    "user_domain",
    "user_name",
    "user_role",
    "network_protocol",
    "remote_ip",
    "local_ip",
    "local_port",
    "reason",
    "bases_release_date",
    "language",
)

_USER_ROLE = re.compile(r"^(?P<user>.*?)\s*\((?P<role>[^()]+)\)\s*$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_URL = re.compile(r"^(?:https?|ftp)://", re.IGNORECASE)
_DRIVE_PATH = re.compile(r"^[A-Za-z]:[\\/]")
_UNSIGNED_INT = re.compile(r"^\d{1,10}$")
# Entries of the per-process caches of body keys and event types. Real
# exports use a few hundred of each, and the bound keeps memory flat when an
# input contains many distinct ones.
_LOOKUP_CACHE_SIZE = 8192
# Bodies with more items than this are mapped without the key-sequence cache,
# so one cache entry stays small.
_CACHED_BODY_ITEMS = 64


@functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)
def _known_body_key(key: str) -> tables.BodyKey | None:
    return tables.body_keys().get(tables.normalize_key(key))


# A sd_params.csv row ready to apply: parameter, column, conversion function
# and whether the parameter wins over the body.
_CompiledSdRule = tuple[str, str, Callable[[str, Record, str], Any], bool]


@functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)
def _sd_rules_for(event_type: str) -> tuple[_CompiledSdRule, ...]:
    """Return the sd_params.csv rows that apply to an event type, in file order."""
    catalogued = tables.event_catalogue().lookup_id(event_type)
    if catalogued is not None and catalogued.event_type is not None:
        event_type = catalogued.event_type
    return tuple(
        (rule.param, rule.column, _conversion(rule.conversion), rule.wins == "sd")
        for rule in tables.sd_param_rules()
        if rule.applies_to(event_type)
    )


def canonical_body_fields(
    message_fields: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], str | None]:
    """Map localized body keys to canonical field names.

    Returns the fields (the first item wins when a key repeats) and the ISO
    639-1 code of the language whose keys matched most. A tie goes to English,
    then to the language listed first in `tables.LANGUAGES`. The language is
    None when no key matched.
    """
    fields, language, _keyless = _read_body(message_fields)
    return fields, language


def _read_body(
    message_fields: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], str | None, Sequence[str]]:
    """Return `canonical_body_fields` and the values of the items without a key."""
    if not isinstance(message_fields, (list, tuple)):
        message_fields = list(message_fields)
    if len(message_fields) > _CACHED_BODY_ITEMS:
        fields, language = _map_body_keys(message_fields)
        return fields, language, [value for key, value in message_fields if not key]
    # Events of one type repeat the same keys, so the mapping is computed once
    # per key sequence and only the values are read per event.
    plan, language, keyless = _body_plan(tuple([key for key, _value in message_fields]))
    fields = {field: message_fields[index][1] for field, index in plan}
    if not keyless:
        return fields, language, ()
    return fields, language, [message_fields[index][1] for index in keyless]


@functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)
def _body_plan(
    keys: tuple[str, ...],
) -> tuple[tuple[tuple[str, int], ...], str | None, tuple[int, ...]]:
    """Return (canonical field, item index) pairs, the language and the indexes
    of the items without a key for a sequence of body keys."""
    indexes, language = _map_body_keys([(key, index) for index, key in enumerate(keys)])
    keyless = tuple(index for index, key in enumerate(keys) if not key)
    return tuple(indexes.items()), language, keyless


def _map_body_keys(
    message_fields: Iterable[tuple[str, Any]],
) -> tuple[dict[str, Any], str | None]:
    fields: dict[str, Any] = {}
    votes: dict[str, int] = {}
    for key, value in message_fields:
        if not key:
            continue
        known = _known_body_key(key)
        if known is None:
            continue
        for language in known.languages:
            votes[language] = votes.get(language, 0) + 1
        fields.setdefault(known.field, value)
    if not votes:
        return fields, None
    top = max(votes.values())
    for language in tables.LANGUAGES:
        if votes.get(language) == top:
            return fields, language
    return fields, min(language for language, count in votes.items() if count == top)


def canonical_result(text: str | None) -> str | None:
    """Map a localized outcome word ("Blocked", RU "Запрещено") to the result
    vocabulary, or return None when the text is not a known outcome.

    KES 10 writes `Detected: <threat name>`, so the part before the first
    colon is tried when the whole text is not known.
    """
    if not text:
        return None
    terms = tables.result_terms()
    result = terms.get(tables.normalize_term(text))
    if result is None and ":" in text:
        result = terms.get(tables.normalize_term(text.split(":", 1)[0]))
    return result


_cached_result = functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)(canonical_result)


def split_user(text: str | None) -> tuple[str | None, str | None, str | None]:
    """Split `DOMAIN\\name (Role)` into domain, name and role.

    `NT AUTHORITY\\SYSTEM (Initiator)` gives ("NT AUTHORITY", "SYSTEM",
    "Initiator") and `jsmith (Active user)` gives (None, "jsmith",
    "Active user").
    """
    if not text or not text.strip():
        return None, None, None
    text = text.strip()
    role = None
    # The text is stripped, so a role can only be present when it ends in ")".
    match = _USER_ROLE.match(text) if text.endswith(")") else None
    if match is not None and match["user"]:
        text, role = match["user"], match["role"].strip()
    domain, separator, name = text.rpartition("\\")
    if not separator:
        return None, text, role
    return domain.rstrip("\\") or None, name or None, role


def join_path(folder: str | None, name: str | None) -> str | None:
    """Join a folder and a file name with `\\`, unless the folder already ends
    with that name or with a separator."""
    if not folder:
        return name or None
    if not name:
        return folder
    if _ends_with_name(folder, name):
        return folder
    if folder.endswith(("\\", "/")):
        return folder + name
    return folder + "\\" + name


def _ends_with_name(path: str, name: str) -> bool:
    if not path.casefold().endswith(name.casefold()):
        return False
    rest = path[: len(path) - len(name)]
    return rest == "" or rest.endswith(("\\", "/"))


def ipv4_text(value: str | None) -> str | None:
    """Write an IPv4 address sent as an unsigned 32-bit integer in dotted form.

    `168234606` gives `10.7.14.110`. Other text is returned as sent.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if "." not in value and _UNSIGNED_INT.match(value) and int(value) <= 0xFFFFFFFF:
        return str(ipaddress.IPv4Address(int(value)))
    return value


# Host addresses repeat on every event of a host.
_cached_ipv4_text = functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)(ipv4_text)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_int(value: str | None) -> int | None:
    """Return a decimal integer that fits int64, or None when the text is not one."""
    if value is None:
        return None
    value = value.strip()
    if not value.lstrip("-").isascii() or not value.lstrip("-").isdigit():
        return None
    number = int(value)
    if not _INT64_MIN <= number <= _INT64_MAX:
        return None
    return number


def _hash(value: str | None, length: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) != length or not _HEX.match(value):
        return None
    return value.lower()


def _looks_like_path(value: str) -> bool:
    """Tell a file path or URL from other object text such as a task name."""
    return bool(
        _URL.match(value)
        or _DRIVE_PATH.match(value)
        or value.startswith(("\\\\", "/"))
        or "\\" in value
    )


def _json_value(record: Record, param: str) -> Any:
    decoded = (record.get("_sd_json") or {}).get(param)
    if decoded is not None:
        return decoded
    text = (record.get("sd_params") or {}).get(param)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


# Conversions that sd_params.csv names, each called as (value, record, param).
def _text_value(value: str, _record: Record, _param: str) -> str | None:
    return value.strip() or None


def _sha256_value(value: str, _record: Record, _param: str) -> str | None:
    return _hash(value, 64)


def _semicolon_sha256(value: str, _record: Record, _param: str) -> str | None:
    return _hash(value.rpartition(";")[2], 64)


def _json_md5(_value: str, record: Record, param: str) -> str | None:
    decoded = _json_value(record, param)
    if isinstance(decoded, dict) and isinstance(decoded.get("md5"), str):
        return _hash(decoded["md5"], 32)
    return None


def _threat_type_code(value: str, _record: Record, _param: str) -> str | None:
    return tables.threat_types().get(value.strip())


def _ipv4_int(value: str, _record: Record, _param: str) -> str | None:
    return ipv4_text(value)


def _int_value(value: str, _record: Record, _param: str) -> int | None:
    return parse_int(value)


_CONVERSIONS: dict[str, Callable[[str, Record, str], Any]] = {
    "text": _text_value,
    "sha256": _sha256_value,
    "semicolon_sha256": _semicolon_sha256,
    "json_md5": _json_md5,
    "threat_type_code": _threat_type_code,
    "ipv4_int": _ipv4_int,
    "int": _int_value,
    "user": _text_value,
}


def _conversion(name: str) -> Callable[[str, Record, str], Any]:
    """Return the function of a sd_params.csv conversion.

    An unknown name gives a function that raises ValueError when a parameter
    value reaches it.
    """
    conversion = _CONVERSIONS.get(name)
    if conversion is not None:
        return conversion

    def unknown(_value: str, _record: Record, _param: str) -> Any:
        raise ValueError(f"unknown conversion {name!r} in sd_params.csv")

    return unknown


def structured_values(
    event_type: str | None, record: Record
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the p1..p9 parameters that carry a column for this event type.

    Returns two dicts of column values: those that replace body text and
    those that only fill in where the body has none.
    """
    winning: dict[str, Any] = {}
    fallback: dict[str, Any] = {}
    if not event_type:
        return winning, fallback
    sd_params = record.get("sd_params") or {}
    for param, column, conversion, sd_wins in _sd_rules_for(event_type):
        value = sd_params.get(param)
        if value is None:
            continue
        converted = conversion(value, record, param)
        if converted is None:
            continue
        target = winning if sd_wins else fallback
        target.setdefault(column, converted)
    return winning, fallback


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def _present(value: Any) -> Any:
    """Return `_first(value)`: the value, or None for an empty string."""
    return None if value == "" else value


def _process(body: dict[str, str]) -> tuple[str | None, str | None, int | None]:
    """Return process name, full executable path and PID from the body.

    "Processing error" and "Object not processed" events name the process in
    a plain `Name` item. That item is taken as the process only when the body
    also gives an application path or a process ID.
    """
    path = body.get("process_path") or None
    pid_text = body.get("process_pid")
    name = body.get("process_name") or None
    if name is None and (path or pid_text):
        name = body.get("name") or None
    pid = parse_int(pid_text)
    if name and ("\\" in name or "/" in name):
        # Windows Server protection sends the full path as `Process name`.
        if path is None:
            path = name
        name = re.split(r"[\\/]", name)[-1] or None
    return name, join_path(path, name) if path else None, pid


@functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)
def _event_result(event_type: str | None) -> str | None:
    """Return the outcome that an event type states by itself."""
    if event_type is None:
        return None
    results = tables.event_results()
    result = results.get(event_type)
    if result is None and len(event_type) == MSGID_LENGTH:
        # Syslog cuts the MSGID at 32 characters.
        matches = {r for t, r in results.items() if t.startswith(event_type)}
        result = matches.pop() if len(matches) == 1 else None
    return result


def _sentence_result(keyless_values: Iterable[str]) -> str | None:
    """Map the first keyless sentence that names an outcome, such as
    `Object not disinfected.`, to the result vocabulary."""
    for value in keyless_values:
        result = _cached_result(value)
        if result is not None:
            return result
    return None


def _split_object_detected(text: str | None) -> tuple[str | None, str | None]:
    """Split `Object detected: Malware HEUR:Trojan.Win32.Generic` into the
    threat type (first word) and the threat name (the rest)."""
    if not text:
        return None, None
    threat_type, _, threat_name = text.strip().partition(" ")
    return threat_type or None, threat_name.strip() or None


def _object_path(body: dict[str, str]) -> str | None:
    if body.get("object_path"):
        return body["object_path"]
    obj = body.get("object")
    if obj and _looks_like_path(obj):
        return obj
    if body.get("object_folder"):
        return join_path(body["object_folder"], body.get("object_name"))
    return None


def _url_domain(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


@functools.lru_cache(maxsize=_LOOKUP_CACHE_SIZE)
def _merge_user(
    sd_text: str | None, body_text: str | None
) -> tuple[str | None, str | None, str | None]:
    """Combine the structured-data user (`DOMAIN\\name`, no role) with the
    body's `DOMAIN\\name (Role)`: the parameter wins, and the body adds the
    domain and the role when it names the same user."""
    body_user = split_user(body_text)
    sd_domain, sd_name, _no_role = split_user(sd_text)
    if sd_name is None:
        return body_user
    body_domain, body_name, body_role = body_user
    if body_name is None or body_name.casefold() != sd_name.casefold():
        return sd_domain, sd_name, None
    return sd_domain or body_domain, sd_name, body_role


def normalize_event(record: Record) -> dict[str, object]:
    """Compute the normalized columns of one event.

    Reads `sd_params`, `_sd_json`, `message_fields` and `_msgid` and returns
    every column of `NORMALIZED_COLUMNS`, None where the event has no value.
    """
    sd = record.get("sd_params") or {}
    body, language, keyless_values = _read_body(record.get("message_fields") or ())
    body_get = body.get
    # Parameters and body values are strings, so `a or b or None` is `_first`
    # for them. Converted parameters in sd_win may be integers and use `_first`.
    event_type = sd.get("et") or record.get("_msgid") or None
    sd_win, sd_fallback = structured_values(event_type, record)
    process_name, process_path, process_pid = _process(body)

    body_threat_name = body_get("threat_name")
    # NOTE: a plain `Name` item that is not the process is taken as the threat
    # name. That is right for detection and network attack bodies, but a general
    # event that names something else in `Name` also fills threat_name.
    if body_threat_name is None and process_name != body_get("name"):
        body_threat_name = body_get("name")

    body_result_description = body_get("result_description")
    body_result = body_get("result")
    result = (
        _cached_result(body_result_description)
        or _cached_result(body_result)
        or _sentence_result(keyless_values)
        or _event_result(event_type)
    )
    detected_type, detected_name = _split_object_detected(body_get("object_detected"))
    if body_threat_name is None:
        body_threat_name = detected_name

    object_path = _first(sd_win.get("object_path"), _object_path(body))
    url = object_path if object_path and _URL.match(object_path) else None

    user_domain, user_name, user_role = _merge_user(
        sd_win.get("user"), body_get("user")
    )
    # The body hashes are read only when the parameters give none.
    file_sha256 = sd_win.get("file_sha256")
    if file_sha256 is None or file_sha256 == "":
        file_sha256 = _hash(body_get("file_sha256"), 64)
    file_md5 = sd_win.get("file_md5")
    if file_md5 is None or file_md5 == "":
        file_md5 = _hash(body_get("file_md5"), 32)

    return {
        "event_type": event_type,
        "event_type_name": sd.get("etdn") or body_get("event_type_name") or None,
        "component": sd.get("tdn") or body_get("component") or None,
        "host_name": sd.get("hdn") or None,
        "host_ip": _cached_ipv4_text(sd.get("hip")),
        "group_name": sd.get("gn") or None,
        "ksc_server": sd.get("kscfqdn") or None,
        "threat_name": _first(sd_win.get("threat_name"), body_threat_name),
        "threat_type": _first(
            sd_win.get("threat_type"),
            body_get("threat_type"),
            detected_type,
            sd_fallback.get("threat_type"),
        ),
        "result": result,
        "result_description": body_result_description or body_result or None,
        "object_type": body_get("object_type") or None,
        "object_name": _first(sd_win.get("object_name"), body_get("object_name")),
        "object_path": object_path,
        "file_sha256": file_sha256,
        "file_md5": file_md5,
        "url": url,
        "url_domain": _url_domain(url) if url else None,
        "process_name": process_name,
        "process_path": process_path,
        "process_pid": process_pid,
        "user_domain": user_domain,
        "user_name": user_name,
        "user_role": user_role,
        "network_protocol": _present(sd_win.get("network_protocol")),
        "remote_ip": _present(sd_win.get("remote_ip")),
        "local_ip": _present(sd_win.get("local_ip")),
        "local_port": _present(sd_win.get("local_port")),
        "reason": body_get("reason") or None,
        "bases_release_date": body_get("bases_release_date") or None,
        "language": language,
    }


def normalize_step(record: Record) -> None:
    """Add the normalized columns to a record in place."""
    record.update(normalize_event(record))


class Normalize(beam.PTransform):
    """Add the normalized columns to every record of each batch.

    Expands to (kept batches, dead-letter batches).
    """

    def expand(
        self, pcoll: beam.PCollection
    ) -> tuple[beam.PCollection, beam.PCollection]:
        return apply_step(pcoll, "Normalize", normalize_step)
