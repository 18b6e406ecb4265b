"""Streaming: event-time windows, lateness, dedup per pane, and the live watch.

The windowing and write transforms run on TestStream, which the DirectRunner
routes to its BundleBasedDirectRunner. Batches enter with the poll time as
their timestamp, as WatchInputs emits them; each record contains its FluentD
event time. The live test starts the command line and adds files while it
polls.
"""

import datetime
import gzip
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import apache_beam as beam
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipeline.options import parse_settings
from pipeline.streaming import (
    StopRequest,
    build_streaming_pipeline,
    cycle_settings,
    is_direct_runner,
    run_polling,
    streaming_options,
)
from tests.beam_helpers import LOCAL_RUNNER_ARGS, local_test_pipeline
from transforms.schema import EVENT_PARTITIONING
from transforms.watch import (
    EmitNewObjects,
    ListedObject,
    WindowByEventTime,
    WriteWindowedPartitions,
    event_time_windows,
    pane_run_id,
    split_by_window,
)

CORPUS = pathlib.Path(__file__).parent / "data" / "corpus"
MAIN = pathlib.Path(__file__).parent.parent

# 2022-02-28T15:00:00Z, the start of an hourly window, in seconds.
T0 = 1646060400
HOUR = 3600
PARTITION = "category=security/event_date=2022-02-28"


def _event(event_id, seconds, source="a.log"):
    return {
        "event_id": event_id,
        "event_time": seconds * 1_000_000,
        "category": "security",
        "source_uri": source,
        "source_line": 1,
    }


def _stored(output):
    """Map each Parquet file name under the partition to its event ids."""
    folder = pathlib.Path(output) / PARTITION
    return {
        path.name: pq.read_table(path, columns=["event_id"])
        .column("event_id")
        .to_pylist()
        for path in sorted(folder.glob("part-*.parquet"))
    }


def _windowed_write(pipeline, stream, output, lateness=HOUR):
    batches = pipeline | "Stream" >> stream
    events = batches | "Window" >> WindowByEventTime(HOUR, lateness)
    letters = (
        batches
        | "NoDeadLetters" >> beam.FlatMap(lambda batch: [])
        | "WindowLetters" >> event_time_windows(HOUR, lateness)
    )
    return (events, letters) | "Write" >> WriteWindowedPartitions(
        str(output), "job", "2022-02-28", 1
    )


def _streaming_pipeline():
    return BeamTestPipeline(
        options=PipelineOptions([*LOCAL_RUNNER_ARGS, "--streaming"])
    )


def _pane_view(stats):
    return (
        stats["window_start"] // 1_000_000,
        stats["pane"],
        stats.get("events_written", {}).get("security", 0),
        stats.get("duplicates_dropped", 0),
    )


def test_split_moves_old_events_to_floor():
    batch = [_event("a" * 32, T0 + 600), _event("b" * 32, T0 - 10 * HOUR)]
    windows, moved = split_by_window(batch, HOUR * 1_000_000, T0 * 1_000_000)
    assert sorted(windows) == [T0 * 1_000_000]
    assert moved == 1


def test_pane_run_id_names_window_start():
    assert pane_run_id("job", T0 * 1_000_000, 2) == "job-20220228T150000Z-p2"


def test_events_windowed_by_event_time(tmp_path):
    poll = T0 + HOUR + 900
    stream = (
        EventStream()
        .add_elements(
            [
                TimestampedValue(
                    [_event("a" * 32, T0 + 600), _event("b" * 32, T0 + HOUR + 600)],
                    poll,
                )
            ]
        )
        .advance_watermark_to_infinity()
    )
    with _streaming_pipeline() as pipeline:
        stats = _windowed_write(pipeline, stream, tmp_path)
        assert_that(
            stats | beam.Map(_pane_view),
            equal_to([(T0, 0, 1, 0), (T0 + HOUR, 0, 1, 0)]),
        )
    assert _stored(tmp_path) == {
        "part-job-20220228T150000Z-p0-0000.parquet": ["a" * 32],
        "part-job-20220228T160000Z-p0-0000.parquet": ["b" * 32],
    }


def test_copies_in_window_kept_once(tmp_path):
    stream = (
        EventStream()
        .add_elements([TimestampedValue([_event("a" * 32, T0 + 60, "x.log")], T0 + 60)])
        .add_elements([TimestampedValue([_event("a" * 32, T0 + 60, "y.log.gz")], T0)])
        .advance_watermark_to_infinity()
    )
    with _streaming_pipeline() as pipeline:
        stats = _windowed_write(pipeline, stream, tmp_path)
        assert_that(stats | beam.Map(_pane_view), equal_to([(T0, 0, 1, 1)]))
    rows = ds.dataset(
        str(tmp_path),
        format="parquet",
        partitioning=ds.partitioning(EVENT_PARTITIONING, flavor="hive"),
    ).to_table()
    assert rows.column("source_uri").to_pylist() == ["x.log"]


def test_late_event_within_lateness_kept(tmp_path):
    stream = (
        EventStream()
        .add_elements([TimestampedValue([_event("a" * 32, T0 + 600)], T0 + 1800)])
        .advance_watermark_to(T0 + HOUR + 1800)
        # Within the lateness of window 15:00: a late pane of that window,
        # and a re-uploaded copy of the first event that pane 0 stored.
        .add_elements(
            [
                TimestampedValue(
                    [_event("b" * 32, T0 + 2400), _event("a" * 32, T0 + 600, "z.gz")],
                    T0 + HOUR + 1800,
                )
            ]
        )
        .advance_watermark_to_infinity()
    )
    with _streaming_pipeline() as pipeline:
        stats = _windowed_write(pipeline, stream, tmp_path)
        assert_that(
            stats | beam.Map(_pane_view), equal_to([(T0, 0, 1, 0), (T0, 1, 1, 1)])
        )
    assert _stored(tmp_path) == {
        "part-job-20220228T150000Z-p0-0000.parquet": ["a" * 32],
        "part-job-20220228T150000Z-p1-0000.parquet": ["b" * 32],
    }


def test_event_beyond_lateness_moved_counted(tmp_path):
    stream = (
        EventStream()
        .add_elements([TimestampedValue([_event("a" * 32, T0 + 600)], T0 + 1800)])
        .advance_watermark_to(T0 + 3 * HOUR)
        # Two hours after its window closed, beyond the lateness of one hour.
        .add_elements([TimestampedValue([_event("b" * 32, T0 + 1200)], T0 + 3 * HOUR)])
        .advance_watermark_to_infinity()
    )
    with _streaming_pipeline() as pipeline:
        stats = _windowed_write(pipeline, stream, tmp_path)
        moved = stats | beam.Map(lambda item: (item["pane"], item["late_events_moved"]))
        assert_that(moved, equal_to([(0, 0), (0, 1)]))
    # Written with the oldest window still open, in the partition of its date.
    assert _stored(tmp_path) == {
        "part-job-20220228T150000Z-p0-0000.parquet": ["a" * 32],
        "part-job-20220228T170000Z-p0-0000.parquet": ["b" * 32],
    }


def test_watch_diff_emits_each_once():
    seen = ListedObject("s3://logs/a.log", 10, 100.0)
    again = ListedObject("s3://logs/b.log", 20, 200.0)
    recorded = ListedObject("s3://logs/c.log", 30, 300.0)
    listings = [(item.path, item) for item in (seen, again, again, seen, recorded)]
    with local_test_pipeline() as pipeline:
        files = (
            pipeline
            | "Listings" >> beam.Create(listings)
            | "EmitNewObjects"
            >> beam.ParDo(EmitNewObjects(lambda: {(recorded.path, recorded.version)}))
        )
        assert_that(
            files | beam.Map(tuple),
            equal_to([("s3://logs/a.log", 10), ("s3://logs/b.log", 20)]),
        )


def test_runner_choice_by_runner_flag():
    direct = parse_settings(["--input", "x", "--output", "y", "--streaming"])
    flink = parse_settings(["--input", "x", "--output", "y", "--runner=FlinkRunner"])
    assert is_direct_runner(direct)
    assert not is_direct_runner(flink)


def test_cycles_get_distinct_run_ids():
    settings = parse_settings(["--input", "x", "--output", "y", "--run_id", "r1"])
    now = datetime.datetime(2026, 12, 4, tzinfo=datetime.timezone.utc)
    first = cycle_settings(settings, 0, now)
    second = cycle_settings(settings, 1, now)
    assert first.run_id == "r1"
    assert second.run_id != first.run_id


def test_polling_stops_after_current_cycle():
    settings = parse_settings(
        ["--input", "x", "--output", "y", "--streaming", "--poll_interval", "0.01"]
    )
    stop = StopRequest()
    seen = []

    def cycle(current):
        seen.append(current.run_id)
        if len(seen) == 2:
            stop.set()
        return 0 if len(seen) == 2 else 2

    assert run_polling(settings, stop, cycle) == 0
    assert len(seen) == 2


class _NoNetwork:
    """Make every name lookup and socket connection in this process fail."""

    def __init__(self, monkeypatch):
        def fail_connection(*args, **kwargs):
            raise AssertionError(f"network access: {args[1:]}")

        monkeypatch.setattr(socket.socket, "connect", fail_connection)
        monkeypatch.setattr(socket.socket, "connect_ex", fail_connection)
        monkeypatch.setattr(socket, "create_connection", fail_connection)
        monkeypatch.setattr(socket, "getaddrinfo", fail_connection)


def test_streaming_graph_builds_offline(tmp_path, monkeypatch):
    # The graph submitted to Dataflow or Flink, built but not run. The runner
    # object is left out, because DataflowRunner looks up a staging bucket.
    _NoNetwork(monkeypatch)
    settings = parse_settings(
        [
            "--input",
            "gs://kav-logs/kav/*.gz",
            "--output",
            str(tmp_path),
            "--streaming",
            "--poll_interval",
            "30",
        ]
    )
    pipeline = beam.Pipeline(options=streaming_options(settings))
    build_streaming_pipeline(pipeline, settings)
    proto = pipeline.to_runner_api()
    labels = {t.unique_name for t in proto.components.transforms.values()}
    lateness = {
        w.allowed_lateness for w in proto.components.windowing_strategies.values()
    }
    assert "WatchInputs/PollTicks" in labels
    assert "WatchInputs/EmitNewObjects" in labels
    assert "WriteWindowedPartitions/GroupByWindowPartition" in labels
    assert 87_000_000 in lateness


def _event_ids(output):
    if not list(pathlib.Path(output).glob("category=*")):
        return []
    table = ds.dataset(
        str(output),
        format="parquet",
        partitioning=ds.partitioning(EVENT_PARTITIONING, flavor="hive"),
    ).to_table(columns=["event_id"])
    return table.column("event_id").to_pylist()


def test_live_watch_lands_each_event(tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    output = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "--streaming",
        "--poll_interval",
        "1",
        "--input",
        f"{inbox}/*",
        "--output",
        str(output),
        *LOCAL_RUNNER_ARGS,
    ]
    env = dict(os.environ, PYTHONPATH=str(MAIN))
    process = subprocess.Popen(
        command,
        cwd=MAIN,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        shutil.copy(CORPUS / "fluentd-s3-20220228_0.log", inbox)
        time.sleep(1.5)
        shutil.copy(CORPUS / "fluentd-gcs-20231214_0.log", inbox)
        time.sleep(1.5)
        # A FluentD retry: the first chunk uploaded again, gzipped, as a new object.
        data = (CORPUS / "fluentd-s3-20220228_0.log").read_bytes()
        (inbox / "fluentd-s3-20220228_7.log.gz").write_bytes(gzip.compress(data))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            state = list((output / "_state").glob("*.json"))
            recorded = sum(path.read_text().count('"path"') for path in state)
            if recorded == 3:
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        log, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, log
    ids = _event_ids(output)
    assert len(ids) == 4, log
    assert len(set(ids)) == 4
