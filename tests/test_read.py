"""ReadLines: compression by suffix, line numbers, and files that fail."""

import gzip
import os

import apache_beam as beam
import zstandard
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

from tests.beam_helpers import local_test_pipeline
from transforms.read import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LINE_BYTES,
    STATS,
    InputFile,
    MatchInputs,
    ReadLines,
    SpreadFiles,
    _ReadLines,
    estimated_text_bytes,
    order_for_workers,
    split_blocks,
)

LINES = [b"first line", b"second line", b"third line"]


def _run(paths, **kwargs):
    """Call the read DoFn on each path; return (lines, dead letters, stats)."""
    lines, dead, stats = [], [], []
    read = _ReadLines(
        kwargs.get("batch_size", DEFAULT_BATCH_SIZE),
        kwargs.get("max_line_bytes", DEFAULT_MAX_LINE_BYTES),
    )
    read.setup()
    for path in paths:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        for output in read.process(InputFile(path, size)):
            if isinstance(output, TaggedOutput) and output.tag == STATS:
                stats.append(output.value)
            elif isinstance(output, TaggedOutput):
                dead.extend(
                    (r["source_uri"].rsplit("/", 1)[-1], r["source_line"], r["error"])
                    for r in output.value
                )
            else:
                lines.extend(
                    (
                        r["source_uri"].rsplit("/", 1)[-1],
                        r["source_line"],
                        r["raw"],
                        r.get("_unterminated", False),
                        tuple(r.get("parse_issues", ())),
                    )
                    for r in output
                )
    return lines, dead, stats


def test_plain_file_numbered_lines(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    lines, dead, stats = _run([str(path)])
    assert sorted(lines) == [
        ("a.log", 1, "first line", False, ()),
        ("a.log", 2, "second line", False, ()),
        ("a.log", 3, "third line", False, ()),
    ]
    assert dead == []
    assert stats[0]["lines_read"] == 3


def test_gzip_file_by_suffix(tmp_path):
    path = tmp_path / "a.log.gz"
    path.write_bytes(gzip.compress(b"\n".join(LINES) + b"\n"))
    lines, _, _ = _run([str(path)])
    assert [line[2] for line in sorted(lines)] == [
        "first line",
        "second line",
        "third line",
    ]


def test_zstd_file_by_suffix(tmp_path):
    path = tmp_path / "a.log.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(LINES) + b"\n"))
    lines, _, _ = _run([str(path)])
    assert len(lines) == 3


def test_multi_member_gzip_read_fully(tmp_path):
    path = tmp_path / "a.log.gz"
    path.write_bytes(gzip.compress(b"one\n") + gzip.compress(b"two\n"))
    lines, _, _ = _run([str(path)])
    assert [line[2] for line in sorted(lines)] == ["one", "two"]


def test_unterminated_last_line_marked(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo")
    lines, _, _ = _run([str(path)])
    assert sorted(lines)[-1] == ("a.log", 2, "two", True, ())


def test_invalid_utf8_replaced_and_flagged(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"caf\xe9\n")
    lines, _, _ = _run([str(path)])
    assert lines == [("a.log", 1, "caf\ufffd", False, ("invalid_utf8",))]


def test_small_batches_keep_every_line(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(25)))
    lines, _, stats = _run([str(path)], batch_size=4)
    assert sorted(line[1] for line in lines) == list(range(1, 26))
    assert stats[0]["lines_read"] == 25


def test_truncated_gzip_reported_with_path(tmp_path):
    path = tmp_path / "cut.log.gz"
    data = gzip.compress(b"".join(b"line %d\n" % i for i in range(2000)))
    path.write_bytes(data[: len(data) // 2])
    lines, dead, stats = _run([str(path)])
    assert [d[2] for d in dead] == ["unreadable_file"]
    assert dead[0][0] == "cut.log.gz"
    assert stats[0]["files_unreadable"] == [str(path)]
    assert stats[0]["lines_read"] == len(lines) + 1


def test_vanished_file_reported(tmp_path):
    lines, dead, stats = _run([str(tmp_path / "gone.log")])
    assert lines == []
    assert dead == [("gone.log", None, "unreadable_file")]
    assert stats[0]["lines_read"] == 1


def test_binary_file_one_dead_letter(tmp_path):
    path = tmp_path / "image.log"
    path.write_bytes(bytes(range(256)) * 64)
    lines, dead, _ = _run([str(path)])
    assert lines == []
    assert dead == [("image.log", None, "binary_file")]


def test_long_line_refused_next_kept(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"short\n" + b"x" * 5000 + b"\nafter\n")
    lines, dead, stats = _run([str(path)], max_line_bytes=1000)
    assert sorted((line[1], line[2]) for line in lines) == [(1, "short"), (3, "after")]
    assert dead == [("a.log", 2, "line_too_long")]
    assert stats[0]["lines_read"] == 3


def test_empty_file_reads_nothing(tmp_path):
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    lines, dead, stats = _run([str(path)])
    assert lines == []
    assert dead == []
    assert stats[0]["lines_read"] == 0


def test_match_skips_hidden_names(tmp_path):
    (tmp_path / "a.log").write_bytes(b"x\n")
    (tmp_path / "_manifest.json").write_bytes(b"{}")
    (tmp_path / ".tmp.log").write_bytes(b"x\n")
    with local_test_pipeline() as pipeline:
        files, matches = pipeline | MatchInputs([str(tmp_path / "*")])
        names = files | beam.Map(lambda f: f.path.rsplit("/", 1)[-1])
        assert_that(names, equal_to(["a.log"]), label="Files")
        assert_that(
            matches | "Counts" >> beam.Map(lambda m: m["files"]),
            equal_to([1]),
            label="Counts",
        )


def test_read_transform_in_pipeline(tmp_path):
    path = tmp_path / "a.log.gz"
    path.write_bytes(gzip.compress(b"\n".join(LINES) + b"\n"))
    with local_test_pipeline() as pipeline:
        files = pipeline | beam.Create([InputFile(str(path), 0)])
        lines, dead, stats = files | ReadLines()
        raws = lines | "Raw" >> beam.FlatMap(lambda batch: [r["raw"] for r in batch])
        assert_that(raws, equal_to([line.decode() for line in LINES]), label="Lines")
        assert_that(dead, equal_to([]), label="Dead")
        counts = stats | "Count" >> beam.Map(lambda s: s["lines_read"])
        assert_that(counts, equal_to([3]), label="Stats")


def test_files_ordered_for_two_workers():
    files = [(f"{size}.log", size) for size in (4, 9, 6, 8, 5, 7)]
    ordered = order_for_workers(files, 2)
    assert [size for _, size in ordered] == [9, 8, 6, 7, 5, 4]


def test_repeated_files_listed_once():
    ordered = order_for_workers([("a.log", 3), ("a.log", 3), ("b.log", 1)], 2)
    assert ordered == [("a.log", 3), ("b.log", 1)]


def test_same_file_two_spellings_listed_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absolute = str(tmp_path / "a.log")
    ordered = order_for_workers([(absolute, 3), ("./a.log", 3), ("a.log", 3)], 2)
    assert len(ordered) == 1


def test_grown_file_keeps_larger_size():
    ordered = order_for_workers([("s3://logs/a.log", 3), ("s3://logs/a.log", 5)], 2)
    assert ordered == [("s3://logs/a.log", 5)]


def test_compressed_files_weigh_more():
    assert estimated_text_bytes("s3://logs/a.log.gz", 10) > 10
    assert estimated_text_bytes("s3://logs/a.log.zst", 10) > 10
    assert estimated_text_bytes("s3://logs/a.log", 10) == 10


@given(
    st.lists(st.integers(min_value=1, max_value=10**6), max_size=60),
    st.integers(min_value=1, max_value=4),
)
def test_dealt_files_balance_workers(sizes, workers):
    files = [(f"{index}.log", size) for index, size in enumerate(sizes)]
    ordered = order_for_workers(files, workers)
    loads = [
        sum(size for _, size in ordered[worker::workers]) for worker in range(workers)
    ]
    assert sorted(ordered) == sorted(files)
    assert max(loads) - min(loads) <= max(sizes, default=0)


def test_spread_files_keeps_every_file(tmp_path):
    files = [(str(tmp_path / f"{index}.log"), index) for index in range(7)]
    with local_test_pipeline() as pipeline:
        spread = (
            pipeline
            | beam.Create(files + files[:2])
            | SpreadFiles(workers=2)
            | beam.Map(tuple)
        )
        assert_that(spread, equal_to(files))


def _split_model(content: bytes, max_line_bytes: int):
    """Cut the whole content at once into the tuples `split_blocks` documents."""
    *complete, rest = content.split(b"\n")
    kept = min(4096, max_line_bytes)
    pieces = [(line, True) for line in complete] + ([(rest, False)] if rest else [])
    return [
        (number, line if len(line) <= max_line_bytes else line[:kept], len(line), ends)
        for number, (line, ends) in enumerate(pieces, start=1)
    ]


@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"\n"))),
    st.integers(min_value=1, max_value=8),
)
def test_split_blocks_matches_line_model(blocks, max_line_bytes):
    lines = list(split_blocks(iter(blocks), max_line_bytes))
    assert lines == _split_model(b"".join(blocks), max_line_bytes)
