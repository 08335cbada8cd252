"""The artifact-store conformance suite, run against every implementation.

Tests taking the ``store`` fixture run once per store: the local folder, the S3
store on moto's server and the S3 store on a real S3 server (Ceph RGW, which
checks signatures, presigned expiry and privacy itself; skipped with a reason
unless REVIEWPACKS_TEST_REAL_S3_URL names one, failed if it names one that does
not answer).  Tests below the "S3 only" and "local only" markers check what only
one implementation can promise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import boto3
import pytest
import requests
from botocore.stub import Stubber

from reviewpacks.settings import Settings
from storage.artifacts import (
    PART_SIZE,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreError,
    Check,
    LocalStore,
    S3Store,
    StorageUnavailable,
    StoredObject,
    artifact_store_from_settings,
)
from tests.support.s3 import MinioLikeServer, MotoS3Server, RealS3, free_port, isolate_aws_environment

MiB = 1024 * 1024
KEY = "packs/3f2a9c.zip"
FILENAME = "review-pack-x-2026-01-01.zip"
S3_PREFIX = "some/prefix"

MakeFile = Callable[[bytes], tuple[Path, str, int]]


@pytest.fixture
def make_file(tmp_path: Path) -> MakeFile:
    """Write bytes to a fresh file and return (path, sha256, size)."""
    source_dir = tmp_path / "sources"
    source_dir.mkdir()

    def make(data: bytes) -> tuple[Path, str, int]:
        path = source_dir / f"{uuid.uuid4().hex}.zip"
        path.write_bytes(data)
        return path, hashlib.sha256(data).hexdigest(), len(data)

    return make


def s3_settings(endpoint_url: str, bucket: str, home: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "REVIEWPACKS_HOME": str(home),
            "REVIEWPACKS_ARTIFACT_STORE": f"s3://{bucket}/{S3_PREFIX}",
            "REVIEWPACKS_S3_ENDPOINT_URL": endpoint_url,
            **extra,
        }
    )


@dataclass
class Provider:
    """One S3 server under test: where it is, a bucket name to use, and a plain client."""

    name: str
    endpoint_url: str
    bucket: str
    client: Any


@pytest.fixture
def real_provider(real_s3: RealS3, monkeypatch: pytest.MonkeyPatch) -> Provider:
    isolate_aws_environment(monkeypatch, real_s3.env)
    return Provider("real-s3", real_s3.endpoint_url, real_s3.new_bucket_name(), real_s3.client())


@pytest.fixture(params=["moto", "real-s3"])
def provider(request: pytest.FixtureRequest) -> Provider:
    if request.param == "real-s3":
        return request.getfixturevalue("real_provider")
    server: MotoS3Server = request.getfixturevalue("s3")
    return Provider("moto", server.endpoint_url, f"reviewpacks-{uuid.uuid4().hex[:12]}", boto3.client("s3", endpoint_url=server.endpoint_url))


@pytest.fixture(params=["local", "s3", "real-s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        settings = Settings.from_env(
            {"REVIEWPACKS_HOME": str(tmp_path), "REVIEWPACKS_ARTIFACT_STORE": f"file://{tmp_path / 'artifacts'}"}
        )
    elif request.param == "s3":
        server: MotoS3Server = request.getfixturevalue("s3")
        settings = s3_settings(server.endpoint_url, f"reviewpacks-{uuid.uuid4().hex[:12]}", tmp_path)
    else:
        real: Provider = request.getfixturevalue("real_provider")
        settings = s3_settings(real.endpoint_url, real.bucket, tmp_path)
    built = artifact_store_from_settings(settings)
    built.ensure_ready()
    return built


def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    """GET a download URL the way a browser would: no credentials of our own."""
    if url.startswith("file://"):
        with urllib.request.urlopen(url) as response:
            return response.read(), {k.lower(): v for k, v in response.headers.items()}
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.content, {k.lower(): v for k, v in response.headers.items()}


# ------------------------------------------------------------------ conformance


def test_store_is_chosen_by_configuration(store: ArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)
    assert store.name in {"local", "s3"}
    assert isinstance(store, LocalStore if store.name == "local" else S3Store)


def test_put_then_stat(store: ArtifactStore, make_file: MakeFile) -> None:
    path, sha256, size = make_file(b"PK\x03\x04 a small pack")

    store.put_file(KEY, path, sha256=sha256, size=size)

    assert store.stat(KEY) == StoredObject(key=KEY, size=size, sha256=sha256)


def test_open_returns_the_exact_bytes(store: ArtifactStore, make_file: MakeFile) -> None:
    data = os.urandom(100_000)
    path, sha256, size = make_file(data)
    store.put_file(KEY, path, sha256=sha256, size=size)

    with store.open(KEY) as stream:
        assert stream.read() == data


def test_overwriting_a_key_replaces_it(store: ArtifactStore, make_file: MakeFile) -> None:
    first = make_file(b"first version")
    second = make_file(b"the second, longer version")
    store.put_file(KEY, first[0], sha256=first[1], size=first[2])

    store.put_file(KEY, second[0], sha256=second[1], size=second[2])

    assert store.stat(KEY) == StoredObject(key=KEY, size=second[2], sha256=second[1])
    with store.open(KEY) as stream:
        assert stream.read() == b"the second, longer version"
    assert list(store.keys()) == [KEY]


def test_missing_key_is_not_found(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound):
        store.stat("packs/never-written.zip")
    with pytest.raises(ArtifactNotFound):
        store.open("packs/never-written.zip")


def test_delete_then_stat_is_not_found(store: ArtifactStore, make_file: MakeFile) -> None:
    path, sha256, size = make_file(b"to be deleted")
    store.put_file(KEY, path, sha256=sha256, size=size)

    store.delete(KEY)

    with pytest.raises(ArtifactNotFound):
        store.stat(KEY)
    with pytest.raises(ArtifactNotFound):
        store.open(KEY)
    assert list(store.keys()) == []


def test_deleting_a_missing_key_is_fine(store: ArtifactStore) -> None:
    store.delete("packs/never-written.zip")
    store.delete("packs/never-written.zip")


def test_keys_lists_exactly_what_was_put(store: ArtifactStore, make_file: MakeFile) -> None:
    path, sha256, size = make_file(b"x")
    written = ["packs/a.zip", "packs/b.zip", "packs/nested/c.zip", "other/d.zip", "top.zip"]
    for key in written:
        store.put_file(key, path, sha256=sha256, size=size)

    assert sorted(store.keys()) == sorted(written)
    assert sorted(store.keys("packs/")) == ["packs/a.zip", "packs/b.zip", "packs/nested/c.zip"]
    assert list(store.keys("packs/nested/")) == ["packs/nested/c.zip"]
    assert list(store.keys("nothing-here/")) == []


@pytest.mark.parametrize(
    "bad_key",
    ["", "/packs/a.zip", "../a.zip", "packs/../../a.zip", "packs/..", "packs//a.zip", "packs/", ".hidden.zip", "a.zip.meta.json"],
)
def test_invalid_keys_are_rejected(store: ArtifactStore, make_file: MakeFile, bad_key: str) -> None:
    path, sha256, size = make_file(b"x")

    with pytest.raises(ValueError):
        store.put_file(bad_key, path, sha256=sha256, size=size)
    with pytest.raises(ValueError):
        store.stat(bad_key)
    with pytest.raises(ValueError):
        store.open(bad_key)
    with pytest.raises(ValueError):
        store.delete(bad_key)
    with pytest.raises(ValueError):
        store.download_url(bad_key, filename=FILENAME, ttl_seconds=60)
    assert list(store.keys()) == []


def test_invalid_listing_prefix_is_rejected(store: ArtifactStore) -> None:
    with pytest.raises(ValueError):
        list(store.keys("../"))
    with pytest.raises(ValueError):
        list(store.keys("/packs/"))


def test_a_short_upload_is_refused_and_not_left_behind(store: ArtifactStore, make_file: MakeFile) -> None:
    path, sha256, size = make_file(b"ten bytes!")

    with pytest.raises(ArtifactStoreError):
        store.put_file(KEY, path, sha256=sha256, size=size + 1)

    with pytest.raises(ArtifactNotFound):
        store.stat(KEY)
    assert list(store.keys()) == []


def test_download_url_serves_the_bytes(store: ArtifactStore, make_file: MakeFile) -> None:
    data = os.urandom(4096)
    path, sha256, size = make_file(data)
    store.put_file(KEY, path, sha256=sha256, size=size)

    url = store.download_url(KEY, filename=FILENAME, ttl_seconds=300)
    body, headers = fetch(url)

    assert body == data
    if store.name == "s3":
        assert headers["content-disposition"] == f'attachment; filename="{FILENAME}"'
        assert headers["content-type"] == "application/zip"
    else:
        assert url.startswith("file:///")


@pytest.mark.parametrize("ttl_seconds", [0, -1, 7 * 24 * 3600 + 1])
def test_download_url_rejects_ttl_out_of_range(store: ArtifactStore, ttl_seconds: int) -> None:
    with pytest.raises(ValueError):
        store.download_url(KEY, filename=FILENAME, ttl_seconds=ttl_seconds)


@pytest.mark.parametrize("filename", ['a"b.zip', "a\\b.zip", "a\r\nX-Evil: 1.zip", "", "résumé.zip"])
def test_download_url_rejects_unsafe_filenames(store: ArtifactStore, filename: str) -> None:
    with pytest.raises(ValueError):
        store.download_url(KEY, filename=filename, ttl_seconds=60)


def test_a_20_mib_upload_round_trips(store: ArtifactStore, make_file: MakeFile) -> None:
    # One PUT on S3 under the default limit; test_s3_multipart_upload_is_one_complete_object sends it in parts.
    data = os.urandom(20 * MiB)
    path, sha256, size = make_file(data)

    store.put_file(KEY, path, sha256=sha256, size=size)

    assert store.stat(KEY) == StoredObject(key=KEY, size=size, sha256=sha256)
    digest = hashlib.sha256()
    with store.open(KEY) as stream:
        while chunk := stream.read(1 * MiB):
            digest.update(chunk)
    assert digest.hexdigest() == sha256


def test_ensure_ready_is_idempotent(store: ArtifactStore, make_file: MakeFile) -> None:
    path, sha256, size = make_file(b"kept")
    store.put_file(KEY, path, sha256=sha256, size=size)

    store.ensure_ready()

    assert store.stat(KEY).size == size


# ---------------------------------------------------------------------- S3 only


@pytest.fixture
def s3_store(s3: MotoS3Server, tmp_path: Path) -> S3Store:
    built = S3Store.from_settings(s3_settings(s3.endpoint_url, f"reviewpacks-{uuid.uuid4().hex[:12]}", tmp_path))
    built.ensure_ready()
    return built


@pytest.fixture
def s3_client(s3: MotoS3Server):  # type: ignore[no-untyped-def]
    """A plain client for looking behind the store's back."""
    return boto3.client("s3", endpoint_url=s3.endpoint_url)


def test_s3_bucket_blocks_all_public_access(s3_store: S3Store, s3_client) -> None:  # type: ignore[no-untyped-def]
    config = s3_client.get_public_access_block(Bucket=s3_store.bucket)["PublicAccessBlockConfiguration"]

    assert config == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


def test_s3_bucket_and_objects_are_encrypted(s3_store: S3Store, s3_client, make_file: MakeFile) -> None:  # type: ignore[no-untyped-def]
    path, sha256, size = make_file(b"secret")
    s3_store.put_file(KEY, path, sha256=sha256, size=size)

    rules = s3_client.get_bucket_encryption(Bucket=s3_store.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    head = s3_client.head_object(Bucket=s3_store.bucket, Key=f"{S3_PREFIX}/{KEY}")

    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/zip"
    assert head["Metadata"] == {"sha256": sha256}


# ------------------------------------------------------- S3 on moto and on a real server


@pytest.fixture
def provider_store(provider: Provider, tmp_path: Path) -> S3Store:
    built = S3Store.from_settings(s3_settings(provider.endpoint_url, provider.bucket, tmp_path))
    built.ensure_ready()
    return built


def _signed_url(store: S3Store, make_file: MakeFile, ttl_seconds: int = 300) -> str:
    path, sha256, size = make_file(b"PK\x03\x04 signed")
    store.put_file(KEY, path, sha256=sha256, size=size)
    return store.download_url(KEY, filename=FILENAME, ttl_seconds=ttl_seconds)


def test_s3_objects_are_refused_to_unsigned_requests(provider: Provider, provider_store: S3Store, make_file: MakeFile) -> None:
    path, sha256, size = make_file(b"private")
    provider_store.put_file(KEY, path, sha256=sha256, size=size)

    response = requests.get(f"{provider_store.endpoint_url}/{provider_store.bucket}/{S3_PREFIX}/{KEY}", timeout=10)
    listing = requests.get(f"{provider_store.endpoint_url}/{provider_store.bucket}", timeout=10)

    assert response.status_code == 403
    assert b"private" not in response.content
    if provider.name == "real-s3":  # moto lists buckets to anyone (storage init warns about it)
        assert listing.status_code == 403


def test_s3_objects_carry_sha256_metadata_and_the_zip_type(provider: Provider, provider_store: S3Store, make_file: MakeFile) -> None:
    path, sha256, size = make_file(b"PK\x03\x04 with metadata")
    provider_store.put_file(KEY, path, sha256=sha256, size=size)

    head = provider.client.head_object(Bucket=provider.bucket, Key=f"{S3_PREFIX}/{KEY}")

    assert head["Metadata"] == {"sha256": sha256}
    assert head["ContentType"] == "application/zip"
    assert head["ContentLength"] == size


def test_s3_pack_under_the_single_put_limit_is_one_request(provider: Provider, provider_store: S3Store, make_file: MakeFile) -> None:
    data = os.urandom(20 * MiB)
    path, sha256, size = make_file(data)

    provider_store.put_file(KEY, path, sha256=sha256, size=size)

    head = provider.client.head_object(Bucket=provider.bucket, Key=f"{S3_PREFIX}/{KEY}")
    # A multipart object's ETag ends in "-<parts>"; one PUT's does not.
    assert "-" not in head["ETag"].strip('"')
    assert head["ContentLength"] == size and head["Metadata"] == {"sha256": sha256}
    body, _ = fetch(provider_store.download_url(KEY, filename=FILENAME, ttl_seconds=60))
    assert hashlib.sha256(body).hexdigest() == sha256


def test_s3_single_put_limit_is_checked() -> None:
    for limit in (PART_SIZE - 1, 5 * 1024 * MiB + 1):
        with pytest.raises(ValueError, match="single_put_limit"):
            S3Store("bucket", endpoint_url="http://127.0.0.1:9", single_put_limit=limit)


def test_s3_multipart_upload_is_one_complete_object(provider: Provider, tmp_path: Path, make_file: MakeFile) -> None:
    provider_store = S3Store.from_settings(s3_settings(provider.endpoint_url, provider.bucket, tmp_path), single_put_limit=PART_SIZE)
    provider_store.ensure_ready()
    data = os.urandom(20 * MiB)
    path, sha256, size = make_file(data)

    provider_store.put_file(KEY, path, sha256=sha256, size=size)

    head = provider.client.head_object(Bucket=provider.bucket, Key=f"{S3_PREFIX}/{KEY}")
    # A multipart object's ETag is "<md5 of part md5s>-<parts>"; 20 MiB in 16 MiB parts is two.
    assert head["ETag"].strip('"').endswith("-2")
    assert head["ContentLength"] == size and head["Metadata"] == {"sha256": sha256}
    assert provider.client.list_multipart_uploads(Bucket=provider.bucket).get("Uploads", []) == []
    body, _ = fetch(provider_store.download_url(KEY, filename=FILENAME, ttl_seconds=60))
    assert hashlib.sha256(body).hexdigest() == sha256


def test_s3_delete_removes_the_object_for_presigned_readers_too(provider_store: S3Store, make_file: MakeFile) -> None:
    url = _signed_url(provider_store, make_file)
    assert requests.get(url, timeout=10).status_code == 200

    provider_store.delete(KEY)

    gone = requests.get(url, timeout=10)
    # S3 answers 404 to a valid signature for a missing key; moto answers 403.
    assert gone.status_code in (403, 404) and b"signed" not in gone.content
    assert list(provider_store.keys()) == []


def test_s3_missing_bucket_is_a_store_error_not_a_missing_artifact(provider: Provider, tmp_path: Path, make_file: MakeFile) -> None:
    unready = S3Store.from_settings(s3_settings(provider.endpoint_url, f"{provider.bucket}-never-created", tmp_path))
    path, sha256, size = make_file(b"x")

    with pytest.raises(ArtifactStoreError) as excinfo:
        unready.put_file(KEY, path, sha256=sha256, size=size)

    assert type(excinfo.value) is ArtifactStoreError
    assert str(excinfo.value) == "upload failed: the bucket does not exist"


def test_s3_presigned_url_signed_for_the_public_endpoint(provider: Provider, tmp_path: Path, make_file: MakeFile) -> None:
    # "localhost" is another name for the same server: the URL must carry it, and a server that
    # checks signatures must accept a URL signed for the host the reader uses.
    public = provider.endpoint_url.replace("127.0.0.1", "localhost")
    settings = s3_settings(provider.endpoint_url, provider.bucket, tmp_path, REVIEWPACKS_S3_PUBLIC_ENDPOINT_URL=public)
    public_store = S3Store.from_settings(settings)
    public_store.ensure_ready()

    url = _signed_url(public_store, make_file)

    assert url.startswith(f"{public}/{provider.bucket}/{S3_PREFIX}/")
    assert public_store.endpoint_url == provider.endpoint_url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"PK\x03\x04 signed"


# ------------------------------------------------------------ a real server only


@pytest.fixture
def real_store(real_provider: Provider, tmp_path: Path) -> S3Store:
    built = S3Store.from_settings(s3_settings(real_provider.endpoint_url, real_provider.bucket, tmp_path))
    built.ensure_ready()
    return built


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_real_s3_presigned_url_is_refused_after_its_expiry(real_store: S3Store, make_file: MakeFile) -> None:
    url = _signed_url(real_store, make_file, ttl_seconds=2)
    assert requests.get(url, timeout=10).status_code == 200

    time.sleep(3.5)

    response = requests.get(url, timeout=10)
    assert response.status_code == 403
    assert b"PK" not in response.content


def test_real_s3_presigned_url_is_refused_with_a_tampered_signature(real_store: S3Store, make_file: MakeFile) -> None:
    url = _signed_url(real_store, make_file)
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    flipped = ("0" if signature[-1] != "0" else "1")

    assert requests.get(url, timeout=10).status_code == 200
    assert requests.get(_with_query(url, **{"X-Amz-Signature": signature[:-1] + flipped}), timeout=10).status_code == 403
    # A longer lifetime than the one signed is a tampered URL as well.
    assert requests.get(_with_query(url, **{"X-Amz-Expires": "604800"}), timeout=10).status_code == 403


def test_real_s3_storage_init_reports_what_the_server_really_does(real_provider: Provider, tmp_path: Path) -> None:
    store = S3Store.from_settings(s3_settings(real_provider.endpoint_url, real_provider.bucket, tmp_path))

    report = store.initialize()

    checks = {check.name: check for check in report.checks}
    assert report.ok
    # Ceph RGW 16: uploads are refused while BlockPublicAcls is on, bucket encryption is not
    # implemented, and SSE requested on an object is accepted but not applied.
    assert checks["public access block"].status == "warning" and "BlockPublicAcls" in checks["public access block"].detail
    assert checks["default encryption"].status == "warning" and "PutBucketEncryption" in checks["default encryption"].detail
    assert checks["encryption at rest"].status == "warning" and "NOT encrypted" in checks["encryption at rest"].detail
    assert (checks["lifecycle"].status, checks["privacy"].status, checks["anonymous listing"].status) == ("ok", "ok", "ok")
    rules = {rule["ID"]: rule for rule in real_provider.client.get_bucket_lifecycle_configuration(Bucket=real_provider.bucket)["Rules"]}
    assert rules["reviewpacks-abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules["reviewpacks-expire-after-retention"]["Expiration"] == {"Days": 90 + 30}
    assert list(store.keys()) == []  # the probe is gone
    # A second run finds the bucket and otherwise says the same.
    again = store.initialize().checks
    assert again[0] == Check("bucket", "ok", "exists") and again[1:] == report.checks[1:]


# ------------------------------------------------------------------- storage init


def test_storage_init_on_moto_configures_and_verifies_everything(s3: MotoS3Server, tmp_path: Path) -> None:
    store = S3Store.from_settings(s3_settings(s3.endpoint_url, f"reviewpacks-{uuid.uuid4().hex[:12]}", tmp_path))

    report = store.initialize()

    # moto lists any bucket to anonymous requests, and the report says so.
    assert report.ok and [check.name for check in report.warnings] == ["anonymous listing"]
    assert [check.name for check in report.checks] == [
        "bucket", "public access block", "default encryption", "lifecycle", "encryption at rest", "privacy", "anonymous listing"
    ]
    assert {check.name: check.detail for check in report.checks}["encryption at rest"] == "the provider reports AES256 on a probe object"
    assert store.initialize().checks[0].detail == "exists"


def test_storage_init_keeps_lifecycle_rules_for_other_prefixes(s3: MotoS3Server, s3_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = f"reviewpacks-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    other = {"ID": "someone-elses", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 7}}
    s3_client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [other]})

    S3Store.from_settings(s3_settings(s3.endpoint_url, bucket, tmp_path)).initialize()
    S3Store.from_settings(s3_settings(s3.endpoint_url, bucket, tmp_path)).initialize()

    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(rule["ID"] for rule in rules) == [
        "reviewpacks-abort-incomplete-uploads", "reviewpacks-expire-after-retention", "someone-elses"
    ]


def test_storage_init_on_a_minio_like_provider_warns_and_verifies_privacy(
    minio_like: MinioLikeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws_environment(monkeypatch, minio_like.env)
    store = S3Store.from_settings(s3_settings(minio_like.endpoint_url, f"reviewpacks-{uuid.uuid4().hex[:12]}", tmp_path))

    report = store.initialize()

    checks = {check.name: check for check in report.checks}
    assert report.ok
    assert checks["public access block"].status == "warning"
    assert checks["public access block"].detail.startswith("PutPublicAccessBlock not implemented by the provider (501 NotImplemented)")
    assert "privacy is verified with anonymous requests" in checks["public access block"].detail
    assert checks["privacy"] == Check("privacy", "ok", "an anonymous GET of a probe object is refused")
    assert "PUT" in minio_like.front.refused


def test_storage_init_fails_when_anonymous_reads_succeed(s3: MotoS3Server, s3_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = f"reviewpacks-{uuid.uuid4().hex[:12]}"
    store = S3Store.from_settings(s3_settings(s3.endpoint_url, bucket, tmp_path))
    store.initialize()
    # Someone opened the bucket behind the store's back: lifted the block and made it public-read.
    # Running init again puts the block back, but moto does not enforce it against an ACL
    # already granted, so the bucket stays public and only the anonymous GET can tell.
    s3_client.delete_public_access_block(Bucket=bucket)
    s3_client.put_bucket_acl(Bucket=bucket, ACL="public-read")

    report = store.initialize()

    assert not report.ok
    assert [check for check in report.checks if check.status == "failed"][0].name == "privacy"
    with pytest.raises(ArtifactStoreError, match="privacy"):
        store.ensure_ready()


def test_s3_keys_live_under_the_configured_prefix(s3_store: S3Store, s3_client, make_file: MakeFile) -> None:  # type: ignore[no-untyped-def]
    path, sha256, size = make_file(b"x")
    s3_store.put_file(KEY, path, sha256=sha256, size=size)
    s3_client.put_object(Bucket=s3_store.bucket, Key="elsewhere/other.zip", Body=b"y")
    s3_client.put_object(Bucket=s3_store.bucket, Key=f"{S3_PREFIX}-sibling/other.zip", Body=b"y")

    listed = [obj["Key"] for obj in s3_client.list_objects_v2(Bucket=s3_store.bucket)["Contents"]]

    assert f"{S3_PREFIX}/{KEY}" in listed
    assert list(s3_store.keys()) == [KEY]


def test_s3_keys_paginates(s3_store: S3Store, s3_client) -> None:  # type: ignore[no-untyped-def]
    # 1,001 objects force a second page of list_objects_v2.  They are written
    # directly rather than through put_file to keep this the slowest test at ~7s.
    expected = [f"packs/{i:04d}.zip" for i in range(1001)]
    for key in expected:
        s3_client.put_object(Bucket=s3_store.bucket, Key=f"{S3_PREFIX}/{key}", Body=b"")

    assert list(s3_store.keys("packs/")) == expected


def test_s3_dead_endpoint_is_unavailable_quickly(tmp_path: Path, make_file: MakeFile, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dead = f"http://127.0.0.1:{free_port()}"
    dead_store = S3Store.from_settings(s3_settings(dead, "reviewpacks-dead", tmp_path), max_attempts=2)
    path, sha256, size = make_file(b"x")

    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as excinfo:
        dead_store.put_file(KEY, path, sha256=sha256, size=size)

    assert time.monotonic() - started < 15
    # The message reaches logs and Flower: the operation and the kind of fault, nothing about where.
    assert str(excinfo.value) == "upload failed: storage unreachable (EndpointConnectionError)"
    assert excinfo.value.__cause__ is not None


def test_s3_outage_and_recovery_on_the_same_port(s3: MotoS3Server, tmp_path: Path, make_file: MakeFile) -> None:
    settings = s3_settings(s3.endpoint_url, f"reviewpacks-{uuid.uuid4().hex[:12]}", tmp_path)
    s3_store = S3Store.from_settings(settings, max_attempts=2)
    s3_store.ensure_ready()
    path, sha256, size = make_file(b"survives the outage")
    s3_store.put_file(KEY, path, sha256=sha256, size=size)

    s3.stop()
    try:
        with pytest.raises(StorageUnavailable):
            s3_store.stat(KEY)
        with pytest.raises(StorageUnavailable):
            s3_store.put_file(KEY, path, sha256=sha256, size=size)
        with pytest.raises(StorageUnavailable):
            list(s3_store.keys())
    finally:
        s3.start()

    assert s3_store.stat(KEY) == StoredObject(key=KEY, size=size, sha256=sha256)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "SlowDown", StorageUnavailable),
        (500, "InternalError", StorageUnavailable),
        (404, "NoSuchKey", ArtifactNotFound),
        (403, "AccessDenied", ArtifactStoreError),
    ],
)
def test_s3_error_responses_are_translated(
    s3_store: S3Store, status: int, code: str, expected: type[Exception]
) -> None:
    # moto cannot be made to answer 5xx on demand, so the client is stubbed here.
    with Stubber(s3_store._client) as stubber:
        stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(expected) as excinfo:
            s3_store.open(KEY)
    assert type(excinfo.value) is expected
    message = str(excinfo.value)
    assert message.startswith("open failed") and s3_store.bucket not in message and KEY not in message
    assert "127.0.0.1" not in message and "http" not in message


# ------------------------------------------------------------------- local only


def test_local_store_warns_once_that_it_is_for_development(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="reviewpacks.storage.artifacts"):
        local = LocalStore(tmp_path)
        local.ensure_ready()
        list(local.keys())

    warnings = [r for r in caplog.records if r.name == "reviewpacks.storage.artifacts"]
    assert len(warnings) == 1
    assert "development only" in warnings[0].getMessage()


def test_local_store_keeps_metadata_in_a_sidecar(tmp_path: Path, make_file: MakeFile) -> None:
    local = LocalStore(tmp_path / "artifacts")
    path, sha256, size = make_file(b"x")

    local.put_file(KEY, path, sha256=sha256, size=size)

    assert (tmp_path / "artifacts" / "packs" / "3f2a9c.zip.meta.json").is_file()
    assert list(local.keys()) == [KEY]


def test_local_store_never_follows_a_symlink_out_of_its_root(tmp_path: Path, make_file: MakeFile) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local = LocalStore(tmp_path / "artifacts")
    local.ensure_ready()
    (tmp_path / "artifacts" / "escape").symlink_to(outside)
    path, sha256, size = make_file(b"x")

    with pytest.raises(ValueError):
        local.put_file("escape/a.zip", path, sha256=sha256, size=size)
    assert list(outside.iterdir()) == []
