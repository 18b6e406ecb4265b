"""Running the same input again adds no rows, whatever the order of files.

The input is two folders of FluentD files, each line such as

    2022-01-01T00:00:00+00:00<TAB>kav_logs.user.crit<TAB>{"host":"HOST-00-00000",...}

plus one line repeated within a file (the same event in the same second,
so the same event id) and one broken line. The first run reads
`--input A/*.log --input B/*.log`. The second run writes into the same
output from copies of the files under other names, with the patterns
swapped. Dead letters are written again by every run, under that run's id.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from tests.test_broken_input import (
    TIME_TAG,
    kes_record,
    run_cli,
    stored_dead_letters,
    stored_events,
    write_event_files,
)
from transforms import deduplicate
from transforms.deduplicate import (
    drop_repeated_blobs,
    drop_repeated_events,
    encode_rows,
)
from transforms.schema import EVENT_SCHEMA

FILES_PER_FOLDER = 2
LINES_PER_FILE = 300
REPEATED_LINE = TIME_TAG + kes_record("REPEATED-01") + "\n"
BROKEN_LINE = TIME_TAG + '["not", "an", "object"]\n'
EVENTS = 2 * FILES_PER_FOLDER * LINES_PER_FILE + 1
LINES = EVENTS + 2
COLUMNS = ["event_id", "source_uri", "source_line", "host", "event_time"]


def make_inputs(root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    first, second = root / "a", root / "b"
    write_event_files(first, FILES_PER_FOLDER, LINES_PER_FILE)
    write_event_files(second, FILES_PER_FOLDER, LINES_PER_FILE)
    # The second folder's files must hold other events than the first's.
    for path in second.iterdir():
        path.write_text(path.read_text().replace('"HOST-', '"B-HOST-'))
    with open(first / "fluentd-00.log", "a") as handle:
        handle.write(REPEATED_LINE + REPEATED_LINE + BROKEN_LINE)
    return first, second


def shuffled_copies(folder: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """Copy files under reversed, renamed names, so they list in another order."""
    target.mkdir()
    paths = sorted(folder.iterdir())
    for index, path in enumerate(reversed(paths)):
        shutil.copy(path, target / f"z{index}-{path.stem[::-1]}.log")
    return target


def summary_of(output: pathlib.Path, run_id: str) -> dict:
    return json.loads((output / "_runs" / f"{run_id}.json").read_text())


def sorted_rows(output: pathlib.Path) -> list[tuple]:
    rows = stored_events(output, COLUMNS)
    return sorted(tuple(row[name] for name in COLUMNS) for row in rows)


@pytest.fixture(scope="module")
def reruns(tmp_path_factory):
    root = tmp_path_factory.mktemp("reruns")
    first, second = make_inputs(root)
    output = root / "out"
    status = {}
    status["first"] = run_cli(
        "--input",
        str(first / "*.log"),
        "--input",
        str(second / "*.log"),
        "--output",
        str(output),
        "--run_id",
        "20261204T000001Z-first000",
    )

    after_first = sorted_rows(output)
    letters_first = stored_dead_letters(output)
    first_summary = summary_of(output, "20261204T000001Z-first000")
    status["second"] = run_cli(
        "--input",
        str(shuffled_copies(second, root / "b2") / "*.log"),
        "--input",
        str(shuffled_copies(first, root / "a2") / "*.log"),
        "--output",
        str(output),
        "--run_id",
        "20261204T000002Z-second00",
    )

    after_second = sorted_rows(output)
    letters_second = stored_dead_letters(output)
    second_summary = summary_of(output, "20261204T000002Z-second00")

    other = root / "other-order"
    status["reversed"] = run_cli(
        "--input",
        str(second / "*.log"),
        "--input",
        str(first / "*.log"),
        "--output",
        str(other),
        "--run_id",
        "20261204T000003Z-reverse0",
    )

    return {
        "status": status,
        "after_first": after_first,
        "after_second": after_second,
        "other_order": sorted_rows(other),
        "letters_first": letters_first,
        "letters_second": letters_second,
        "first": first_summary,
        "second": second_summary,
    }


@pytest.mark.parametrize("run", ["first", "second", "reversed"])
def test_rerun_exits_zero(reruns, run):
    result = reruns["status"][run]
    assert result.returncode == 0, result.stderr[-2000:]


def test_first_run_keeps_each_event(reruns):
    assert len(reruns["after_first"]) == EVENTS


def test_first_run_drops_repeated_line(reruns):
    assert reruns["first"]["duplicates_dropped"] == 1


def test_repeated_line_keeps_first_copy(reruns):
    repeated = [row for row in reruns["after_first"] if row[3] == "REPEATED-01"]
    assert [row[2] for row in repeated] == [LINES_PER_FILE + 1]


def test_rerun_adds_no_rows(reruns):
    assert len(reruns["after_second"]) == len(reruns["after_first"])


def test_rerun_keeps_same_rows(reruns):
    assert reruns["after_second"] == reruns["after_first"]


def test_rerun_counts_stored_duplicates(reruns):
    second = reruns["second"]
    assert second["duplicates_already_stored"] == EVENTS + 1


def test_rerun_writes_no_events(reruns):
    assert sum(reruns["second"]["events_written"].values()) == 0


@pytest.mark.parametrize("run", ["first", "second"])
def test_rerun_books_balance(reruns, run):
    summary = reruns[run]
    assert summary["lines_read"] == LINES
    assert summary["balanced"] is True


def test_file_order_keeps_same_rows(reruns):
    assert reruns["other_order"] == reruns["after_first"]


def test_rerun_writes_dead_letters_again(reruns):
    runs = sorted(letter["run_id"] for letter in reruns["letters_second"])
    assert runs == ["20261204T000001Z-first000", "20261204T000002Z-second00"]


def test_rerun_counts_dead_letters(reruns):
    assert reruns["second"]["dead_letters"] == {"invalid_record": 1}


def _copies(count: int) -> list[dict]:
    return [
        {
            "event_id": f"{index % 7:032x}",
            "source_uri": f"/data/{(count - index) % 5}.log",
            "source_line": index,
            "event_time": 0,
        }
        for index in range(count)
    ]


def test_folded_dedup_matches_single_pass(monkeypatch):
    rows = _copies(60)
    blobs = [
        encode_rows(rows[start : start + 6], EVENT_SCHEMA) for start in range(0, 60, 6)
    ]
    stored = {f"{3:032x}"}
    expected = drop_repeated_events(
        [deduplicate.decode_rows(blob) for blob in blobs], stored
    )
    # A fold size below one blob reduces after every blob.
    monkeypatch.setattr(deduplicate, "FOLD_BYTES", 1)
    kept, repeated, already_stored = drop_repeated_blobs(blobs, stored)
    assert kept.to_pylist() == expected[0].to_pylist()
    assert (repeated, already_stored) == expected[1:]
