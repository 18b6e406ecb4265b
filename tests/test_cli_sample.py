"""End to end: the command line on the bundled sample data, read back with pyarrow."""

import glob
import json
import os
import pathlib
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from pipeline.cli import _one_line
from tests.beam_helpers import LOCAL_RUNNER_ARGS
from transforms.schema import (
    DEAD_LETTER_PARTITIONING,
    DEAD_LETTER_SCHEMA,
    EVENT_PARTITIONING,
    EVENT_SCHEMA,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
MANIFEST = json.loads((SAMPLE / "synthetic" / "_manifest.json").read_text())
CORPUS_LINES = (
    sum(1 for path in (SAMPLE / "corpus").glob("*.log") for _ in path.open()) + 1
)  # the one line of the gzip re-upload


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("sample-out")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--input",
            str(SAMPLE / "corpus" / "*"),
            "--input",
            str(SAMPLE / "synthetic" / "**"),
            "--output",
            str(output),
            *LOCAL_RUNNER_ARGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "NO_GCE_CHECK": "true"},
    )
    (summary_path,) = glob.glob(str(output / "_runs" / "*.json"))
    summary = json.loads(pathlib.Path(summary_path).read_text())
    return completed, summary, output


def _events(output):
    part = ds.partitioning(EVENT_PARTITIONING, flavor="hive")
    return ds.dataset(str(output), format="parquet", partitioning=part).to_table()


def test_sample_run_exits_zero(sample_run):
    completed, _, _ = sample_run
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_sample_run_prints_summary(sample_run):
    completed, summary, _ = sample_run
    assert summary["run_id"] in completed.stdout
    assert "books balance" in completed.stdout


def test_sample_books_balance(sample_run):
    _, summary, _ = sample_run
    assert summary["balanced"] is True
    assert summary["lines_read"] == MANIFEST["lines_total"] + CORPUS_LINES


def test_sample_duplicates_counted(sample_run):
    _, summary, _ = sample_run
    # Each re-uploaded line of the synthetic set, and the corpus's gzip re-upload.
    assert summary["duplicates_dropped"] == MANIFEST["duplicate_lines"] + 1


def test_sample_rows_match_summary(sample_run):
    _, summary, output = sample_run
    table = _events(output)
    assert table.num_rows == sum(summary["events_written"].values())


def test_sample_event_ids_unique(sample_run):
    _, _, output = sample_run
    ids = _events(output).column("event_id").to_pylist()
    assert len(ids) == len(set(ids))


def test_sample_has_contract_columns(sample_run):
    _, _, output = sample_run
    table = _events(output)
    for field in EVENT_SCHEMA:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.schema.field("category").type == "string"
    assert table.schema.field("event_date").type == "string"


def test_sample_categories_per_summary(sample_run):
    _, summary, output = sample_run
    counts = _events(output).group_by("category").aggregate([("event_id", "count")])
    found = dict(
        zip(
            counts["category"].to_pylist(),
            counts["event_id_count"].to_pylist(),
            strict=True,
        )
    )
    expected = {k: v for k, v in summary["events_written"].items() if v}
    assert found == expected


def test_sample_dead_letters_stored(sample_run):
    _, summary, output = sample_run
    part = ds.partitioning(DEAD_LETTER_PARTITIONING, flavor="hive")
    letters = ds.dataset(
        str(output / "_errors"), format="parquet", partitioning=part
    ).to_table()
    assert letters.num_rows == sum(summary["dead_letters"].values())
    assert set(DEAD_LETTER_SCHEMA.names) <= set(letters.schema.names)
    assert all(letters.column("detail").to_pylist())


def test_sample_foreign_lines_rejected(sample_run):
    _, summary, _ = sample_run
    assert summary["dead_letters"]["not_kaspersky"] >= MANIFEST["foreign_lines"]


def test_worker_traceback_gives_its_last_line():
    error = RuntimeError(
        "Traceback (most recent call last):\n"
        '  File "transforms/deduplicate.py", line 90, in store\n'
        "OSError: [Errno 28] No space left on device"
    )
    assert _one_line(error) == (
        "RuntimeError: OSError: [Errno 28] No space left on device"
    )


def test_plain_error_gives_its_first_line():
    assert _one_line(ValueError("bad value\nmore")) == "ValueError: bad value"
