"""Command line of the batch job: run it, print the summary, set the exit status.

    python -m pipeline --input 'sample_data/**' --output out/

Exit status 0 means every input line was accounted for. 1 means the books do
not balance. 2 means that the run failed, or that an input pattern failed to
list or matched no file. A line on stderr that starts with `kav-pipeline:`
gives the reason.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    TestOptions,
)

from pipeline.options import Settings, parse_settings
from pipeline.storage import redact
from pipeline.summary import format_summary
from pipeline.wiring import build_pipeline, remove_shuffle_folders, run_batch
from transforms.write import read_json, summary_path

EXIT_UNBALANCED = 1
EXIT_FAILED = 2

_LOG = logging.getLogger("pipeline")


def _one_line(error: BaseException) -> str:
    """Describe an error in one line.

    A failure inside a Beam worker arrives as a RuntimeError whose text is
    the worker's whole traceback; its last line names the cause.
    """
    lines = [line.strip() for line in str(error).strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        text = ""
    elif lines[0].startswith("Traceback (most recent call last)"):
        text = lines[-1]
    else:
        text = lines[0]
    return redact(f"{type(error).__name__}: {text}")[:500]


def _stop_on_sigterm(run_id: str) -> None:
    """Turn SIGTERM into an exit that removes the run's shuffle folder.

    Schedulers, `systemctl stop` and `docker stop` end a job with SIGTERM,
    whose default action skips every `finally` block.
    """

    def stop(signum: int, _frame: object) -> None:
        _kill_descendants()
        remove_shuffle_folders()
        print(
            f"kav-pipeline: run {run_id} stopped by signal {signum}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def run_id_in_use(settings: Settings) -> bool:
    """Tell whether the output already contains a summary under this run id.

    A run's files are named after its id and replace files of the same name,
    so a second run with the id of an earlier one would overwrite its rows.
    """
    return FileSystems.exists(summary_path(settings.output, settings.run_id))


def input_problems(summary: dict, allow_empty: bool) -> list[str]:
    """List the input patterns that failed to list or matched no file."""
    problems = []
    for item in summary["inputs"]:
        if item.get("error"):
            problems.append(
                f"listing {item['pattern']} failed: {redact(item['error'])}"
            )
        elif item["files"] == 0 and not allow_empty:
            problems.append(
                f"{item['pattern']} matched no file (pass --allow_empty_input to "
                "accept that)"
            )
    return problems


def _descendants(pid: int) -> list[int]:
    """List the descendant process ids of `pid` from Linux /proc (else [])."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children = [int(child) for child in handle.read().split()]
        except OSError:
            continue
        for child in children:
            found.append(child)
            found.extend(_descendants(child))
    return found


def _kill_descendants() -> None:
    """Kill every process this one started, such as Beam's SDK workers."""
    for child in _descendants(os.getpid()):
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass


def fail_run_when_worker_dies(run_id: str) -> None:
    """End the process with EXIT_FAILED when a Beam worker subprocess dies.

    In `--direct_running_mode=multi_processing` Beam 2.77 runs each SDK worker
    from a thread named `run_worker`, which raises when its subprocess exits
    with an error status, and the runner then waits for that worker forever.
    This hook stops the remaining workers, prints the failure line and exits.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is None or args.thread.name != "run_worker":
            previous(args)
            return
        _kill_descendants()
        remove_shuffle_folders()
        print(
            f"kav-pipeline: run {run_id} failed: a worker process died: "
            f"{_one_line(args.exc_value)}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_FAILED)

    threading.excepthook = hook


def build_graph_only(options: PipelineOptions, settings: Settings) -> int:
    """Build the job graph without running it, for `--dry_run=True`.

    DataflowRunner then translates the pipeline into a job request and
    returns without submitting it, so no summary is written to read back.
    Other runners ignore `--dry_run` and would run the job, so they are
    rejected with EXIT_FAILED.
    """
    runner = options.view_as(StandardOptions).runner or ""
    if "dataflow" not in runner.lower():
        print(
            f"kav-pipeline: --dry_run=True needs --runner=DataflowRunner, got "
            f"{runner or 'the default runner'!r}; remove --dry_run to run the job",
            file=sys.stderr,
        )
        return EXIT_FAILED
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, settings)
    result = pipeline.run()
    job = getattr(result, "job", None)
    steps = len(job.proto_pipeline.components.transforms) if job else 0
    print(
        f"kav-pipeline: dry run {settings.run_id}: built the job graph "
        f"({steps} transforms) and submitted nothing"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the batch job with command-line arguments; returns the exit status."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in ("pipeline", "transforms"):
        logging.getLogger(name).setLevel(logging.INFO)
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    if settings.streaming or settings.incremental:
        fail_run_when_worker_dies(settings.run_id)
    # Imported here because both modules use this module's exit statuses.
    if settings.streaming:
        from pipeline.streaming import run_streaming

        return run_streaming(settings)
    if settings.incremental:
        from pipeline.incremental import run_incremental

        _stop_on_sigterm(settings.run_id)
        return run_incremental(settings)
    options = PipelineOptions(list(settings.beam_args))
    if options.view_as(TestOptions).dry_run:
        return build_graph_only(options, settings)
    FileSystems.set_options(options)
    if run_id_in_use(settings):
        print(
            f"kav-pipeline: run id {settings.run_id!r} is already used under "
            f"{settings.output}/_runs/; choose another --run_id",
            file=sys.stderr,
        )
        return EXIT_FAILED
    _LOG.info(
        "Run %s: reading %s, writing %s",
        settings.run_id,
        ", ".join(settings.inputs),
        settings.output,
    )
    fail_run_when_worker_dies(settings.run_id)
    _stop_on_sigterm(settings.run_id)
    try:
        run_batch(options, settings)
        summary = read_json(summary_path(settings.output, settings.run_id))
    except Exception as error:  # noqa: BLE001 - reported as the exit status
        _LOG.exception("Run %s failed", settings.run_id)
        print(
            f"kav-pipeline: run {settings.run_id} failed: {_one_line(error)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(format_summary(summary))
    if not summary["balanced"]:
        print(
            f"kav-pipeline: not every line was accounted for: {summary['lines_read']} "
            f"read, {summary['lines_accounted']} accounted for",
            file=sys.stderr,
        )
        return EXIT_UNBALANCED
    problems = input_problems(summary, settings.allow_empty_input)
    if problems:
        for problem in problems:
            print(f"kav-pipeline: {problem}", file=sys.stderr)
        return EXIT_FAILED
    return 0
