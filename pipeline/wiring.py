"""Wire the steps of the batch job into one Beam pipeline.

    MatchInputs -> ReadLines -> SplitLines -> DecodePayload -> ParseExtradata
      -> RejectForeignLines -> ParseMessageBody -> Normalize -> Classify
      -> KeyByPartition -> DeduplicatePartitions -> WritePartitions
      -> WriteRunSummary

Dead letters of every step join the events at KeyByPartition and are written
under `_errors/`. Stats of the read and write steps are merged into the run
summary under `_runs/`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

from pipeline.options import Settings
from pipeline.summary import MergeStats, finish_summary
from transforms.classify import Classify
from transforms.decode_payload import DecodePayload
from transforms.deduplicate import DeduplicatePartitions, KeyByPartition
from transforms.foreign import RejectForeignLines
from transforms.message_body import ParseMessageBody
from transforms.normalize import Normalize
from transforms.read import InputFile, MatchInputs, ReadLines
from transforms.split_lines import SplitLines
from transforms.structured_data import ParseExtradata
from transforms.watch import ListedInputs
from transforms.write import WritePartitions, summary_path, write_json


def summary_header(settings: Settings) -> dict[str, Any]:
    """Return the fields of the run summary that are known before the run."""
    return {
        "run_id": settings.run_id,
        "started_at": settings.started_at,
        "output": settings.output,
        "patterns": list(settings.inputs),
    }


class _WriteSummary(beam.DoFn):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def process(self, stats: dict[str, Any]) -> Iterator[dict[str, Any]]:
        summary = finish_summary(stats, summary_header(self._settings))
        summary["finished_at"] = datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        write_json(summary_path(self._settings.output, self._settings.run_id), summary)
        yield summary


class WriteRunSummary(beam.PTransform):
    """Merge every stats document into the run summary and store it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, stats: beam.PCollection):
        return (
            stats
            | "MergeStats" >> beam.CombineGlobally(MergeStats())
            | "StoreSummary" >> beam.ParDo(_WriteSummary(self._settings))
        )


def direct_workers(options: PipelineOptions) -> int:
    """Return how many processes or threads the DirectRunner runs bundles on.

    It is 1 for in_memory mode and for other runners, which balance work
    themselves.
    """
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode not in ("multi_processing", "multi_threading"):
        return 1
    return direct.direct_num_workers or os.cpu_count() or 1


def runs_locally(options: PipelineOptions) -> bool:
    """Tell whether the pipeline runs on the DirectRunner, in this machine."""
    runner = options.view_as(StandardOptions).runner
    return runner is None or "direct" in str(runner).lower()


# Shuffle folders of the runs in progress in this process, so that a process
# that must end at once (a worker died, SIGTERM) can still remove them.
_ACTIVE_SHUFFLE_FOLDERS: set[str] = set()


def _remove_shuffle_folder(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    _ACTIVE_SHUFFLE_FOLDERS.discard(folder)


def remove_shuffle_folders() -> None:
    """Remove the shuffle folders of every run still in progress here."""
    for folder in list(_ACTIVE_SHUFFLE_FOLDERS):
        _remove_shuffle_folder(folder)


@contextlib.contextmanager
def local_shuffle_folder(
    options: PipelineOptions, settings: Settings
) -> Iterator[str | None]:
    """Make a temporary folder for the shuffle of a DirectRunner run.

    Yields None on other runners, whose shuffle service keeps data on their
    workers' disks. The folder lies under `--shuffle_dir` (by default the
    system's temporary folder) and is removed when the run ends, however it
    ends. Its name starts with `_`, so an input pattern that covers it skips
    it like the job's other own files.
    """
    if not runs_locally(options):
        yield None
        return
    # NOTE: a run that is killed (SIGKILL) leaves its folder behind; the
    # name starts with _kav-shuffle- and the run id.
    folder = tempfile.mkdtemp(
        prefix=f"_kav-shuffle-{settings.run_id}-", dir=settings.shuffle_dir
    )
    _ACTIVE_SHUFFLE_FOLDERS.add(folder)
    try:
        yield folder
    finally:
        _remove_shuffle_folder(folder)


def _match_stats(report: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": [report]}


def parse_lines(lines: beam.PCollection) -> tuple[beam.PCollection, list]:
    """Apply the parsing steps to line batches; returns (events, dead letters)."""
    dead_letters = []
    records = lines
    for label, step in (
        ("SplitLines", SplitLines()),
        ("DecodePayload", DecodePayload()),
        ("ParseExtradata", ParseExtradata()),
        ("RejectForeignLines", RejectForeignLines()),
        ("ParseMessageBody", ParseMessageBody()),
        ("Normalize", Normalize()),
        ("Classify", Classify()),
    ):
        records, rejected = records | label >> step
        dead_letters.append(rejected)
    return records, dead_letters


def build_pipeline(
    pipeline: beam.Pipeline,
    settings: Settings,
    listed: tuple[Sequence[InputFile], Sequence[dict[str, Any]]] | None = None,
    shuffle_folder: str | None = None,
) -> beam.PCollection:
    """Add the batch job to `pipeline`; returns the PCollection of the summary.

    `listed` is (files, match reports) listed beforehand, as incremental runs
    do; the job then reads exactly those files instead of matching the inputs.
    `shuffle_folder` is a local folder for the encoded batches that cross the
    shuffle, from `local_shuffle_folder`.
    """
    workers = direct_workers(pipeline.options)
    if listed is None:
        files, matches = pipeline | "MatchInputs" >> MatchInputs(
            list(settings.inputs), workers
        )
    else:
        files, matches = pipeline | "ListedInputs" >> ListedInputs(*listed, workers)
    lines, read_dead, read_stats = files | "ReadLines" >> ReadLines(
        settings.batch_size, settings.max_line_bytes
    )
    events, parse_dead = parse_lines(lines)
    dead_letters = [read_dead, *parse_dead] | "MergeDeadLetters" >> beam.Flatten()

    keyed = (events, dead_letters) | "KeyByPartition" >> KeyByPartition(
        settings.shards_per_partition,
        settings.run_id,
        settings.run_date,
        shuffle_folder,
    )
    partitions = keyed | "DeduplicatePartitions" >> DeduplicatePartitions(
        settings.output, settings.run_id
    )
    write_stats = partitions | "WritePartitions" >> WritePartitions(
        settings.output, settings.run_id, settings.compression
    )
    match_stats = matches | "MatchStats" >> beam.Map(_match_stats)
    return (
        (read_stats, write_stats, match_stats)
        | "MergeAllStats" >> beam.Flatten()
        | "WriteRunSummary" >> WriteRunSummary(settings)
    )


def run_batch(
    options: PipelineOptions,
    settings: Settings,
    listed: tuple[Sequence[InputFile], Sequence[dict[str, Any]]] | None = None,
) -> None:
    """Build and run the batch job to its end, in a shuffle folder on the
    DirectRunner. `listed` is passed on to `build_pipeline`."""
    with local_shuffle_folder(options, settings) as folder:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, settings, listed, shuffle_folder=folder)
