"""Find the input files and read them as batches of numbered lines.

Patterns are globs on any filesystem that Beam supports (`/data/kav/**.log`,
`s3://logs/kav/2022/*/*.gz`, `gs://...`, `azfs://account/container/...`).
Compression is chosen by suffix: `.gz` is gzip, `.zst` and `.zstd` are
zstandard, anything else is read as it is. Each line becomes a record

    {"source_uri": "s3://logs/kav/20220228_0.log.gz", "source_line": 1,
     "raw": "2022-02-28T15:48:55+00:00\\tkav_logs.user.crit\\t{...}"}

A file that cannot be read to its end (truncated gzip, vanished between
listing and reading, binary content) yields the lines read before the
failure and one dead letter that names the file, and the run goes on.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any, NamedTuple

import apache_beam as beam
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.batches import DEAD_LETTERS, METRICS_NAMESPACE, Batch, Record

STATS = "stats"
MATCHES = "matches"

DEFAULT_BATCH_SIZE = 2000
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
_READ_BLOCK_BYTES = 1024 * 1024
# A batch is emitted once its lines reach this size, whatever their count, so
# that a file of long lines (a gzip bomb of 1 MiB lines) never builds a batch
# of `batch_size` long lines in memory.
BATCH_MAX_BYTES = 32 * 1024 * 1024
# Bytes of an over-long line kept in its dead letter.
_KEPT_PREFIX_BYTES = 4096
# A file whose first block has this share of control bytes is not text.
_BINARY_SNIFF_BYTES = 8192
_BINARY_CONTROL_SHARE = 0.10
_TEXT_CONTROL_BYTES = frozenset(b"\t\n\r\f\b\x1b")

_LOG = logging.getLogger(__name__)


# Compressed input fed to a zstandard decompressor per call: a zstd block can
# expand about 32,000 times, so this bounds one call's output near 64 MiB.
_ZSTD_INPUT_BYTES = 2048


class TruncatedStreamError(EOFError):
    """A compressed file that ends before its last stream is complete."""


def compression_of(path: str) -> str | None:
    """Return "gzip", "zstd" or None for a path, by suffix only."""
    lowered = path.lower()
    if lowered.endswith(".gz") or lowered.endswith(".gzip"):
        return "gzip"
    if lowered.endswith(".zst") or lowered.endswith(".zstd"):
        return "zstd"
    return None


def _gunzip_blocks(raw, block_bytes: int) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    pending = b""
    while True:
        if not pending:
            pending = raw.read(block_bytes)
            if not pending:
                break
        # max_length bounds the output of one call, so a gzip bomb streams
        # through in bounded blocks instead of inflating at once.
        block = decompressor.decompress(pending, block_bytes)
        pending = decompressor.unconsumed_tail
        if block:
            yield block
        if decompressor.eof:
            # At the end of a member, unused_data contains every input byte after
            # it, and CPython may leave the same bytes in unconsumed_tail too,
            # so adding `pending` would read the next members twice.
            pending = decompressor.unused_data
            decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            if not pending:
                pending = raw.read(block_bytes)
                if not pending:
                    return
    tail = decompressor.flush()
    if tail:
        yield tail
    if not decompressor.eof:
        raise TruncatedStreamError("gzip data ends before the end of its stream")


def _unzstd_blocks(raw, block_bytes: int) -> Iterator[bytes]:
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    started = False
    while True:
        data = raw.read(_ZSTD_INPUT_BYTES)
        if not data:
            break
        while data:
            started = True
            block = decompressor.decompress(data)
            if block:
                yield block
            if decompressor.eof:
                data = decompressor.unused_data
                decompressor = zstandard.ZstdDecompressor().decompressobj()
                started = False
            else:
                data = b""
    if started:
        raise TruncatedStreamError("zstd data ends before the end of its frame")


def iter_blocks(path: str, block_bytes: int) -> Iterator[bytes]:
    """Yield the decompressed content of a file in blocks of bounded size.

    Raises `TruncatedStreamError` when a gzip or zstd file is cut short, which
    Beam's own decompressing reader passes over in silence.
    """
    raw = FileSystems.open(
        path,
        mime_type="application/octet-stream",
        compression_type=CompressionTypes.UNCOMPRESSED,
    )
    with raw:
        kind = compression_of(path)
        if kind == "gzip":
            yield from _gunzip_blocks(raw, block_bytes)
        elif kind == "zstd":
            yield from _unzstd_blocks(raw, block_bytes)
        else:
            while True:
                block = raw.read(block_bytes)
                if not block:
                    return
                yield block


class InputFile(NamedTuple):
    """A matched input file."""

    path: str
    size_in_bytes: int


def _file_dead_letter(path: str, code: str, detail: str) -> Record:
    return {
        "source_uri": path,
        "source_line": None,
        "error": code,
        "detail": detail,
        "raw": None,
        "event_time": None,
    }


_GLOB_CHARACTERS = frozenset("*?[")


def pattern_base(pattern: str) -> str:
    """Return the part of a glob up to the last `/` before its first wildcard."""
    cut = next((i for i, c in enumerate(pattern) if c in _GLOB_CHARACTERS), None)
    if cut is None:
        return pattern.rsplit("/", 1)[0] + "/" if "/" in pattern else ""
    return pattern[: pattern.rfind("/", 0, cut) + 1]


def is_hidden(path: str, pattern: str = "") -> bool:
    """Tell whether a matched path is a folder or lies in a hidden name.

    A path whose file name, or any folder below the fixed part of the
    pattern, starts with `_` or `.` is skipped, as Hive, Spark and pyarrow
    skip such names. So a glob over a bucket never reads this pipeline's own
    `_runs/`, `_state/` and `_errors/` files or a writer's temporary files,
    even when the output lies inside the input folder.
    """
    if path.endswith("/"):
        return True
    base = pattern_base(pattern)
    if base and path.startswith(base):
        relative = path[len(base) :]
    else:
        relative = path.rsplit("/", 1)[-1]
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


# Text bytes per stored byte of a compressed input, to weigh files before
# they are read. FluentD's gzip output of KSC exports expands about 7 times
# and zstd about 8 times.
_EXPANSION = {"gzip": 7, "zstd": 8}


def estimated_text_bytes(path: str, size: int) -> int:
    """Estimate the uncompressed size of a file from its stored size."""
    return size * _EXPANSION.get(compression_of(path) or "", 1)


def order_for_workers(
    files: Iterable[tuple[str, int]], workers: int
) -> list[tuple[str, int]]:
    """Order (path, size) pairs so that dealing them out in turn evens the work.

    A file that two patterns matched is kept once, even when the patterns
    spell its local path differently (`data/a.log`, `./data/a.log`), with
    the larger size if it grew between the two listings. Files go largest
    first in rounds of `workers` files, every other round reversed, so when
    file i goes to worker i % workers each worker gets about the same number
    of bytes to parse:

        sizes 9 8 7 6 5 4, 2 workers -> 9 8 6 7 5 4 (9+6+5 and 8+7+4)
    """
    workers = max(1, workers)
    unique = sorted(
        _unique_files(files),
        key=lambda item: (-estimated_text_bytes(*item), item[0]),
    )
    ordered: list[tuple[str, int]] = []
    for start in range(0, len(unique), workers):
        round_files = unique[start : start + workers]
        if (start // workers) % 2:
            round_files.reverse()
        ordered.extend(round_files)
    return ordered


def _unique_files(files: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Keep one (path, size) pair per file: its first spelling in sort order,
    with the largest size listed for it."""
    by_file: dict[str, tuple[str, int]] = {}
    for path, size in sorted(files):
        key = _same_file_key(path)
        first_path, known_size = by_file.get(key, (path, size))
        by_file[key] = (first_path, max(size, known_size))
    return list(by_file.values())


def _same_file_key(path: str) -> str:
    """Return the real absolute path of a local file, so that every spelling
    of it gives the same key. Object store URIs are returned as given."""
    if "://" in path and not path.startswith("file://"):
        return path
    return os.path.realpath(path.removeprefix("file://"))


def _numbered(files: list[tuple[str, int]], workers: int):
    return enumerate(order_for_workers(files, workers))


class SpreadFiles(beam.PTransform):
    """Spread (path, size) pairs over the workers; returns InputFile elements.

    Every file gets its own key, so a runner can read each file on a
    different worker. The keys follow `order_for_workers`: the DirectRunner
    hands grouped keys to its `workers` processes in turn, in the order they
    were produced, so each process gets about the same bytes to parse.
    Dataflow and Flink assign keys by hash and balance work themselves.
    """

    def __init__(self, workers: int = 1) -> None:
        super().__init__()
        self._workers = workers

    def expand(self, files: beam.PCollection) -> beam.PCollection:
        return (
            files
            | "CollectFiles" >> beam.combiners.ToList()
            | "NumberBySize" >> beam.FlatMap(_numbered, self._workers)
            | "GroupByNumber" >> beam.GroupByKey()
            | "AsInputFiles"
            >> beam.FlatMap(lambda item: [InputFile(*pair) for pair in item[1]])
        )


class _MatchPattern(beam.DoFn):
    """List the files of one pattern, reporting how many it matched."""

    def process(self, pattern: str) -> Iterator[Any]:
        try:
            result = FileSystems.match([pattern])[0]
        except Exception as error:  # noqa: BLE001 - reported in the run summary
            _LOG.error("Listing input pattern %s failed: %s", pattern, error)
            yield beam.pvalue.TaggedOutput(
                MATCHES, {"pattern": pattern, "files": 0, "error": str(error)[:500]}
            )
            return
        files = [m for m in result.metadata_list if not is_hidden(m.path, pattern)]
        if not files:
            _LOG.warning("Input pattern %s matched no files", pattern)
        yield beam.pvalue.TaggedOutput(
            MATCHES, {"pattern": pattern, "files": len(files), "error": None}
        )
        for metadata in files:
            yield InputFile(metadata.path, metadata.size_in_bytes)


class MatchInputs(beam.PTransform):
    """List the input patterns; returns (files, per-pattern match reports)."""

    def __init__(self, patterns: list[str], workers: int = 1) -> None:
        super().__init__()
        self._patterns = list(patterns)
        self._workers = workers

    def expand(self, pipeline: beam.pvalue.PBegin):
        matched = (
            pipeline
            | "InputPatterns" >> beam.Create(self._patterns)
            | "MatchPatterns"
            >> beam.ParDo(_MatchPattern()).with_outputs(MATCHES, main="files")
        )
        files = (
            matched.files
            | "AsTuples" >> beam.Map(tuple).with_output_types(tuple[str, int])
            | "SpreadFiles" >> SpreadFiles(self._workers)
        )
        return files, matched[MATCHES]


def _looks_binary(block: bytes) -> bool:
    sample = block[:_BINARY_SNIFF_BYTES]
    if b"\x00" not in sample:
        return False
    control = sum(1 for byte in sample if byte < 32 and byte not in _TEXT_CONTROL_BYTES)
    return control >= _BINARY_CONTROL_SHARE * len(sample)


def split_blocks(
    blocks: Iterator[bytes], max_line_bytes: int
) -> Iterator[tuple[int, bytes, int, bool]]:
    """Cut a stream of blocks into lines without holding a long line twice.

    Yields `(line_number, data, size, terminated)`. A line longer than
    `max_line_bytes` is not accumulated: `data` is then its first bytes only
    and `size` the length seen, so callers tell it by `size > len(data)`.
    """
    number = 0
    pending = bytearray()
    skipping = False  # inside a line longer than max_line_bytes
    skipped = 0  # bytes of that line seen so far
    prefix = b""
    kept = min(_KEPT_PREFIX_BYTES, max_line_bytes)
    for block in blocks:
        parts = block.split(b"\n")
        last = len(parts) - 1
        if (
            last
            and not skipping
            and len(pending) + max(map(len, parts)) <= max_line_bytes
        ):
            # Fast path for a block with a line end and no over-long line:
            # the lines between its first and last part go out through one
            # C-level zip instead of a Python step each.
            number += 1
            if pending:
                pending += parts[0]
                yield number, bytes(pending), len(pending), True
                pending.clear()
            else:
                yield number, parts[0], len(parts[0]), True
            middle = parts[1:last]
            yield from zip(
                range(number + 1, number + 1 + len(middle)),
                middle,
                map(len, middle),
                repeat(True),
            )
            number += len(middle)
            pending += parts[last]
            continue
        for index, part in enumerate(parts):
            complete = index < last
            if not skipping and len(pending) + len(part) > max_line_bytes:
                skipping = True
                prefix = bytes(pending[:kept]) + part[: max(0, kept - len(pending))]
                skipped = len(pending)
                pending.clear()
            if skipping:
                skipped += len(part)
                if complete:
                    number += 1
                    yield number, prefix, skipped, True
                    skipping = False
                continue
            if not complete:
                pending += part
                continue
            number += 1
            if pending:
                pending += part
                yield number, bytes(pending), len(pending), True
                pending.clear()
            else:
                yield number, part, len(part), True
    if skipping:
        yield number + 1, prefix, skipped, False
    elif pending:
        yield number + 1, bytes(pending), len(pending), False


def _blocks_checked(path: str) -> Iterator[bytes]:
    blocks = iter_blocks(path, _READ_BLOCK_BYTES)
    first = next(blocks, b"")
    if _looks_binary(first):
        raise BinaryFileError(f"file {path} contains binary data, not text lines")
    if first:
        yield first
    yield from blocks


class BinaryFileError(ValueError):
    """A file whose first block is binary data, not text lines."""


class _ReadLines(beam.DoFn):
    """Read one file as batches of line records, with stats and dead letters."""

    def __init__(self, batch_size: int, max_line_bytes: int) -> None:
        self._batch_size = batch_size
        self._max_line_bytes = max_line_bytes

    def setup(self) -> None:
        self._lines = Metrics.counter(METRICS_NAMESPACE, "lines_read")
        self._files = Metrics.counter(METRICS_NAMESPACE, "files_read")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "files_unreadable")
        self._too_long = Metrics.counter(METRICS_NAMESPACE, "dead_letter_line_too_long")

    def _record(self, path: str, number: int, data: bytes, terminated: bool) -> Record:
        record: Record = {"source_uri": path, "source_line": number}
        try:
            record["raw"] = data.decode("utf-8")
        except UnicodeDecodeError:
            record["raw"] = data.decode("utf-8", errors="replace")
            record["parse_issues"] = ["invalid_utf8"]
        if not terminated:
            record["_unterminated"] = True
        return record

    def _too_long_letter(self, path: str, number: int, prefix: bytes, size: int):
        self._too_long.inc()
        return {
            "source_uri": path,
            "source_line": number,
            "error": "line_too_long",
            "detail": (
                f"line has at least {size} bytes, more than the limit of "
                f"{self._max_line_bytes} bytes (--max_line_bytes); its first "
                f"{len(prefix)} bytes are kept"
            ),
            "raw": prefix.decode("utf-8", errors="replace"),
            "event_time": None,
        }

    def process(self, input_file: InputFile) -> Iterator[Any]:
        path = input_file.path
        batch: Batch = []
        batch_bytes = 0
        dead: Batch = []
        lines = 0
        failure = None
        try:
            for number, data, size, terminated in split_blocks(
                _blocks_checked(path), self._max_line_bytes
            ):
                lines += 1
                if size > len(data):
                    dead.append(self._too_long_letter(path, number, data, size))
                    continue
                batch.append(self._record(path, number, data, terminated))
                batch_bytes += size
                if len(batch) >= self._batch_size or batch_bytes >= BATCH_MAX_BYTES:
                    yield batch
                    batch = []
                    batch_bytes = 0
        except BinaryFileError as error:
            failure = ("binary_file", str(error))
        except Exception as error:  # noqa: BLE001 - the file is reported, the run goes on
            failure = (
                "unreadable_file",
                f"reading {path} failed after {lines} lines: "
                f"{type(error).__name__}: {str(error)[:300]}",
            )
        if failure is not None:
            # The unread rest of the file counts as one record in the books.
            lines += 1
            dead.append(_file_dead_letter(path, *failure))
            self._failed.inc()
            _LOG.error("Input file skipped: %s", failure[1])
        if batch:
            yield batch
        if dead:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead)
        self._lines.inc(lines)
        self._files.inc()
        yield beam.pvalue.TaggedOutput(
            STATS,
            {
                "lines_read": lines,
                "files_read": 1,
                "files_unreadable": [path] if failure else [],
                "bytes_matched": input_file.size_in_bytes,
            },
        )


class ReadLines(beam.PTransform):
    """Read matched files; returns (line batches, dead letters, per-file stats)."""

    def __init__(
        self,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        super().__init__()
        self._batch_size = batch_size
        self._max_line_bytes = max_line_bytes

    def expand(self, files: beam.PCollection):
        outputs = files | "ReadFileLines" >> beam.ParDo(
            _ReadLines(self._batch_size, self._max_line_bytes)
        ).with_outputs(DEAD_LETTERS, STATS, main="lines")
        return outputs.lines, outputs[DEAD_LETTERS], outputs[STATS]
