"""Write partition tables as Parquet files and the run summary as JSON.

Each partition shard becomes one file per run:

    OUTPUT/category=security/event_date=2022-02-28/part-<run id>-0003.parquet
    OUTPUT/_errors/event_date=2026-12-04/part-<run id>-0000.parquet

No reader ever sees a half-written file under a final name. On a local
filesystem the file is written under a hidden name in the same folder and
renamed when complete. On S3, GCS and Azure an object only appears once its
upload completes, so the file is written under its final name directly. Any
failure raises, so a failed write fails the run instead of losing rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.batches import METRICS_NAMESPACE
from transforms.deduplicate import DEAD_LETTER_PREFIX, PartitionKey, run_file_prefix
from transforms.schema import DEAD_LETTER_SCHEMA, EVENT_SCHEMA

DEFAULT_COMPRESSION = "zstd"
_ROW_GROUP_ROWS = 128 * 1024
# Columns whose values are (nearly) all distinct. Dictionary encoding only
# costs time on them before Parquet falls back to plain encoding, and
# min/max statistics of whole lines help no query.
_DISTINCT_COLUMNS = frozenset({"event_id", "raw"})
_NO_STATISTICS_COLUMNS = frozenset({"raw"})


def _parquet_options(table: pa.Table, compression: str) -> dict[str, Any]:
    names = table.column_names
    return {
        "compression": compression,
        "row_group_size": _ROW_GROUP_ROWS,
        "use_dictionary": [name for name in names if name not in _DISTINCT_COLUMNS],
        "write_statistics": [
            name for name in names if name not in _NO_STATISTICS_COLUMNS
        ],
    }


_LOG = logging.getLogger(__name__)


def is_local_path(uri: str) -> bool:
    """Tell whether a URI names the local filesystem."""
    return "://" not in uri or uri.startswith("file://")


def write_table_atomically(
    table: pa.Table, final_path: str, compression: str = DEFAULT_COMPRESSION
) -> None:
    """Write one Parquet file so that it appears complete or not at all."""
    if is_local_path(final_path):
        folder, name = os.path.split(final_path)
        os.makedirs(folder, exist_ok=True)
        temp_path = os.path.join(folder, f".{name}.inprogress")
        try:
            pq.write_table(table, temp_path, **_parquet_options(table, compression))
            os.replace(temp_path, final_path)
        finally:
            if os.path.exists(temp_path):
                os.remove(temp_path)
        return
    # Object stores publish an object only when its upload completes, but
    # closing Beam's upload stream completes the upload even after an error.
    # So the file is built in memory first, and a Parquet error leaves no object.
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_parquet_options(table, compression))
    data = sink.getvalue()
    # NOTE: if the upload of these bytes fails part-way, Beam 2.77 still closes
    # the stream. S3 then raises instead of completing, but Azure (which spools
    # to a local temporary file first) could publish the bytes written so far.
    mime_type = "application/vnd.apache.parquet"
    with FileSystems.create(final_path, mime_type=mime_type) as handle:
        handle.write(data)


def part_file_path(output: str, partition: str, run_id: str, shard: int) -> str:
    """Return the final path of one run's Parquet file in one partition shard."""
    name = f"{run_file_prefix(run_id)}{shard:04d}.parquet"
    return FileSystems.join(output, partition, name)


class _WritePartition(beam.DoFn):
    def __init__(self, output: str, run_id: str, compression: str) -> None:
        self._output = output
        self._run_id = run_id
        self._compression = compression

    def setup(self) -> None:
        self._files = Metrics.counter(METRICS_NAMESPACE, "files_written")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "rows_written")

    def process(
        self, element: tuple[PartitionKey, list[pa.Table], dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        (partition, shard), tables, stats = element
        schema = (
            DEAD_LETTER_SCHEMA
            if partition.startswith(DEAD_LETTER_PREFIX + "/")
            else EVENT_SCHEMA
        )
        tables = [table for table in tables if table.num_rows]
        if tables:
            # One chunk per column writes faster than the many small chunks
            # that the shuffled batches arrive in.
            table = pa.concat_tables(tables).cast(schema).combine_chunks()
            path = part_file_path(self._output, partition, self._run_id, shard)
            write_table_atomically(table, path, self._compression)
            self._files.inc()
            self._rows.inc(table.num_rows)
            stats = dict(stats, files_written=[path])
        yield stats


class WritePartitions(beam.PTransform):
    """Write each partition shard's tables; returns the stats of every shard."""

    def __init__(
        self, output: str, run_id: str, compression: str = DEFAULT_COMPRESSION
    ) -> None:
        super().__init__()
        self._output = output
        self._run_id = run_id
        self._compression = compression

    def expand(self, partitions: beam.PCollection):
        return partitions | "WriteParquetFiles" >> beam.ParDo(
            _WritePartition(self._output, self._run_id, self._compression)
        )


def summary_path(output: str, run_id: str) -> str:
    """Return where the summary of a run is stored."""
    return FileSystems.join(output, "_runs", f"{run_id}.json")


def write_json(path: str, document: dict[str, Any]) -> None:
    """Write a JSON document atomically in the sense of `write_table_atomically`."""
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    if is_local_path(path):
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        temp_path = os.path.join(folder, f".{name}.inprogress")
        with open(temp_path, "wb") as handle:
            handle.write(data)
        os.replace(temp_path, path)
        return
    with FileSystems.create(path, mime_type="application/json") as handle:
        handle.write(data)


def read_json(path: str) -> dict[str, Any]:
    """Read a JSON document from any filesystem."""
    with FileSystems.open(path, mime_type="application/json") as handle:
        return json.loads(handle.read())
