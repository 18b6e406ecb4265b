"""Every expected field of the real corpus holds after a full pipeline run.

tests/data/corpus contains real KSC exports as FluentD writes them, and
expected.jsonl lists, per file and line, output columns that must hold
exactly (null meaning the column must be null).
"""

import datetime
import json
import pathlib

import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from tests.beam_helpers import LOCAL_RUNNER_ARGS
from transforms.schema import EVENT_PARTITIONING

CORPUS = pathlib.Path(__file__).parent / "data" / "corpus"
EXPECTED = [
    json.loads(line) for line in (CORPUS / "expected.jsonl").read_text().splitlines()
]
CASES = [
    pytest.param(case, column, value, id=f"{case['id']}-{column}")
    for case in EXPECTED
    for column, value in case["expected"].items()
]


@pytest.fixture(scope="module")
def corpus_rows(tmp_path_factory):
    output = tmp_path_factory.mktemp("corpus-out")
    status = main(
        ["--input", str(CORPUS / "*.log*"), "--output", str(output), *LOCAL_RUNNER_ARGS]
    )
    assert status == 0
    dataset = ds.dataset(
        str(output),
        format="parquet",
        partitioning=ds.partitioning(EVENT_PARTITIONING, flavor="hive"),
    )
    rows = dataset.to_table().to_pylist()
    return {
        (pathlib.PurePath(row["source_uri"]).name, row["source_line"]): row
        for row in rows
    }


def _as_contract_value(column, value):
    if column == "event_time" and value is not None:
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


@pytest.mark.parametrize(("case", "column", "expected"), CASES)
def test_corpus_expected_field(corpus_rows, case, column, expected):
    row = corpus_rows.get((case["file"], case["line_number"]))
    assert row is not None, f"no event from {case['file']} line {case['line_number']}"
    assert _as_contract_value(column, row[column]) == expected, (
        f"{case['id']}: column {column}"
    )


def test_corpus_gzip_reupload_is_duplicate(corpus_rows):
    assert ("fluentd-s3-20220228_1.log.gz", 1) not in corpus_rows
    assert ("fluentd-s3-20220228_0.log", 1) in corpus_rows
