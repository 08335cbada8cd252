"""The artifact store: where finished review-pack ZIPs live.

One small interface, :class:`ArtifactStore`, with two implementations chosen by
``Settings.artifact_store``: :class:`S3Store` for ``s3://BUCKET/PREFIX`` (AWS S3,
MinIO or any S3-compatible service) and :class:`LocalStore` for ``file://PATH``
(development and the embedded demo only).  Callers see ordinary Python
exceptions, never botocore's: :class:`StorageUnavailable` when retrying later may
help, :class:`ArtifactNotFound` when the key is absent, and
:class:`ArtifactStoreError` for everything else.

Keys are relative, ``/``-separated names such as ``packs/3f2a….zip``.  Both stores
accept exactly the same keys (see :func:`validate_key`) so that a key that works
in development also works in production.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

logger = logging.getLogger("reviewpacks.storage.artifacts")

MiB = 1024 * 1024
MAX_DOWNLOAD_URL_TTL_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs cannot outlive 7 days.
META_SUFFIX = ".meta.json"

# A key segment starts with a letter, digit, "_" or "-" and continues with those or
# ".".  This rules out "", "." and "..", hidden names (which LocalStore uses for
# its temporary files) and anything a shell or a Content-Disposition header would
# have to quote.
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
# Filenames end up inside a quoted Content-Disposition value, so quotes,
# backslashes and non-printable or non-ASCII characters are refused rather than
# escaped.
_FILENAME = re.compile(r'[\x20-\x7e]+')


class StoreSettings(Protocol):
    """What building a store needs from the settings; storage/ takes values, not the settings module."""

    artifact_store: str
    s3_endpoint_url: str | None


class ArtifactStoreError(Exception):
    """The artifact store could not do what was asked."""


class StorageUnavailable(ArtifactStoreError):
    """The store is unreachable or overloaded; the same call may succeed later."""


class ArtifactNotFound(ArtifactStoreError):
    """No artifact exists under the given key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None


@runtime_checkable
class ArtifactStore(Protocol):
    # What generation, download and retention need. Listing and reading objects back
    # (keys, open) are inspection helpers of the concrete stores, not part of the interface.
    name: str

    def ensure_ready(self) -> None: ...

    def put_file(
        self, key: str, path: Path, *, sha256: str, size: int, content_type: str = "application/zip"
    ) -> None: ...

    def stat(self, key: str) -> StoredObject: ...

    def delete(self, key: str) -> None: ...

    def download_url(self, key: str, *, filename: str, ttl_seconds: int) -> str: ...


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe relative key, else raise ValueError."""
    if not isinstance(key, str) or not key:
        raise ValueError("artifact key must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"artifact key must be relative, got {key!r}")
    for segment in key.split("/"):
        if segment == "..":
            raise ValueError(f"artifact key must not contain '..', got {key!r}")
        if not _KEY_SEGMENT.fullmatch(segment):
            raise ValueError(
                f"artifact key segments must be letters, digits, '.', '_' or '-' and not start with '.', got {key!r}"
            )
    if key.endswith(META_SUFFIX):
        # LocalStore keeps its metadata in "<file>.meta.json"; refusing the suffix in
        # every store keeps the two interchangeable.
        raise ValueError(f"artifact keys ending in {META_SUFFIX!r} are reserved, got {key!r}")
    return key


def _validate_prefix(prefix: str) -> str:
    """A listing prefix is "" or a key fragment; a trailing "/" is allowed."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/") or "/")
    return prefix


def _validate_download_args(filename: str, ttl_seconds: int) -> None:
    if not 1 <= ttl_seconds <= MAX_DOWNLOAD_URL_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be between 1 and {MAX_DOWNLOAD_URL_TTL_SECONDS}, got {ttl_seconds}")
    if not _FILENAME.fullmatch(filename) or '"' in filename or "\\" in filename:
        raise ValueError(f"filename must be printable ASCII without quotes or backslashes, got {filename!r}")


# --------------------------------------------------------------------------- S3


_TRANSIENT_ERROR_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable", "InternalError"}
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Store:
    """Private objects in one bucket, under an optional key prefix."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
    ) -> None:
        if not bucket:
            raise ValueError("S3Store needs a bucket name")
        self.bucket = bucket
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.prefix = f"{prefix}/" if prefix else ""
        config = Config(
            # Standard mode retries throttling, 5xx and connection errors with
            # jittered backoff, so one call here already rides out a short blip;
            # StorageUnavailable means those attempts were used up.
            retries={"mode": "standard", "max_attempts": max_attempts},
            signature_version="s3v4",
            connect_timeout=5,
            read_timeout=60,
            # MinIO and moto serve every bucket from one host name, so
            # virtual-hosted addressing ("bucket.host") cannot resolve there.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        # A private Session, because boto3's default session is not thread-safe and
        # Celery may build stores from several threads; the client itself is.
        self._client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self._transfer_config = TransferConfig(
            multipart_threshold=16 * MiB,
            multipart_chunksize=16 * MiB,
            # Two parts in flight keep a worker's memory and socket use small while
            # still overlapping network latency.
            max_concurrency=2,
            use_threads=True,
        )

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, max_attempts: int = 5) -> S3Store:
        parts = urlsplit(settings.artifact_store)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"expected s3://BUCKET/PREFIX, got {settings.artifact_store!r}")
        return cls(parts.netloc, parts.path, endpoint_url=settings.s3_endpoint_url, max_attempts=max_attempts)

    @property
    def endpoint_url(self) -> str:
        return cast(str, self._client.meta.endpoint_url)

    def _object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _translate(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn botocore and boto3 exceptions into ArtifactStoreError subclasses."""
        target = f"s3://{self.bucket}/{self.prefix}{key}" if key is not None else f"s3://{self.bucket}"
        where = f"{action} {target} at {self.endpoint_url}"
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise self._from_client_error(exc, where) from exc
        except S3UploadFailedError as exc:
            # upload_file wraps a ClientError without "from", so the original is
            # only reachable as the implicit context.
            inner = exc.__cause__ or exc.__context__
            if isinstance(inner, botocore.exceptions.ClientError):
                raise self._from_client_error(inner, where) from exc
            raise ArtifactStoreError(f"{where} failed: {exc}") from exc
        except botocore.exceptions.SSLError as exc:
            # A certificate problem is configuration, not a blip; retrying will not help.
            raise ArtifactStoreError(f"{where} failed: TLS error: {exc}") from exc
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
            # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError and
            # ConnectionClosedError, after botocore's own retries.
            raise StorageUnavailable(f"{where} failed: storage unreachable: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ArtifactStoreError(f"{where} failed: {exc}") from exc

    @staticmethod
    def _from_client_error(exc: botocore.exceptions.ClientError, where: str) -> ArtifactStoreError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500 or status == 429 or code in _TRANSIENT_ERROR_CODES:
            return StorageUnavailable(f"{where} failed: storage unavailable ({status} {code})")
        if code == "NoSuchBucket":
            return ArtifactStoreError(f"{where} failed: the bucket does not exist")
        if code in _NOT_FOUND_CODES or status == 404:
            # HEAD responses have no body, so a missing bucket also arrives as a
            # bare 404 here; ensure_ready() at startup makes that case unlikely.
            return ArtifactNotFound(f"{where} failed: no such artifact")
        return ArtifactStoreError(f"{where} failed: {status} {code}: {error.get('Message', '')}".rstrip(": "))

    def ensure_ready(self) -> None:
        with self._translate("check bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                # An existing bucket belongs to whoever provisioned it; the worker's
                # role should not need rights to change its policy.  Objects stay
                # private and encrypted anyway because put_file asks for both.
                return
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise
        with self._translate("create bucket"):
            region = self._client.meta.region_name
            create_args: dict[str, Any] = {"Bucket": self.bucket}
            # us-east-1 is the one region that rejects an explicit LocationConstraint.
            if region and region != "us-east-1":
                create_args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self._client.create_bucket(**create_args)
            except botocore.exceptions.ClientError as exc:
                # Another worker may have created it between our HEAD and CREATE;
                # configuring it again below is harmless.
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            self._client.put_public_access_block(
                Bucket=self.bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
            self._client.put_bucket_encryption(
                Bucket=self.bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )

    def put_file(
        self, key: str, path: Path, *, sha256: str, size: int, content_type: str = "application/zip"
    ) -> None:
        object_key = self._object_key(key)
        # No ACL is sent: objects inherit the bucket's private default. SSE is requested per
        # object so it holds even on a bucket we did not configure ourselves.
        extra = {"ServerSideEncryption": "AES256", "Metadata": {"sha256": sha256}, "ContentType": content_type}
        actual = path.stat().st_size
        if actual != size:
            raise ArtifactStoreError(f"refusing to upload {path.name}: it holds {actual} bytes, expected {size}")
        with self._translate("upload", key):
            if size < self._transfer_config.multipart_threshold:
                # One request, and S3 itself checks the body against the SHA-256 we computed, so a
                # corrupted or short upload is refused rather than stored.
                with open(path, "rb") as body:
                    self._client.put_object(
                        Bucket=self.bucket,
                        Key=object_key,
                        Body=body,
                        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                        **extra,
                    )
                return
            self._client.upload_file(str(path), self.bucket, object_key, Config=self._transfer_config, ExtraArgs=extra)
            head = self._client.head_object(Bucket=self.bucket, Key=object_key)
        if head["ContentLength"] != size:
            # A short object must not be mistaken for a finished pack by a later stat().
            with contextlib.suppress(ArtifactStoreError):
                self.delete(key)
            raise ArtifactStoreError(
                f"upload s3://{self.bucket}/{object_key} stored {head['ContentLength']} bytes, expected {size}"
            )

    def stat(self, key: str) -> StoredObject:
        with self._translate("stat", key):
            head = self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        return StoredObject(key=key, size=head["ContentLength"], sha256=head.get("Metadata", {}).get("sha256"))

    def open(self, key: str) -> BinaryIO:
        # Errors while reading the body later surface as botocore exceptions; only
        # the request itself is translated here.
        with self._translate("open", key):
            response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        return cast(BinaryIO, response["Body"])

    def delete(self, key: str) -> None:
        # S3 answers 204 for a missing key as well, which is the idempotence we want.
        with self._translate("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        full_prefix = self.prefix + _validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._translate("list", prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]

    def download_url(self, key: str, *, filename: str, ttl_seconds: int) -> str:
        _validate_download_args(filename, ttl_seconds)
        # Signing happens locally; no request is made and the object is not checked.
        with self._translate("presign", key):
            return cast(
                str,
                self._client.generate_presigned_url(
                    "get_object",
                    Params={
                        "Bucket": self.bucket,
                        "Key": self._object_key(key),
                        "ResponseContentDisposition": f'attachment; filename="{filename}"',
                        "ResponseContentType": "application/zip",
                    },
                    ExpiresIn=ttl_seconds,
                ),
            )


# ------------------------------------------------------------------------ local


class LocalStore:
    """Files under one directory, for development and the embedded demo only.

    Each artifact ``<key>`` has a JSON sidecar ``<key>.meta.json`` holding the
    sha256 and content type that S3 would keep as object metadata.
    """

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        logger.warning(
            "Artifacts are stored on the local filesystem at %s; this store is for development only.", self.root
        )

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> LocalStore:
        # The same prefix stripping as Settings.ensure_embedded_dirs, so both agree
        # on which directory is meant.
        if not settings.artifact_store.startswith("file://"):
            raise ValueError(f"expected file://PATH, got {settings.artifact_store!r}")
        return cls(Path(settings.artifact_store.removeprefix("file://")))

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        # validate_key already forbids "..", but a symlink inside the root could
        # still point outside it.
        if not path.is_relative_to(self.root):
            raise ValueError(f"artifact key {key!r} resolves outside the store root")
        return path

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(path.name + META_SUFFIX)

    def ensure_ready(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def put_file(
        self, key: str, path: Path, *, sha256: str, size: int, content_type: str = "application/zip"
    ) -> None:
        target = self._path(key)
        meta = json.dumps({"sha256": sha256, "content_type": content_type}).encode()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._write_atomically(target, lambda out: _copy_exactly(path, out, size))
            self._write_atomically(self._meta_path(target), lambda out: out.write(meta))
        except OSError as exc:
            raise ArtifactStoreError(f"upload {target} failed: {exc}") from exc

    @staticmethod
    def _write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
        # Writing to a hidden temp file in the same directory and renaming it over
        # the target means readers see either the old file or the new one, never a
        # partial copy; the rename is atomic only within one filesystem.
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def stat(self, key: str) -> StoredObject:
        path = self._path(key)
        # A directory is where S3 would merely have a common prefix, not an object.
        if not path.is_file():
            raise ArtifactNotFound(f"no artifact {key!r} in {self.root}")
        size = path.stat().st_size
        try:
            sha256 = json.loads(self._meta_path(path).read_text()).get("sha256")
        except FileNotFoundError:
            sha256 = None
        return StoredObject(key=key, size=size, sha256=sha256)

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ArtifactNotFound(f"no artifact {key!r} in {self.root}") from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            return
        path.unlink(missing_ok=True)
        self._meta_path(path).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        _validate_prefix(prefix)
        if not self.root.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith(".") or filename.endswith(META_SUFFIX):
                    continue
                key = (Path(dirpath) / filename).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        # Sorted like S3's listing, so callers cannot come to depend on an order
        # only one store provides.
        yield from sorted(found)

    def download_url(self, key: str, *, filename: str, ttl_seconds: int) -> str:
        # A local store has no HTTP server to set headers or expire links, so the
        # filename and TTL have no effect; they are still validated so that a bad
        # value fails in development exactly as it would against S3.
        _validate_download_args(filename, ttl_seconds)
        return self._path(key).as_uri()


def _copy_exactly(source: Path, out: BinaryIO, size: int) -> None:
    """Copy ``source`` into ``out``, refusing a copy that is not ``size`` bytes long."""
    copied = 0
    with open(source, "rb") as src:
        while chunk := src.read(1 * MiB):
            out.write(chunk)
            copied += len(chunk)
    if copied != size:
        raise ArtifactStoreError(f"{source} is {copied} bytes, expected {size}")


def artifact_store_from_settings(settings: StoreSettings) -> ArtifactStore:
    """Build the store that ``settings.artifact_store`` names."""
    scheme = urlsplit(settings.artifact_store).scheme
    if scheme == "s3":
        return S3Store.from_settings(settings)
    if scheme == "file":
        return LocalStore.from_settings(settings)
    raise ValueError(f"unsupported artifact store {settings.artifact_store!r}; use file://PATH or s3://BUCKET/PREFIX")
