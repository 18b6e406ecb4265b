"""List input objects, watch them for new ones, and write event-time windows.

A listing names each object with its path, size and modification time, as
`FileSystems.match` reports them:

    ListedObject("s3://logs/kav/fluentd-s3-20220228_1.log.gz", 947, 1646063400.0)

Batch runs start from such a listing (`ListedInputs`). The streaming
pipeline polls the patterns and emits each (path, size, mtime) once
(`WatchInputs`). It stamps every event with its FluentD event time and puts
it in a fixed window (`WindowByEventTime`). Each pane of each window becomes
finished Parquet files named by the window start and the pane index
(`WriteWindowedPartitions`):

    category=security/event_date=2022-02-28/
        part-<job id>-20220228T150000Z-p0-0003.parquet
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import FixedWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.batches import METRICS_NAMESPACE, Batch
from transforms.deduplicate import (
    DEAD_LETTER_PREFIX,
    KeyByPartition,
    PartitionKey,
    count_dead_letters,
    decode_rows,
    drop_repeated_blobs,
    partition_category,
    stored_event_ids,
)
from transforms.read import InputFile, SpreadFiles, is_hidden
from transforms.schema import DEAD_LETTER_SCHEMA, EVENT_SCHEMA, TIMESTAMP
from transforms.write import (
    DEFAULT_COMPRESSION,
    part_file_path,
    write_table_atomically,
)

_MICROS = 1_000_000

_LOG = logging.getLogger(__name__)


class ListedObject(NamedTuple):
    """An object found by listing: path, size and modification time."""

    path: str
    size_in_bytes: int
    # Seconds since the epoch; None where a filesystem reports no time.
    last_updated: float | None

    @property
    def version(self) -> str:
        """Return the text that changes when the object's content changes."""
        return f"{self.size_in_bytes}|{self.last_updated!r}"


def list_patterns(
    patterns: Sequence[str],
) -> tuple[list[ListedObject], list[dict[str, Any]]]:
    """List the patterns; returns the objects and one match report per pattern.

    Hidden names (`_runs/`, `_state/`, `.name.inprogress`) are skipped, as
    `MatchInputs` skips them, and a path matched by two patterns is listed
    once. A pattern that fails to list gets a report with its error.
    """
    objects: dict[str, ListedObject] = {}
    reports = []
    for pattern in patterns:
        try:
            result = FileSystems.match([pattern])[0]
        except Exception as error:  # noqa: BLE001 - reported in the run summary
            _LOG.error("Listing input pattern %s failed: %s", pattern, error)
            reports.append({"pattern": pattern, "files": 0, "error": str(error)[:500]})
            continue
        matched = [m for m in result.metadata_list if not is_hidden(m.path, pattern)]
        reports.append({"pattern": pattern, "files": len(matched), "error": None})
        for metadata in matched:
            objects[metadata.path] = ListedObject(
                metadata.path,
                metadata.size_in_bytes,
                getattr(metadata, "last_updated_in_seconds", None),
            )
    return sorted(objects.values()), reports


class ListedInputs(beam.PTransform):
    """Start a pipeline from files listed beforehand.

    Returns (files, match reports) like `MatchInputs`, so the rest of the
    batch pipeline reads exactly the files given here.
    """

    def __init__(
        self,
        files: Sequence[InputFile],
        reports: Sequence[dict[str, Any]],
        workers: int = 1,
    ) -> None:
        super().__init__()
        self._files = [tuple(item) for item in files]
        self._reports = list(reports)
        self._workers = workers

    def expand(self, pipeline: beam.pvalue.PBegin):
        files = (
            pipeline
            | "ListedFiles"
            >> beam.Create(self._files).with_output_types(tuple[str, int])
            | "SpreadFiles" >> SpreadFiles(self._workers)
        )
        reports = pipeline | "ListedMatches" >> beam.Create(self._reports)
        return files, reports


class _ListPatterns(beam.DoFn):
    """On each tick, list every pattern and emit (path, object) pairs."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = list(patterns)

    def process(self, tick: Any) -> Iterator[tuple[str, ListedObject]]:
        objects, reports = list_patterns(self._patterns)
        for report in reports:
            if report["error"]:
                _LOG.warning("Poll skipped pattern %s: %s", report["pattern"], report)
        for item in objects:
            yield item.path, item


class EmitNewObjects(beam.DoFn):
    """Emit an object the first time each (path, size, mtime) is listed.

    The listed version of each path is kept in per-key state, so it survives
    in the runner across polls and worker restarts. Versions recorded by
    earlier incremental runs (`known_versions`) are not emitted again.
    """

    LISTED_VERSION = ReadModifyWriteStateSpec(
        "listed_version", beam.coders.StrUtf8Coder()
    )

    def __init__(
        self, known_versions: Callable[[], set[tuple[str, str]]] | None
    ) -> None:
        self._known_versions = known_versions

    def setup(self) -> None:
        self._known = self._known_versions() if self._known_versions else set()
        self._new = Metrics.counter(METRICS_NAMESPACE, "objects_new")

    def process(
        self,
        element: tuple[str, ListedObject],
        listed_version=beam.DoFn.StateParam(LISTED_VERSION),  # noqa: B008
    ) -> Iterator[InputFile]:
        path, listed = element
        version = listed.version
        if listed_version.read() == version:
            return
        listed_version.write(version)
        if (path, version) in self._known:
            return
        self._new.inc()
        yield InputFile(path, listed.size_in_bytes)


class WatchInputs(beam.PTransform):
    """Poll the patterns every `poll_interval` seconds; emit each new object once.

    Built on `PeriodicImpulse`, so it needs a runner that honours the delay
    of a self-checkpointing splittable DoFn (Dataflow, Flink). Elements carry
    the poll time as their timestamp.
    """

    def __init__(
        self,
        patterns: Sequence[str],
        poll_interval: float,
        known_versions: Callable[[], set[tuple[str, str]]] | None = None,
    ) -> None:
        super().__init__()
        self._patterns = list(patterns)
        self._poll_interval = poll_interval
        self._known_versions = known_versions

    def expand(self, pipeline: beam.pvalue.PBegin):
        # PeriodicImpulse's default start is fixed when its module is imported,
        # so the start is set here, when the graph is built.
        return (
            pipeline
            | "PollTicks"
            >> PeriodicImpulse(
                start_timestamp=Timestamp.of(time.time()),
                fire_interval=self._poll_interval,
            )
            | "ListInputPatterns" >> beam.ParDo(_ListPatterns(self._patterns))
            | "EmitNewObjects" >> beam.ParDo(EmitNewObjects(self._known_versions))
        )


def window_start(micros: int, window_micros: int) -> int:
    """Return the start, in microseconds, of the fixed window holding a time."""
    return micros - micros % window_micros


def split_by_window(
    batch: Batch, window_micros: int, floor_micros: int
) -> tuple[dict[int, Batch], int]:
    """Group a batch's records by event-time window.

    A record older than `floor_micros` is placed at the floor instead, so it
    joins a window that is still open. Returns the records by window start
    and the count of records moved to the floor.
    """
    windows: dict[int, Batch] = defaultdict(list)
    moved = 0
    for record in batch:
        stamp = record["event_time"]
        if stamp < floor_micros:
            stamp = floor_micros
            moved += 1
        windows[window_start(stamp, window_micros)].append(record)
    return dict(windows), moved


class _StampByEventTime(beam.DoFn):
    def __init__(self, window_seconds: int, allowed_lateness: int) -> None:
        self._window_micros = window_seconds * _MICROS
        self._lateness_micros = allowed_lateness * _MICROS

    def process(
        self, batch: Batch, timestamp=beam.DoFn.TimestampParam
    ) -> Iterator[TimestampedValue]:
        # The input's timestamp is the poll time, which the watermark trails.
        # An event older than that minus the allowed lateness would be dropped
        # by the window's GroupByKey, so it is stamped with the oldest time
        # that is still accepted and is written with the pane open then.
        floor = timestamp.micros - self._lateness_micros
        windows, _ = split_by_window(batch, self._window_micros, floor)
        for records in windows.values():
            stamp = max(floor, min(record["event_time"] for record in records))
            yield TimestampedValue(records, Timestamp(micros=stamp))


def event_time_windows(window_seconds: int, allowed_lateness: int) -> beam.WindowInto:
    """Return fixed windows that fire at the watermark and once per late batch.

    Panes are discarding, so every pane holds only events not written by an
    earlier pane of its window.
    """
    return beam.WindowInto(
        FixedWindows(window_seconds),
        trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
        accumulation_mode=trigger.AccumulationMode.DISCARDING,
        allowed_lateness=allowed_lateness,
    )


class WindowByEventTime(beam.PTransform):
    """Stamp record batches with their FluentD event time and window them.

    Takes any PCollection of record batches with `event_time` (microseconds)
    whose element timestamps the watermark trails, such as the poll time.
    Events older than the element timestamp minus `allowed_lateness` are moved
    into the oldest window still open instead of being dropped, and
    `WriteWindowedPartitions` counts them as `late_events_moved`.
    """

    def __init__(self, window_seconds: int, allowed_lateness: int) -> None:
        super().__init__()
        self._window_seconds = window_seconds
        self._allowed_lateness = allowed_lateness

    def expand(self, batches: beam.PCollection):
        return (
            batches
            | "StampByEventTime"
            >> beam.ParDo(
                _StampByEventTime(self._window_seconds, self._allowed_lateness)
            )
            | "EventTimeWindows"
            >> event_time_windows(self._window_seconds, self._allowed_lateness)
        )


def pane_run_id(job_id: str, window_start_micros: int, pane_index: int) -> str:
    """Name one pane of one window of a streaming job, for its file names.

    >>> pane_run_id("job", 1646060400_000000, 0)
    'job-20220228T150000Z-p0'
    """
    start = datetime.datetime.fromtimestamp(
        window_start_micros / _MICROS, datetime.timezone.utc
    )
    return f"{job_id}-{start.strftime('%Y%m%dT%H%M%SZ')}-p{pane_index}"


class _DeduplicateAndWritePane(beam.DoFn):
    """Drop repeated and stored events of one pane and write its files."""

    def __init__(self, output: str, job_id: str, compression: str) -> None:
        self._output = output
        self._job_id = job_id
        self._compression = compression

    def setup(self) -> None:
        self._repeated = Metrics.counter(METRICS_NAMESPACE, "duplicates_dropped")
        self._files = Metrics.counter(METRICS_NAMESPACE, "files_written")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "rows_written")
        self._moved = Metrics.counter(METRICS_NAMESPACE, "late_events_moved")

    def _write(self, table: pa.Table, partition: str, shard: int, pane_id: str) -> str:
        path = part_file_path(self._output, partition, pane_id, shard)
        write_table_atomically(table, path, self._compression)
        self._files.inc()
        self._rows.inc(table.num_rows)
        return path

    def process(
        self,
        element: tuple[PartitionKey, Iterable[bytes]],
        window=beam.DoFn.WindowParam,
        pane=beam.DoFn.PaneInfoParam,
    ) -> Iterator[dict[str, Any]]:
        (partition, shard), blobs = element
        pane_id = pane_run_id(self._job_id, window.start.micros, pane.index)
        stats: dict[str, Any] = {
            "window_start": window.start.micros,
            "pane": pane.index,
        }

        if partition.startswith(DEAD_LETTER_PREFIX + "/"):
            tables = [decode_rows(blob) for blob in blobs]
            table = pa.concat_tables(tables).cast(DEAD_LETTER_SCHEMA)
            stats["dead_letters"] = count_dead_letters([table])
            stats["files_written"] = [self._write(table, partition, shard, pane_id)]
            yield stats
            return

        # Files of this pane are skipped, so a retried bundle rewrites them;
        # every earlier pane and window counts as stored.
        # NOTE: two panes of different windows that write one partition at the
        # same time on different workers do not see each other's files, so a
        # copy moved to a later window can then be stored twice.
        stored = stored_event_ids(FileSystems.join(self._output, partition), pane_id)
        # The same bounded-memory dedup as the batch job's DeduplicatePartitions.
        kept, repeated, already_stored = drop_repeated_blobs(blobs, stored)
        if repeated or already_stored:
            self._repeated.inc(repeated + already_stored)
        category = partition_category(partition)
        stats["events_written"] = {category: kept.num_rows}
        stats["duplicates_dropped"] = repeated + already_stored
        stats["duplicates_already_stored"] = already_stored

        # Events older than their window's start came beyond the allowed
        # lateness and were moved to this window by WindowByEventTime.
        moved = pc.sum(
            pc.less(
                kept.column("event_time"), pa.scalar(window.start.micros, TIMESTAMP)
            )
        ).as_py()
        stats["late_events_moved"] = moved or 0
        if moved:
            self._moved.inc(moved)

        stats["files_written"] = []
        if kept.num_rows:
            table = kept.cast(EVENT_SCHEMA)
            stats["files_written"] = [self._write(table, partition, shard, pane_id)]
        yield stats


class WriteWindowedPartitions(beam.PTransform):
    """Key windowed events and dead letters by partition, dedup, write per pane.

    Takes (event batches, dead-letter batches), both already windowed.
    Returns one stats document per (window, pane, partition, shard) with the
    window start (microseconds), the pane index and the counts.
    """

    def __init__(
        self,
        output: str,
        job_id: str,
        job_date: str,
        shards: int,
        compression: str = DEFAULT_COMPRESSION,
    ) -> None:
        super().__init__()
        self._output = output
        self._job_id = job_id
        self._job_date = job_date
        self._shards = shards
        self._compression = compression

    def expand(self, inputs):
        # NOTE: dead letters without an event time (unreadable files) go to the
        # `_errors/event_date=` folder of the job's start date, however long
        # the job runs, because KeyByPartition takes one fixed date.
        keyed = inputs | "KeyByPartition" >> KeyByPartition(
            self._shards, self._job_id, self._job_date
        )
        return (
            keyed
            | "GroupByWindowPartition" >> beam.GroupByKey()
            | "DeduplicateAndWritePane"
            >> beam.ParDo(
                _DeduplicateAndWritePane(self._output, self._job_id, self._compression)
            )
        )
