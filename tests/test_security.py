"""Secrets stay out of the output, hostile values stay in their partition,
and oversized input does not exhaust memory.

Hostile input lines look like

    2022-02-28T15:48:55+00:00<TAB>kav_logs.user.crit<TAB>{"host":"../../x",
     "msgid":"../../../evil","extradata":"[event@23668 et=\\"../../../evil\\"]",...}

and must become ordinary rows under `category=.../event_date=.../`. The
memory tests measure the peak resident set size of the command-line
subprocess and its workers with psutil.
"""

from __future__ import annotations

import gzip
import json
import pathlib
import re
import subprocess
import sys
import time
import uuid

import orjson
import psutil
import pytest

from tests.beam_helpers import LOCAL_RUNNER_ARGS
from tests.emulators import AZURITE_ACCOUNT_KEY
from tests.test_broken_input import (
    CLI_ENV,
    REPO,
    TIME_TAG,
    kes_record,
    run_cli,
    stored_dead_letters,
    stored_events,
)

MIB = 1024 * 1024
# Generous bound on the peak resident memory of a run, Beam included.
PEAK_RSS_LIMIT = 1536 * MIB
BOMB_MEMBER_BYTES = 64 * MIB
BOMB_MEMBERS = 24  # 1.5 GiB inflated
LONG_LINE_BYTES = 100 * MIB
RUN_TIMEOUT_S = 300
ALLOWED_FOLDERS = re.compile(
    r"(category=(security|general|unknown)(/event_date=\d{4}-\d{2}-\d{2})?"
    r"|_errors(/event_date=\d{4}-\d{2}-\d{2})?|_runs)"
)
HOSTILE_VALUES = [
    "../../x",
    "/",
    "%2e%2e%2f%2e%2e",
    "..\\..\\x",
    "line\nbreak",
    "category=security/event_date=1970-01-01",
    "/etc/passwd",
    "",
]


def hostile_line(value: str) -> str:
    record = {
        "host": value,
        "ident": "KES|11.0.0.0",
        "pid": "-",
        "msgid": value,
        "extradata": f'[event@23668 et="{value}" tdn="{value}" p5="{value}"]',
        "message": f"Event type: {value}\\r\\nResult: Detected",
    }
    # The tag is written as it is, so a line break in it would end the line.
    tag = value.replace("\n", " ") or "x"
    return (
        f"2022-02-28T15:48:55+00:00\t{tag}.user.crit\t" + orjson.dumps(record).decode()
    )


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    inputs = root / "in"
    inputs.mkdir()
    lines = [hostile_line(value) for value in HOSTILE_VALUES]
    (inputs / "hostile.log").write_text("\n".join(lines) + "\n")
    output = root / "out"
    result = run_cli("--input", str(inputs / "*.log"), "--output", str(output))
    return root, output, result


def test_hostile_run_exits_zero(hostile_run):
    _, _, result = hostile_run
    assert result.returncode == 0, result.stderr[-2000:]


def test_hostile_values_write_inside_output(hostile_run):
    root, output, _ = hostile_run
    outside = [
        str(path)
        for path in root.rglob("*")
        if path.is_file()
        and not path.is_relative_to(output)
        and not path.is_relative_to(root / "in")
    ]
    assert outside == []


def test_hostile_values_make_no_folders(hostile_run):
    _, output, _ = hostile_run
    folders = sorted(
        str(path.relative_to(output)) for path in output.rglob("*") if path.is_dir()
    )
    assert [folder for folder in folders if not ALLOWED_FOLDERS.fullmatch(folder)] == []


def test_hostile_values_are_kept_as_data(hostile_run):
    _, output, _ = hostile_run
    hosts = {row["host"] for row in stored_events(output, ["host"])}
    assert {"../../x", "/", "%2e%2e%2f%2e%2e", "line\nbreak"} <= hosts


def test_hostile_event_type_is_kept(hostile_run):
    _, output, _ = hostile_run
    types = {row["event_type"] for row in stored_events(output, ["event_type"])}
    assert "../../x" in types


def run_with_peak_rss(args: list[str], env: dict[str, str] | None = None):
    """Run the CLI; return (result code, stderr, peak RSS of it and its children)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args, *LOCAL_RUNNER_ARGS],
        cwd=REPO,
        env=env or CLI_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(process.pid)
    peak = 0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        total = 0
        try:
            total += parent.memory_info().rss
            for child in parent.children(recursive=True):
                total += child.memory_info().rss
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.02)
    if process.poll() is None:
        process.kill()
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr, peak


def write_bomb(path: pathlib.Path, member: bytes) -> None:
    """Write BOMB_MEMBERS gzip members that each inflate to `member`."""
    packed = gzip.compress(member, compresslevel=9)
    with open(path, "wb") as handle:
        for _ in range(BOMB_MEMBERS):
            handle.write(packed)


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory):
    folder = tmp_path_factory.mktemp("baseline")
    (folder / "one.log").write_text(TIME_TAG + kes_record("BASE-01") + "\n")
    status, stderr, peak = run_with_peak_rss(
        ["--input", str(folder / "one.log"), "--output", str(folder / "out")]
    )
    assert status == 0, stderr[-2000:]
    return peak


@pytest.fixture(scope="module")
def one_line_bomb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bomb-line")
    bomb = folder / "bomb.log.gz"
    write_bomb(bomb, b"A" * BOMB_MEMBER_BYTES)
    output = folder / "out"
    status, stderr, peak = run_with_peak_rss(
        ["--input", str(bomb), "--output", str(output)]
    )
    return bomb, output, status, stderr, peak


@pytest.fixture(scope="module")
def many_lines_bomb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bomb-lines")
    bomb = folder / "bomb.log.gz"
    # 1 MiB lines, each the same valid event with a long message.
    message = "Result: Detected\\r\\nComment: " + "B" * (MIB - 400)
    line = (TIME_TAG + kes_record("BOMB-01", message) + "\n").encode()
    write_bomb(bomb, line * (BOMB_MEMBER_BYTES // len(line)))
    output = folder / "out"
    status, stderr, peak = run_with_peak_rss(
        ["--input", str(bomb), "--output", str(output)]
    )
    return bomb, output, status, stderr, peak


def test_bomb_file_is_small(one_line_bomb):
    bomb = one_line_bomb[0]
    assert bomb.stat().st_size < 4 * MIB


def test_one_line_bomb_exits_zero(one_line_bomb):
    _, _, status, stderr, _ = one_line_bomb
    assert status == 0, stderr[-2000:]


def test_one_line_bomb_is_line_too_long(one_line_bomb):
    _, output, _, _, _ = one_line_bomb
    letters = stored_dead_letters(output)
    assert [letter["error"] for letter in letters] == ["line_too_long"]


def test_one_line_bomb_keeps_prefix_only(one_line_bomb):
    _, output, _, _, _ = one_line_bomb
    letter = stored_dead_letters(output)[0]
    assert letter["raw"] == "A" * 4096
    assert str(BOMB_MEMBER_BYTES * BOMB_MEMBERS) in letter["detail"]


def test_one_line_bomb_memory_bounded(one_line_bomb):
    peak = one_line_bomb[4]
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak // MIB} MiB"


def test_many_lines_bomb_exits_zero(many_lines_bomb):
    _, _, status, stderr, _ = many_lines_bomb
    assert status == 0, stderr[-2000:]


def test_many_lines_bomb_keeps_one_event(many_lines_bomb):
    _, output, _, _, _ = many_lines_bomb
    assert len(stored_events(output, ["event_id"])) == 1


def test_many_lines_bomb_memory_bounded(many_lines_bomb):
    peak = many_lines_bomb[4]
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak // MIB} MiB"


@pytest.fixture(scope="module")
def long_line_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long-line")
    path = folder / "long.log"
    with open(path, "wb") as handle:
        handle.write(TIME_TAG.encode() + b'{"host":"')
        block = b"L" * MIB
        for _ in range(LONG_LINE_BYTES // MIB):
            handle.write(block)
        handle.write(b'"}\n' + (TIME_TAG + kes_record("AFTER-LONG") + "\n").encode())
    output = folder / "out"
    status, stderr, peak = run_with_peak_rss(
        ["--input", str(path), "--output", str(output), "--max_line_bytes=16777216"]
    )
    return output, status, stderr, peak


def test_long_line_is_line_too_long(long_line_run):
    output, _, _, _ = long_line_run
    letters = stored_dead_letters(output)
    assert [(letter["source_line"], letter["error"]) for letter in letters] == [
        (1, "line_too_long")
    ]


def test_line_after_long_line_is_event(long_line_run):
    output, _, _, _ = long_line_run
    rows = stored_events(output, ["host", "source_line"])
    assert rows == [{"host": "AFTER-LONG", "source_line": 2}]


def test_long_line_not_held_whole(long_line_run, baseline_rss):
    _, _, _, peak = long_line_run
    # Holding the line once would add 100 MiB, a copy or two more would add
    # 200-300 MiB. Reading it in 1 MiB blocks adds a few MiB.
    assert peak - baseline_rss < LONG_LINE_BYTES, (
        f"peak {peak // MIB} MiB, baseline {baseline_rss // MIB} MiB"
    )


SECRET = f"kavSecret{uuid.uuid4().hex}"


def secret_texts(
    result: subprocess.CompletedProcess, summaries: list[str]
) -> list[str]:
    return [result.stdout, result.stderr, *summaries]


def test_s3_secret_not_in_output(s3_server, tmp_path):
    bucket = s3_server.create_bucket("secret")
    (tmp_path / "one.log").write_text(TIME_TAG + kes_record("SECRET-01") + "\n")
    args = [
        arg
        if not arg.startswith("--s3_secret_access_key=")
        else f"--s3_secret_access_key={SECRET}"
        for arg in s3_server.pipeline_args
    ]
    result = run_cli(
        "--input", str(tmp_path / "one.log"), "--output", f"s3://{bucket}/out", *args
    )
    assert result.returncode == 0, result.stderr[-2000:]
    keys = s3_server.list_keys(bucket, "out/_runs/")
    summaries = [s3_server.read(bucket, key).decode() for key in keys]
    assert len(summaries) == 1
    leaks = [text for text in secret_texts(result, summaries) if SECRET in text]
    assert leaks == []


def test_s3_secret_not_in_failure(s3_server, tmp_path):
    (tmp_path / "one.log").write_text(TIME_TAG + kes_record("SECRET-02") + "\n")
    args = [
        arg
        if not arg.startswith("--s3_secret_access_key=")
        else f"--s3_secret_access_key={SECRET}"
        for arg in s3_server.pipeline_args
    ]
    env = {**CLI_ENV, "AWS_MAX_ATTEMPTS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--input",
            str(tmp_path / "one.log"),
            "--output",
            "s3://no-such-bucket-kav/out",
            *args,
            *LOCAL_RUNNER_ARGS,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert SECRET not in result.stdout + result.stderr


def test_azure_key_not_in_output(azurite_server, tmp_path):
    container = azurite_server.create_bucket("secret")
    (tmp_path / "one.log").write_text(TIME_TAG + kes_record("SECRET-03") + "\n")
    result = run_cli(
        "--input",
        str(tmp_path / "one.log"),
        "--output",
        azurite_server.uri(container, "out"),
        *azurite_server.pipeline_args,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    keys = azurite_server.list_keys(container, "out/_runs/")
    summaries = [azurite_server.read(container, key).decode() for key in keys]
    assert len(summaries) == 1
    leaks = [
        text for text in secret_texts(result, summaries) if AZURITE_ACCOUNT_KEY in text
    ]
    assert leaks == []


def test_summary_holds_no_options(s3_server, tmp_path):
    bucket = s3_server.create_bucket("summary")
    (tmp_path / "one.log").write_text(TIME_TAG + kes_record("SECRET-04") + "\n")
    result = run_cli(
        "--input",
        str(tmp_path / "one.log"),
        "--output",
        f"s3://{bucket}/out",
        *s3_server.pipeline_args,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    key = s3_server.list_keys(bucket, "out/_runs/")[0]
    summary = json.loads(s3_server.read(bucket, key))
    assert not [name for name in summary if "secret" in name or "key" in name]
