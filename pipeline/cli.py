"""Command line of the batch job: run it, print the summary, set the exit status.

    python -m pipeline --input 'sample_data/**' --output out/

Exit status 0 means every input line was accounted for. 1 means the books do
not balance, 2 that the run failed; the last line on stderr says why.
"""

from __future__ import annotations

import logging
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import parse_settings
from pipeline.summary import format_summary
from pipeline.wiring import build_pipeline
from transforms.write import read_json, summary_path

EXIT_UNBALANCED = 1
EXIT_FAILED = 2

_LOG = logging.getLogger("pipeline")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]


def main(argv: list[str] | None = None) -> int:
    """Run the batch job with command-line arguments; returns the exit status."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in ("pipeline", "transforms"):
        logging.getLogger(name).setLevel(logging.INFO)
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    options = PipelineOptions(list(settings.beam_args))
    _LOG.info(
        "Run %s: reading %s, writing %s",
        settings.run_id,
        ", ".join(settings.inputs),
        settings.output,
    )
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, settings)
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
    return 0
