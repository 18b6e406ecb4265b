"""The batch job builds a Dataflow job graph offline, with `--dry_run=True`.

    python -m pipeline --input 'gs://kav-exports/kav/**' \\
        --output gs://kav-lake/events --runner=DataflowRunner --dry_run=True \\
        --no_auth --sdk_location=container \\
        --project=kav-dry-run --region=europe-west1 \\
        --temp_location=gs://kav-dry-run-temp/tmp

DataflowRunner translates the pipeline into a job request and returns before
it creates an API client, stages files or submits anything. These tests
build that request and check that no socket leaves this machine meanwhile.
"""

from __future__ import annotations

import socket

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli import EXIT_FAILED, main
from pipeline.options import parse_settings
from pipeline.wiring import build_pipeline

DRY_RUN_ARGS = [
    "--input",
    "gs://kav-exports/kav/**",
    "--output",
    "gs://kav-lake/events",
    "--runner=DataflowRunner",
    "--dry_run=True",
    "--no_auth",
    "--sdk_location=container",
    "--project=kav-dry-run",
    "--region=europe-west1",
    "--temp_location=gs://kav-dry-run-temp/tmp",
    "--run_id=20261204T120000Z-dryrun00",
]

LABELLED_STEPS = (
    "MatchInputs",
    "ReadLines",
    "SplitLines",
    "DecodePayload",
    "ParseExtradata",
    "RejectForeignLines",
    "ParseMessageBody",
    "Normalize",
    "Classify",
    "MergeDeadLetters",
    "KeyByPartition",
    "DeduplicatePartitions",
    "WritePartitions",
    "WriteRunSummary",
)


def _reject_remote_connections(patch: pytest.MonkeyPatch) -> list:
    """Record and reject every socket connection to a host other than loopback."""
    attempts: list = []
    original_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"connection to {address} rejected by the test")
        return original_connect(self, address)

    patch.setattr(socket.socket, "connect", connect)
    patch.setenv("NO_GCE_CHECK", "true")
    patch.setenv("GCE_METADATA_HOST", "127.0.0.1:1")
    return attempts


@pytest.fixture
def remote_connections(monkeypatch) -> list:
    return _reject_remote_connections(monkeypatch)


@pytest.fixture(scope="module")
def dry_run():
    """Build the Dataflow job request once; returns (job, rejected connections)."""
    with pytest.MonkeyPatch.context() as patch:
        attempts = _reject_remote_connections(patch)
        settings = parse_settings(DRY_RUN_ARGS)
        pipeline = beam.Pipeline(options=PipelineOptions(list(settings.beam_args)))
        build_pipeline(pipeline, settings)
        job = pipeline.run().job
    return job, attempts


def _transform_names(job) -> set[str]:
    transforms = job.proto_pipeline.components.transforms.values()
    return {transform.unique_name for transform in transforms}


def test_dry_run_graph_has_steps(dry_run):
    names = _transform_names(dry_run[0])
    for label in LABELLED_STEPS:
        assert label in names, f"step {label} is missing from the job graph"


def test_dry_run_graph_nested_steps(dry_run):
    names = _transform_names(dry_run[0])
    assert "ReadLines/ReadFileLines" in names
    assert "DeduplicatePartitions/GroupByPartition" in names
    assert "WritePartitions/WriteParquetFiles" in names


def test_dry_run_uses_docker_environment(dry_run):
    environments = dry_run[0].proto_pipeline.components.environments.values()
    urns = {environment.urn for environment in environments}
    assert urns == {"beam:env:docker:v1"}


def test_dry_run_opens_no_remote_socket(dry_run):
    assert dry_run[1] == []


def test_cli_dry_run_exits_zero(remote_connections, capsys):
    status = main(DRY_RUN_ARGS)
    output = capsys.readouterr().out
    assert status == 0
    assert "built the job graph" in output
    assert remote_connections == []


def test_cli_dry_run_needs_dataflow(capsys):
    args = [arg for arg in DRY_RUN_ARGS if arg != "--runner=DataflowRunner"]
    status = main([*args, "--runner=DirectRunner"])
    assert status == EXIT_FAILED
    assert "--dry_run=True needs --runner=DataflowRunner" in capsys.readouterr().err
