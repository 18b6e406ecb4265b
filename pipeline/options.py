"""Command-line options of kav-pipeline; every other flag goes to Beam."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import secrets
from dataclasses import dataclass, field

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.read import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LINE_BYTES, pattern_base
from transforms.write import DEFAULT_COMPRESSION

DEFAULT_SHARDS_PER_PARTITION = 4
DEFAULT_POLL_INTERVAL_SECONDS = 60.0
DEFAULT_WINDOW_SECONDS = 3600
# FluentD's default buffer timekey (1 day) plus its default timekey_wait
# (600 s): the longest an event waits in FluentD before its object appears.
DEFAULT_ALLOWED_LATENESS_SECONDS = 86400 + 600
# A path that contains no Prism binary: the DirectRunner then skips Prism at once
# instead of downloading it, and runs on its Python runners.
NO_PRISM_LOCATION = "/nonexistent/prism-not-installed.zip"


@dataclass(frozen=True)
class Settings:
    """Settings of one run: its inputs, its output and how it processes them."""

    inputs: tuple[str, ...]
    output: str
    run_id: str
    started_at: str
    batch_size: int = DEFAULT_BATCH_SIZE
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    shards_per_partition: int = DEFAULT_SHARDS_PER_PARTITION
    compression: str = DEFAULT_COMPRESSION
    allow_empty_input: bool = False
    beam_args: tuple[str, ...] = field(default_factory=tuple)
    incremental: bool = False
    streaming: bool = False
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    allowed_lateness: int = DEFAULT_ALLOWED_LATENESS_SECONDS
    shuffle_dir: str | None = None

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
        "--shuffle_dir",
        type=_writable_folder,
        metavar="FOLDER",
        help=(
            "local folder for the DirectRunner's shuffle files, about 500 bytes per "
            "event while the run lasts (default: the system's temporary folder)"
        ),
    )
    parser.add_argument(
        "--run_id",
        type=_run_id,
        help=(
            "id of this run in file names and in _runs/: letters, digits, '.', '_' "
            "and '-' (default: start time and a random suffix)"
        ),
    )
    parser.add_argument(
        "--allow_empty_input",
        action="store_true",
        help="exit 0 even when an input pattern matches no file",
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


def _writable_folder(text: str) -> str:
    folder = os.path.expanduser(text)
    if not folder:
        raise argparse.ArgumentTypeError("an empty path is not a folder")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not a writable folder")
    return folder


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _run_id(text: str) -> str:
    # The id becomes part of file names, so it must not contain a path.
    if not _RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid run id: use 1 to 128 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )
    return text


def _local_path(uri: str) -> str:
    """Turn a `file://` URI into the local path that Beam's filesystems accept."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for subclass in cls.__subclasses__():
        found.append(subclass)
        found.extend(_all_subclasses(subclass))
    return found


def unknown_beam_flags(beam_args: list[str]) -> list[str]:
    """List the flags that neither this job nor any Beam options class defines.

    Beam only logs a warning and drops such flags, so a typo such as
    `--max-line-bytes` would silently run with the default.
    """
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for options_class in {PipelineOptions, *_all_subclasses(PipelineOptions)}:
        try:
            options_class._add_argparse_args(parser)
        except argparse.ArgumentError:
            continue  # an option that two classes define
    _, unknown = parser.parse_known_args(beam_args)
    return [arg.split("=", 1)[0] for arg in unknown if arg.startswith("--")]


def output_inside_input(output: str, pattern: str) -> bool:
    """Tell whether a recursive input pattern would match files of the output."""
    if "**" not in pattern:
        return False
    base = pattern_base(pattern)
    if not base:
        # A pattern such as `**` matches below the working folder.
        return "://" not in output and not output.startswith("/")
    return (output.rstrip("/") + "/").startswith(base)


def with_local_prism(beam_args: list[str]) -> list[str]:
    """Add `--prism_location` unless given, so no run downloads Prism."""
    if any(arg.startswith("--prism_location") for arg in beam_args):
        return beam_args
    return [*beam_args, f"--prism_location={NO_PRISM_LOCATION}"]


def parse_settings(argv: list[str], now: datetime.datetime | None = None) -> Settings:
    """Parse the command line into Settings; unknown flags are Beam's."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    unknown = unknown_beam_flags(beam_args)
    if unknown:
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)} (neither an option of this "
            "job nor a Beam pipeline option; see --help)"
        )
    now = now or datetime.datetime.now(datetime.timezone.utc)
    output = _local_path(args.output)
    inputs = tuple(_local_path(pattern) for pattern in args.input)
    for pattern in inputs:
        if output_inside_input(output, pattern):
            parser.error(
                f"--output {output} lies inside --input {pattern}, so a later run "
                "would read this run's Parquet files as input; choose an output "
                "outside it"
            )
    return Settings(
        inputs=inputs,
        output=output.rstrip("/") if "://" in output else output,
        allow_empty_input=args.allow_empty_input,
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
        shuffle_dir=args.shuffle_dir,
    )
