"""Pipeline options for tests: the local runner, never a Prism download."""

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipeline.options import NO_PRISM_LOCATION

LOCAL_RUNNER_ARGS = [f"--prism_location={NO_PRISM_LOCATION}"]


def local_test_pipeline() -> TestPipeline:
    """Return a TestPipeline on the DirectRunner that skips Prism."""
    return TestPipeline(options=PipelineOptions(LOCAL_RUNNER_ARGS))
