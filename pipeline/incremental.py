"""Incremental runs: read only the objects that no earlier run recorded.

    python -m pipeline --incremental --input 's3://logs/kav/**' --output s3://out/kav

A run lists the input patterns, drops every object whose (path, size,
modification time) is recorded under `OUTPUT/_state/`, and runs the batch
pipeline over the rest. Once the pipeline has finished and its summary
balances, the run records what it read in one state document:

    OUTPUT/_state/20261204T150102Z-1a2b3c4d.json
    {"run_id": "20261204T150102Z-1a2b3c4d", "finished_at": "...",
     "objects": [{"path": "s3://logs/kav/fluentd-s3-20220228_1.log.gz",
                  "size": 947, "last_updated": 1646063400.0}]}

A run that is killed records nothing, so the next run reads its objects
again. Rows the killed run had already written are then dropped as stored
by `DeduplicatePartitions`, which leaves each event once.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli import EXIT_FAILED, EXIT_UNBALANCED
from pipeline.options import Settings
from pipeline.summary import format_summary
from pipeline.wiring import run_batch
from transforms.read import InputFile
from transforms.watch import ListedObject, list_patterns
from transforms.write import read_json, summary_path, write_json

STATE_FOLDER = "_state"
# Past this many state documents, a run merges them into one.
COMPACT_AFTER_DOCUMENTS = 64

_LOG = logging.getLogger(__name__)


def state_folder(output: str) -> str:
    """Return the folder of the processed-object records under an output."""
    return FileSystems.join(output, STATE_FOLDER)


def _state_documents(output: str) -> list[str]:
    pattern = FileSystems.join(state_folder(output), "*.json")
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - no state folder yet
        return []
    paths = [m.path for m in matches if not m.path.rsplit("/", 1)[-1].startswith(".")]
    return sorted(paths)


def _object_from_json(item: dict[str, Any]) -> ListedObject:
    return ListedObject(item["path"], item["size"], item["last_updated"])


def _object_to_json(item: ListedObject) -> dict[str, Any]:
    return {
        "path": item.path,
        "size": item.size_in_bytes,
        "last_updated": item.last_updated,
    }


def read_processed(output: str) -> set[ListedObject]:
    """Read every object recorded under `OUTPUT/_state/`."""
    processed: set[ListedObject] = set()
    for path in _state_documents(output):
        document = read_json(path)
        processed.update(_object_from_json(item) for item in document["objects"])
    return processed


def processed_versions(output: str) -> set[tuple[str, str]]:
    """Read the recorded objects as (path, version) pairs for `WatchInputs`."""
    return {(item.path, item.version) for item in read_processed(output)}


def select_new(
    listed: Iterable[ListedObject], processed: set[ListedObject]
) -> tuple[list[ListedObject], list[ListedObject]]:
    """Split a listing into (new objects, objects already processed).

    An object counts as processed only if its path, size and modification
    time all match a record, so a changed object is read again.
    """
    new, skipped = [], []
    for item in listed:
        (skipped if item in processed else new).append(item)
    return new, skipped


def record_processed(
    output: str, run_id: str, objects: Sequence[ListedObject], finished_at: str
) -> str:
    """Write the state document of one run; returns its path."""
    path = FileSystems.join(state_folder(output), f"{run_id}.json")
    write_json(
        path,
        {
            "run_id": run_id,
            "finished_at": finished_at,
            "objects": [_object_to_json(item) for item in sorted(objects)],
        },
    )
    return path


def compact_state(output: str, run_id: str) -> str | None:
    """Merge the state documents into one when there are many of them.

    The merged document is written before the others are deleted, so a
    crash in between leaves records twice, never missing. Returns the path
    of the merged document, or None when nothing was merged.
    """
    documents = _state_documents(output)
    if len(documents) <= COMPACT_AFTER_DOCUMENTS:
        return None
    objects = set()
    for path in documents:
        objects.update(_object_from_json(item) for item in read_json(path)["objects"])
    merged = record_processed(output, f"{run_id}-compacted", list(objects), _now())
    FileSystems.delete([path for path in documents if path != merged])
    _LOG.info("Merged %d state documents into %s", len(documents), merged)
    return merged


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fail(settings: Settings, error: BaseException) -> int:
    _LOG.exception("Run %s failed", settings.run_id)
    first = (str(error).strip().splitlines() or [""])[0]
    print(
        f"kav-pipeline: run {settings.run_id} failed: {type(error).__name__}: {first}"[
            :600
        ],
        file=sys.stderr,
    )
    return EXIT_FAILED


def run_incremental(settings: Settings, report_idle: bool = True) -> int:
    """Run the batch pipeline over objects not yet processed; returns the status.

    The status is 0 when there was nothing new or every new line was
    accounted for, 1 when the books do not balance and 2 when the run
    failed or no input pattern could be listed. Only a run that ends with 0
    records its objects. With
    `report_idle` false, a run that finds nothing new only logs it.
    """
    options = PipelineOptions(list(settings.beam_args))
    # Listing and state documents are read here, outside any pipeline, so
    # the filesystems need the S3 and Azure options of the command line.
    FileSystems.set_options(options)
    listed, reports = list_patterns(settings.inputs)
    failed = [report for report in reports if report["error"]]
    for report in failed:
        print(
            f"kav-pipeline: listing {report['pattern']} failed: {report['error']}",
            file=sys.stderr,
        )
    if failed and len(failed) == len(reports):
        return EXIT_FAILED
    try:
        processed = read_processed(settings.output)
    except Exception as error:  # noqa: BLE001 - reported as the exit status
        return _fail(settings, error)
    new, skipped = select_new(listed, processed)
    _LOG.info(
        "Run %s: %d new objects, %d already processed",
        settings.run_id,
        len(new),
        len(skipped),
    )
    if not new:
        if report_idle:
            print(
                f"kav-pipeline: no new objects; {len(skipped)} already processed "
                f"(records under {state_folder(settings.output)})"
            )
        return EXIT_FAILED if failed else 0

    # NOTE: dead letters are not deduplicated, so those a killed run had
    # written under `_errors/` are written again by the run that follows.
    # Nothing locks the state either, so two runs started at once both read
    # the objects (their events are still stored once per partition only if
    # the runs do not write the same partition at the same moment).
    files = [InputFile(item.path, item.size_in_bytes) for item in new]
    try:
        run_batch(options, settings, listed=(files, reports))
        path = summary_path(settings.output, settings.run_id)
        summary = read_json(path)
        summary["objects_new"] = len(new)
        summary["objects_already_processed"] = len(skipped)
        write_json(path, summary)
    except Exception as error:  # noqa: BLE001 - reported as the exit status
        return _fail(settings, error)

    print(format_summary(summary))
    print(f"objects already processed, skipped: {len(skipped)}")
    if not summary["balanced"]:
        print(
            f"kav-pipeline: not every line was accounted for: {summary['lines_read']} "
            f"read, {summary['lines_accounted']} accounted for; objects not recorded",
            file=sys.stderr,
        )
        return EXIT_UNBALANCED
    try:
        record_processed(settings.output, settings.run_id, new, _now())
        compact_state(settings.output, settings.run_id)
    except Exception as error:  # noqa: BLE001 - reported as the exit status
        return _fail(settings, error)
    # The objects of the patterns that could be listed are recorded. A pattern
    # that failed to list still fails the run, so that a scheduler reports it.
    return EXIT_FAILED if failed else 0
