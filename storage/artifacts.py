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

``initialize()`` (``reviewpacks storage init``) prepares a store and reports, check by
check, what the provider really did: S3-compatible servers differ in which bucket
APIs they implement, so each refusal becomes a warning that names the API, and
privacy and encryption at rest are verified on a probe object rather than assumed.
Exception messages name the operation and the provider's status and code, never an
endpoint, bucket, key or URL: they reach logs, run records and Flower.
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
# A pack smaller than this goes up in one PUT that carries its SHA-256 (AWS S3 checks the body
# against it before storing anything; AWS suggests multipart uploads from about 100 MB). Larger
# packs go up in parts of PART_SIZE, two in flight. One request instead of a create, a request
# per part, a complete and a head: a 37 MB pack took 0.19-0.43 s to moto against 0.38-0.92 s,
# most of it the server assembling the parts (bench/results.md).
SINGLE_PUT_LIMIT = 100 * MiB
PART_SIZE = 16 * MiB
MAX_SINGLE_PUT = 5 * 1024 * MiB  # S3's limit for one PUT
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

    @property
    def artifact_store(self) -> str: ...

    @property
    def s3_endpoint_url(self) -> str | None: ...


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

    def initialize(self) -> InitReport: ...

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
# Providers say "I do not do this" in different ways: MinIO answers 501 NotImplemented to
# PutPublicAccessBlock, Ceph RGW 16 answers 400 InvalidArgument to PutBucketEncryption.
_UNSUPPORTED_STATUSES = frozenset({400, 405, 501})
# The object storage init writes, checks and deletes again.  validate_key refuses names
# that start with ".", so no pack key can ever collide with it.
PROBE_NAME = ".storage-init-probe"
LIFECYCLE_ABORT_RULE = "reviewpacks-abort-incomplete-uploads"
LIFECYCLE_EXPIRE_RULE = "reviewpacks-expire-after-retention"


@dataclass(frozen=True)
class Check:
    """One line of the storage init report: what was checked, how it went, what was done instead."""

    name: str
    status: str  # "ok" | "warning" | "failed"
    detail: str


@dataclass(frozen=True)
class InitReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != "failed" for check in self.checks)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status == "warning")


def _error_parts(exc: botocore.exceptions.ClientError) -> tuple[int, str]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return status, code


class S3Store:
    """Private objects in one bucket, under an optional key prefix."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        max_attempts: int = 5,
        expire_after_days: int | None = None,
        single_put_limit: int = SINGLE_PUT_LIMIT,
    ) -> None:
        if not bucket:
            raise ValueError("S3Store needs a bucket name")
        if not PART_SIZE <= single_put_limit <= MAX_SINGLE_PUT:
            raise ValueError(f"single_put_limit must be between {PART_SIZE} and {MAX_SINGLE_PUT} bytes")
        self.bucket = bucket
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.prefix = f"{prefix}/" if prefix else ""
        self.expire_after_days = expire_after_days
        self._client = self._make_client(endpoint_url, max_attempts)
        # Presigned URLs are signed for the host they name, so a URL for readers outside the
        # containers' network needs a client that believes it talks to the public address.
        # Signing is local: this client never sends a request.
        self._presign_client = self._make_client(public_endpoint_url, max_attempts) if public_endpoint_url else self._client
        self._transfer_config = TransferConfig(
            multipart_threshold=single_put_limit,
            multipart_chunksize=PART_SIZE,
            # Two parts in flight keep a worker's memory and socket use small while
            # still overlapping network latency.
            max_concurrency=2,
            use_threads=True,
        )

    @staticmethod
    def _make_client(endpoint_url: str | None, max_attempts: int, *, signed: bool = True):  # type: ignore[no-untyped-def]
        config = Config(
            # Standard mode retries throttling, 5xx and connection errors with
            # jittered backoff, so one call here already rides out a short blip;
            # StorageUnavailable means those attempts were used up.
            retries={"mode": "standard", "max_attempts": max_attempts},
            signature_version="s3v4" if signed else botocore.UNSIGNED,
            connect_timeout=5,
            read_timeout=60,
            # MinIO, Ceph RGW and moto serve every bucket from one host name, so
            # virtual-hosted addressing ("bucket.host") cannot resolve there.
            s3={"addressing_style": "path"} if endpoint_url else None,
            # botocore >= 1.36 adds CRC checksums to every upload, which several
            # S3-compatible servers refuse (RGW answers 411 over HTTPS).  put_file sends
            # its own SHA-256 where S3 checks it, so the automatic ones add nothing.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A private Session, because boto3's default session is not thread-safe and
        # Celery may build stores from several threads; the client itself is.
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, max_attempts: int = 5, single_put_limit: int = SINGLE_PUT_LIMIT) -> S3Store:
        parts = urlsplit(settings.artifact_store)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("expected REVIEWPACKS_ARTIFACT_STORE=s3://BUCKET/PREFIX")
        return cls(
            parts.netloc,
            parts.path,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            max_attempts=max_attempts,
            # A backstop behind the prune task, which expires packs after retention_days
            # and deletes their rows after the grace period: objects older than both are
            # orphans whichever way they were left behind.
            expire_after_days=settings.retention_days + settings.hard_delete_grace_days,
            single_put_limit=single_put_limit,
        )

    @property
    def endpoint_url(self) -> str:
        return cast(str, self._client.meta.endpoint_url)

    def _object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn botocore and boto3 exceptions into ArtifactStoreError subclasses.

        Messages name the operation and the provider's status and error code, never the
        endpoint, bucket, key or URL: they reach logs, run records and Flower.  The original
        exception stays chained for a debugger, but nothing here repeats its text.
        """
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise self._from_client_error(exc, action) from exc
        except S3UploadFailedError as exc:
            # upload_file wraps a ClientError without "from", so the original is
            # only reachable as the implicit context.
            inner = exc.__cause__ or exc.__context__
            if isinstance(inner, botocore.exceptions.ClientError):
                raise self._from_client_error(inner, action) from exc
            raise ArtifactStoreError(f"{action} failed: upload error") from exc
        except botocore.exceptions.SSLError as exc:
            # A certificate problem is configuration, not a blip; retrying will not help.
            raise ArtifactStoreError(f"{action} failed: TLS error") from exc
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
            # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError and
            # ConnectionClosedError, after botocore's own retries.
            raise StorageUnavailable(f"{action} failed: storage unreachable ({type(exc).__name__})") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ArtifactStoreError(f"{action} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _from_client_error(exc: botocore.exceptions.ClientError, action: str) -> ArtifactStoreError:
        status, code = _error_parts(exc)
        if status >= 500 and status != 501 or status == 429 or code in _TRANSIENT_ERROR_CODES:
            return StorageUnavailable(f"{action} failed: storage unavailable ({status} {code})")
        if code == "NoSuchBucket":
            return ArtifactStoreError(f"{action} failed: the bucket does not exist")
        if code in _NOT_FOUND_CODES or status == 404:
            # HEAD responses have no body, so a missing bucket also arrives as a
            # bare 404 here; storage init at deployment makes that case unlikely.
            return ArtifactNotFound(f"{action} failed: no such artifact")
        return ArtifactStoreError(f"{action} failed: {status} {code}".rstrip())

    def ensure_ready(self) -> None:
        """Create and configure the bucket as far as the provider allows; refuse a public one."""
        report = self.initialize()
        failed = [check for check in report.checks if check.status == "failed"]
        if failed:
            raise ArtifactStoreError("; ".join(f"{check.name}: {check.detail}" for check in failed))

    def initialize(self) -> InitReport:
        """Create the bucket if needed, configure it, and verify what the provider really does.

        Every bucket-level API is attempted; one the provider does not implement or refuses
        becomes a warning that names it and says what stands in for it.  Privacy is verified
        rather than assumed: an anonymous GET of a probe object must be refused (an anonymous
        listing that is not refused is a warning: it shows object names, not contents).  Whether objects are encrypted at rest is read back from the probe.
        Only connection failures raise (StorageUnavailable); a refused bucket creation raises
        ArtifactStoreError, since nothing else can be checked without a bucket.
        """
        checks: list[Check] = []
        checks.append(self._ensure_bucket())
        block_acls, check = self._block_public_access(block_public_acls=True)
        checks.append(check)
        checks.append(self._default_encryption())
        checks.append(self._lifecycle())
        probe_key = self.prefix + PROBE_NAME
        try:
            try:
                self._put_probe(probe_key, checks, block_acls)
            except StorageUnavailable:
                raise
            except ArtifactStoreError as exc:
                # Without an object nothing further can be verified.
                checks.append(Check("probe upload", "failed", f"{exc}; the store cannot hold packs"))
                return InitReport(tuple(checks))
            checks.append(self._encryption_at_rest(probe_key))
            checks.extend(self._anonymous_access(probe_key))
        finally:
            with contextlib.suppress(ArtifactStoreError), self._translate("delete probe"):
                self._client.delete_object(Bucket=self.bucket, Key=probe_key)
        return InitReport(tuple(checks))

    def _ensure_bucket(self) -> Check:
        with self._translate("check bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return Check("bucket", "ok", "exists")
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
                # Another process may have created it between our HEAD and CREATE.
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
        return Check("bucket", "ok", "created")

    def _bucket_call(self, name: str, api: str, call: Callable[[], object], instead: str) -> Check | None:
        """Run one bucket-configuration call; None when it worked, else the warning to report."""
        with self._translate(api):
            try:
                call()
                return None
            except botocore.exceptions.ClientError as exc:
                status, code = _error_parts(exc)
                if status in _UNSUPPORTED_STATUSES or code in {"NotImplemented", "AccessDenied"}:
                    verdict = "not implemented by the provider" if status == 501 or code == "NotImplemented" else "refused"
                    return Check(name, "warning", f"{api} {verdict} ({status} {code}); {instead}")
                raise

    def _block_public_access(self, *, block_public_acls: bool) -> tuple[bool, Check]:
        config = {
            "BlockPublicAcls": block_public_acls,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        warning = self._bucket_call(
            "public access block",
            "PutPublicAccessBlock",
            lambda: self._client.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration=config),
            "no ACL or bucket policy is ever written, and privacy is verified with anonymous requests",
        )
        if warning is not None:
            return False, warning
        return block_public_acls, Check("public access block", "ok", "all four blocks on")

    def _default_encryption(self) -> Check:
        warning = self._bucket_call(
            "default encryption",
            "PutBucketEncryption",
            lambda: self._client.put_bucket_encryption(
                Bucket=self.bucket,
                ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            ),
            "every upload asks for SSE (AES256) itself; see 'encryption at rest' for what the provider does with it",
        )
        return warning or Check("default encryption", "ok", "AES256 by default")

    def _lifecycle(self) -> Check:
        if self.expire_after_days is None:
            return Check("lifecycle", "ok", "no retention configured; left unchanged")
        ours = [
            {
                "ID": LIFECYCLE_ABORT_RULE,
                "Filter": {"Prefix": self.prefix},
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
            {
                "ID": LIFECYCLE_EXPIRE_RULE,
                "Filter": {"Prefix": self.prefix},
                "Status": "Enabled",
                "Expiration": {"Days": self.expire_after_days},
            },
        ]
        instead = "incomplete uploads and orphaned objects are left to the prune task"
        existing: list[dict] = []
        with self._translate("GetBucketLifecycleConfiguration"):
            try:
                existing = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket).get("Rules", [])
            except botocore.exceptions.ClientError as exc:
                status, code = _error_parts(exc)
                if code != "NoSuchLifecycleConfiguration":
                    if status in _UNSUPPORTED_STATUSES or code in {"NotImplemented", "AccessDenied"}:
                        return Check("lifecycle", "warning", f"GetBucketLifecycleConfiguration refused ({status} {code}); {instead}")
                    raise
        # The bucket's lifecycle is one document: rules someone else keeps for other
        # prefixes stay, ours are replaced by ID.
        kept = [rule for rule in existing if rule.get("ID") not in {LIFECYCLE_ABORT_RULE, LIFECYCLE_EXPIRE_RULE}]
        warning = self._bucket_call(
            "lifecycle",
            "PutBucketLifecycleConfiguration",
            lambda: self._client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": kept + ours}
            ),
            instead,
        )
        return warning or Check(
            "lifecycle",
            "ok",
            f"incomplete multipart uploads aborted after 1 day; objects expire after {self.expire_after_days} days "
            "(retention + grace)",
        )

    def _put_probe(self, object_key: str, checks: list[Check], block_acls: bool) -> None:
        """Write the probe object the way put_file writes packs (SSE requested, no ACL)."""

        def put() -> None:
            with self._translate("upload probe"):
                self._client.put_object(
                    Bucket=self.bucket, Key=object_key, Body=b"storage init probe", ServerSideEncryption="AES256"
                )

        try:
            put()
        except ArtifactStoreError as exc:
            # Ceph RGW 16 refuses every PutObject while BlockPublicAcls is on (Ceph bug
            # 49135), even though no ACL is sent.  The other three blocks still hold, and
            # the anonymous checks afterwards prove the outcome either way.
            if not block_acls or "AccessDenied" not in str(exc) or isinstance(exc, StorageUnavailable):
                raise
            _, retried = self._block_public_access(block_public_acls=False)
            put()
            index = next(i for i, check in enumerate(checks) if check.name == "public access block")
            checks[index] = Check(
                "public access block",
                "warning",
                "the provider refuses uploads while BlockPublicAcls is on, so it is off; "
                "IgnorePublicAcls, BlockPublicPolicy and RestrictPublicBuckets are on, no ACL is ever sent, "
                "and privacy is verified with anonymous requests"
                + ("" if retried.status == "ok" else f" ({retried.detail})"),
            )

    def _encryption_at_rest(self, object_key: str) -> Check:
        with self._translate("stat probe"):
            head = self._client.head_object(Bucket=self.bucket, Key=object_key)
        algorithm = head.get("ServerSideEncryption")
        if algorithm:
            return Check("encryption at rest", "ok", f"the provider reports {algorithm} on a probe object")
        return Check(
            "encryption at rest",
            "warning",
            "the provider reports no server-side encryption on a probe object written with SSE requested: "
            "objects are NOT encrypted at rest by the store (configure a KMS or encrypt the disks)",
        )

    def _anonymous_access(self, object_key: str) -> list[Check]:
        """An unsigned GET of the probe must be refused; an unsigned listing should be."""
        anonymous = self._make_client(self.endpoint_url, 2, signed=False)
        with self._translate("anonymous GET"):
            try:
                anonymous.get_object(Bucket=self.bucket, Key=object_key)
                privacy = Check("privacy", "failed", "an anonymous GET of a probe object succeeded: the bucket is public")
            except botocore.exceptions.ClientError as exc:
                status, code = _error_parts(exc)
                if status in (401, 403):
                    privacy = Check("privacy", "ok", "an anonymous GET of a probe object is refused")
                else:
                    privacy = Check("privacy", "failed", f"an anonymous GET got {status} {code}, not a refusal; privacy unverified")
        with self._translate("anonymous listing"):
            try:
                anonymous.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                listing = Check(
                    "anonymous listing",
                    "warning",
                    "the provider lists the bucket to anonymous requests: object names (content fingerprints) "
                    "are visible, their contents are not",
                )
            except botocore.exceptions.ClientError as exc:
                status, code = _error_parts(exc)
                listing = (
                    Check("anonymous listing", "ok", "refused")
                    if status in (401, 403)
                    else Check("anonymous listing", "warning", f"answered {status} {code}, not a refusal")
                )
        return [privacy, listing]

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
        with self._translate("upload"):
            if size < self._transfer_config.multipart_threshold:
                # One request with the SHA-256 we computed: AWS S3 checks the body against it,
                # so a corrupted upload is refused there rather than stored.
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
            raise ArtifactStoreError(f"upload stored {head['ContentLength']} bytes, expected {size}")

    def stat(self, key: str) -> StoredObject:
        with self._translate("stat"):
            head = self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        return StoredObject(key=key, size=head["ContentLength"], sha256=head.get("Metadata", {}).get("sha256"))

    def open(self, key: str) -> BinaryIO:
        # Errors while reading the body later surface as botocore exceptions; only
        # the request itself is translated here.
        with self._translate("open"):
            response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        return cast(BinaryIO, response["Body"])

    def delete(self, key: str) -> None:
        # S3 answers 204 for a missing key as well, which is the idempotence we want.
        with self._translate("delete"):
            self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        full_prefix = self.prefix + _validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._translate("list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) :]
                    # A probe an interrupted storage init left behind is not an artifact.
                    if name != PROBE_NAME:
                        yield name

    def download_url(self, key: str, *, filename: str, ttl_seconds: int) -> str:
        _validate_download_args(filename, ttl_seconds)
        # Signing happens locally; no request is made and the object is not checked.
        with self._translate("presign"):
            return cast(
                str,
                self._presign_client.generate_presigned_url(
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

    def initialize(self) -> InitReport:
        self.ensure_ready()
        return InitReport(
            (Check("folder", "warning", "a local folder: private to this machine's users, for development only"),)
        )

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
