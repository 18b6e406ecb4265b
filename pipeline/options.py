"""Command-line options of kav-pipeline; every other flag goes to Beam."""

from __future__ import annotations

import argparse
import datetime
import secrets
from dataclasses import dataclass, field

from transforms.read import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LINE_BYTES
from transforms.write import DEFAULT_COMPRESSION

DEFAULT_SHARDS_PER_PARTITION = 4
# A path that holds no Prism binary: the DirectRunner then skips Prism at once
# instead of downloading it, and runs on its Python runners.
NO_PRISM_LOCATION = "/nonexistent/prism-not-installed.zip"


@dataclass(frozen=True)
class Settings:
    """What one run reads, where it writes, and how."""

    inputs: tuple[str, ...]
    output: str
    run_id: str
    started_at: str
    batch_size: int = DEFAULT_BATCH_SIZE
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    shards_per_partition: int = DEFAULT_SHARDS_PER_PARTITION
    compression: str = DEFAULT_COMPRESSION
    beam_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def run_date(self) -> str:
        """Return the UTC date of the run's start, `YYYY-MM-DD`."""
        return self.started_at[:10]


def new_run_id(now: datetime.datetime) -> str:
    """Make a run id that sorts by start time: `20261204T150102Z-1a2b3c4d`."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description=(
            "Read Kaspersky Security Center exports from FluentD files and write "
            "classified, deduplicated, Hive-partitioned Parquet. Flags not listed "
            "here are Beam pipeline options (--runner, --direct_num_workers, "
            "--s3_endpoint_url, --azure_connection_string, --temp_location, ...)."
        ),
    )
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="PATTERN",
        help="file or glob to read (local, s3://, gs://, azfs://); repeat for more",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="local folder or bucket prefix; the run writes only below it",
    )
    parser.add_argument(
        "--batch_size",
        type=_positive,
        default=DEFAULT_BATCH_SIZE,
        help="lines per batch moved between steps (default %(default)s)",
    )
    parser.add_argument(
        "--max_line_bytes",
        type=_positive,
        default=DEFAULT_MAX_LINE_BYTES,
        help="longer lines become `line_too_long` dead letters (default %(default)s)",
    )
    parser.add_argument(
        "--shards_per_partition",
        type=_positive,
        default=DEFAULT_SHARDS_PER_PARTITION,
        help="at most this many files per partition and run (default %(default)s)",
    )
    parser.add_argument(
        "--compression",
        default=DEFAULT_COMPRESSION,
        choices=("zstd", "snappy", "gzip", "lz4", "none"),
        help="Parquet compression codec (default %(default)s)",
    )
    parser.add_argument(
        "--run_id",
        help="id of this run in file names and in _runs/ (default: time and random)",
    )
    return parser


def with_local_prism(beam_args: list[str]) -> list[str]:
    """Add `--prism_location` unless given, so no run downloads Prism."""
    if any(arg.startswith("--prism_location") for arg in beam_args):
        return beam_args
    return [*beam_args, f"--prism_location={NO_PRISM_LOCATION}"]


def parse_settings(argv: list[str], now: datetime.datetime | None = None) -> Settings:
    """Parse the command line into Settings; unknown flags are Beam's."""
    args, beam_args = build_parser().parse_known_args(argv)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return Settings(
        inputs=tuple(args.input),
        output=args.output.rstrip("/") if "://" in args.output else args.output,
        run_id=args.run_id or new_run_id(now),
        started_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        batch_size=args.batch_size,
        max_line_bytes=args.max_line_bytes,
        shards_per_partition=args.shards_per_partition,
        compression=args.compression,
        beam_args=tuple(with_local_prism(beam_args)),
    )
