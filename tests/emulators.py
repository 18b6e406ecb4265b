"""Pytest fixtures that run real S3, Azure Blob Storage and GCS emulators.

Each session-scoped fixture starts one emulator as a subprocess on a free port
of 127.0.0.1 and stops it when the session ends:

* ``s3_server``: moto server, ``.venv/bin/moto_server -H 127.0.0.1 -p PORT``.
* ``azurite_server``: Azurite's blob service, started with ``--disableTelemetry``.
* ``gcs_server``: ``gcp-storage-emulator start ... --in-memory``. This fixture
  also sets ``STORAGE_EMULATOR_HOST`` in this process for the session, because
  Beam has no pipeline option for a GCS endpoint.

A fixture returns an emulator object. Its ``pipeline_args`` go to Beam, for
example ``["--s3_endpoint_url=http://127.0.0.1:40123",
"--s3_access_key_id=testing", ...]``, its ``env`` goes to subprocesses, and its
helpers create a bucket (or container), upload, list and read objects with the
store's own client library. Pipeline code under test must use Beam's
FileSystems instead. Load the fixtures with
``pytest_plugins = ["tests.emulators"]`` in the top-level conftest.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MOTO_SERVER = REPO_ROOT / ".venv" / "bin" / "moto_server"
GCS_EMULATOR = REPO_ROOT / ".venv" / "bin" / "gcp-storage-emulator"
AZURITE_BLOB = REPO_ROOT / "node_tools" / "node_modules" / ".bin" / "azurite-blob"

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
UPLOAD_THREADS = 16

# Keeps boto3 and google-auth from probing cloud metadata servers.
SAFE_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:1",
    "GCE_METADATA_IP": "127.0.0.1:1",
}

S3_ACCESS_KEY_ID = "testing"
S3_SECRET_ACCESS_KEY = "testing"
S3_REGION = "us-east-1"

# Azurite's built-in development account and its publicly known key.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw=="
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def unique_name(prefix: str = "kav") -> str:
    """Return a lowercase bucket or container name valid on all three stores."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class EmulatorProcess:
    """A running emulator subprocess and the file that receives its output."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, max_chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError as error:
            return f"(log {self.log_path} not readable: {error})"

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=STOP_TIMEOUT_S)


def start_emulator(
    name: str, argv: list[str], port: int, log_dir: Path
) -> EmulatorProcess:
    """Start ``argv`` and wait until ``port`` on 127.0.0.1 accepts connections.

    Fails the calling test (never skips it) when the executable is missing, the
    process exits, or the port stays closed for ``START_TIMEOUT_S`` seconds.
    """
    executable = Path(argv[0])
    if not executable.exists():
        pytest.fail(
            f"{name} not found at {executable}; install it first", pytrace=False
        )

    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **SAFE_ENV},
            cwd=log_dir,
        )
    process = EmulatorProcess(name, port, popen, log_path)

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            pytest.fail(
                f"{name} exited with code {popen.returncode} before listening on "
                f"{HOST}:{port}. Output:\n{process.log_tail()}",
                pytrace=False,
            )
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.05)

    process.stop()
    pytest.fail(
        f"{name} did not accept connections on {HOST}:{port} within "
        f"{START_TIMEOUT_S:.0f} s. Output:\n{process.log_tail()}",
        pytrace=False,
    )


def _run_in_threads(upload: Any, items: Iterable[tuple[str, bytes]]) -> list[str]:
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        return list(pool.map(lambda item: upload(*item), items))


@dataclass
class S3Emulator:
    """moto server: Beam options, subprocess env and boto3-based helpers."""

    process: EmulatorProcess
    endpoint: str
    scheme: str = "s3"
    _client: Any = field(default=None, repr=False)

    @property
    def pipeline_args(self) -> list[str]:
        return [
            f"--s3_endpoint_url={self.endpoint}",
            f"--s3_access_key_id={S3_ACCESS_KEY_ID}",
            f"--s3_secret_access_key={S3_SECRET_ACCESS_KEY}",
            f"--s3_region_name={S3_REGION}",
        ]

    @property
    def env(self) -> dict[str, str]:
        return dict(SAFE_ENV)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=S3_ACCESS_KEY_ID,
                aws_secret_access_key=S3_SECRET_ACCESS_KEY,
                region_name=S3_REGION,
                config=Config(max_pool_connections=UPLOAD_THREADS),
            )
        return self._client

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"

    def create_bucket(self, prefix: str = "kav") -> str:
        bucket = unique_name(prefix)
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def upload(self, bucket: str, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return self.uri(bucket, key)

    def upload_many(self, bucket: str, objects: Mapping[str, bytes]) -> list[str]:
        """Upload ``{key: data}`` with parallel requests and return the URIs."""
        return _run_in_threads(
            lambda key, data: self.upload(bucket, key, data), objects.items()
        )

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        keys = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


@dataclass
class AzuriteEmulator:
    """Azurite blob service: Beam options, subprocess env and SDK helpers."""

    process: EmulatorProcess
    endpoint: str
    scheme: str = "azfs"
    _service: Any = field(default=None, repr=False)

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    @property
    def pipeline_args(self) -> list[str]:
        return [f"--azure_connection_string={self.connection_string}"]

    @property
    def env(self) -> dict[str, str]:
        return dict(SAFE_ENV)

    @property
    def service(self) -> Any:
        if self._service is None:
            from azure.storage.blob import BlobServiceClient

            self._service = BlobServiceClient.from_connection_string(
                self.connection_string
            )
        return self._service

    def uri(self, container: str, blob: str = "") -> str:
        return f"azfs://{AZURITE_ACCOUNT}/{container}/{blob}"

    def create_bucket(self, prefix: str = "kav") -> str:
        container = unique_name(prefix)
        self.service.create_container(container)
        return container

    def upload(self, container: str, blob: str, data: bytes) -> str:
        self.service.get_blob_client(container, blob).upload_blob(data, overwrite=True)
        return self.uri(container, blob)

    def upload_many(self, container: str, objects: Mapping[str, bytes]) -> list[str]:
        """Upload ``{blob: data}`` with parallel requests and return the URIs."""
        return _run_in_threads(
            lambda blob, data: self.upload(container, blob, data), objects.items()
        )

    def list_keys(self, container: str, prefix: str = "") -> list[str]:
        blobs = self.service.get_container_client(container).list_blobs(
            name_starts_with=prefix or None
        )
        return sorted(blob.name for blob in blobs)

    def read(self, container: str, blob: str) -> bytes:
        return self.service.get_blob_client(container, blob).download_blob().readall()


@dataclass
class GcsEmulator:
    """gcp-storage-emulator: environment and google-cloud-storage helpers."""

    process: EmulatorProcess
    endpoint: str
    scheme: str = "gs"
    _client: Any = field(default=None, repr=False)

    @property
    def pipeline_args(self) -> list[str]:
        # Beam has no GCS endpoint option, so STORAGE_EMULATOR_HOST in ``env``
        # (set in this process by the fixture) is what points Beam here.
        return []

    @property
    def env(self) -> dict[str, str]:
        return {**SAFE_ENV, "STORAGE_EMULATOR_HOST": self.endpoint}

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            self._client = storage.Client(
                project="kav-test",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.endpoint},
            )
        return self._client

    def uri(self, bucket: str, key: str = "") -> str:
        return f"gs://{bucket}/{key}"

    def create_bucket(self, prefix: str = "kav") -> str:
        bucket = unique_name(prefix)
        self.client.create_bucket(bucket)
        return bucket

    def upload(self, bucket: str, key: str, data: bytes) -> str:
        self.client.bucket(bucket).blob(key).upload_from_string(data)
        return self.uri(bucket, key)

    def upload_many(self, bucket: str, objects: Mapping[str, bytes]) -> list[str]:
        """Upload ``{key: data}`` with parallel requests and return the URIs."""
        return _run_in_threads(
            lambda key, data: self.upload(bucket, key, data), objects.items()
        )

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        blobs = self.client.list_blobs(bucket, prefix=prefix or None)
        return sorted(blob.name for blob in blobs)

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.bucket(bucket).blob(key).download_as_bytes()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Emulator]:
    """Start moto server for the session and return its S3Emulator."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp("moto")
    argv = [str(MOTO_SERVER), "-H", HOST, "-p", str(port)]
    process = start_emulator("moto_server", argv, port, log_dir)
    try:
        yield S3Emulator(process, f"http://{HOST}:{port}")
    finally:
        process.stop()


@pytest.fixture(scope="session")
def azurite_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AzuriteEmulator]:
    """Start Azurite's blob service for the session and return its AzuriteEmulator."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp("azurite")
    data_dir = log_dir / "data"
    data_dir.mkdir()
    argv = [
        str(AZURITE_BLOB),
        "--blobHost",
        HOST,
        "--blobPort",
        str(port),
        "--location",
        str(data_dir),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
    ]
    process = start_emulator("azurite-blob", argv, port, log_dir)
    try:
        yield AzuriteEmulator(process, f"http://{HOST}:{port}/{AZURITE_ACCOUNT}")
    finally:
        process.stop()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """Start gcp-storage-emulator and set STORAGE_EMULATOR_HOST for the session."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp("gcs")
    argv = [str(GCS_EMULATOR), "start", "-H", HOST, "--port", str(port), "--in-memory"]
    process = start_emulator("gcp-storage-emulator", argv, port, log_dir)
    emulator = GcsEmulator(process, f"http://{HOST}:{port}")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in emulator.env.items():
                patch.setenv(name, value)
            yield emulator
    finally:
        process.stop()
