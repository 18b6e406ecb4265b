"""Object storage helpers for reading and writing through Beam's FileSystems.

The pipeline reads FluentD objects such as
``s3://kav-logs/kav/2022/02/28/fluentd-s3-20220228_1.log.gz`` and writes Parquet
under ``gs://kav-out/events/`` or ``azfs://account/container/events/``. All data
goes through ``apache_beam.io.filesystems.FileSystems``, and this module fixes
three problems that Beam 2.77 has with those stores:

* Beam's S3 filesystem builds a new boto3 session and client for every match,
  open, size, rename or delete. Building the client costs about 90 ms of CPU, so
  1,200 small objects take minutes. ``install_filesystem_fixes()`` makes Beam
  share one boto3 client per process and S3 configuration.
* Beam's Azure filesystem raises ``BeamIOError`` from ``FileSystems.exists`` for
  a blob that does not exist. ``install_filesystem_fixes()`` makes it return
  False, as the S3, GCS and local filesystems do.
* When ``STORAGE_EMULATOR_HOST`` is set (a GCS emulator run), Beam would still
  look for Google application default credentials with four retries and
  backoff, which costs about 26 s per process. ``install_filesystem_fixes()``
  skips that lookup, so Beam connects anonymously at once.

Call ``install_filesystem_fixes()`` at import time of every module that defines
DoFns, because Beam's worker processes import those modules and each process
needs its own copy of the fixes. Calling it again is safe.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from apache_beam.io.filesystems import FileSystems

__all__ = [
    "install_filesystem_fixes",
    "is_local",
    "join_uri",
    "redact",
]

STORAGE_EMULATOR_HOST = "STORAGE_EMULATOR_HOST"

_INSTALL_LOCK = threading.Lock()


class _CachingBoto3:
    """Stand-in for the ``boto3`` module inside Beam's S3 client wrapper.

    Beam's wrapper only calls ``boto3.session.Session().client(...)``. This
    object returns one shared client for each distinct set of arguments, which
    are exactly the S3 pipeline options (keys, token, endpoint, region, API
    version, SSL and ``verify``). Every other attribute is taken from the real
    ``boto3`` module.
    """

    def __init__(self, real_boto3: Any) -> None:
        self._real_boto3 = real_boto3
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self.session = _CachingSessionModule(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real_boto3, name)

    def shared_client(self, service_name: str, **kwargs: Any) -> Any:
        # The process id is part of the key because a client's connection pool
        # must not be shared with a forked child process.
        key = (os.getpid(), service_name, tuple(sorted(kwargs.items())))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # boto3 sessions are not thread-safe, so each new client gets
                # its own session. Clients themselves are thread-safe.
                session = self._real_boto3.session.Session()
                client = session.client(service_name=service_name, **kwargs)
                self._clients[key] = client
            return client


class _CachingSessionModule:
    """Stand-in for ``boto3.session`` whose ``Session`` hands out shared clients."""

    def __init__(self, owner: _CachingBoto3) -> None:
        self._owner = owner

    def Session(self) -> _CachingSession:  # noqa: N802 (mirrors boto3.session.Session)
        return _CachingSession(self._owner)


class _CachingSession:
    def __init__(self, owner: _CachingBoto3) -> None:
        self._owner = owner

    def client(self, service_name: str, **kwargs: Any) -> Any:
        return self._owner.shared_client(service_name, **kwargs)


def _install_s3_client_cache() -> None:
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:
        return
    real_boto3 = boto3_client.boto3
    if real_boto3 is None or isinstance(real_boto3, _CachingBoto3):
        return
    # NOTE: a client built without explicit keys resolves boto3's default
    # credential chain once. Refreshable credentials (instance roles, SSO)
    # refresh themselves, but AWS_* environment variables changed later in the
    # same process are not seen.
    boto3_client.boto3 = _CachingBoto3(real_boto3)


def _skip_gcs_credentials_lookup() -> None:
    if not os.environ.get(STORAGE_EMULATOR_HOST):
        return
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:
        return
    # Private Beam 2.77 API: marking the credentials as already looked up with
    # no result makes gcsio build an anonymous client, which google-cloud-storage
    # points at STORAGE_EMULATOR_HOST.
    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials_init = True
        auth._Credentials._credentials = None


def _fixed_azure_exists(self: Any, path: str) -> bool:
    from apache_beam.io.azure.blobstorageio import BlobStorageError

    try:
        self._blob_properties(path)
    except BlobStorageError as error:
        if error.code == 404:
            return False
        raise
    return True


def _install_azure_exists_fix() -> None:
    try:
        from apache_beam.io.azure import blobstorageio
    except ImportError:
        return
    if not blobstorageio.AZURE_DEPS_INSTALLED:
        return
    # Beam 2.77's BlobStorageIO.exists catches ResourceNotFoundError, but
    # _blob_properties has already turned it into BlobStorageError, so
    # FileSystems.exists raises BeamIOError for a missing azfs blob.
    blobstorageio.BlobStorageIO.exists = _fixed_azure_exists


def install_filesystem_fixes() -> None:
    """Install Beam filesystem fixes for S3, Azure Blob Storage and GCS.

    The fixes are a shared boto3 client per S3 configuration, an Azure
    ``exists`` that returns False for a missing blob, and, for GCS emulator
    runs, no application default credentials lookup. The first two are
    installed once per process. The GCS part is applied on every
    call made while ``STORAGE_EMULATOR_HOST`` is set, so a call after the
    variable was set still takes effect. Worker processes inherit the variable.
    """
    with _INSTALL_LOCK:
        _install_s3_client_cache()
        _install_azure_exists_fix()
        _skip_gcs_credentials_lookup()


def is_local(uri: str) -> bool:
    """Return whether Beam treats ``uri`` as a local path (it has no ``scheme://``)."""
    return FileSystems.get_scheme(uri) is None


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a ``scheme://bucket/prefix`` URI.

    Empty parts are skipped, and leading or doubled separators in the parts
    are dropped, so ``join_uri("s3://logs/out/", "/dt=2022-02-28", "part.parquet")``
    returns ``"s3://logs/out/dt=2022-02-28/part.parquet"``. A trailing ``/`` on
    the last part is kept, so the result can name a prefix.
    """
    pieces = [part for part in parts if part.strip("/")]
    if not pieces:
        return base
    trailing = "/" if pieces[-1].endswith("/") else ""
    stripped = [part.strip("/") for part in pieces]
    if is_local(base):
        return os.path.join(base, *stripped) + trailing
    return base.rstrip("/") + "/" + "/".join(stripped) + trailing


_SECRET_OPTION_NAMES = (
    "s3_secret_access_key",
    "s3_session_token",
    "azure_connection_string",
    "aws_secret_access_key",
    "aws_session_token",
    "azure_storage_connection_string",
    "azure_storage_key",
    "azure_storage_sas_token",
)
_NAMES = "|".join(_SECRET_OPTION_NAMES)
_QUOTED_OR_BARE = r"""(?:"[^"]*"|'[^']*'|(?!--)[^\s"']+)"""

_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Command line and environment: --s3_secret_access_key=V, --x V, NAME=V.
    re.compile(
        rf"(?P<name>--(?:{_NAMES})(?:=|\s+)|(?<![\w-])(?:{_NAMES})=)"
        rf"(?P<value>{_QUOTED_OR_BARE})",
        re.IGNORECASE,
    ),
    # Printed mappings and JSON: 's3_secret_access_key': 'V', "name": "V".
    re.compile(
        rf"""(?P<name>(?P<quote>["']?)(?:{_NAMES})(?P=quote)\s*:\s*)"""
        rf"""(?P<value>"[^"]*"|'[^']*'|[^\s,}}\]]+)""",
        re.IGNORECASE,
    ),
    # Connection string items. A SAS token contains "&", so it ends at ";".
    re.compile(
        r"(?P<name>(?<![\w-])(?:AccountKey|SharedAccessSignature)=)"
        r"(?P<value>[^;\s\"']+)",
        re.IGNORECASE,
    ),
    # Signature query parameters of SAS and presigned URLs.
    re.compile(
        r"(?P<name>(?<![\w-])(?:sig|X-Amz-Signature|X-Amz-Security-Token"
        r"|X-Goog-Signature)=)(?P<value>[^&;\s\"']+)",
        re.IGNORECASE,
    ),
)


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return match.group("name") + value[0] + "***" + value[0]
    return match.group("name") + "***"


def redact(text: str) -> str:
    """Replace secrets in text meant for logs or run summaries with ``***``.

    It masks the values of ``--s3_secret_access_key``, ``--s3_session_token``
    and ``--azure_connection_string``, given with ``=`` or a space, quoted or
    not. The same names are masked as environment variables
    (``AWS_SECRET_ACCESS_KEY=...``, ``AZURE_STORAGE_CONNECTION_STRING=...``)
    and as keys of a printed mapping or JSON object. So are ``AccountKey=`` and
    ``SharedAccessSignature=`` in connection strings, and ``sig=`` and the
    ``X-Amz-``/``X-Goog-`` signature parameters of signed URLs. Access key ids
    and endpoints stay readable.
    """
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_mask_value, text)
    return text
