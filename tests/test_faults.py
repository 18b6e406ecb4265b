"""A run that fails part-way exits non-zero, and the rerun repairs the output.

Faults are injected into command-line runs over FluentD files of distinct
events, each line such as

    2022-01-01T00:00:00+00:00<TAB>kav_logs.user.crit<TAB>{"host":"HOST-00-00000",...}

* the S3 emulator (moto server) is stopped while the second of two Parquet
  files of one partition is being uploaded (3,000 events of 8 KB each);
* one Beam worker process is killed with SIGKILL while the run reads 6,000
  events over 40 dates, in
  `--direct_running_mode=multi_processing --direct_num_workers=2`.

Each failed run must exit with status 2 and the one-line message
`kav-pipeline: run <id> failed: ...`, leave only complete Parquet files under
final names, and a rerun into the same output must store exactly the events
of an undisturbed run.
"""

from __future__ import annotations

import io
import pathlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil
import pyarrow.parquet as pq
import pytest

from tests.beam_helpers import LOCAL_RUNNER_ARGS
from tests.emulators import (
    HOST,
    MOTO_SERVER,
    S3Emulator,
    free_port,
    start_emulator,
)
from tests.test_broken_input import (
    CLI_ENV,
    REPO,
    run_cli,
    stored_events,
    write_event_files,
)

FILES = 4
OUTAGE_FILES = 2
OUTAGE_SHARDS = ["--shards_per_partition=2"]
LINES_PER_FILE = 1500
RUN_TIMEOUT_S = 240
FAULT_WAIT_S = 120
# Bounded boto3 retries, so a stopped endpoint fails a request within seconds.
BOUNDED_RETRY_ENV = {"AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard"}
MULTI_PROCESSING_ARGS = [
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=2",
]
WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"


@dataclass
class FaultedRun:
    """What a run with an injected fault and its rerun left behind."""

    returncode: int
    stderr: str
    run_id: str
    final_files: dict[str, bytes]
    rerun_returncode: int
    rerun_stderr: str
    rerun_ids: list[str]
    reference_ids: list[str]
    worker_pids: tuple[int, ...] = ()
    open_uploads: tuple[str, ...] = ()
    shuffle_leftovers: tuple[str, ...] = ()


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args, *LOCAL_RUNNER_ARGS]


def start_cli(*args: str, env: dict[str, str] = CLI_ENV) -> subprocess.Popen:
    """Start the CLI in a subprocess that captures stdout and stderr as text."""
    return subprocess.Popen(
        cli_command(*args),
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("fault-in")
    write_event_files(folder, FILES, LINES_PER_FILE)
    return folder


@pytest.fixture(scope="module")
def outage_inputs(tmp_path_factory) -> pathlib.Path:
    """Large events on one date, so each of the two shard files takes a while."""
    folder = tmp_path_factory.mktemp("outage-in")
    write_event_files(folder, OUTAGE_FILES, LINES_PER_FILE, days=1, padding=8000)
    return folder


def reference_ids(inputs: pathlib.Path, output: pathlib.Path) -> list[str]:
    """Return the sorted event ids of an undisturbed local run."""
    result = run_cli(
        "--input", str(inputs / "*.log"), "--output", str(output), *OUTAGE_SHARDS
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return sorted(row["event_id"] for row in stored_events(output, ["event_id"]))


@pytest.fixture(scope="module")
def undisturbed_ids(inputs, tmp_path_factory) -> list[str]:
    return reference_ids(inputs, tmp_path_factory.mktemp("fault-reference"))


def start_moto(log_dir: pathlib.Path) -> S3Emulator:
    port = free_port()
    argv = [str(MOTO_SERVER), "-H", HOST, "-p", str(port)]
    process = start_emulator("moto_server", argv, port, log_dir)
    return S3Emulator(process, f"http://{HOST}:{port}")


def s3_event_ids(emulator: S3Emulator, bucket: str, prefix: str) -> list[str]:
    ids: list[str] = []
    for key in emulator.list_keys(bucket, prefix):
        name = key.rsplit("/", 1)[-1]
        if name.endswith(".parquet") and "/_errors/" not in f"/{key}":
            table = pq.read_table(io.BytesIO(emulator.read(bucket, key)))
            ids.extend(table.column("event_id").to_pylist())
    return sorted(ids)


@pytest.fixture(scope="module")
def s3_outage(outage_inputs, tmp_path_factory) -> FaultedRun:
    inputs = outage_inputs
    reference = reference_ids(inputs, tmp_path_factory.mktemp("outage-reference"))
    log_dir = tmp_path_factory.mktemp("moto-outage")
    first = start_moto(log_dir)
    bucket = first.create_bucket("outage")
    output = f"s3://{bucket}/out"
    run_id = "20261204T000000Z-outage00"
    env = {**CLI_ENV, **BOUNDED_RETRY_ENV}
    snapshot: dict[str, bytes] = {}
    open_uploads: tuple[str, ...] = ()
    try:
        process = start_cli(
            "--input",
            str(inputs / "*.log"),
            "--output",
            output,
            "--run_id",
            run_id,
            *OUTAGE_SHARDS,
            *first.pipeline_args,
            env=env,
        )
        deadline = time.monotonic() + FAULT_WAIT_S
        while process.poll() is None and time.monotonic() < deadline:
            # What the store contains at the outage is what the rerun finds.
            for key in first.list_keys(bucket, "out/"):
                if key not in snapshot:
                    snapshot[key] = first.read(bucket, key)
            uploads = first.client.list_multipart_uploads(Bucket=bucket)
            open_uploads = tuple(item["Key"] for item in uploads.get("Uploads", []))
            # Stop while the second file is being uploaded: only part uploads
            # follow, which fail at once, unlike listings, which Beam retries
            # for minutes.
            if snapshot and open_uploads:
                break
            time.sleep(0.02)
    finally:
        first.process.stop()
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)

    second = start_moto(tmp_path_factory.mktemp("moto-restarted"))
    try:
        second.client.create_bucket(Bucket=bucket)
        second.upload_many(bucket, snapshot)
        rerun = subprocess.run(
            cli_command(
                "--input",
                str(inputs / "*.log"),
                "--output",
                output,
                *OUTAGE_SHARDS,
                *second.pipeline_args,
            ),
            cwd=REPO,
            env=env,
            text=True,
            capture_output=True,
            timeout=RUN_TIMEOUT_S,
        )
        rerun_ids = s3_event_ids(second, bucket, "out/")
    finally:
        second.process.stop()
    return FaultedRun(
        process.returncode,
        stderr,
        run_id,
        snapshot,
        rerun.returncode,
        rerun.stderr,
        rerun_ids,
        reference,
        open_uploads=open_uploads,
    )


def worker_processes(parent: psutil.Process) -> list[psutil.Process]:
    workers = []
    for child in parent.children(recursive=True):
        try:
            if WORKER_MODULE in child.cmdline() and child.name().startswith("python"):
                workers.append(child)
        except psutil.Error:
            continue
    return workers


def kill_busy_worker(process: subprocess.Popen) -> tuple[int, ...]:
    """Kill one SDK worker of the CLI once it has done some work.

    Returns the process ids of every worker seen then, the killed one first,
    or () when none was found.
    """
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + FAULT_WAIT_S
    while process.poll() is None and time.monotonic() < deadline:
        workers = worker_processes(parent)
        for worker in workers:
            try:
                if worker.cpu_times().user > 0.5:
                    worker.kill()
                    others = [other.pid for other in workers if other is not worker]
                    return (worker.pid, *others)
            except psutil.Error:
                continue
        time.sleep(0.05)
    return ()


def local_final_files(output: pathlib.Path) -> dict[str, bytes]:
    files = {}
    for path in output.rglob("*.parquet"):
        if not path.name.startswith("."):
            files[str(path.relative_to(output))] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def killed_worker(inputs, undisturbed_ids, tmp_path_factory) -> FaultedRun:
    output = tmp_path_factory.mktemp("killed-out")
    shuffle = tmp_path_factory.mktemp("killed-shuffle")
    run_id = "20261204T000000Z-killed00"
    process = start_cli(
        "--input",
        str(inputs / "*.log"),
        "--output",
        str(output),
        "--run_id",
        run_id,
        "--shuffle_dir",
        str(shuffle),
        *MULTI_PROCESSING_ARGS,
    )
    try:
        worker_pids = kill_busy_worker(process)
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert worker_pids, "no worker process was found to kill"
    leftovers = tuple(path.name for path in shuffle.iterdir())
    final_files = local_final_files(output)
    rerun = run_cli("--input", str(inputs / "*.log"), "--output", str(output))
    rerun_ids = sorted(row["event_id"] for row in stored_events(output, ["event_id"]))
    return FaultedRun(
        process.returncode,
        stderr,
        run_id,
        final_files,
        rerun.returncode,
        rerun.stderr,
        rerun_ids,
        undisturbed_ids,
        worker_pids,
        shuffle_leftovers=leftovers,
    )


FAULTS = ["s3_outage", "killed_worker"]


@pytest.mark.parametrize("fault", FAULTS)
def test_faulted_run_exits_failed(fault, request):
    run = request.getfixturevalue(fault)
    assert run.returncode == 2, run.stderr[-2000:]


@pytest.mark.parametrize("fault", FAULTS)
def test_faulted_run_prints_one_line(fault, request):
    run = request.getfixturevalue(fault)
    prefix = f"kav-pipeline: run {run.run_id} failed: "
    lines = [line for line in run.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, run.stderr[-2000:]
    assert len(lines[0]) > len(prefix) + 10, lines[0]


def test_outage_message_names_endpoint(s3_outage):
    line = next(
        line
        for line in s3_outage.stderr.splitlines()
        if line.startswith("kav-pipeline")
    )
    assert "Could not connect to the endpoint URL" in line


def test_killed_worker_message_names_worker(killed_worker):
    assert "a worker process died" in killed_worker.stderr


@pytest.mark.parametrize("fault", FAULTS)
def test_faulted_run_leaves_whole_files(fault, request):
    run = request.getfixturevalue(fault)
    for name, data in run.final_files.items():
        if name.endswith(".parquet"):
            # Raises on a file cut short: Parquet ends with its footer.
            pq.read_metadata(io.BytesIO(data))


def test_outage_hit_open_upload(s3_outage):
    assert s3_outage.open_uploads != ()


def test_open_upload_left_no_object(s3_outage):
    assert set(s3_outage.open_uploads).isdisjoint(s3_outage.final_files)


def test_outage_left_partial_output(s3_outage):
    # The outage hit while files were being written, not before or after.
    assert any(name.endswith(".parquet") for name in s3_outage.final_files)


@pytest.mark.parametrize("fault", FAULTS)
def test_rerun_after_fault_succeeds(fault, request):
    run = request.getfixturevalue(fault)
    assert run.rerun_returncode == 0, run.rerun_stderr[-2000:]


@pytest.mark.parametrize("fault", FAULTS)
def test_rerun_restores_same_event_ids(fault, request):
    run = request.getfixturevalue(fault)
    assert sorted(set(run.rerun_ids)) == run.reference_ids


@pytest.mark.parametrize("fault", FAULTS)
def test_rerun_restores_same_row_count(fault, request):
    run = request.getfixturevalue(fault)
    assert len(run.rerun_ids) == len(run.reference_ids)


def test_reference_run_has_every_event(undisturbed_ids):
    assert len(undisturbed_ids) == FILES * LINES_PER_FILE


def test_worker_kill_stops_other_workers(killed_worker):
    assert len(killed_worker.worker_pids) == 2
    leftover = [pid for pid in killed_worker.worker_pids if psutil.pid_exists(pid)]
    assert leftover == []


def test_killed_worker_removes_shuffle_folder(killed_worker):
    assert killed_worker.shuffle_leftovers == ()


@pytest.fixture(scope="module")
def terminated_run(inputs, tmp_path_factory) -> tuple[int, str, list[str]]:
    """Send SIGTERM to a run as soon as its shuffle folder exists."""
    shuffle = tmp_path_factory.mktemp("terminated-shuffle")
    output = tmp_path_factory.mktemp("terminated-out")
    process = start_cli(
        "--input",
        str(inputs / "*.log"),
        "--output",
        str(output),
        "--shuffle_dir",
        str(shuffle),
    )
    try:
        deadline = time.monotonic() + FAULT_WAIT_S
        while process.poll() is None and time.monotonic() < deadline:
            if any(shuffle.iterdir()):
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr, [path.name for path in shuffle.iterdir()]


def test_sigterm_exits_with_signal_status(terminated_run):
    assert terminated_run[0] == 128 + signal.SIGTERM


def test_sigterm_names_the_signal(terminated_run):
    assert "stopped by signal 15" in terminated_run[1]


def test_sigterm_removes_shuffle_folder(terminated_run):
    assert terminated_run[2] == []
