"""WritePartitions: one Parquet file per partition shard, never half-written."""

import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.beam_helpers import local_test_pipeline
from transforms.deduplicate import decode_rows, encode_rows
from transforms.schema import DEAD_LETTER_SCHEMA, EVENT_SCHEMA
from transforms.write import WritePartitions, write_table_atomically

# 2022-02-28T15:48:55Z in microseconds.
T = 1646063335_000000
PARTITION = "category=security/event_date=2022-02-28"


def _events(*ids):
    rows = [
        {"event_id": i, "event_time": T, "source_line": n} for n, i in enumerate(ids)
    ]
    return decode_rows(encode_rows(rows, EVENT_SCHEMA))


def test_write_partition_file_layout(tmp_path):
    with local_test_pipeline() as pipeline:
        stats = (
            pipeline
            | beam.Create([((PARTITION, 2), [_events("a", "b")], {"events": 2})])
            | WritePartitions(str(tmp_path), "run1")
        )
        written = stats | beam.Map(
            lambda s: [os.path.basename(p) for p in s["files_written"]]
        )
        assert_that(written, equal_to([["part-run1-0002.parquet"]]))
    path = tmp_path / PARTITION / "part-run1-0002.parquet"
    table = pq.read_table(path)
    assert table.column("event_id").to_pylist() == ["a", "b"]
    assert (
        table.schema.field("event_time").type == EVENT_SCHEMA.field("event_time").type
    )


def test_write_empty_shard_no_file(tmp_path):
    with local_test_pipeline() as pipeline:
        stats = (
            pipeline
            | beam.Create([((PARTITION, 0), [], {"events": 0})])
            | WritePartitions(str(tmp_path), "run1")
        )
        assert_that(stats, equal_to([{"events": 0}]))
    assert not (tmp_path / PARTITION).exists()


def test_write_dead_letters_schema(tmp_path):
    letters = decode_rows(
        encode_rows(
            [{"source_uri": "f", "source_line": 3, "error": "invalid_json"}],
            DEAD_LETTER_SCHEMA,
        )
    )
    key = ("_errors/event_date=2026-12-04", 0)
    with local_test_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create([(key, [letters], {})])
            | WritePartitions(str(tmp_path), "run1")
        )
    table = pq.read_table(
        tmp_path / "_errors/event_date=2026-12-04/part-run1-0000.parquet"
    )
    assert table.schema.names == DEAD_LETTER_SCHEMA.names
    assert table.column("error").to_pylist() == ["invalid_json"]


def test_failed_local_write_leaves_nothing(tmp_path):
    final = tmp_path / PARTITION / "part-run1-0000.parquet"
    with pytest.raises(pa.ArrowException):
        write_table_atomically(_events("a"), str(final), compression="no-such-codec")
    assert list((tmp_path / PARTITION).iterdir()) == []
