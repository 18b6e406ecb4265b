"""Continuous runs: watch the input patterns and land each new object once.

    python -m pipeline --streaming --poll_interval 60 \\
        --input 's3://logs/kav/**' --output s3://out/kav

Two mechanisms, chosen by `--runner`:

* The DirectRunner (the default) cannot run an unbounded file watch in
  Beam 2.77, so the launcher polls instead. Every `--poll_interval` seconds
  it runs one incremental run (`pipeline.incremental`) over the objects not
  yet recorded under `OUTPUT/_state/`. Event-time windows are the partition
  folders, and cross-run dedup keeps each event once. SIGINT or SIGTERM lets
  the current cycle finish, then the launcher exits.
* Any other runner (Dataflow, Flink) gets one streaming pipeline:
  WatchInputs -> ReadLines -> parsing steps -> WindowByEventTime ->
  WriteWindowedPartitions. The launcher submits it and returns; stop the job
  with the runner's drain or cancel.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import signal
import threading
from collections.abc import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.incremental import processed_versions, run_incremental
from pipeline.options import Settings, new_run_id
from pipeline.wiring import parse_lines
from transforms.read import ReadLines
from transforms.watch import (
    WatchInputs,
    WindowByEventTime,
    WriteWindowedPartitions,
    event_time_windows,
)

# Runner names that resolve to Beam's local Python runners.
DIRECT_RUNNERS = frozenset(
    {"directrunner", "switchingdirectrunner", "bundlebaseddirectrunner", "fnapirunner"}
)

_LOG = logging.getLogger(__name__)


def runner_name(settings: Settings) -> str:
    """Return the `--runner` given in the Beam options, `DirectRunner` if none."""
    runner = PipelineOptions(list(settings.beam_args)).view_as(StandardOptions).runner
    if runner is None:
        return "DirectRunner"
    return runner if isinstance(runner, str) else type(runner).__name__


def is_direct_runner(settings: Settings) -> bool:
    """Tell whether the run would use one of Beam's local Python runners."""
    name = runner_name(settings).rsplit(".", 1)[-1].lower()
    return name in DIRECT_RUNNERS


def cycle_settings(settings: Settings, cycle: int, now: datetime.datetime) -> Settings:
    """Return the settings of one poll cycle, started at `now`.

    The first cycle keeps the run id of `settings`, and each later cycle gets
    a new one, so every cycle has its own files, summary and state document.
    """
    run_id = settings.run_id if cycle == 0 else new_run_id(now)
    return dataclasses.replace(
        settings, run_id=run_id, started_at=now.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


class StopRequest:
    """A flag set by SIGINT or SIGTERM; a second signal stops at once."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in this (the main) thread."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, number: int, frame) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt
        _LOG.info(
            "Received %s: stopping after the current cycle",
            signal.Signals(number).name,
        )
        self._event.set()

    def set(self) -> None:
        """Request a stop."""
        self._event.set()

    def is_set(self) -> bool:
        """Tell whether a stop was requested."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep until a stop is requested or `seconds` pass."""
        return self._event.wait(seconds)


def run_polling(
    settings: Settings,
    stop: StopRequest,
    run_cycle: Callable[[Settings], int] | None = None,
) -> int:
    """Run incremental cycles every poll interval until a stop is requested.

    A failed or unbalanced cycle records nothing, so the next cycle reads its
    objects again. Returns the status of the last cycle: 0 when every object
    listed by it was processed and recorded. `run_cycle` runs one cycle and
    returns its status; by default it is a quiet `run_incremental`.
    """
    if run_cycle is None:
        run_cycle = functools.partial(run_incremental, report_idle=False)
    # NOTE: with --direct_running_mode=multi_processing, Ctrl-C in a terminal
    # also reaches Beam's worker processes, which share the process group, so
    # the current cycle fails instead of finishing (it is read again by the
    # next run). SIGINT or SIGTERM sent to the main process alone is clean.
    cycle = 0
    status = 0
    while not stop.is_set():
        now = datetime.datetime.now(datetime.timezone.utc)
        current = cycle_settings(settings, cycle, now)
        status = run_cycle(current)
        if status:
            _LOG.error(
                "Cycle %s ended with status %d; its objects are read again next cycle",
                current.run_id,
                status,
            )
        cycle += 1
        stop.wait(settings.poll_interval)
    _LOG.info("Stopped after %d cycles", cycle)
    return status


def build_streaming_pipeline(
    pipeline: beam.Pipeline,
    settings: Settings,
    known_versions: Callable[[], set[tuple[str, str]]] | None = None,
) -> beam.PCollection:
    """Add the streaming job to `pipeline`; returns the PCollection of pane stats.

    `known_versions` loads the (path, version) pairs that earlier incremental
    runs recorded, so the watch does not read them again.
    """
    files = pipeline | "WatchInputs" >> WatchInputs(
        list(settings.inputs), settings.poll_interval, known_versions
    )
    lines, read_dead, _read_stats = files | "ReadLines" >> ReadLines(
        settings.batch_size, settings.max_line_bytes
    )
    events, parse_dead = parse_lines(lines)
    dead_letters = [read_dead, *parse_dead] | "MergeDeadLetters" >> beam.Flatten()

    windowed_events = events | "WindowByEventTime" >> WindowByEventTime(
        settings.window_seconds, settings.allowed_lateness
    )
    windowed_dead = dead_letters | "WindowDeadLetters" >> event_time_windows(
        settings.window_seconds, settings.allowed_lateness
    )
    return (
        windowed_events,
        windowed_dead,
    ) | "WriteWindowedPartitions" >> WriteWindowedPartitions(
        settings.output,
        settings.run_id,
        settings.run_date,
        settings.shards_per_partition,
        settings.compression,
    )


def streaming_options(settings: Settings) -> PipelineOptions:
    """Return the Beam options of the streaming job, with `--streaming` set."""
    options = PipelineOptions(list(settings.beam_args))
    options.view_as(StandardOptions).streaming = True
    return options


def run_streaming(settings: Settings) -> int:
    """Watch the inputs: poll on the DirectRunner, else submit a streaming job."""
    if is_direct_runner(settings):
        _LOG.info(
            "Watching %s every %s s with incremental runs; Ctrl-C stops",
            ", ".join(settings.inputs),
            settings.poll_interval,
        )
        stop = StopRequest()
        stop.install()
        return run_polling(settings, stop)

    _LOG.info(
        "Submitting streaming job %s on %s", settings.run_id, runner_name(settings)
    )
    pipeline = beam.Pipeline(options=streaming_options(settings))
    build_streaming_pipeline(
        pipeline, settings, functools.partial(processed_versions, settings.output)
    )
    result = pipeline.run()
    _LOG.info("Streaming job %s submitted: %s", settings.run_id, result.state)
    return 0
