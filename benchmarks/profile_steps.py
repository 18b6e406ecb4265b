"""Time each step of the batch job outside Beam, on files of `benchmarks.synthetic`.

    python -m benchmarks.profile_steps /tmp/kav-synthetic --events 200000
    python -m benchmarks.profile_steps /tmp/kav-synthetic --cprofile Normalize

The same functions that the pipeline's DoFns call run here in one process, in
pipeline order: read and split into lines, the seven record steps, keying and
Arrow IPC encoding, deduplication and Parquet writing. It prints the CPU time
of each stage in microseconds per line, so a change to a hot path can be measured
without Beam's own per-element costs. `--cprofile STAGE` prints the functions
that cost most inside one stage.
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from benchmarks.synthetic import generate
from transforms.batches import Batch, Record, relax_garbage_collector
from transforms.classify import classify_step
from transforms.decode_payload import decode_payload
from transforms.deduplicate import drop_repeated_blobs, key_events
from transforms.errors import LineRejected
from transforms.foreign import reject_foreign
from transforms.message_body import parse_message
from transforms.normalize import normalize_step
from transforms.read import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LINE_BYTES, split_blocks
from transforms.read import _blocks_checked as blocks_checked
from transforms.schema import EVENT_SCHEMA
from transforms.split_lines import split_record
from transforms.structured_data import parse_extradata
from transforms.write import write_table_atomically

RECORD_STEPS: tuple[tuple[str, Callable[[Record], None]], ...] = (
    ("SplitLines", split_record),
    ("DecodePayload", decode_payload),
    ("ParseExtradata", parse_extradata),
    ("RejectForeignLines", reject_foreign),
    ("ParseMessageBody", parse_message),
    ("Normalize", normalize_step),
    ("Classify", classify_step),
)
STAGES = ("Read", *(name for name, _ in RECORD_STEPS), "KeyAndEncode", "Write")


def read_batches(path: str, batch_size: int) -> Iterator[Batch]:
    """Read one file as batches of line records, as the ReadLines step does."""
    batch: Batch = []
    for number, data, size, _terminated in split_blocks(
        blocks_checked(path), DEFAULT_MAX_LINE_BYTES
    ):
        if size > len(data):
            continue
        batch.append(
            {
                "source_uri": path,
                "source_line": number,
                "raw": data.decode("utf-8", errors="replace"),
            }
        )
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def apply_record_step(batch: Batch, step: Callable[[Record], None]) -> Batch:
    """Apply one record step to a batch; returns the records it kept."""
    kept: Batch = []
    for record in batch:
        try:
            step(record)
        except LineRejected:
            continue
        kept.append(record)
    return kept


def key_and_encode(batch: Batch, shards: int) -> list[tuple[Any, bytes]]:
    """Group a batch by partition and shard and encode each group, as the
    pipeline's KeyByPartition step does."""
    return list(key_events(batch, shards, "profile", "1970-01-01"))


def deduplicate_and_write(grouped: dict[Any, list[bytes]], out_dir: str) -> int:
    """Decode, deduplicate and write each key's rows; returns the rows written."""
    written = 0
    for (partition, shard), blobs in grouped.items():
        kept, _repeated, _stored = drop_repeated_blobs(blobs, set())
        if kept is None or not kept.num_rows:
            continue
        path = os.path.join(out_dir, partition, f"part-profile-{shard:04d}.parquet")
        write_table_atomically(kept.cast(EVENT_SCHEMA), path)
        written += kept.num_rows
    return written


class _Stopwatch:
    """Sum the CPU time of each stage, profiling one stage with cProfile.

    CPU time instead of wall time keeps other processes on the machine out
    of the numbers.
    """

    def __init__(self, profile_stage: str | None) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.profile_stage = profile_stage
        self.profiler = cProfile.Profile()

    def run(self, stage: str, work: Callable[[], Any]) -> Any:
        started = time.process_time()
        if stage == self.profile_stage:
            result = self.profiler.runcall(work)
        else:
            result = work()
        self.seconds[stage] += time.process_time() - started
        return result


def run_stages(
    paths: Sequence[str], out_dir: str, profile_stage: str | None
) -> tuple[dict[str, float], int]:
    """Run every stage batch by batch; returns seconds per stage and lines read.

    Like the pipeline, it keeps one batch of records at a time, so the cost
    of Python's garbage collector matches that of a worker.
    """
    relax_garbage_collector()
    watch = _Stopwatch(profile_stage)
    grouped: dict[Any, list[bytes]] = defaultdict(list)
    lines = 0
    for path in paths:
        batches = read_batches(path, DEFAULT_BATCH_SIZE)
        while True:
            batch = watch.run("Read", lambda batches=batches: next(batches, None))
            if batch is None:
                break
            lines += len(batch)
            for name, step in RECORD_STEPS:
                batch = watch.run(
                    name, lambda batch=batch, step=step: apply_record_step(batch, step)
                )
            encoded = watch.run("KeyAndEncode", lambda b=batch: key_and_encode(b, 4))
            for key, blob in encoded:
                grouped[key].append(blob)
    watch.run("Write", lambda: deduplicate_and_write(grouped, out_dir))
    if profile_stage is not None:
        pstats.Stats(watch.profiler).sort_stats("tottime").print_stats(25)
    return watch.seconds, lines


def main(argv: Sequence[str] | None = None) -> int:
    """Generate or reuse synthetic files and print the cost of each stage."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_steps")
    parser.add_argument("data_dir", help="folder of benchmarks.synthetic output")
    parser.add_argument(
        "--events", type=int, default=200_000, help="events to generate if missing"
    )
    parser.add_argument(
        "--cprofile", choices=STAGES, help="print a cProfile of this stage"
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data_dir) or not os.listdir(args.data_dir):
        generate(args.data_dir, args.events, seed=7)
    paths = sorted(
        path
        for path in glob.glob(os.path.join(args.data_dir, "kav", "**"), recursive=True)
        if os.path.isfile(path)
    )
    with tempfile.TemporaryDirectory(prefix="kav-profile-") as out_dir:
        seconds, lines = run_stages(paths, out_dir, args.cprofile)
    total = sum(seconds.values())
    print(f"{lines} lines in {len(paths)} files")
    print(f"{'stage':<20}{'seconds':>9}{'us/line':>9}{'share':>8}")
    for name in STAGES:
        per_line = seconds[name] / lines * 1e6
        share = seconds[name] / total
        print(f"{name:<20}{seconds[name]:>9.2f}{per_line:>9.1f}{share:>8.1%}")
    print(f"{'total':<20}{total:>9.2f}{total / lines * 1e6:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
