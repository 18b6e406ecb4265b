"""Every broken input ends as an event or as a dead letter with a reason.

The corpus in tests/data/broken (see its README.md) goes through the command
line once, together with a generated file that contains a 2 MB message:

    mixed.log line 5: 2022-02-28T15:48:55+00:00<TAB>kav_logs.user.crit<TAB>["host"]
        -> dead letter `invalid_record`

The run must exit 0, balance its books, and store each dead letter with
source_uri, source_line, error, detail and raw under `_errors/`.
"""

from __future__ import annotations

import datetime
import gzip
import os
import pathlib
import secrets
import shutil
import subprocess
import sys

import apache_beam as beam
import orjson
import pyarrow.dataset as ds
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.beam_helpers import LOCAL_RUNNER_ARGS, local_test_pipeline
from transforms.read import InputFile, MatchInputs, ReadLines, _ReadLines, iter_blocks
from transforms.schema import DEAD_LETTER_PARTITIONING, EVENT_PARTITIONING
from transforms.write import read_json, summary_path

REPO = pathlib.Path(__file__).resolve().parents[1]
BROKEN = REPO / "tests" / "data" / "broken"
CLI_ENV = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "NO_GCE_CHECK": "true"}
RUN_ID = "20261204T000000Z-broken00"
TIME_TAG = "2022-02-28T15:48:55+00:00\tkav_logs.user.crit\t"
BIG_MESSAGE_CHARS = 2 * 1024 * 1024

# (file, line) -> ("event", parse issues) or ("dead", reason code).
EXPECTED: dict[tuple[str, int | None], tuple[str, object]] = {
    ("mixed.log", 1): ("event", []),
    ("mixed.log", 2): ("dead", "invalid_json"),
    ("mixed.log", 3): ("dead", "invalid_time"),
    ("mixed.log", 4): ("dead", "invalid_time"),
    ("mixed.log", 5): ("dead", "invalid_record"),
    ("mixed.log", 6): ("dead", "invalid_record"),
    ("mixed.log", 7): ("dead", "invalid_line"),
    ("mixed.log", 8): ("dead", "empty_line"),
    ("mixed.log", 9): ("dead", "empty_line"),
    ("mixed.log", 10): ("event", ["sd_unclosed"]),
    ("mixed.log", 11): ("event", []),
    ("mixed.log", 12): ("dead", "invalid_time"),
    ("mixed.log", 13): ("dead", "invalid_json"),
    ("bytes.log", 1): ("event", ["invalid_utf8"]),
    ("bytes.log", 2): ("dead", "invalid_json"),
    ("bytes.log", 3): ("dead", "invalid_json"),
    ("crlf.log", 1): ("event", []),
    ("crlf.log", 2): ("event", []),
    ("bom.log", 1): ("event", []),
    ("unterminated.log", 1): ("event", []),
    ("unterminated.log", 2): ("dead", "partial_line"),
    ("truncated.log.gz", None): ("dead", "unreadable_file"),
    ("binary.log", None): ("dead", "binary_file"),
    ("big-message.log", 1): ("event", []),
    **{("truncated.log.gz", line): ("event", []) for line in range(1, 70)},
}
# Values from the detail of a dead letter that name what was wrong.
DETAIL_NAMES = {
    ("mixed.log", 3): "2022-02-30T10:00:00+00:00",
    ("mixed.log", 4): "2022-02-28T25:61:00+00:00",
    ("mixed.log", 5): '["host","HOST-05"]',
    ("mixed.log", 6): "just a string",
    ("mixed.log", 7): "2 of the 3 fields",
    ("mixed.log", 12): "'not'",
    ("truncated.log.gz", None): "after 69 lines",
    ("binary.log", None): "binary data",
}


def kes_record(host: str, message: str | None = None) -> str:
    """Return the JSON record of a KES detection event from `host`."""
    return orjson.dumps(
        {
            "host": host,
            "ident": "KES|11.0.0.0",
            "pid": "-",
            "msgid": "GNRL_EV_VIRUS_FOUND",
            "extradata": '[event@23668 et="GNRL_EV_VIRUS_FOUND" p5="EICAR-Test-File"]',
            "message": message or "Result description: Detected\\r\\nType: Virus",
        }
    ).decode()


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `python -m pipeline` in a subprocess and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args, *LOCAL_RUNNER_ARGS],
        cwd=REPO,
        env=CLI_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stored_events(output: pathlib.Path, columns: list[str] | None = None) -> list[dict]:
    """Return the event rows stored under a local output folder."""
    events = ds.dataset(
        str(output),
        format="parquet",
        partitioning=ds.partitioning(EVENT_PARTITIONING, flavor="hive"),
        exclude_invalid_files=False,
        ignore_prefixes=["_", "."],
    )
    return events.to_table(columns=columns).to_pylist()


def stored_dead_letters(output: pathlib.Path) -> list[dict]:
    """Return the dead-letter rows stored under a local output folder."""
    if not (output / "_errors").exists():
        return []
    letters = ds.dataset(
        str(output / "_errors"),
        format="parquet",
        partitioning=ds.partitioning(DEAD_LETTER_PARTITIONING, flavor="hive"),
    )
    return letters.to_table().to_pylist()


def read_rows(output: pathlib.Path) -> tuple[list[dict], list[dict]]:
    """Return (events, dead letters) stored under `output`."""
    return stored_events(output), stored_dead_letters(output)


def write_event_files(
    folder: pathlib.Path, files: int, lines: int, days: int = 40, padding: int = 0
) -> int:
    """Write `files` FluentD files of distinct events over `days` dates.

    With `padding`, each message gets a `Comment` item of that many random hex
    digits, which Parquet cannot compress much. Returns the number of lines.
    """
    base = datetime.datetime(2022, 1, 1, tzinfo=datetime.timezone.utc)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        with open(folder / f"fluentd-{index:02d}.log", "w") as handle:
            for number in range(lines):
                moment = base + datetime.timedelta(days=number % days, seconds=number)
                stamp = moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")
                host = f"HOST-{index:02d}-{number:05d}"
                message = None
                if padding:
                    comment = secrets.token_hex(padding // 2)
                    message = f"Result description: Detected\\r\\nComment: {comment}"
                record = kes_record(host, message)
                handle.write(f"{stamp}\tkav_logs.user.crit\t{record}\n")
    return files * lines


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    inputs = tmp_path_factory.mktemp("broken-in")
    for path in BROKEN.iterdir():
        if path.name != "README.md":
            shutil.copy(path, inputs / path.name)
    message = "Result description: Detected\\r\\nComment: " + "x" * BIG_MESSAGE_CHARS
    line = TIME_TAG + kes_record("BIG-01", message) + "\n"
    (inputs / "big-message.log").write_text(line)
    output = tmp_path_factory.mktemp("broken-out")
    result = run_cli(
        "--input", str(inputs / "*.log*"), "--output", str(output), "--run_id", RUN_ID
    )
    events, letters = read_rows(output)
    outcomes: dict[tuple[str, int | None], list[dict]] = {}
    for kind, rows in (("event", events), ("dead", letters)):
        for row in rows:
            key = (pathlib.PurePath(row["source_uri"]).name, row["source_line"])
            outcomes.setdefault(key, []).append({"kind": kind, **row})
    summary = read_json(summary_path(str(output), RUN_ID))
    return result, outcomes, summary


def test_broken_corpus_exits_zero(broken_run):
    result, _, _ = broken_run
    assert result.returncode == 0, result.stderr[-2000:]


def test_broken_corpus_books_balance(broken_run):
    _, _, summary = broken_run
    written = sum(summary["events_written"].values())
    letters = sum(summary["dead_letters"].values())
    assert summary["lines_read"] == (written + summary["duplicates_dropped"] + letters)
    assert summary["balanced"] is True


def test_broken_corpus_counts_every_line(broken_run):
    _, _, summary = broken_run
    assert summary["lines_read"] == len(EXPECTED)


@pytest.mark.parametrize(
    ("source", "expected"),
    sorted(EXPECTED.items(), key=lambda item: (item[0][0], item[0][1] or 0)),
    ids=lambda value: f"{value[0]}:{value[1]}" if isinstance(value[0], str) else None,
)
def test_broken_line_outcome(broken_run, source, expected):
    _, outcomes, _ = broken_run
    rows = outcomes.get(source, [])
    assert len(rows) == 1, f"{source} has {len(rows)} outcomes"
    kind, value = expected
    row = rows[0]
    assert row["kind"] == kind
    if kind == "event":
        assert row["parse_issues"] == value
    else:
        assert row["error"] == value


def test_no_outcome_without_line(broken_run):
    _, outcomes, _ = broken_run
    assert set(outcomes) == set(EXPECTED)


@pytest.mark.parametrize(("source", "named"), sorted(DETAIL_NAMES.items(), key=str))
def test_dead_letter_detail_names_value(broken_run, source, named):
    _, outcomes, _ = broken_run
    assert named in outcomes[source][0]["detail"]


def test_dead_letter_columns_are_filled(broken_run):
    _, outcomes, _ = broken_run
    letters = [
        row for rows in outcomes.values() for row in rows if row["kind"] == "dead"
    ]
    for row in letters:
        assert row["source_uri"], row
        assert row["error"], row
        assert row["detail"], row
        assert row["run_id"] == RUN_ID, row


def test_line_dead_letter_keeps_raw(broken_run):
    _, outcomes, _ = broken_run
    row = outcomes[("mixed.log", 5)][0]
    assert row["raw"] == TIME_TAG + '["host","HOST-05"]'


def test_non_utf8_raw_is_replaced(broken_run):
    _, outcomes, _ = broken_run
    raw = outcomes[("bytes.log", 3)][0]["raw"]
    assert '"host":"HOST-\ufffd\ufffd' in raw


def test_non_utf8_event_keeps_replacement(broken_run):
    _, outcomes, _ = broken_run
    assert outcomes[("bytes.log", 1)][0]["host"] == "HOST-\ufffd\ufffd"


def test_nul_byte_kept_in_raw(broken_run):
    _, outcomes, _ = broken_run
    assert "HOST-\x00NUL" in outcomes[("bytes.log", 2)][0]["raw"]


def test_crlf_line_has_clean_host(broken_run):
    _, outcomes, _ = broken_run
    assert outcomes[("crlf.log", 2)][0]["host"] == "CRLF-2"


def test_big_message_is_kept_whole(broken_run):
    _, outcomes, _ = broken_run
    fields = dict(
        (item["key"], item["value"])
        for item in outcomes[("big-message.log", 1)][0]["message_fields"]
    )
    assert len(fields["Comment"]) == BIG_MESSAGE_CHARS


def test_unclosed_sd_keeps_first_params(broken_run):
    _, outcomes, _ = broken_run
    params = dict(outcomes[("mixed.log", 10)][0]["sd_params"])
    assert params["tdn"] == "File Threat Protection"


def test_empty_file_counts_as_read(broken_run):
    _, _, summary = broken_run
    # 9 files: 8 in the corpus without README.md, plus big-message.log.
    assert summary["files_read"] == 9


def _delete_file(input_file: InputFile) -> InputFile:
    os.remove(input_file.path)
    return input_file


def test_vanished_file_in_pipeline(tmp_path):
    path = tmp_path / "vanishing.log"
    path.write_text(TIME_TAG + kes_record("GONE-01") + "\n")
    with local_test_pipeline() as pipeline:
        files, _ = pipeline | "Match" >> MatchInputs([str(tmp_path / "*.log")])
        gone = files | "DeleteAfterListing" >> beam.Map(_delete_file)
        lines, dead, _ = gone | "Read" >> ReadLines()
        codes = (
            dead
            | "Letters" >> beam.FlatMap(lambda batch: batch)
            | "Codes"
            >> beam.Map(lambda letter: (letter["source_uri"], letter["error"]))
        )
        assert_that(codes, equal_to([(str(path), "unreadable_file")]), label="Dead")
        assert_that(lines, equal_to([]), label="NoLines")


def test_vanished_file_in_dofn(tmp_path):
    path = tmp_path / "vanishing.log"
    path.write_text(TIME_TAG + kes_record("GONE-02") + "\n")
    reader = _ReadLines(batch_size=10, max_line_bytes=1024 * 1024)
    reader.setup()
    input_file = InputFile(str(path), path.stat().st_size)
    path.unlink()
    outputs = list(reader.process(input_file))
    letters = [
        letter
        for output in outputs
        if isinstance(output, beam.pvalue.TaggedOutput) and output.tag == "dead_letters"
        for letter in output.value
    ]
    stats = [
        output.value
        for output in outputs
        if isinstance(output, beam.pvalue.TaggedOutput) and output.tag == "stats"
    ]
    assert [letter["error"] for letter in letters] == ["unreadable_file"]
    assert str(path) in letters[0]["detail"]
    assert stats[0]["lines_read"] == 1


def test_gzip_members_read_once(tmp_path):
    # Members larger than one read block end where zlib leaves input behind.
    line = (TIME_TAG + kes_record("MEMBER-01") + "\n").encode()
    member = gzip.compress(line * (3 * 1024 * 1024 // len(line)))
    path = tmp_path / "members.log.gz"
    path.write_bytes(member * 3)
    content = b"".join(iter_blocks(str(path), 1024 * 1024))
    assert content == gzip.decompress(member) * 3
