"""Deduplication: partition keys, repeated events and ids stored by earlier runs."""

import hashlib
import os

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

from tests.beam_helpers import local_test_pipeline
from transforms.deduplicate import (
    BlobSpill,
    DeduplicatePartitions,
    KeyByPartition,
    decode_rows,
    drop_repeated_events,
    encode_rows,
    event_date,
    event_partition,
    load_blob,
    rows_to_batch,
    shard_of,
    stored_event_ids,
)
from transforms.schema import EVENT_SCHEMA
from transforms.write import write_table_atomically

# 2022-02-28T15:48:55Z in microseconds.
T = 1646063335_000000


def _event(event_id, category="security", time=T, line=1):
    return {
        "event_id": event_id,
        "event_time": time,
        "category": category,
        "source_uri": "f.log",
        "source_line": line,
        "message_fields": [("Result description", "Detected")],
        "sd_params": {"et": "GNRL_EV_VIRUS_FOUND"},
    }


def _table(ids):
    return decode_rows(encode_rows([_event(i) for i in ids], EVENT_SCHEMA))


@pytest.mark.parametrize(
    ("micros", "date"),
    [
        (T, "2022-02-28"),
        (0, "1970-01-01"),
        (-1, "1969-12-31"),
        (86_400_000_000, "1970-01-02"),
    ],
)
def test_event_date_is_utc_day(micros, date):
    assert event_date(micros) == date


def test_partition_folder_layout():
    assert event_partition("security", T) == "category=security/event_date=2022-02-28"


@pytest.mark.parametrize("category", ["../../etc", "security/../x", "", "Security"])
def test_partition_rejects_invalid_category(category):
    with pytest.raises(ValueError):
        event_partition(category, T)


def test_shard_spreads_event_ids():
    ids = [hashlib.blake2b(bytes([i]), digest_size=16).hexdigest() for i in range(64)]
    assert {shard_of(event_id, 4) for event_id in ids} == {0, 1, 2, 3}


def test_rows_survive_ipc_round_trip():
    table = _table(["a" * 32])
    assert table.column("message_fields").to_pylist() == [
        [{"key": "Result description", "value": "Detected"}]
    ]
    assert table.column("sd_params").to_pylist() == [[("et", "GNRL_EV_VIRUS_FOUND")]]


def test_repeated_ids_dropped_first_kept():
    kept, repeated, stored = drop_repeated_events(
        [_table(["a", "b"]), _table(["b", "c", "a"])], set()
    )
    assert kept.column("event_id").to_pylist() == ["a", "b", "c"]
    assert repeated == 2
    assert stored == 0


def test_stored_ids_dropped_and_counted():
    kept, repeated, stored = drop_repeated_events([_table(["a", "b", "b", "a"])], {"a"})
    assert kept.column("event_id").to_pylist() == ["b"]
    assert repeated == 1
    assert stored == 2


def test_repeated_copy_kept_by_source_order():
    later = decode_rows(
        encode_rows([dict(_event("a"), source_uri="z.log")], EVENT_SCHEMA)
    )
    earlier = decode_rows(
        encode_rows([dict(_event("a"), source_uri="b.log")], EVENT_SCHEMA)
    )
    kept, _, _ = drop_repeated_events([later, earlier], set())
    assert kept.column("source_uri").to_pylist() == ["b.log"]


def test_stored_ids_skip_own_run(tmp_path):
    folder = tmp_path / "category=security" / "event_date=2022-02-28"
    write_table_atomically(_table(["a"]), str(folder / "part-run1-0000.parquet"))
    write_table_atomically(_table(["b"]), str(folder / "part-run2-0000.parquet"))
    assert stored_event_ids(str(folder), "run2") == {"a"}


def test_stored_ids_missing_folder_empty(tmp_path):
    assert stored_event_ids(str(tmp_path / "nothing"), "run") == set()


def test_spilled_blobs_share_one_file(tmp_path):
    spill = BlobSpill(str(tmp_path))
    first, second = spill.store(b"first rows"), spill.store(b"second rows")
    spill.close()
    assert first[0] == second[0]
    assert load_blob(first) == b"first rows"
    assert load_blob(second) == b"second rows"


def test_blob_without_folder_stays_bytes():
    assert BlobSpill(None).store(b"encoded rows") == b"encoded rows"


def test_truncated_spill_file_raises(tmp_path):
    spill = BlobSpill(str(tmp_path))
    path, offset, size = spill.store(b"encoded rows")
    spill.close()
    with open(path, "r+b") as handle:
        handle.truncate(4)
    with pytest.raises(OSError, match="ends before byte"):
        load_blob((path, offset, size))


def test_dedup_through_shuffle_folder(tmp_path):
    folder = tmp_path / "shuffle"
    folder.mkdir()
    events = [[_event("a" * 32), _event("b" * 32)], [_event("a" * 32, line=2)]]
    with local_test_pipeline() as pipeline:
        batches = pipeline | "Events" >> beam.Create(events)
        letters = pipeline | "Letters" >> beam.Create([])
        keyed = (batches, letters) | KeyByPartition(
            1, "run", "2026-12-04", shuffle_folder=str(folder)
        )
        deduped = keyed | DeduplicatePartitions(str(tmp_path / "out"), "run")
        written = deduped | beam.Map(lambda item: item[2]["events_written"])
        assert_that(written, equal_to([{"security": 2}]))
    assert os.listdir(folder)


def test_dedup_transform_counts_duplicates(tmp_path):
    events = [[_event("a" * 32), _event("b" * 32)], [_event("a" * 32, line=2)]]
    with local_test_pipeline() as pipeline:
        batches = pipeline | "Events" >> beam.Create(events)
        letters = pipeline | "Letters" >> beam.Create([])
        keyed = (batches, letters) | KeyByPartition(1, "run", "2026-12-04")
        deduped = keyed | DeduplicatePartitions(str(tmp_path), "run")
        stats = deduped | beam.Map(lambda item: item[2])
        assert_that(
            stats,
            equal_to(
                [
                    {
                        "events_written": {"security": 2},
                        "duplicates_dropped": 1,
                        "duplicates_already_stored": 0,
                    }
                ]
            ),
        )


def test_unconvertible_event_becomes_dead_letter(tmp_path):
    bad = dict(_event("b" * 32), process_pid=10**30)
    with local_test_pipeline() as pipeline:
        batches = pipeline | "Events" >> beam.Create([[_event("a" * 32), bad]])
        letters = pipeline | "Letters" >> beam.Create([])
        keyed = (batches, letters) | KeyByPartition(1, "run", "2026-12-04")
        deduped = keyed | DeduplicatePartitions(str(tmp_path), "run")
        stats = deduped | beam.Map(lambda item: item[2])
        assert_that(
            stats,
            equal_to(
                [
                    {"dead_letters": {"internal_error": 1}},
                    {
                        "events_written": {"security": 1},
                        "duplicates_dropped": 0,
                        "duplicates_already_stored": 0,
                    },
                ]
            ),
        )


@pytest.mark.parametrize(
    "params",
    [
        [{"et": "GNRL_EV_VIRUS_FOUND", "p5": "EICAR"}, None, {}],
        [None, None],
        [{}],
    ],
)
def test_map_column_matches_pyarrow(params):
    rows = [dict(_event("a" * 32), sd_params=value) for value in params]
    table = decode_rows(encode_rows(rows, EVENT_SCHEMA))
    expected = pa.array(params, type=EVENT_SCHEMA.field("sd_params").type)
    assert table.column("sd_params").combine_chunks().equals(expected)


def test_dedup_counts_beam_metrics(tmp_path):
    events = [[_event("a" * 32), _event("b" * 32)], [_event("a" * 32, line=2)]]
    pipeline = local_test_pipeline()
    batches = pipeline | "Events" >> beam.Create(events)
    letters = pipeline | "Letters" >> beam.Create([])
    keyed = (batches, letters) | KeyByPartition(1, "run", "2026-12-04")
    _ = keyed | DeduplicatePartitions(str(tmp_path), "run")
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        item.key.metric.name: item.committed
        for item in result.metrics().query()["counters"]
    }
    assert counters["events_written_security"] == 2
    assert counters["duplicates_dropped"] == 1


_COPY = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from(["x.log", "y.log", "z.log"]),
    st.integers(min_value=1, max_value=4),
)


@given(
    st.lists(st.lists(_COPY, max_size=8), max_size=4),
    st.sets(st.sampled_from(["a", "b", "c", "d"])),
)
def test_dedup_matches_first_copy_model(chunks, stored):
    tables = [
        decode_rows(
            encode_rows(
                [
                    dict(_event(event_id, line=line), source_uri=uri)
                    for event_id, uri, line in chunk
                ],
                EVENT_SCHEMA,
            )
        )
        for chunk in chunks
    ]
    copies = [copy for chunk in chunks for copy in chunk]
    first = {}
    for copy in copies:
        if copy[0] not in first or copy[1:] < first[copy[0]]:
            first[copy[0]] = copy[1:]
    expected = [
        copy
        for index, copy in enumerate(copies)
        if copy[0] not in stored
        and copy[1:] == first[copy[0]]
        and copy not in copies[:index]
    ]
    kept, repeated, already_stored = drop_repeated_events(tables, stored)
    columns = ["event_id", "source_uri", "source_line"]
    kept_rows = [] if kept is None else kept.select(columns).to_pylist()
    assert [tuple(row.values()) for row in kept_rows] == expected
    assert repeated + already_stored == len(copies) - len(expected)
    assert already_stored == sum(copy[0] in stored for copy in copies)


_ROW_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.text(max_size=4),
        "source_line": st.integers(-(2**63), 2**63 - 1),
        "sd_params": st.none() | st.dictionaries(st.text(max_size=3), st.text()),
        "message_fields": st.lists(st.tuples(st.text(max_size=3), st.text())),
        "parse_issues": st.lists(st.text(max_size=3)),
        "_internal": st.integers(),
    },
)


@given(st.lists(_ROW_VALUES, max_size=5))
def test_rows_to_batch_matches_columns(rows):
    expected = [
        pa.array([row.get(field.name) for row in rows], type=field.type)
        for field in EVENT_SCHEMA
    ]
    batch = rows_to_batch(rows, EVENT_SCHEMA)
    assert batch.schema == EVENT_SCHEMA
    assert batch.columns == expected
