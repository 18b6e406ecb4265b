"""Incremental runs: skip recorded objects, record only finished runs.

Each run lists the input folder, reads the objects that no state document
under OUTPUT/_state/ records by (path, size, mtime), and records them after
its summary balances. A FluentD retry re-uploads a chunk as a new object;
its events count as `duplicates_already_stored`.
"""

import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.dataset as ds

from pipeline.cli import main
from pipeline.incremental import (
    COMPACT_AFTER_DOCUMENTS,
    compact_state,
    read_processed,
    record_processed,
    select_new,
)
from tests.beam_helpers import LOCAL_RUNNER_ARGS
from transforms.schema import EVENT_PARTITIONING
from transforms.watch import ListedObject

CORPUS = pathlib.Path(__file__).parent / "data" / "corpus"
MAIN = pathlib.Path(__file__).parent.parent


def _run(inbox, output, *extra):
    argv = ["--incremental", "--input", f"{inbox}/*", "--output", str(output)]
    return main([*argv, *extra, *LOCAL_RUNNER_ARGS])


def _rows(output):
    dataset = ds.dataset(
        str(output),
        format="parquet",
        partitioning=ds.partitioning(EVENT_PARTITIONING, flavor="hive"),
    )
    table = dataset.to_table(columns=["event_id", "source_uri", "source_line"])
    return sorted(
        (row["event_id"], pathlib.PurePath(row["source_uri"]).name, row["source_line"])
        for row in table.to_pylist()
    )


def _summaries(output):
    # Sorted by run id: the tests name their runs run1, run2, ...
    paths = sorted((pathlib.Path(output) / "_runs").glob("*.json"))
    return [json.loads(path.read_text()) for path in paths]


def _state_objects(output):
    documents = sorted((pathlib.Path(output) / "_state").glob("*.json"))
    return [
        [
            pathlib.PurePath(item["path"]).name
            for item in json.loads(p.read_text())["objects"]
        ]
        for p in documents
    ]


def test_select_new_compares_size_mtime():
    recorded = ListedObject("a.log", 10, 100.0)
    listed = [
        recorded,
        ListedObject("a.log", 12, 100.0),
        ListedObject("b.log", 10, 100.0),
    ]
    new, skipped = select_new(listed, {recorded})
    assert new == listed[1:]
    assert skipped == [recorded]


def test_state_documents_round_trip(tmp_path):
    first = [ListedObject(str(tmp_path / "a.log"), 10, 1646063335.123456)]
    second = [ListedObject("s3://logs/b.log.gz", 20, None)]
    record_processed(str(tmp_path), "run1", first, "2026-12-04T15:00:00Z")
    record_processed(str(tmp_path), "run2", second, "2026-12-04T16:00:00Z")
    assert read_processed(str(tmp_path)) == set(first + second)


def test_state_compaction_keeps_every_object(tmp_path):
    objects = [
        ListedObject(f"chunk-{i}.log", i, float(i))
        for i in range(COMPACT_AFTER_DOCUMENTS + 1)
    ]
    for index, item in enumerate(objects):
        record_processed(
            str(tmp_path), f"run{index:03d}", [item], "2026-12-04T15:00:00Z"
        )
    merged = compact_state(str(tmp_path), "run999")
    assert merged is not None
    assert len(list((tmp_path / "_state").glob("*.json"))) == 1
    assert read_processed(str(tmp_path)) == set(objects)


def test_second_run_skips_recorded_objects(tmp_path):
    inbox, output = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(CORPUS / "fluentd-s3-20220228_0.log", inbox)
    shutil.copy(CORPUS / "fluentd-gcs-20231214_0.log", inbox)
    assert _run(inbox, output, "--run_id", "run1") == 0
    first_rows = _rows(output)

    # One new chunk, and a FluentD retry of the first chunk, gzipped, hours later.
    shutil.copy(CORPUS / "fluentd-s3-20210522_0.log", inbox)
    shutil.copy(CORPUS / "fluentd-s3-20220228_1.log.gz", inbox)
    assert _run(inbox, output, "--run_id", "run2") == 0

    first, second = _summaries(output)
    assert len(first_rows) == 4
    assert second["objects_already_processed"] == 2
    assert second["objects_new"] == 2
    assert second["files_read"] == 2
    assert second["lines_read"] == 2
    assert second["duplicates_already_stored"] == 1
    assert sum(second["events_written"].values()) == 1
    assert _state_objects(output) == [
        ["fluentd-gcs-20231214_0.log", "fluentd-s3-20220228_0.log"],
        ["fluentd-s3-20210522_0.log", "fluentd-s3-20220228_1.log.gz"],
    ]
    rows = _rows(output)
    assert len(rows) == 5
    assert len({row[0] for row in rows}) == 5
    assert ("fluentd-s3-20220228_1.log.gz", 1) not in {row[1:] for row in rows}


def test_run_without_new_objects_records_nothing(tmp_path):
    inbox, output = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(CORPUS / "fluentd-s3-20220318_0.log", inbox)
    assert _run(inbox, output, "--run_id", "run1") == 0
    assert _run(inbox, output, "--run_id", "run2") == 0
    assert len(_summaries(output)) == 1
    assert len(_state_objects(output)) == 1


def test_changed_object_read_again(tmp_path):
    inbox, output = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    chunk = inbox / "fluentd-gcs-20231214_0.log"
    shutil.copy(CORPUS / chunk.name, chunk)
    assert _run(inbox, output, "--run_id", "run1") == 0

    # FluentD's out_file with `append true` grows the same file.
    first_line = chunk.read_text().splitlines()[0]
    with chunk.open("a") as handle:
        handle.write("2023-12-15" + first_line[10:] + "\n")
    assert _run(inbox, output, "--run_id", "run2") == 0

    second = _summaries(output)[1]
    assert second["lines_read"] == 4
    assert second["duplicates_already_stored"] == 3
    assert sum(second["events_written"].values()) == 1
    assert len(_rows(output)) == 4


def _write_dated_chunks(inbox, files, lines_per_file):
    """Write chunks of one corpus event moved to a new day per line."""
    line = (CORPUS / "fluentd-s3-20220228_0.log").read_text().splitlines()[0]
    day = datetime.date(2022, 2, 28)
    for number in range(files):
        lines = []
        for _ in range(lines_per_file):
            lines.append(day.isoformat() + line[10:])
            day += datetime.timedelta(days=1)
        (inbox / f"chunk-{number:03d}.log").write_text("\n".join(lines) + "\n")


def _part_files(output):
    return list(pathlib.Path(output).glob("category=*/event_date=*/part-*.parquet"))


def test_killed_run_rerun_matches_undisturbed(tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    # 300 events on 300 days: 300 partition files written one after another,
    # so a kill after the first file lands before the run finishes.
    _write_dated_chunks(inbox, files=30, lines_per_file=10)
    undisturbed, killed = tmp_path / "undisturbed", tmp_path / "killed"
    assert (
        _run(inbox, undisturbed, "--shards_per_partition", "1", "--run_id", "run1") == 0
    )

    command = [
        sys.executable,
        "-m",
        "pipeline",
        "--incremental",
        "--shards_per_partition",
        "1",
        "--input",
        f"{inbox}/*",
        "--output",
        str(killed),
        # A killed run leaves its shuffle folder, so it goes under tmp_path.
        "--shuffle_dir",
        str(tmp_path),
        *LOCAL_RUNNER_ARGS,
    ]
    env = dict(os.environ, PYTHONPATH=str(MAIN))
    process = subprocess.Popen(
        command, cwd=MAIN, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if _part_files(killed):
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    written_before_kill = len(_part_files(killed))
    assert process.returncode == -signal.SIGKILL
    assert 0 < written_before_kill < 300
    assert not (killed / "_state").exists()

    assert _run(inbox, killed, "--shards_per_partition", "1", "--run_id", "run2") == 0
    rerun = _summaries(killed)[-1]
    assert _rows(killed) == _rows(undisturbed)
    assert rerun["duplicates_already_stored"] == written_before_kill
    assert _state_objects(killed) == _state_objects(undisturbed)


def test_incremental_state_on_s3(s3_server):
    inputs = s3_server.create_bucket("kav-in")
    output = s3_server.create_bucket("kav-out")
    for name in ("fluentd-s3-20220228_0.log", "fluentd-gcs-20231214_0.log"):
        s3_server.upload(inputs, f"kav/{name}", (CORPUS / name).read_bytes())
    argv = [
        "--incremental",
        "--input",
        s3_server.uri(inputs, "kav/*"),
        "--output",
        s3_server.uri(output, "events"),
        *s3_server.pipeline_args,
        *LOCAL_RUNNER_ARGS,
    ]
    assert main([*argv, "--run_id", "run1"]) == 0
    retry = "fluentd-s3-20220228_1.log.gz"
    s3_server.upload(inputs, f"kav/{retry}", (CORPUS / retry).read_bytes())
    assert main([*argv, "--run_id", "run2"]) == 0

    state_keys = s3_server.list_keys(output, "events/_state/")
    summary_keys = s3_server.list_keys(output, "events/_runs/")
    second = json.loads(s3_server.read(output, summary_keys[-1]))
    assert len(state_keys) == 2
    assert second["objects_already_processed"] == 2
    assert second["files_read"] == 1
    assert second["duplicates_already_stored"] == 1
