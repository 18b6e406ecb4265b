"""Specification of the synthetic FluentD generator used for samples and benchmarks."""

from __future__ import annotations

import gzip
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import synthetic

LINE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")
OBJECT_PATH = re.compile(
    r"kav/(\d{4})/(\d\d)/(\d\d)/([A-Za-z0-9-]+)_(\d{8}|\d{10})_(\d+)\.log(\.gz|\.zst)?"
)
SD_PARAM = re.compile(r'(\S+?)="((?:\\.|[^"\\])*)"')
# FluentD's RFC 5424 regexp ends the structured data at the first "]" that no
# backslash precedes.
FLUENTD_SD = re.compile(r"\[.*?(?<!\\)\]")
RECORD_KEYS = {"host", "ident", "msgid", "extradata", "message"}
SEPARATOR = "\\r\\n"


def read_lines(root: Path, entry: dict) -> list[bytes]:
    data = (root / entry["path"]).read_bytes()
    if entry["compression"] == "gzip":
        data = gzip.decompress(data)
    elif entry["compression"] == "zstd":
        data = zstandard.ZstdDecompressor().decompress(data)
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def parse_fluentd(line: bytes) -> tuple[datetime, str, dict] | None:
    """Return (time, tag, record) of a well-formed FluentD line, else None."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split("\t", 2)
    if len(parts) != 3 or not LINE_TIME.fullmatch(parts[0]):
        return None
    try:
        moment = datetime.fromisoformat(parts[0])
        record = json.loads(parts[2])
    except ValueError:
        return None
    if not isinstance(record, dict) or not RECORD_KEYS <= record.keys():
        return None
    return moment, parts[1], record


def parse_sd(extradata: str) -> dict[str, str]:
    return {
        name: re.sub(r'\\(["\\\]])', r"\1", value)
        for name, value in SD_PARAM.findall(extradata)
    }


def body_items(message: str) -> list[tuple[str, str]]:
    items = []
    for item in message.lstrip(synthetic.BOM).split(SEPARATOR):
        key, _, value = item.partition(": ")
        items.append((key, value.lstrip(" ")))
    return items


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict, dict[str, list[bytes]]]:
    root = tmp_path_factory.mktemp("synthetic")
    manifest = synthetic.generate(
        str(root),
        events=3000,
        seed=5,
        duplicate_ratio=0.03,
        broken_ratio=0.02,
        foreign_ratio=0.01,
        lines_per_file=400,
    )
    lines = {entry["path"]: read_lines(root, entry) for entry in manifest["files"]}
    return root, manifest, lines


def kaspersky_records(run) -> list[dict]:
    _, manifest, lines = run
    records = []
    for entry in manifest["files"]:
        skipped = {item["line"] for item in entry["broken"] + entry["foreign"]}
        for number, line in enumerate(lines[entry["path"]], start=1):
            if number not in skipped and entry["copy_of"] is None:
                records.append(parse_fluentd(line)[2])
    return records


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# The books of a run.


def test_manifest_books_balance(run):
    _, manifest, _ = run
    assert manifest["lines_total"] == (
        manifest["distinct_events"]
        + manifest["duplicate_lines"]
        + manifest["broken_lines"]
        + manifest["foreign_lines"]
    )
    assert manifest["distinct_events"] == 3000
    assert sum(manifest["event_kinds"].values()) == 3000
    assert sum(manifest["categories"].values()) == 3000
    assert sum(manifest["broken_kinds"].values()) == manifest["broken_lines"]
    assert sum(manifest["foreign_kinds"].values()) == manifest["foreign_lines"]


def test_manifest_ratios_are_approximate(run):
    _, manifest, _ = run
    assert manifest["broken_lines"] >= 60
    assert manifest["foreign_lines"] >= 30
    assert 0.025 <= manifest["duplicate_lines"] / manifest["lines_total"] <= 0.035


def test_manifest_matches_files_written(run):
    root, manifest, lines = run
    on_disk = sorted(
        str(path.relative_to(root)).replace(os.sep, "/")
        for path in root.rglob("*")
        if path.is_file() and path.name != synthetic.MANIFEST_NAME
    )
    assert on_disk == [entry["path"] for entry in manifest["files"]]
    assert manifest["files_written"] == len(on_disk)
    assert (
        sum(len(file_lines) for file_lines in lines.values())
        == (manifest["lines_total"])
    )
    stored = json.loads((root / synthetic.MANIFEST_NAME).read_text(encoding="utf-8"))
    assert stored == manifest


def test_every_kind_is_generated(run):
    _, manifest, _ = run
    assert all(count > 0 for count in manifest["event_kinds"].values())
    assert all(count > 0 for count in manifest["broken_kinds"].values())
    assert all(count > 0 for count in manifest["foreign_kinds"].values())


def test_hosts_number_in_hundreds(run):
    _, manifest, _ = run
    assert manifest["hosts"] >= 200


# Determinism.


def test_generator_deterministic_for_seed(tmp_path):
    first = synthetic.generate(str(tmp_path / "a"), events=600, seed=11)
    second = synthetic.generate(str(tmp_path / "b"), events=600, seed=11)
    assert first == second
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_other_seed_changes_output(tmp_path):
    synthetic.generate(str(tmp_path / "a"), events=600, seed=11)
    synthetic.generate(str(tmp_path / "b"), events=600, seed=12)
    assert tree_bytes(tmp_path / "a") != tree_bytes(tmp_path / "b")


# Lines.


def test_lines_parse_unless_declared_broken(run):
    _, manifest, lines = run
    for entry in manifest["files"]:
        broken = {item["line"] for item in entry["broken"]}
        for number, line in enumerate(lines[entry["path"]], start=1):
            parsed = parse_fluentd(line)
            where = f"{entry['path']}:{number}"
            if number in broken:
                assert parsed is None, f"declared broken but valid: {where}"
            else:
                assert parsed is not None, f"undeclared broken line: {where}"


def test_broken_lines_fail_as_declared(run):
    _, manifest, lines = run
    for entry in manifest["files"]:
        for item in entry["broken"]:
            line = lines[entry["path"]][item["line"] - 1]
            kind = item["kind"]
            if kind == "not_utf8":
                with pytest.raises(UnicodeDecodeError):
                    line.decode("utf-8")
                continue
            time_text, tag, payload = line.decode("utf-8").split("\t", 2)
            if kind == "cut_json":
                with pytest.raises(json.JSONDecodeError):
                    json.loads(payload)
            elif kind == "invalid_time":
                with pytest.raises(ValueError):
                    datetime.fromisoformat(time_text)
            elif kind == "json_array":
                assert isinstance(json.loads(payload), list)
            elif kind == "missing_fields":
                assert "ident" not in json.loads(payload)
            elif kind == "unmatched_syslog":
                assert tag.endswith(".unmatched")
                assert list(json.loads(payload)) == ["unmatched_line"]


def test_duplicates_are_byte_copies(run):
    _, manifest, lines = run
    copies = [entry for entry in manifest["files"] if entry["copy_of"]]
    assert copies
    by_path = {entry["path"]: entry for entry in manifest["files"]}
    for copy in copies:
        original = by_path[copy["copy_of"]]
        assert lines[copy["path"]] == lines[original["path"]]
        assert copy["index"] == original["index"] + 1
        assert copy["duplicate_lines"] == original["events"]
    assert (
        sum(copy["duplicate_lines"] for copy in copies) == (manifest["duplicate_lines"])
    )


def test_distinct_events_are_distinct(run):
    _, manifest, _ = run
    records = kaspersky_records(run)
    assert len(records) == manifest["distinct_events"]
    keys = {json.dumps(record, sort_keys=True) for record in records}
    assert len(keys) == len(records)


def test_foreign_lines_are_not_kaspersky(run):
    _, manifest, lines = run
    extradata = []
    for entry in manifest["files"]:
        for item in entry["foreign"]:
            _, _, record = parse_fluentd(lines[entry["path"]][item["line"] - 1])
            assert "|" not in record["ident"]
            assert not record["extradata"].startswith("[event@")
            extradata.append(record["extradata"])
    assert any("@23668" in value for value in extradata)


def test_records_encoded_as_fluentd_json(run):
    _, manifest, lines = run
    entry = next(e for e in manifest["files"] if e["events"] and not e["broken"])
    for line in lines[entry["path"]]:
        payload = line.decode("utf-8").split("\t", 2)[2]
        record = json.loads(payload)
        compact = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        assert payload == compact
        assert "\r" not in record["message"]
        assert "\n" not in record["message"]


# Layout and times.


def test_object_paths_follow_fluentd_layout(run):
    _, manifest, _ = run
    for entry in manifest["files"]:
        match = OBJECT_PATH.fullmatch(entry["path"])
        assert match, entry["path"]
        year, month, day, name, time_slice, index, suffix = match.groups()
        assert time_slice[:8] == f"{year}{month}{day}"
        assert name == entry["source"]
        assert int(index) == entry["index"]
        assert synthetic.SUFFIXES[entry["compression"]] == ".log" + (suffix or "")


def test_compressed_objects_have_magic(run):
    root, manifest, _ = run
    magic = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}
    for entry in manifest["files"]:
        head = (root / entry["path"]).read_bytes()[:4]
        if entry["compression"] in magic:
            assert head.startswith(magic[entry["compression"]]), entry["path"]


def test_line_times_fall_in_slice(run):
    _, manifest, lines = run
    for entry in manifest["files"]:
        broken = {item["line"] for item in entry["broken"]}
        for number, line in enumerate(lines[entry["path"]], start=1):
            if number in broken:
                continue
            moment = parse_fluentd(line)[0]
            digits = len(entry["time_slice"])
            slice_format = "%Y%m%d%H" if digits == 10 else "%Y%m%d"
            assert moment.strftime(slice_format) == entry["time_slice"]


def test_fluentd_offsets_all_present(run):
    records_offsets = set()
    _, manifest, lines = run
    for file_lines in lines.values():
        for line in file_lines:
            parsed = parse_fluentd(line)
            if parsed:
                records_offsets.add(parsed[0].strftime("%z"))
    assert records_offsets == {"+0000", "-0300", "+0530"}
    assert manifest["fluentd_offsets"] == ["+00:00", "+05:30", "-03:00"]


def test_events_span_several_days(run):
    _, manifest, _ = run
    first = datetime.fromisoformat(manifest["first_event_time"])
    last = datetime.fromisoformat(manifest["last_event_time"])
    assert last - first > timedelta(days=3)


# Event kinds.


def test_attack_ipv4_as_unsigned_integer(run):
    attacks = [
        r for r in kaspersky_records(run) if r["msgid"] == "GNRL_EV_ATTACK_DETECTED"
    ]
    assert attacks
    for record in attacks:
        params = parse_sd(record["extradata"])
        items = dict(body_items(record["message"]))
        remote = int(params["p3"]).to_bytes(4, "big")
        local = int(params["p6"]).to_bytes(4, "big")
        expected = (
            f"{params['p2']} from {'.'.join(map(str, remote))} at "
            f"{'.'.join(map(str, local))}:{params['p4']}"
        )
        assert items["Object"] == expected
        assert params["hip"] == ".".join(map(str, local))


def test_msgid_truncated_to_32(run):
    denied = [
        r
        for r in kaspersky_records(run)
        if parse_sd(r["extradata"]).get("et") == "GNRL_EV_APPLICATION_LAUNCH_DENIED"
    ]
    assert denied
    assert {r["msgid"] for r in denied} == {"GNRL_EV_APPLICATION_LAUNCH_DENIE"}


def test_russian_body_keys(run):
    blocked = [
        r
        for r in kaspersky_records(run)
        if r["msgid"] == "GNRL_EV_OBJECT_BLOCKED"
        and parse_sd(r["extradata"])["tdn"] == "Защита от веб-угроз"
    ]
    assert blocked
    keys = [key for key, _ in body_items(blocked[0]["message"])]
    assert keys[:5] == [
        "Описание результата",
        "Тип",
        "Название",
        "Пользователь",
        "Объект",
    ]
    assert body_items(blocked[0]["message"])[0][1] == "Запрещено"


def test_spanish_and_german_bodies(run):
    first_keys = {body_items(r["message"])[0][0] for r in kaspersky_records(run)}
    assert "Tipo de evento" in first_keys
    assert "Ereignistyp" in first_keys


def test_empty_version_ident_present(run):
    idents = {r["ident"] for r in kaspersky_records(run)}
    assert "KES|" in idents
    assert "1093|1.0.0.0" in idents
    assert any(ident.startswith("WSEE|") for ident in idents)


def test_body_only_events_lack_sd(run):
    body_only = [r for r in kaspersky_records(run) if r["extradata"] == "-"]
    assert body_only
    assert {r["msgid"] for r in body_only} == {"-"}
    assert all(r["ident"].startswith("KES|") for r in body_only)


def test_unknown_hex_event_types(run):
    hex_ids = {
        r["msgid"]
        for r in kaspersky_records(run)
        if re.fullmatch(r"[0-9a-f]{8}", r["msgid"])
    }
    assert "000000de" in hex_ids
    assert len(hex_ids) > 5


def test_sd_escapes_parse_back(run):
    for record in kaspersky_records(run):
        extradata = record["extradata"]
        if extradata == "-":
            continue
        assert FLUENTD_SD.match(extradata).group(0) == extradata
        params = parse_sd(extradata)
        assert synthetic.format_extradata("event@23668", list(params.items())) == (
            extradata
        )


# Formatting helpers.


def test_escape_sd_value_table():
    cases = [
        ("C:\\Users\\u1\\eicar.com", "C:\\\\Users\\\\u1\\\\eicar.com"),
        ('{"engine":1}', '{\\"engine\\":1}'),
        ("invoice[1].zip", "invoice[1\\].zip"),
        ("plain", "plain"),
    ]
    for value, expected in cases:
        assert synthetic.escape_sd_value(value) == expected


def test_format_extradata_example():
    params = [("p2", "C:\\a [1].exe"), ("et", "GNRL_EV_VIRUS_FOUND")]
    expected = '[event@23668 p2="C:\\\\a [1\\].exe" et="GNRL_EV_VIRUS_FOUND"]'
    assert synthetic.format_extradata("event@23668", params) == expected


# A syslog message is one line, so its values contain no CR or LF.
SD_VALUES = st.text(st.characters(exclude_characters="\r\n"))


@given(st.lists(SD_VALUES, min_size=1, max_size=4))
def test_extradata_round_trips_any_value(values):
    params = [(f"p{i}", value) for i, value in enumerate(values, start=1)]
    extradata = synthetic.format_extradata("event@23668", params)
    assert FLUENTD_SD.match(extradata).group(0) == extradata
    assert parse_sd(extradata) == dict(params)


def test_format_message_literal_separator():
    items = [("Result description", "Detected"), ("Object", "C:\\Windows\\")]
    message = synthetic.format_message(items, trailing=True)
    assert message == "Result description: Detected\\r\\nObject: C:\\Windows\\\\r\\n"


def test_ipv4_to_uint_known_values():
    assert synthetic.ipv4_to_uint("10.7.14.110") == 168234606
    assert synthetic.ipv4_to_uint("172.16.0.201") == 2886729929


def test_format_fluentd_time_offsets():
    epoch = int(datetime(2022, 2, 28, 15, 48, 55, tzinfo=timezone.utc).timestamp())
    assert synthetic.format_fluentd_time(epoch, 0) == "2022-02-28T15:48:55+00:00"
    assert synthetic.format_fluentd_time(epoch, -180) == "2022-02-28T12:48:55-03:00"
    assert synthetic.format_fluentd_time(epoch, 330) == "2022-02-28T21:18:55+05:30"


# Options and command line.


def test_single_compression_for_all(tmp_path):
    manifest = synthetic.generate(str(tmp_path), events=300, compression="none")
    assert {entry["compression"] for entry in manifest["files"]} == {"none"}
    assert all(entry["path"].endswith(".log") for entry in manifest["files"])


def test_non_empty_folder_rejected(tmp_path):
    (tmp_path / "old.log").write_text("x\n")
    with pytest.raises(ValueError, match="not empty"):
        synthetic.generate(str(tmp_path), events=10)


def test_command_line_writes_manifest(tmp_path, capsys):
    out_dir = tmp_path / "out"
    status = synthetic.main([str(out_dir), "--events", "200", "--seed", "3"])
    assert status == 0
    totals = json.loads(capsys.readouterr().out)
    stored = json.loads((out_dir / synthetic.MANIFEST_NAME).read_text("utf-8"))
    assert totals["lines_total"] == stored["lines_total"]
    assert stored["parameters"]["seed"] == 3
