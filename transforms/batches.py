"""Batches of line records and the DoFn that applies one step to a batch.

Beam charges a few microseconds for every element that crosses a step, so the
pipeline moves lists of records (one dict per input line) instead of single
lines. A record starts as

    {"source_uri": "s3://logs/kav/20220228_0.log", "source_line": 1,
     "raw": "2022-02-28T15:48:55+00:00\\tkav_logs.user.crit\\t{...}"}

and each step adds the columns it computes. A batch has exactly one consumer
in the pipeline, which owns it and may add keys to its records. No step
keeps a reference to a batch that it has emitted.
"""

from __future__ import annotations

import gc
import logging
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.errors import LineRejected

Record = dict[str, Any]
Batch = list[Record]

DEAD_LETTERS = "dead_letters"
METRICS_NAMESPACE = "kav_pipeline"

# Dead-letter reason for an unexpected exception inside a step: the line is
# kept with the exception's type and message so that no input is lost.
INTERNAL_ERROR = "internal_error"

# Allocations between two collections of the youngest generation of Python's
# cyclic garbage collector. The default of 700 makes it scan every few
# records, because each record allocates dozens of containers, while the
# records themselves are freed by reference counting. docs/benchmarks.md
# shows the effect of this value on a whole run.
GC_YOUNG_THRESHOLD = 100_000

_LOG = logging.getLogger(__name__)


def relax_garbage_collector() -> None:
    """Raise the young-generation threshold of this process's garbage collector.

    Steps call it from `DoFn.setup`, so it applies in every worker process.
    It never lowers a threshold that is already higher.
    """
    young, middle, old = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class RecordBatch(list):
    """Type hint of a PCollection of batches, which selects `BatchCoder`.

    Steps emit plain lists; the class exists only so that Beam's coder
    registry maps batch PCollections to `BatchCoder`.
    """


class BatchCoder(beam.coders.Coder):
    """Coder of record batches with a size estimate that reads no record.

    Beam estimates the byte size of sampled elements on every step's output,
    which for Beam's default coder walks every value of every record of a
    batch. Here the estimate is the batch length times a typical record size,
    so it costs nothing. Batches cross a process boundary only where a runner
    does not fuse two steps; they are then pickled.
    """

    # Estimate of one encoded record in bytes: a line of a KSC export is
    # about 1 KiB and the parsed columns roughly double it.
    RECORD_BYTES_ESTIMATE = 2048

    def encode(self, value: Batch) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Batch:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: Batch) -> int:
        return len(value) * self.RECORD_BYTES_ESTIMATE

    def to_type_hint(self):
        return RecordBatch


beam.coders.registry.register_coder(RecordBatch, BatchCoder)


def dead_letter(record: Record, code: str, detail: str) -> Record:
    """Build the dead-letter record for an input line that was rejected."""
    return {
        "source_uri": record.get("source_uri"),
        "source_line": record.get("source_line"),
        "error": code,
        "detail": detail,
        "raw": record.get("raw"),
        "event_time": record.get("event_time"),
    }


class ApplyToBatch(beam.DoFn):
    """Apply `step` to every record of a batch, routing rejected lines.

    `step(record)` adds columns to the record in place, or raises
    `LineRejected` to send the line to the dead-letter output. Any other
    exception is a defect in the step: the line becomes an `internal_error`
    dead letter with the exception text, and a counter shows it.
    """

    def __init__(self, step_name: str, step: Callable[[Record], None]) -> None:
        self._step_name = step_name
        self._step = step
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        relax_garbage_collector()

    def _count(self, name: str, value: int) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = Metrics.counter(METRICS_NAMESPACE, name)
            self._counters[name] = counter
        counter.inc(value)

    def process(self, batch: Batch) -> Iterator[Any]:
        kept: Batch = []
        rejected: Batch = []
        step = self._step
        for record in batch:
            try:
                step(record)
            except LineRejected as error:
                rejected.append(dead_letter(record, error.code, error.detail))
                self._count(f"dead_letter_{error.code}", 1)
            except Exception as error:  # noqa: BLE001 - a defect must not lose the line
                detail = f"{self._step_name} failed: {type(error).__name__}: {error}"
                rejected.append(dead_letter(record, INTERNAL_ERROR, detail[:500]))
                self._count(f"dead_letter_{INTERNAL_ERROR}", 1)
                _LOG.warning(
                    "%s raised on %s line %s: %r",
                    self._step_name,
                    record.get("source_uri"),
                    record.get("source_line"),
                    error,
                )
            else:
                kept.append(record)
        if kept:
            yield kept
        if rejected:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, rejected)


def apply_step(
    pcoll: beam.PCollection, label: str, step: Callable[[Record], None]
) -> tuple[beam.PCollection, beam.PCollection]:
    """Apply a record step to a PCollection of batches.

    Returns the batches of kept records and the batches of dead letters.
    """
    outputs = pcoll | label >> beam.ParDo(ApplyToBatch(label, step)).with_output_types(
        RecordBatch
    ).with_outputs(DEAD_LETTERS, main="kept")
    return outputs.kept, outputs[DEAD_LETTERS]
