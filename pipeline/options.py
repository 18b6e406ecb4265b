"""Command-line options of kav-pipeline; every other flag goes to Beam."""

from __future__ import annotations

import argparse
import datetime
import secrets
from dataclasses import dataclass, field

from transforms.read import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LINE_BYTES
from transforms.write import DEFAULT_COMPRESSION

DEFAULT_SHARDS_PER_PARTITION = 4
DEFAULT_POLL_INTERVAL_SECONDS = 60.0
DEFAULT_WINDOW_SECONDS = 3600
# FluentD's default buffer timekey (1 day) plus its default timekey_wait
# (600 s): the longest an event waits in FluentD before its object appears.
DEFAULT_ALLOWED_LATENESS_SECONDS = 86400 + 600
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
    incremental: bool = False
    streaming: bool = False
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    allowed_lateness: int = DEFAULT_ALLOWED_LATENESS_SECONDS

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


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _seconds(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
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
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="read only objects not recorded under OUTPUT/_state/, then record them",
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help=(
            "watch the input patterns until stopped: on the DirectRunner a loop of "
            "incremental runs, on other runners a streaming pipeline"
        ),
    )
    parser.add_argument(
        "--poll_interval",
        type=_positive_seconds,
        default=DEFAULT_POLL_INTERVAL_SECONDS,
        metavar="SECONDS",
        help="seconds between listings of the inputs with --streaming "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--window_seconds",
        type=_positive,
        default=DEFAULT_WINDOW_SECONDS,
        metavar="SECONDS",
        help="event-time window of the streaming pipeline (default %(default)s)",
    )
    parser.add_argument(
        "--allowed_lateness",
        type=_seconds,
        default=DEFAULT_ALLOWED_LATENESS_SECONDS,
        metavar="SECONDS",
        help=(
            "how long after its window closes an event is still added to it by the "
            "streaming pipeline; default %(default)s = FluentD timekey 1 day + "
            "timekey_wait 600 s"
        ),
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
        incremental=args.incremental,
        streaming=args.streaming,
        poll_interval=args.poll_interval,
        window_seconds=args.window_seconds,
        allowed_lateness=args.allowed_lateness,
    )
