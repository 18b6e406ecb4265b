"""Tests for pipeline.storage: Beam FileSystems against real storage emulators.

The store tests upload FluentD objects such as
``kav/2022/02/28/fluentd-s3-20220228_1.log.gz``, whose lines look like
``2022-02-28T15:48:55+00:00<TAB>kav_logs.user.crit<TAB>{"host":"host-01.example.local",
"ident":"KES|11.0.0.0","msgid":"GNRL_EV_VIRUS_FOUND",...}``, with the store's own
client, then match, open, create and rename them through Beam's FileSystems
only, after ``install_filesystem_fixes()``.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.internal.gcp import auth
from apache_beam.io.aws.clients.s3 import boto3_client
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.storage import install_filesystem_fixes, is_local, join_uri, redact
from tests.emulators import AZURITE_ACCOUNT_KEY, S3Emulator

CORPUS = Path(__file__).parent / "data" / "corpus"
PLAIN_LOG = CORPUS / "fluentd-s3-20220228_0.log"
GZIP_LOG = CORPUS / "fluentd-s3-20220228_1.log.gz"
SLICE_PREFIX = "kav/2022/02/28/"
STORES = ["s3_server", "azurite_server", "gcs_server"]
MANY_OBJECTS = 1200
NO_PRISM = "--prism_location=/nonexistent/prism.zip"


def corpus_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def read_uri(uri: str, **kwargs: Any) -> bytes:
    with FileSystems.open(uri, **kwargs) as handle:
        return handle.read()


def matched_paths(pattern: str) -> list[str]:
    [result] = FileSystems.match([pattern])
    return sorted(metadata.path for metadata in result.metadata_list)


@contextmanager
def store_options(pipeline_args: list[str]) -> Iterator[None]:
    """Point FileSystems at one emulator, restoring the previous options after."""
    install_filesystem_fixes()
    previous = FileSystems._pipeline_options
    FileSystems.set_options(PipelineOptions(pipeline_args))
    try:
        yield
    finally:
        FileSystems._pipeline_options = previous


@pytest.fixture(params=STORES)
def store_bucket(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """An emulator with FileSystems options set and a new, empty bucket."""
    emulator = request.getfixturevalue(request.param)
    bucket = emulator.create_bucket()
    with store_options(emulator.pipeline_args):
        yield emulator, bucket


@pytest.fixture
def fluentd_slice(store_bucket: tuple[Any, str]) -> tuple[Any, str, str, str]:
    """A plain and a gzip FluentD object in one daily slice prefix."""
    emulator, bucket = store_bucket
    plain_uri = emulator.upload(
        bucket, SLICE_PREFIX + PLAIN_LOG.name, PLAIN_LOG.read_bytes()
    )
    gzip_uri = emulator.upload(
        bucket, SLICE_PREFIX + GZIP_LOG.name, GZIP_LOG.read_bytes()
    )
    return emulator, bucket, plain_uri, gzip_uri


def test_match_glob_finds_slice_objects(
    fluentd_slice: tuple[Any, str, str, str],
) -> None:
    emulator, bucket, plain_uri, gzip_uri = fluentd_slice

    pattern = emulator.uri(bucket, SLICE_PREFIX + "fluentd-s3-20220228_*")

    assert matched_paths(pattern) == sorted([plain_uri, gzip_uri])


def test_match_reports_object_sizes(fluentd_slice: tuple[Any, str, str, str]) -> None:
    emulator, bucket, plain_uri, gzip_uri = fluentd_slice

    [result] = FileSystems.match([emulator.uri(bucket, SLICE_PREFIX + "*")])
    sizes = {metadata.path: metadata.size_in_bytes for metadata in result.metadata_list}

    assert sizes == {
        plain_uri: PLAIN_LOG.stat().st_size,
        gzip_uri: GZIP_LOG.stat().st_size,
    }


def test_open_reads_plain_object(fluentd_slice: tuple[Any, str, str, str]) -> None:
    _, _, plain_uri, _ = fluentd_slice

    lines = read_uri(plain_uri).decode("utf-8").splitlines()

    assert lines == corpus_lines(PLAIN_LOG)
    assert lines[0].startswith("2022-02-28T15:48:55+00:00\tkav_logs.user.crit\t{")


def test_open_decodes_gzip_by_suffix(fluentd_slice: tuple[Any, str, str, str]) -> None:
    _, _, _, gzip_uri = fluentd_slice

    lines = read_uri(gzip_uri).decode("utf-8").splitlines()

    assert lines == corpus_lines(GZIP_LOG)
    assert '"msgid":"GNRL_EV_VIRUS_FOUND"' in lines[0]


def test_gzip_without_suffix_reads_raw(store_bucket: tuple[Any, str]) -> None:
    emulator, bucket = store_bucket
    uri = emulator.upload(bucket, "kav/no-suffix.log", GZIP_LOG.read_bytes())

    assert read_uri(uri)[:2] == b"\x1f\x8b"
    assert read_uri(uri, compression_type=CompressionTypes.GZIP).decode(
        "utf-8"
    ).splitlines() == corpus_lines(GZIP_LOG)


def test_create_writes_readable_object(store_bucket: tuple[Any, str]) -> None:
    emulator, bucket = store_bucket
    data = PLAIN_LOG.read_bytes()
    uri = emulator.uri(bucket, "out/events.log")

    with FileSystems.create(uri) as handle:
        handle.write(data)

    assert emulator.list_keys(bucket) == ["out/events.log"]
    assert emulator.read(bucket, "out/events.log") == data
    assert read_uri(uri) == data


def test_create_gz_suffix_compresses(store_bucket: tuple[Any, str]) -> None:
    emulator, bucket = store_bucket
    data = PLAIN_LOG.read_bytes()
    uri = emulator.uri(bucket, "out/events.log.gz")

    with FileSystems.create(uri) as handle:
        handle.write(data)

    stored = emulator.read(bucket, "out/events.log.gz")
    assert gzip.decompress(stored) == data
    assert read_uri(uri) == data


def test_rename_moves_object(store_bucket: tuple[Any, str]) -> None:
    emulator, bucket = store_bucket
    data = GZIP_LOG.read_bytes()
    source = emulator.upload(bucket, "tmp/part-0.log.gz", data)
    destination = emulator.uri(bucket, "final/dt=2022-02-28/part-0.log.gz")

    FileSystems.rename([source], [destination])

    assert emulator.list_keys(bucket) == ["final/dt=2022-02-28/part-0.log.gz"]
    assert emulator.read(bucket, "final/dt=2022-02-28/part-0.log.gz") == data
    assert not FileSystems.exists(source)


def test_exists_missing_object_false(store_bucket: tuple[Any, str]) -> None:
    emulator, bucket = store_bucket
    uri = emulator.upload(bucket, "kav/present.log", PLAIN_LOG.read_bytes())

    assert FileSystems.exists(uri) is True
    assert FileSystems.exists(emulator.uri(bucket, "kav/missing.log")) is False


GLOB_CASES = [
    # (pattern under the bucket, keys expected to match)
    ("kav/*", []),
    ("kav/**", ["kav/2021/05/a.log", "kav/2021/05/b.log.gz"]),
    ("kav/2021/05/*", ["kav/2021/05/a.log", "kav/2021/05/b.log.gz"]),
    ("kav/2021/*/*.gz", ["kav/2021/05/b.log.gz"]),
    ("kav/2021/05/?.log", ["kav/2021/05/a.log"]),
    ("kav/**.gz", ["kav/2021/05/b.log.gz"]),
]


def test_glob_star_stops_at_slash(store_bucket: tuple[Any, str]) -> None:
    emulator, bucket = store_bucket
    emulator.upload(bucket, "kav/2021/05/a.log", PLAIN_LOG.read_bytes())
    emulator.upload(bucket, "kav/2021/05/b.log.gz", GZIP_LOG.read_bytes())

    for pattern, keys in GLOB_CASES:
        expected = [emulator.uri(bucket, key) for key in keys]
        assert matched_paths(emulator.uri(bucket, pattern)) == expected, pattern


def many_object_lines() -> dict[str, bytes]:
    return {
        f"many/2022/02/28/{hour:02d}/fluentd-{index:05d}.log": (
            f"2022-02-28T{hour:02d}:00:00+00:00\tkav_logs.user.info\t"
            f'{{"msgid":"OBJECT_{index:05d}"}}\n'
        ).encode()
        for index in range(MANY_OBJECTS)
        for hour in [index % 24]
    }


@pytest.fixture(scope="module")
def many_s3_objects(s3_server: S3Emulator) -> tuple[S3Emulator, str, dict[str, bytes]]:
    """A bucket with MANY_OBJECTS one-line objects spread over 24 hour prefixes."""
    objects = many_object_lines()
    bucket = s3_server.create_bucket("many")
    s3_server.upload_many(bucket, objects)
    return s3_server, bucket, objects


def test_many_s3_objects_match_and_read(
    many_s3_objects: tuple[S3Emulator, str, dict[str, bytes]],
) -> None:
    s3_server, bucket, objects = many_s3_objects
    with store_options(s3_server.pipeline_args):
        paths = matched_paths(s3_server.uri(bucket, "many/**"))
        with ThreadPoolExecutor(max_workers=8) as pool:
            contents = dict(zip(paths, pool.map(read_uri, paths), strict=True))

    assert len(paths) == MANY_OBJECTS
    assert contents == {
        s3_server.uri(bucket, key): data for key, data in objects.items()
    }


def test_many_s3_objects_read_from_text(
    many_s3_objects: tuple[S3Emulator, str, dict[str, bytes]],
) -> None:
    s3_server, bucket, objects = many_s3_objects
    install_filesystem_fixes()
    expected = [data.decode().rstrip("\n") for data in objects.values()]
    options = PipelineOptions([*s3_server.pipeline_args, NO_PRISM])

    with TestPipeline(options=options) as pipeline:
        lines = pipeline | "ReadManyObjects" >> beam.io.ReadFromText(
            s3_server.uri(bucket, "many/**")
        )
        assert_that(lines, equal_to(expected))


def test_s3_client_shared_per_options(s3_server: S3Emulator) -> None:
    install_filesystem_fixes()
    options = PipelineOptions(s3_server.pipeline_args)
    other_region = PipelineOptions(
        [*s3_server.pipeline_args, "--s3_region_name=eu-west-1"]
    )

    first = boto3_client.Client(options)
    second = boto3_client.Client(PipelineOptions(s3_server.pipeline_args))
    third = boto3_client.Client(other_region)

    assert first.client is second.client
    assert first.client is not third.client
    assert first is not second


def test_install_fixes_is_idempotent() -> None:
    install_filesystem_fixes()
    shim = boto3_client.boto3

    install_filesystem_fixes()

    assert boto3_client.boto3 is shim
    assert type(shim).__name__ == "_CachingBoto3"


def test_gcs_emulator_skips_credentials_lookup(gcs_server: Any) -> None:
    auth._Credentials._credentials_init = False

    install_filesystem_fixes()

    assert auth._Credentials._credentials_init is True
    assert auth.get_service_credentials(PipelineOptions([])) is None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/data/fluentd/kav.log", True),
        ("tests/data/corpus/*.log", True),
        ("s3://kav-logs/kav/2022/02/28/", False),
        ("gs://kav-logs/kav/", False),
        ("azfs://devstoreaccount1/kav-logs/kav/", False),
    ],
)
def test_is_local_by_scheme(uri: str, expected: bool) -> None:
    assert is_local(uri) is expected


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        (
            "s3://kav-out",
            ("events", "part.parquet"),
            "s3://kav-out/events/part.parquet",
        ),
        ("s3://kav-out/", ("/dt=2022-02-28/", "x"), "s3://kav-out/dt=2022-02-28/x"),
        (
            "gs://kav-out/events",
            ("dt=2022-02-28/",),
            "gs://kav-out/events/dt=2022-02-28/",
        ),
        (
            "azfs://devstoreaccount1/kav-out",
            ("dt=2022-02-28", "hour=15"),
            "azfs://devstoreaccount1/kav-out/dt=2022-02-28/hour=15",
        ),
        (
            "/tmp/out",
            ("dt=2022-02-28", "part.parquet"),
            "/tmp/out/dt=2022-02-28/part.parquet",
        ),
        ("/tmp/out/", ("/dt=2022-02-28",), "/tmp/out/dt=2022-02-28"),
        ("out", ("", "dt=2022-02-28"), "out/dt=2022-02-28"),
        ("s3://kav-out/events", (), "s3://kav-out/events"),
    ],
)
def test_join_uri_local_and_object(
    base: str, parts: tuple[str, ...], expected: str
) -> None:
    assert join_uri(base, *parts) == expected


AZURE_KEY = "c2VjcmV0LWFjY291bnQta2V5LWZvci10ZXN0cw=="
CONNECTION_STRING = (
    "DefaultEndpointsProtocol=https;AccountName=kavlogs;"
    f"AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "--s3_access_key_id=AKIAEXAMPLE --s3_secret_access_key=wJalrXUtnFE/K7MD",
            "--s3_access_key_id=AKIAEXAMPLE --s3_secret_access_key=***",
        ),
        (
            "--s3_session_token FwoGZXIvYXdzEJr// --s3_region_name=eu-west-1",
            "--s3_session_token *** --s3_region_name=eu-west-1",
        ),
        (
            f"--azure_connection_string={CONNECTION_STRING} --output=azfs://kavlogs/out/",
            "--azure_connection_string=*** --output=azfs://kavlogs/out/",
        ),
        (
            f"--azure_connection_string='{CONNECTION_STRING}'",
            "--azure_connection_string='***'",
        ),
        (
            f"failed to connect with {CONNECTION_STRING}",
            "failed to connect with DefaultEndpointsProtocol=https;AccountName=kavlogs;"
            "AccountKey=***;EndpointSuffix=core.windows.net",
        ),
        (
            "BlobEndpoint=https://kavlogs.blob.core.windows.net/;"
            "SharedAccessSignature=sv=2022-11-02&ss=b&sig=abc%2Bdef%3D",
            "BlobEndpoint=https://kavlogs.blob.core.windows.net/;SharedAccessSignature=***",
        ),
        (
            "GET https://kavlogs.blob.core.windows.net/logs/a.log?sv=2022-11-02&sr=b"
            "&sig=abc%2Bdef%3D&se=2026-01-01 403",
            "GET https://kavlogs.blob.core.windows.net/logs/a.log?sv=2022-11-02&sr=b"
            "&sig=***&se=2026-01-01 403",
        ),
        (
            "https://kav.s3.amazonaws.com/a.log?X-Amz-Signature=0123abcd&X-Amz-Expires=60",
            "https://kav.s3.amazonaws.com/a.log?X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        (
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI AWS_REGION=eu-west-1",
            "AWS_SECRET_ACCESS_KEY=*** AWS_REGION=eu-west-1",
        ),
        (
            "{'s3_secret_access_key': 'wJalrXUtnFEMI', 's3_region_name': 'us-east-1'}",
            "{'s3_secret_access_key': '***', 's3_region_name': 'us-east-1'}",
        ),
        (
            '{"azure_connection_string": "' + CONNECTION_STRING + '", "runner": null}',
            '{"azure_connection_string": "***", "runner": null}',
        ),
        (
            "read 2 files from s3://kav-logs/kav/2022/02/28/ in 0.4 s",
            "read 2 files from s3://kav-logs/kav/2022/02/28/ in 0.4 s",
        ),
    ],
)
def test_redact_removes_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_hides_emulator_key(azurite_server: Any) -> None:
    command_line = " ".join(azurite_server.pipeline_args)

    redacted = redact(command_line)

    assert AZURITE_ACCOUNT_KEY not in redacted
    assert redacted == "--azure_connection_string=***"
