"""Group events by output partition and drop repeated events.

FluentD retries re-upload a whole chunk as a new object, so one event can be
read from several files, in this run or in an earlier one. Each event is
keyed by its output partition and a shard of its `event_id`, so every copy of
an event meets the others under one key:

    ("category=security/event_date=2022-02-28", 3) -> Arrow batches of rows

Within a key the first copy is kept, and ids already stored in that
partition by earlier runs are dropped too (only the `event_id` column of
the stored files is read). Batches travel through the shuffle as compressed
Arrow IPC streams, one element per batch and partition, so the shuffle moves
a few large byte strings instead of one pickled dict per event.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.batches import (
    INTERNAL_ERROR,
    METRICS_NAMESPACE,
    Batch,
    BatchCoder,
    dead_letter,
)
from transforms.schema import CATEGORIES, DEAD_LETTER_SCHEMA, EVENT_SCHEMA

DEAD_LETTER_PREFIX = "_errors"
# A keyed batch travels as one Arrow IPC stream compressed as a whole with
# zstd, behind an 8-byte little-endian count of its uncompressed bytes.
# Arrow's own IPC compression compresses each column buffer on its own,
# which for the small groups of one batch (a few dozen rows in each of 50
# columns) cost three times more CPU than building the rows.
_BLOB_CODEC = pa.Codec("zstd", compression_level=1)
# pyarrow's default IPC options, passed explicitly because without them pyarrow
# reads two environment variables for every stream it opens.
_IPC_WRITE_OPTIONS = pa.ipc.IpcWriteOptions()
_IPC_READ_OPTIONS = pa.ipc.IpcReadOptions()
_SIZE_BYTES = 8
_EPOCH = datetime.date(1970, 1, 1)
_MICROS_PER_DAY = 86_400_000_000

_LOG = logging.getLogger(__name__)

PartitionKey = tuple[str, int]


def event_date(event_time: int) -> str:
    """Return the UTC date `YYYY-MM-DD` of a time in microseconds."""
    days = event_time // _MICROS_PER_DAY
    return (_EPOCH + datetime.timedelta(days=days)).isoformat()


def event_partition(category: str, event_time: int) -> str:
    """Build the relative folder of an event; only validated values go in."""
    if category not in CATEGORIES:
        raise ValueError(f"category {category!r} is not one of {CATEGORIES}")
    return f"category={category}/event_date={event_date(event_time)}"


def dead_letter_partition(event_time: int | None, run_date: str) -> str:
    """Build the folder of a dead letter: its event date, else the run's date."""
    date = run_date if event_time is None else event_date(event_time)
    return f"{DEAD_LETTER_PREFIX}/event_date={date}"


def shard_of(event_id: str, shards: int) -> int:
    """Map an event id (hex) to one of `shards` shards."""
    return int(event_id[:8], 16) % shards


def rows_to_batch(rows: Batch, schema: pa.Schema) -> pa.RecordBatch:
    """Convert rows (dicts) to an Arrow record batch; missing keys are null.

    Keys that are not columns of the schema are ignored.
    """
    # pyarrow converts the dicts into one struct array in a single C pass over
    # the rows. On benchmarks.synthetic data this took about a fifth less CPU
    # than gathering each column into a Python list and converting each list.
    rows_array = pa.array(rows, type=_row_type(schema))
    return pa.RecordBatch.from_arrays(rows_array.flatten(), schema=schema)


@functools.lru_cache(maxsize=8)
def _row_type(schema: pa.Schema) -> pa.StructType:
    return pa.struct(list(schema))


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """Encode a record batch as a zstd-compressed Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_IPC_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    stream = sink.getvalue()
    compressed = _BLOB_CODEC.compress(stream, asbytes=True)
    return stream.size.to_bytes(_SIZE_BYTES, "little") + compressed


def encode_rows(rows: Batch, schema: pa.Schema) -> bytes:
    """Encode rows (dicts) as a zstd-compressed Arrow IPC stream."""
    return encode_batch(rows_to_batch(rows, schema))


# A keyed batch as it crosses the shuffle: the encoded bytes themselves, or
# on the DirectRunner (path, offset, size) of those bytes in a local file.
Blob = bytes | tuple[str, int, int]


class BlobSpill:
    """Append encoded batches to one local file per bundle.

    The DirectRunner keeps everything that crosses a shuffle in its own
    memory and copies it through one Python process. With a folder, the
    shuffle moves (path, offset, size) references instead, and the bytes
    wait in the folder. One file per bundle, because creating a file costs
    far more than appending to one. Without a folder, `store` returns the
    bytes unchanged.
    """

    def __init__(self, folder: str | None) -> None:
        self._folder = folder
        self._handle: Any = None
        self._path = ""

    def store(self, blob: bytes) -> Blob:
        if self._folder is None:
            return blob
        if self._handle is None:
            self._path = os.path.join(self._folder, f"{uuid.uuid4().hex}.blobs")
            self._handle = open(self._path, "wb")  # noqa: SIM115 - closed in close()
        offset = self._handle.tell()
        self._handle.write(blob)
        return (self._path, offset, len(blob))

    def close(self) -> None:
        """Flush and close the bundle's file; a later `store` opens a new one."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def load_blob(blob: Blob) -> bytes:
    """Return the bytes of a blob that `BlobSpill.store` returned."""
    if isinstance(blob, bytes):
        return blob
    path, offset, size = blob
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise OSError(f"shuffle file {path} ends before byte {offset + size}")
    return data


def decode_rows(blob: Blob) -> pa.Table:
    """Decode an Arrow IPC stream made by `encode_batch` or `encode_rows`."""
    return _decode_sized(blob)[0]


def _decode_sized(blob: Blob) -> tuple[pa.Table, int]:
    """Decode a blob and return its table and the size of its Arrow IPC stream."""
    data = load_blob(blob)
    size = int.from_bytes(data[:_SIZE_BYTES], "little")
    stream = _BLOB_CODEC.decompress(
        memoryview(data)[_SIZE_BYTES:], decompressed_size=size
    )
    return pa.ipc.open_stream(stream, options=_IPC_READ_OPTIONS).read_all(), size


# Errors pyarrow raises for a value that does not fit its column.
_CONVERSION_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)


def key_events(
    batch: Batch, shards: int, run_id: str, run_date: str
) -> Iterator[tuple[PartitionKey, bytes]]:
    """Split a batch of events by partition and shard and encode each group.

    An event that does not fit its Arrow column becomes a dead letter, keyed
    by its date under `_errors/`.
    """
    # Events are grouped by (category, day, shard) and the folder name is
    # built once per group, not once per event.
    by_day: dict[tuple[str, int, int], Batch] = defaultdict(list)
    for record in batch:
        day = record["event_time"] // _MICROS_PER_DAY
        shard = shard_of(record["event_id"], shards)
        by_day[(record["category"], day, shard)].append(record)
    groups: dict[PartitionKey, Batch] = {
        (event_partition(category, rows[0]["event_time"]), shard): rows
        for (category, _day, shard), rows in by_day.items()
    }
    # Rows in group order convert once, and each group is then a zero-copy
    # slice of the converted batch.
    ordered = list(chain.from_iterable(groups.values()))
    try:
        converted = rows_to_batch(ordered, EVENT_SCHEMA)
    except _CONVERSION_ERRORS:
        for key, rows in groups.items():
            yield from _encode_each(key, rows, run_id, run_date)
        return
    start = 0
    for key, rows in groups.items():
        yield key, encode_batch(converted.slice(start, len(rows)))
        start += len(rows)


def _encode_each(
    key: PartitionKey, rows: Batch, run_id: str, run_date: str
) -> Iterator[tuple[PartitionKey, bytes]]:
    """Encode rows one by one; a row that fails becomes a dead letter."""
    kept: Batch = []
    letters: dict[PartitionKey, Batch] = defaultdict(list)
    for row in rows:
        try:
            encode_rows([row], EVENT_SCHEMA)
        except _CONVERSION_ERRORS as error:
            detail = f"converting the event to Arrow failed: {type(error).__name__}: "
            letter = dead_letter(row, INTERNAL_ERROR, (detail + str(error))[:500])
            letter["run_id"] = run_id
            partition = dead_letter_partition(row.get("event_time"), run_date)
            letters[(partition, 0)].append(letter)
        else:
            kept.append(row)
    if kept:
        yield key, encode_rows(kept, EVENT_SCHEMA)
    for letter_key, letter_rows in letters.items():
        yield letter_key, encode_rows(letter_rows, DEAD_LETTER_SCHEMA)


class _SpillingDoFn(beam.DoFn):
    """A DoFn whose output blobs go through a `BlobSpill` of `folder`."""

    def __init__(self, folder: str | None) -> None:
        self._folder = folder

    def setup(self) -> None:
        self._spill = BlobSpill(self._folder)

    def finish_bundle(self) -> None:
        self._spill.close()

    def teardown(self) -> None:
        self._spill.close()


class _KeyEvents(_SpillingDoFn):
    def __init__(
        self, shards: int, run_id: str, run_date: str, folder: str | None
    ) -> None:
        super().__init__(folder)
        self._shards = shards
        self._run_id = run_id
        self._run_date = run_date

    def process(self, batch: Batch) -> Iterator[tuple[PartitionKey, Blob]]:
        for key, blob in key_events(batch, self._shards, self._run_id, self._run_date):
            yield key, self._spill.store(blob)


class _KeyDeadLetters(_SpillingDoFn):
    def __init__(self, run_id: str, run_date: str, folder: str | None) -> None:
        super().__init__(folder)
        self._run_id = run_id
        self._run_date = run_date

    def process(self, batch: Batch) -> Iterator[tuple[PartitionKey, Blob]]:
        groups: dict[PartitionKey, Batch] = defaultdict(list)
        for letter in batch:
            letter["run_id"] = self._run_id
            partition = dead_letter_partition(letter.get("event_time"), self._run_date)
            groups[(partition, 0)].append(letter)
        for key, rows in groups.items():
            yield key, self._spill.store(encode_rows(rows, DEAD_LETTER_SCHEMA))


class KeyByPartition(beam.PTransform):
    """Key event batches and dead-letter batches by output partition and shard.

    With `shuffle_folder` (a local folder, for the DirectRunner only) the
    encoded batches are appended to files there (`BlobSpill`) and the
    shuffle moves references to them.
    """

    def __init__(
        self,
        shards: int,
        run_id: str,
        run_date: str,
        shuffle_folder: str | None = None,
    ) -> None:
        super().__init__()
        self._shards = shards
        self._run_id = run_id
        self._run_date = run_date
        self._folder = shuffle_folder

    def expand(self, inputs):
        events, dead_letters = inputs
        keyed_events = events | "KeyEventsByPartition" >> beam.ParDo(
            _KeyEvents(self._shards, self._run_id, self._run_date, self._folder)
        )
        keyed_letters = dead_letters | "KeyDeadLettersByDate" >> beam.ParDo(
            _KeyDeadLetters(self._run_id, self._run_date, self._folder)
        )
        return (keyed_events, keyed_letters) | "MergeKeyedBatches" >> beam.Flatten()


def partition_category(partition: str) -> str:
    """Return the category of an event folder `category=<c>/event_date=<d>`."""
    return partition.split("/", 1)[0].split("=", 1)[1]


def count_dead_letters(tables: list[pa.Table]) -> dict[str, int]:
    """Count dead-letter rows by their `error` code."""
    codes = pc.value_counts(
        pa.chunked_array([table.column("error") for table in tables])
    ).to_pylist()
    return {item["values"]: item["counts"] for item in codes}


def run_file_prefix(run_id: str) -> str:
    """Return the name prefix of the Parquet files that one run writes."""
    return f"part-{run_id}-"


def stored_event_ids(partition_uri: str, run_id: str) -> set[str]:
    """Read the event ids that earlier runs stored in one partition folder.

    Files of the current run are skipped, so a retried bundle does not take
    its own earlier attempt for stored events.
    """
    pattern = FileSystems.join(partition_uri, "*.parquet")
    # A glob over a folder that does not exist yet matches nothing on every
    # filesystem. A listing that fails raises, so that a store that cannot be
    # read fails the run instead of letting stored events be written again.
    matches = FileSystems.match([pattern])[0].metadata_list
    own_prefix = run_file_prefix(run_id)
    ids: set[str] = set()
    for metadata in matches:
        name = metadata.path.rsplit("/", 1)[-1]
        if name.startswith(own_prefix) or name.startswith("."):
            continue
        with FileSystems.open(metadata.path) as handle:
            table = pq.read_table(handle, columns=["event_id"])
        ids.update(table.column("event_id").to_pylist())
    return ids


def drop_repeated_events(
    tables: list[pa.Table], stored_ids: set[str]
) -> tuple[pa.Table | None, int, int]:
    """Keep one copy of each event id and drop ids stored before.

    Of several copies, the one from the first file and line in sort order is
    kept, so reruns pick the same `source_uri` whatever order files arrive in.
    Kept rows stay in input order.

    Returns the kept rows (None for no input), the count of copies repeated
    within the input, and the count of events that were already stored.
    """
    if not tables:
        return None, 0, 0
    # One chunk per column: the Parquet writer takes it faster than the many
    # small chunks of the decoded batches, and filtering it copies less.
    table = pa.concat_tables(tables).combine_chunks()
    if not table.num_rows:
        return table, 0, 0
    ids = table.column("event_id")
    counts = pc.value_counts(ids)
    repeating = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if not len(repeating):
        # No id repeats, so there is no copy to choose.
        unique = table
    else:
        unique = table.filter(_first_copies(table, pc.is_in(ids, repeating)))
    repeated = table.num_rows - unique.num_rows
    already_stored = 0
    if stored_ids:
        stored = pa.array(list(stored_ids), pa.string())
        known = pc.is_in(unique.column("event_id"), value_set=stored)
        already_stored = pc.sum(known).as_py() or 0
        # Every copy of a stored event counts as stored, not as repeated.
        copies = pc.is_in(ids, value_set=stored)
        stored_copies = pc.sum(copies).as_py() or 0
        repeated -= stored_copies - already_stored
        already_stored = stored_copies
        unique = unique.filter(pc.invert(known))
    return unique, repeated, already_stored


def _first_copies(table: pa.Table, repeats: pa.ChunkedArray) -> pa.Array:
    """Return a mask of the rows to keep: every row whose id occurs once, and
    of each repeated id the copy first in (source_uri, source_line) order.

    Only the rows of repeated ids (about 1 % in FluentD output) are sorted,
    and the kept rows stay in input order.
    """
    rows = pc.indices_nonzero(repeats)
    copies = table.select(["event_id", "source_uri", "source_line"]).take(rows)
    order = pc.sort_indices(
        copies,
        sort_keys=[
            ("event_id", "ascending"),
            ("source_uri", "ascending"),
            ("source_line", "ascending"),
        ],
    )
    sorted_ids = copies.column("event_id").take(order).combine_chunks()
    first = pc.not_equal(sorted_ids.slice(1), sorted_ids.slice(0, len(sorted_ids) - 1))
    is_first = pa.concat_arrays([pa.array([True]), first.fill_null(True)])
    winners = rows.take(order.filter(is_first))
    everything = pa.array(range(table.num_rows), pa.uint64())
    return pc.or_(pc.invert(repeats), pc.is_in(everything, winners))


# Decoded rows of one partition shard are reduced to one copy per event id
# whenever they pass this size, so many copies of a long event (a gzip bomb
# of one line repeated) are never decoded all at once.
FOLD_BYTES = 128 * 1024 * 1024


def drop_repeated_blobs(
    blobs: Iterable[Blob], stored_ids: set[str]
) -> tuple[pa.Table | None, int, int]:
    """Decode Arrow IPC blobs and apply `drop_repeated_events` in bounded steps.

    Returns the same rows and counts as `drop_repeated_events` over all the
    decoded tables, because keeping the first copy in sort order gives the
    same row whichever steps the copies meet in.
    """
    kept: list[pa.Table] = []
    pending: list[pa.Table] = []
    pending_bytes = 0
    repeated = already_stored = 0
    for blob in blobs:
        # The stream's size is the table's size estimate, because
        # `Table.nbytes` sums every buffer and took a third as long as decoding.
        table, size = _decode_sized(blob)
        pending.append(table)
        pending_bytes += size
        if pending_bytes >= FOLD_BYTES:
            folded, step_repeated, step_stored = drop_repeated_events(
                kept + pending, stored_ids
            )
            kept = [folded] if folded is not None else []
            repeated += step_repeated
            already_stored += step_stored
            pending, pending_bytes = [], 0
    if pending or not kept:
        folded, step_repeated, step_stored = drop_repeated_events(
            kept + pending, stored_ids
        )
        kept = [folded] if folded is not None else []
        repeated += step_repeated
        already_stored += step_stored
    return (kept[0] if kept else None), repeated, already_stored


class KeptPartition(tuple):
    """Type hint of (partition key, kept Arrow tables, stats) elements.

    It selects `KeptPartitionCoder`. Steps emit plain tuples.
    """


class KeptPartitionCoder(BatchCoder):
    """Coder of kept partition tables with a size estimate that encodes nothing.

    Beam estimates the size of sampled elements by encoding them with the
    PCollection's coder, which for the default coder pickles every table of
    a partition shard. Here the estimate is the tables' Arrow size. Like
    `BatchCoder`, it pickles an element that must cross a process.
    """

    def estimate_size(self, value: tuple) -> int:
        _key, tables, _stats = value
        return sum(table.nbytes for table in tables)

    def to_type_hint(self):
        return KeptPartition


beam.coders.registry.register_coder(KeptPartition, KeptPartitionCoder)


class _DropRepeats(beam.DoFn):
    def __init__(self, output: str, run_id: str) -> None:
        self._output = output
        self._run_id = run_id

    def setup(self) -> None:
        self._repeated = Metrics.counter(METRICS_NAMESPACE, "duplicates_dropped")

    def process(
        self, element: tuple[PartitionKey, Iterable[Blob]]
    ) -> Iterator[tuple[PartitionKey, list[pa.Table], dict[str, Any]]]:
        (partition, shard), blobs = element
        if partition.startswith(DEAD_LETTER_PREFIX + "/"):
            # NOTE: every dead letter of one date is decoded at once, with its
            # whole `raw` line, so a flood of long rejected lines (up to
            # --max_line_bytes each) is held in memory together.
            tables = [decode_rows(blob) for blob in blobs]
            stats = {"dead_letters": count_dead_letters(tables)}
            yield (partition, shard), tables, stats
            return
        stored = stored_event_ids(
            FileSystems.join(self._output, partition), self._run_id
        )
        kept, repeated, already_stored = drop_repeated_blobs(blobs, stored)
        if repeated or already_stored:
            self._repeated.inc(repeated + already_stored)
        category = partition_category(partition)
        written = kept.num_rows if kept is not None else 0
        if written:
            Metrics.counter(METRICS_NAMESPACE, f"events_written_{category}").inc(
                written
            )
        stats = {
            "events_written": {category: written},
            "duplicates_dropped": repeated + already_stored,
            "duplicates_already_stored": already_stored,
        }
        yield (partition, shard), [kept] if kept is not None else [], stats


class DeduplicatePartitions(beam.PTransform):
    """Group keyed batches and drop repeated and already stored events.

    Returns (partition key, kept Arrow tables, stats) per partition shard.
    """

    def __init__(self, output: str, run_id: str) -> None:
        super().__init__()
        self._output = output
        self._run_id = run_id

    def expand(self, keyed: beam.PCollection):
        return (
            keyed
            | "GroupByPartition" >> beam.GroupByKey()
            | "DropRepeatedEvents"
            >> beam.ParDo(_DropRepeats(self._output, self._run_id)).with_output_types(
                KeptPartition
            )
        )
