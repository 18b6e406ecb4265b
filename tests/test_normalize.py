"""Specification of Normalize: body keys, outcomes, users, paths and the corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from apache_beam import Create, FlatMap
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

from tests.beam_helpers import local_test_pipeline
from transforms import tables
from transforms.message_body import parse_message_body
from transforms.normalize import (
    NORMALIZED_COLUMNS,
    Normalize,
    _map_body_keys,
    _read_body,
    canonical_body_fields,
    canonical_result,
    ipv4_text,
    join_path,
    normalize_event,
    split_user,
)
from transforms.structured_data import (
    decode_json_value,
    parse_structured_data,
    select_kaspersky_element,
)

CORPUS = Path(__file__).parent / "data" / "corpus"


def record_from_line(line: str) -> dict[str, Any]:
    """Build the record the steps before Normalize produce for a FluentD line."""
    _time, tag, payload_text = line.split("\t", 2)
    payload = json.loads(payload_text)
    msgid = payload.get("msgid")
    extradata = payload.get("extradata")
    params: dict[str, str] = {}
    if extradata and extradata != "-":
        element = select_kaspersky_element(parse_structured_data(extradata))
        if element is not None:
            for name, value in element.params:
                params.setdefault(name, value)
    sd_json = {}
    for name, value in params.items():
        decoded = decode_json_value(value)
        if decoded is not None:
            sd_json[name] = decoded
    return {
        "host": payload.get("host"),
        "syslog_severity": tag.rsplit(".", 1)[-1],
        "_msgid": None if msgid in (None, "-") else msgid,
        "sd_params": params,
        "_sd_json": sd_json,
        "message_fields": parse_message_body(payload.get("message") or ""),
    }


def corpus_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Return (case id, record, expected columns) for each expected.jsonl row."""
    cases = []
    for text in (CORPUS / "expected.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(text)
        lines = (CORPUS / row["file"]).read_text(encoding="utf-8").splitlines()
        record = record_from_line(lines[row["line_number"] - 1])
        cases.append((row["id"], record, row["expected"]))
    return cases


CORPUS_CASES = corpus_cases()
NORMALIZED_EXPECTATIONS = [
    pytest.param(record, field, value, id=f"{case_id}-{field}")
    for case_id, record, expected in CORPUS_CASES
    for field, value in expected.items()
    if field in NORMALIZED_COLUMNS
]


@pytest.mark.parametrize(("record", "field", "expected"), NORMALIZED_EXPECTATIONS)
def test_corpus_normalized_field(record, field, expected):
    normalized = normalize_event(record)
    assert normalized[field] == expected, f"{field}: {normalized[field]!r}"


def test_normalize_returns_every_column():
    normalized = normalize_event({})
    assert tuple(normalized) == NORMALIZED_COLUMNS
    assert set(normalized.values()) == {None}


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "Detected", "detected"),
        ("en", "Blocked", "blocked"),
        ("en", "Deleted", "deleted"),
        ("en", "Disinfected", "disinfected"),
        ("en", "Quarantined", "quarantined"),
        ("en", "Not disinfected", "not_disinfected"),
        ("en", "Not processed", "not_processed"),
        ("en", "Allowed", "allowed"),
        ("en", "Processing error", "error"),
        ("en", "Error", "error"),
        ("en", "  detected. ", "detected"),
        ("en", "Detected: EICAR-Test-File", "detected"),
        ("ru", "Запрещено", "blocked"),
        ("ru", "Обнаружено", "detected"),
        ("ru", "Удалено", "deleted"),
        ("ru", "Вылечено", "disinfected"),
        ("ru", "Помещено на карантин", "quarantined"),
        ("ru", "Не обработано", "not_processed"),
        ("ru", "Ошибка обработки", "error"),
        ("es", "Detectado", "detected"),
        ("es", "Bloqueado", "blocked"),
        ("es", "Eliminado", "deleted"),
        ("es", "No procesado", "not_processed"),
        ("fr", "Détecté", "detected"),
        ("fr", "Bloqué", "blocked"),
        ("fr", "Supprimé", "deleted"),
        ("fr", "Erreur de traitement", "error"),
        ("de", "Erkannt", "detected"),
        ("de", "Blockiert", "blocked"),
        ("de", "Gelöscht", "deleted"),
        ("de", "In Quarantäne verschoben", "quarantined"),
        ("de", "Verarbeitungsfehler", "error"),
    ],
)
def test_canonical_result_per_language(language, text, expected):
    assert canonical_result(text) == expected, f"{language}: {text!r}"


@pytest.mark.parametrize("text", [None, "", "Task stopped", "Completed"])
def test_canonical_result_unknown_text(text):
    assert canonical_result(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NT AUTHORITY\\SYSTEM (Initiator)", ("NT AUTHORITY", "SYSTEM", "Initiator")),
        ("jsmith (Active user)", (None, "jsmith", "Active user")),
        ("EXAMPLE\\user1", ("EXAMPLE", "user1", None)),
        ("DOMAIN\\USER (Инициатор)", ("DOMAIN", "USER", "Инициатор")),
        (
            "host.example.local\\SYSTEM (System user)",
            ("host.example.local", "SYSTEM", "System user"),
        ),
        ("WORKGROUP\\HOST$", ("WORKGROUP", "HOST$", None)),
        ("jdoe", (None, "jdoe", None)),
        ("", (None, None, None)),
        (None, (None, None, None)),
    ],
)
def test_split_user_cases(text, expected):
    assert split_user(text) == expected


@given(
    domain=st.from_regex(r"[A-Za-z][A-Za-z0-9 .-]{0,15}[A-Za-z0-9]", fullmatch=True),
    name=st.from_regex(r"[A-Za-z0-9_$.-]{1,16}", fullmatch=True),
    role=st.sampled_from(["Initiator", "Active user", "System user", "Инициатор"]),
)
def test_split_user_round_trip(domain, name, role):
    assert split_user(f"{domain}\\{name} ({role})") == (domain, name, role)


@pytest.mark.parametrize(
    ("folder", "name", "expected"),
    [
        (
            "\\\\server\\profiles$\\User1\\Outlook",
            "a.ost",
            "\\\\server\\profiles$\\User1\\Outlook\\a.ost",
        ),
        ("C:\\Program Files\\App\\", "app.exe", "C:\\Program Files\\App\\app.exe"),
        ("/opt/app/", "app", "/opt/app/app"),
        ("C:\\Windows\\rm.bat", "rm.bat", "C:\\Windows\\rm.bat"),
        ("C:\\Windows\\RM.BAT", "rm.bat", "C:\\Windows\\RM.BAT"),
        ("C:\\Windows\\xrm.bat", "rm.bat", "C:\\Windows\\xrm.bat\\rm.bat"),
        ("C:\\Windows", None, "C:\\Windows"),
        (None, "rm.bat", "rm.bat"),
        (None, None, None),
    ],
)
def test_join_path_cases(folder, name, expected):
    assert join_path(folder, name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("168234606", "10.7.14.110"),
        ("2886729929", "172.16.0.201"),
        ("0", "0.0.0.0"),
        ("4294967295", "255.255.255.255"),
        ("4294967296", "4294967296"),
        ("10.0.0.7", "10.0.0.7"),
        ("", None),
        (None, None),
    ],
)
def test_ipv4_integer_to_dotted(value, expected):
    assert ipv4_text(value) == expected


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("Result\\Description", "result_description"),
        ("Result description", "result_description"),
        ("RESULT  DESCRIPTION", "result_description"),
        ("Application\\Name", "process_name"),
        ("Application\\Path", "process_path"),
        ("Application path", "process_path"),
        ("Path to object", "object_folder"),
        ("Object\\Path", "object_path"),
        ("Object\\Type", "object_type"),
        ("Object type", "object_type"),
        ("Object\\Name", "object_name"),
        ("Object name", "object_name"),
        ("Process ID", "process_pid"),
        ("SHA256", "file_sha256"),
        ("File SHA256 hash", "file_sha256"),
        ("MD5", "file_md5"),
        ("MD5 file hash", "file_md5"),
        ("Database release date", "bases_release_date"),
        ("Release date", "bases_release_date"),
        ("Result\\Type", "threat_type"),
        ("Type", "threat_type"),
        ("Result\\Name", "threat_name"),
        ("Name", "name"),
        ("Event type", "event_type_name"),
        ("Описание результата", "result_description"),
        ("Resultado\\Descripción", "result_description"),
        ("Résultat\\Description", "result_description"),
        ("Ergebnis\\Beschreibung", "result_description"),
    ],
)
def test_body_key_to_field(key, field):
    fields, _language = canonical_body_fields([(key, "value")])
    assert fields == {field: "value"}


@pytest.mark.parametrize(
    ("message_fields", "language"),
    [
        ([("Описание результата", "Запрещено"), ("Тип", "x"), ("SHA256", "y")], "ru"),
        ([("Usuario", "a"), ("Componente", "b"), ("Objeto\\Nombre", "c")], "es"),
        ([("Utilisateur", "a"), ("Composant", "b")], "fr"),
        ([("Benutzer", "a"), ("Komponente", "b")], "de"),
        ([("User", "a"), ("Benutzer", "b")], "en"),
        ([("Type", "Virus")], "en"),
        ([("", "free text"), ("Unknown key", "x")], None),
    ],
)
def test_body_language_majority(message_fields, language):
    _fields, detected = canonical_body_fields(message_fields)
    assert detected == language


def test_body_first_key_wins():
    fields, _language = canonical_body_fields([("Result", "Blocked"), ("Result", "x")])
    assert fields == {"result": "Blocked"}


def test_attack_params_to_network_columns():
    record = {
        "sd_params": {
            "et": "GNRL_EV_ATTACK_DETECTED",
            "p1": "Bruteforce.Generic.Rdp.a",
            "p2": "TCP",
            "p3": "168234606",
            "p4": "3389",
            "p6": "168234509",
        },
        "message_fields": [
            ("User", "NT AUTHORITY\\SYSTEM (System user)"),
            ("Result description", "Blocked"),
            ("Name", "Bruteforce.Generic.Rdp.a"),
            ("Object", "TCP from 10.7.14.110 at 10.7.14.13:3389"),
        ],
    }
    normalized = normalize_event(record)
    assert normalized["threat_name"] == "Bruteforce.Generic.Rdp.a"
    assert normalized["network_protocol"] == "TCP"
    assert normalized["remote_ip"] == "10.7.14.110"
    assert normalized["local_ip"] == "10.7.14.13"
    assert normalized["local_port"] == 3389
    assert normalized["object_path"] is None
    assert normalized["result"] == "blocked"


def test_truncated_msgid_uses_launch_params():
    record = {
        "_msgid": "GNRL_EV_APPLICATION_LAUNCH_DENIE",
        "sd_params": {
            "p2": "NT AUTHORITY\\SYSTEM",
            "p6": "rm.bat",
            "p7": "C:\\Windows\\rm.bat",
            "p8": ";DF4C7A695766C5592C6AAB9BD2D2EB87E0C73EAE9218955F61E507E564F26CFC",
        },
    }
    normalized = normalize_event(record)
    assert normalized["event_type"] == "GNRL_EV_APPLICATION_LAUNCH_DENIE"
    assert normalized["object_path"] == "C:\\Windows\\rm.bat"
    assert normalized["object_name"] == "rm.bat"
    assert normalized["user_name"] == "SYSTEM"
    assert normalized["file_sha256"] == (
        "df4c7a695766c5592c6aab9bd2d2eb87e0c73eae9218955f61e507e564f26cfc"
    )


def test_threat_type_code_without_body():
    record = {"sd_params": {"et": "GNRL_EV_OBJECT_BLOCKED", "p8": "65"}}
    assert normalize_event(record)["threat_type"] == "Riskware"


def test_threat_type_body_text_kept():
    record = {
        "sd_params": {"et": "GNRL_EV_OBJECT_BLOCKED", "p8": "65"},
        "message_fields": [("Тип", "Содержит рекламное приложение")],
    }
    assert normalize_event(record)["threat_type"] == "Содержит рекламное приложение"


def test_sd_md5_from_undecoded_json():
    record = {
        "sd_params": {
            "et": "GNRL_EV_VIRUS_FOUND",
            "p9": '{"md5":"44D88612FEA8A8F36DE82E1278ABB02F"}',
        },
        "_sd_json": {},
    }
    assert normalize_event(record)["file_md5"] == "44d88612fea8a8f36de82e1278abb02f"


def test_object_text_not_a_path():
    record = {"message_fields": [("Object", "Exploit Prevention")]}
    assert normalize_event(record)["object_path"] is None


def test_body_url_object_domain():
    record = {"message_fields": [("Object", "https://BAD.Example.com/a?b=1")]}
    normalized = normalize_event(record)
    assert normalized["url"] == "https://BAD.Example.com/a?b=1"
    assert normalized["url_domain"] == "bad.example.com"


def test_invalid_pid_gives_none():
    record = {"message_fields": [("Process ID", "n/a"), ("Application\\Name", "a.exe")]}
    assert normalize_event(record)["process_pid"] is None


def summarize_batch(batch: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["event_type"], r["process_name"], r["user_name"], r["language"])
        for r in batch
    ]


def test_normalize_transform_adds_columns():
    _case_id, record, _expected = CORPUS_CASES[0]
    with local_test_pipeline() as pipeline:
        kept, dead_letters = pipeline | Create([[dict(record)]]) | Normalize()
        summaries = kept | "Summarize" >> FlatMap(summarize_batch)
        assert_that(
            summaries,
            equal_to([("000000de", "avp.exe", "SYSTEM", "en")]),
            label="CheckKept",
        )
        assert_that(dead_letters, equal_to([]), label="CheckDeadLetters")


def test_sd_user_differs_from_body():
    record = {
        "sd_params": {"et": "GNRL_EV_VIRUS_FOUND", "p7": "EXAMPLE\\user1"},
        "message_fields": [("User", "EXAMPLE\\other (Active user)")],
    }
    normalized = normalize_event(record)
    assert normalized["user_domain"] == "EXAMPLE"
    assert normalized["user_name"] == "user1"
    assert normalized["user_role"] is None


# Windows Server protection (WSEE) bodies: no result item, full process path.
WSEE_NOTCURED = {
    "sd_params": {"et": "GNRL_EV_OBJECT_NOTCURED"},
    "message_fields": parse_message_body(
        r"Object not disinfected. Reason: object cannot be disinfected\r\n"
        r"Object name: C:\Temp\eicar.com\r\n"
        r"Process name: C:\Program Files\7-Zip\7z.exe\r\nPID: 4312"
    ),
}
WSEE_FOUND = {
    "sd_params": {"et": "GNRL_EV_VIRUS_FOUND"},
    "message_fields": parse_message_body(
        r"Object detected: Malware HEUR:Trojan.Win32.Generic\r\n"
        r"Object name: C:\Temp\x.exe"
    ),
}


def test_wsee_sentence_gives_not_disinfected():
    assert normalize_event(WSEE_NOTCURED)["result"] == "not_disinfected"


def test_wsee_reason_after_sentence():
    assert normalize_event(WSEE_NOTCURED)["reason"] == "object cannot be disinfected"


def test_wsee_process_name_path_split():
    normalized = normalize_event(WSEE_NOTCURED)
    assert normalized["process_name"] == "7z.exe"
    assert normalized["process_path"] == r"C:\Program Files\7-Zip\7z.exe"


def test_wsee_object_detected_threat():
    normalized = normalize_event(WSEE_FOUND)
    assert normalized["threat_type"] == "Malware"
    assert normalized["threat_name"] == "HEUR:Trojan.Win32.Generic"


def test_event_type_states_result():
    assert normalize_event(WSEE_FOUND)["result"] == "detected"


def test_truncated_msgid_states_result():
    record = {"_msgid": "GNRL_EV_APPLICATION_LAUNCH_DENIE", "message_fields": []}
    assert normalize_event(record)["result"] == "blocked"


def test_body_result_wins_over_event_type():
    record = {
        "sd_params": {"et": "GNRL_EV_VIRUS_FOUND"},
        "message_fields": [("Result description", "Deleted")],
    }
    assert normalize_event(record)["result"] == "deleted"


def test_pid_beyond_int64_is_none():
    record = {"message_fields": [("Process ID", "99999999999999999999999")]}
    assert normalize_event(record)["process_pid"] is None


_BODY_KEYS = st.one_of(
    st.sampled_from(sorted(tables.body_keys())),
    st.sampled_from(["", "Result\\Description", "ОПИСАНИЕ РЕЗУЛЬТАТА", "Type"]),
    st.text(max_size=12),
)
_BODY_ITEMS = st.lists(st.tuples(_BODY_KEYS, st.text(max_size=8)), max_size=80)


@given(items=_BODY_ITEMS)
def test_cached_body_mapping_matches_direct(items):
    assert canonical_body_fields(items) == _map_body_keys(items)


@given(items=_BODY_ITEMS)
def test_keyless_values_in_body_order(items):
    _fields, _language, keyless = _read_body(items)
    assert list(keyless) == [value for key, value in items if not key]


def test_body_fields_from_generator():
    items = [("Result description", "Detected"), ("Type", "Virus")]
    assert canonical_body_fields(iter(items)) == (
        {"result_description": "Detected", "threat_type": "Virus"},
        "en",
    )
