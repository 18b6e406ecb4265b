"""The whole pipeline against real S3, GCS and Azure Blob Storage emulators.

Each test uploads FluentD objects with the store's own client, such as
``kav/2022/02/28/fluentd_20220228_1.log.gz`` (a gzip re-upload of
``fluentd_20220228_0.log``) whose line is
``2022-02-28T15:48:55+00:00<TAB>kav_logs.user.crit<TAB>{"host":"host-01.example.local",
"ident":"KES|11.0.0.0","msgid":"GNRL_EV_VIRUS_FOUND",...}``. It then runs
``python -m pipeline`` as a subprocess on the DirectRunner in multi_processing
mode, so worker processes reach the emulator over the network as cluster
workers would, and reads the Parquet files back from the bucket with the
store's client.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import new_run_id
from pipeline.storage import install_filesystem_fixes
from tests.beam_helpers import LOCAL_RUNNER_ARGS
from tests.emulators import AzuriteEmulator, S3Emulator
from transforms.write import write_table_atomically

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT / "tests" / "data" / "corpus"
STORES = ["s3_server", "azurite_server", "gcs_server"]
MULTI_PROCESSING_ARGS = [
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=2",
]
RUN_TIMEOUT_S = 600
OUTPUT_PREFIX = "out"
MANY_OBJECTS = 1000


def fluentd_key(corpus_name: str) -> str:
    """Map a corpus file to FluentD's object key: `kav/%Y/%m/%d/fluentd_%Y%m%d_N`.

    `fluentd-s3-20220228_1.log.gz` becomes `kav/2022/02/28/fluentd_20220228_1.log.gz`.
    """
    slice_and_index = corpus_name.split("-", 2)[2]
    day = slice_and_index[:8]
    return f"kav/{day[:4]}/{day[4:6]}/{day[6:]}/fluentd_{slice_and_index}"


CORPUS_OBJECTS = {
    fluentd_key(path.name): path.read_bytes()
    for path in sorted(CORPUS.glob("fluentd-*.log*"))
}
CORPUS_LINES = 9
CORPUS_DUPLICATES = 1

# (object key, line number) -> partition folder of the event it contains.
# The only line of `fluentd_20220228_1.log.gz` repeats line 1 of
# `fluentd_20220228_0.log`.
EXPECTED_EVENTS = {
    ("kav/2021/05/22/fluentd_20210522_0.log", 1): (
        "category=general/event_date=2021-05-22"
    ),
    ("kav/2021/09/08/fluentd_20210908_0.log", 1): (
        "category=security/event_date=2021-09-08"
    ),
    ("kav/2022/02/28/fluentd_20220228_0.log", 1): (
        "category=security/event_date=2022-02-28"
    ),
    ("kav/2022/03/18/fluentd_20220318_0.log", 1): (
        "category=security/event_date=2022-03-18"
    ),
    ("kav/2023/03/23/fluentd_20230323_0.log", 1): (
        "category=security/event_date=2023-03-23"
    ),
    ("kav/2023/12/14/fluentd_20231214_0.log", 1): (
        "category=security/event_date=2023-12-14"
    ),
    ("kav/2023/12/14/fluentd_20231214_0.log", 2): (
        "category=general/event_date=2023-12-14"
    ),
    ("kav/2023/12/14/fluentd_20231214_0.log", 3): (
        "category=general/event_date=2023-12-14"
    ),
}

_PARTITION = r"category=(?:general|security|unknown)/event_date=\d{4}-\d{2}-\d{2}"
_ERRORS = r"_errors/event_date=\d{4}-\d{2}-\d{2}"


def final_key_pattern(run_ids: list[str]) -> re.Pattern[str]:
    """Match the only names a complete run leaves under the output prefix."""
    runs = "|".join(re.escape(run_id) for run_id in run_ids)
    return re.compile(
        rf"{OUTPUT_PREFIX}/(?:(?:{_PARTITION}|{_ERRORS})/part-(?:{runs})-\d{{4}}"
        rf"\.parquet|_runs/(?:{runs})\.json)"
    )


@dataclass
class PipelineRun:
    """One finished `python -m pipeline` run and what it left in the bucket."""

    emulator: Any
    bucket: str
    run_id: str
    process: subprocess.CompletedProcess[str]
    summary: dict[str, Any] | None
    output_keys: list[str]

    def failure(self) -> str:
        return (
            f"exit {self.process.returncode}\nstdout:\n{self.process.stdout[-3000:]}"
            f"\nstderr:\n{self.process.stderr[-6000:]}"
        )


def run_pipeline(emulator: Any, bucket: str, input_key: str) -> PipelineRun:
    """Run the CLI from `input_key` into OUTPUT_PREFIX of the same bucket."""
    run_id = new_run_id(datetime.datetime.now(datetime.timezone.utc))
    argv = [
        sys.executable,
        "-m",
        "pipeline",
        "--input",
        emulator.uri(bucket, input_key),
        "--output",
        emulator.uri(bucket, OUTPUT_PREFIX),
        f"--run_id={run_id}",
        *MULTI_PROCESSING_ARGS,
        *emulator.pipeline_args,
        *LOCAL_RUNNER_ARGS,
    ]
    process = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, **emulator.env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    keys = emulator.list_keys(bucket, OUTPUT_PREFIX + "/")
    summary_key = f"{OUTPUT_PREFIX}/_runs/{run_id}.json"
    summary = None
    if summary_key in keys:
        summary = json.loads(emulator.read(bucket, summary_key))
    return PipelineRun(emulator, bucket, run_id, process, summary, keys)


def read_parquet_object(emulator: Any, bucket: str, key: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(emulator.read(bucket, key)))


def event_part_keys(keys: list[str]) -> list[str]:
    return [
        key
        for key in keys
        if key.endswith(".parquet") and not key.startswith(f"{OUTPUT_PREFIX}/_errors/")
    ]


def stored_events(run: PipelineRun) -> list[dict[str, Any]]:
    """Read every event part file under the output as rows with their folder."""
    rows = []
    for key in event_part_keys(run.output_keys):
        partition = key[len(OUTPUT_PREFIX) + 1 :].rsplit("/", 1)[0]
        table = read_parquet_object(run.emulator, run.bucket, key)
        for row in table.select(["event_id", "source_uri", "source_line"]).to_pylist():
            rows.append({**row, "partition": partition})
    return rows


def stored_dead_letters(run: PipelineRun) -> list[dict[str, Any]]:
    rows = []
    for key in run.output_keys:
        if key.startswith(f"{OUTPUT_PREFIX}/_errors/") and key.endswith(".parquet"):
            rows.extend(read_parquet_object(run.emulator, run.bucket, key).to_pylist())
    return rows


def source_key(run: PipelineRun, source_uri: str) -> str:
    prefix = run.emulator.uri(run.bucket)
    assert source_uri.startswith(prefix), source_uri
    return source_uri[len(prefix) :]


def events_written(summary: dict[str, Any]) -> int:
    return sum(summary["events_written"].values())


@pytest.fixture(scope="module", params=STORES)
def first_run(request: pytest.FixtureRequest) -> PipelineRun:
    """The corpus in FluentD's layout in a new bucket, and one run over it."""
    emulator = request.getfixturevalue(request.param)
    bucket = emulator.create_bucket()
    emulator.upload_many(bucket, CORPUS_OBJECTS)
    return run_pipeline(emulator, bucket, "kav/**")


@pytest.fixture(scope="module")
def second_run(first_run: PipelineRun) -> PipelineRun:
    """A second run over the same objects into the same output."""
    assert first_run.process.returncode == 0, first_run.failure()
    return run_pipeline(first_run.emulator, first_run.bucket, "kav/**")


def test_store_run_exits_zero(first_run: PipelineRun) -> None:
    assert first_run.process.returncode == 0, first_run.failure()
    assert re.search(r"^books balance +yes$", first_run.process.stdout, re.M)


def test_store_run_writes_hive_partitions(first_run: PipelineRun) -> None:
    folders = {
        key[len(OUTPUT_PREFIX) + 1 :].rsplit("/", 1)[0]
        for key in event_part_keys(first_run.output_keys)
    }

    assert folders == set(EXPECTED_EVENTS.values())


def test_store_run_one_row_per_event(first_run: PipelineRun) -> None:
    rows = stored_events(first_run)
    placed = {
        (source_key(first_run, row["source_uri"]), row["source_line"]): row["partition"]
        for row in rows
    }

    assert len(rows) == len(EXPECTED_EVENTS)
    assert placed == EXPECTED_EVENTS


def test_store_run_drops_gzip_reupload(first_run: PipelineRun) -> None:
    sources = {
        source_key(first_run, row["source_uri"]) for row in stored_events(first_run)
    }

    assert "kav/2022/02/28/fluentd_20220228_1.log.gz" not in sources
    assert first_run.summary is not None, first_run.failure()
    assert first_run.summary["duplicates_dropped"] == CORPUS_DUPLICATES


def test_store_run_summary_balances(first_run: PipelineRun) -> None:
    summary = first_run.summary
    assert summary is not None, first_run.failure()

    assert summary["files_read"] == len(CORPUS_OBJECTS)
    assert summary["lines_read"] == CORPUS_LINES
    assert events_written(summary) == len(EXPECTED_EVENTS)
    assert summary["dead_letters"] == {}
    assert summary["balanced"] is True
    assert summary["files_written"] == len(event_part_keys(first_run.output_keys))


def test_store_run_leaves_only_final_objects(first_run: PipelineRun) -> None:
    pattern = final_key_pattern([first_run.run_id])

    leftovers = [key for key in first_run.output_keys if not pattern.fullmatch(key)]

    assert leftovers == []
    assert f"{OUTPUT_PREFIX}/_runs/{first_run.run_id}.json" in first_run.output_keys


def test_second_run_adds_no_rows(
    second_run: PipelineRun, first_run: PipelineRun
) -> None:
    assert second_run.process.returncode == 0, second_run.failure()
    summary = second_run.summary
    assert summary is not None, second_run.failure()

    assert events_written(summary) == 0
    # Every copy of a stored event counts as stored: 8 events plus the re-upload.
    assert summary["duplicates_already_stored"] == CORPUS_LINES
    assert summary["balanced"] is True
    assert len(stored_events(second_run)) == len(EXPECTED_EVENTS)
    assert event_part_keys(second_run.output_keys) == event_part_keys(
        first_run.output_keys
    )


def test_second_run_leaves_only_final_objects(
    second_run: PipelineRun, first_run: PipelineRun
) -> None:
    pattern = final_key_pattern([first_run.run_id, second_run.run_id])

    leftovers = [key for key in second_run.output_keys if not pattern.fullmatch(key)]

    assert leftovers == []


# One corpus line; each copy gets its own time, so each time is one event id.
VIRUS_FOUND_LINE = (CORPUS / "fluentd-s3-20220228_0.log").read_text().rstrip("\n")
VIRUS_FOUND_TIME = "2022-02-28T15:48:55+00:00"
MANY_START = datetime.datetime(2022, 2, 28, 15, 0, tzinfo=datetime.timezone.utc)


def line_at(second: int) -> str:
    moment = MANY_START + datetime.timedelta(seconds=second)
    return VIRUS_FOUND_LINE.replace(
        VIRUS_FOUND_TIME, moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"), 1
    )


def many_objects() -> dict[str, bytes]:
    """MANY_OBJECTS objects; object i contains the events of seconds i and i + 1.

    So every event but the first and the last is in two objects, as when
    FluentD re-uploads an overlapping chunk.
    """
    return {
        f"kav/2022/02/28/15/fluentd_2022022815_{index}.log": (
            f"{line_at(index)}\n{line_at(index + 1)}\n".encode()
        )
        for index in range(MANY_OBJECTS)
    }


def test_many_s3_objects_whole_pipeline(s3_server: S3Emulator) -> None:
    objects = many_objects()
    distinct_lines = {
        line for data in objects.values() for line in data.decode().splitlines()
    }
    bucket = s3_server.create_bucket("many")
    s3_server.upload_many(bucket, objects)

    run = run_pipeline(s3_server, bucket, "kav/**")

    assert run.process.returncode == 0, run.failure()
    summary = run.summary
    assert summary is not None, run.failure()
    assert summary["files_read"] == MANY_OBJECTS
    assert summary["lines_read"] == 2 * MANY_OBJECTS
    assert summary["balanced"] is True
    assert events_written(summary) == len(distinct_lines)
    assert summary["duplicates_dropped"] == 2 * MANY_OBJECTS - len(distinct_lines)
    rows = stored_events(run)
    assert len(rows) == len(distinct_lines)
    assert len({row["event_id"] for row in rows}) == len(distinct_lines)


# FluentD's azure-storage-append-blob output names blobs
# `%{path}%{time_slice}-%{index}.log` and writes them uncompressed.
GCS_LINES = (CORPUS / "fluentd-gcs-20231214_0.log").read_text().splitlines()
CUT_LINE = GCS_LINES[1]
CUT_AT = CUT_LINE.index('"message"')
APPENDING_LINE = line_at(0)
APPENDING_FRAGMENT = line_at(1)[:300]


def append_blob(
    emulator: AzuriteEmulator, container: str, blob: str, chunks: list[str]
):
    """Create an append blob and append each chunk as one block, as FluentD does."""
    client = emulator.service.get_blob_client(container, blob)
    client.create_append_blob()
    for chunk in chunks:
        client.append_block(chunk.encode())


@pytest.fixture(scope="module")
def append_blob_run(azurite_server: AzuriteEmulator) -> PipelineRun:
    """Append blobs with a line cut across two blobs and a blob still appended to.

    `kav/20231214-0.log` ends with the first part of a line whose rest starts
    `kav/20231214-1.log`, as when an append fails at the 50,000-block limit.
    `kav/20220228-0.log` ends in a partial line, as while FluentD appends to it.
    """
    container = azurite_server.create_bucket("append")
    append_blob(
        azurite_server,
        container,
        "kav/20231214-0.log",
        [GCS_LINES[0] + "\n", CUT_LINE[:CUT_AT]],
    )
    append_blob(
        azurite_server,
        container,
        "kav/20231214-1.log",
        [CUT_LINE[CUT_AT:] + "\n", GCS_LINES[2] + "\n"],
    )
    append_blob(
        azurite_server,
        container,
        "kav/20220228-0.log",
        [APPENDING_LINE + "\n", APPENDING_FRAGMENT],
    )
    return run_pipeline(azurite_server, container, "kav/**")


def test_append_blobs_run_balances(append_blob_run: PipelineRun) -> None:
    run = append_blob_run
    assert run.process.returncode == 0, run.failure()
    summary = run.summary
    assert summary is not None, run.failure()

    assert summary["lines_read"] == 6
    assert summary["dead_letters"] == {"partial_line": 3}
    assert events_written(summary) == 3
    assert summary["balanced"] is True


def test_append_blob_fragments_dead_letters(append_blob_run: PipelineRun) -> None:
    run = append_blob_run
    letters = {
        (source_key(run, letter["source_uri"]), letter["source_line"]): letter
        for letter in stored_dead_letters(run)
    }
    expected_raw = {
        ("kav/20231214-0.log", 2): CUT_LINE[:CUT_AT],
        ("kav/20231214-1.log", 1): CUT_LINE[CUT_AT:],
        ("kav/20220228-0.log", 2): APPENDING_FRAGMENT,
    }

    assert sorted(letters) == sorted(expected_raw)
    for place, raw in expected_raw.items():
        assert letters[place]["error"] == "partial_line", place
        assert letters[place]["raw"] == raw, place


def test_append_blob_whole_lines_events(append_blob_run: PipelineRun) -> None:
    run = append_blob_run
    places = sorted(
        (source_key(run, row["source_uri"]), row["source_line"])
        for row in stored_events(run)
    )

    assert places == [
        ("kav/20220228-0.log", 1),
        ("kav/20231214-0.log", 1),
        ("kav/20231214-1.log", 2),
    ]


@contextmanager
def store_options(emulator: Any) -> Iterator[None]:
    """Point FileSystems in this process at one emulator, then restore it."""
    install_filesystem_fixes()
    previous = FileSystems._pipeline_options
    FileSystems.set_options(PipelineOptions(emulator.pipeline_args))
    try:
        yield
    finally:
        FileSystems._pipeline_options = previous


@pytest.mark.parametrize("store", STORES)
def test_failed_parquet_write_leaves_nothing(
    request: pytest.FixtureRequest, store: str
) -> None:
    emulator = request.getfixturevalue(store)
    bucket = emulator.create_bucket()
    # Parquet has no type for month_day_nano_interval, so the writer fails.
    unwritable = pa.table({"gap": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})
    final_uri = emulator.uri(bucket, "out/category=general/part-0000.parquet")

    with store_options(emulator), pytest.raises(pa.ArrowNotImplementedError):
        write_table_atomically(unwritable, final_uri)

    assert emulator.list_keys(bucket) == []


def test_azfs_account_not_endpoint(azurite_server: AzuriteEmulator) -> None:
    container = azurite_server.create_bucket()
    azurite_server.upload(container, "kav/20220228-0.log", APPENDING_LINE.encode())
    # Beam serves every azfs:// path from --azure_connection_string, so an
    # account name other than Azurite's still reaches Azurite.
    other_account = f"azfs://kavlogs/{container}/kav/**"

    with store_options(azurite_server):
        [result] = FileSystems.match([other_account])

    assert [item.path for item in result.metadata_list] == [
        f"azfs://kavlogs/{container}/kav/20220228-0.log"
    ]
