"""`reviewpacks storage init` as an operator runs it: one line per check, and the exit code says whether to go on."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import ROOT
from tests.support.s3 import free_port


@pytest.fixture
def storage_init(tmp_path):
    def invoke(endpoint_url: str, bucket: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWPACKS_", "AWS_"))}
        env.update(
            REVIEWPACKS_HOME=str(tmp_path),
            REVIEWPACKS_ARTIFACT_STORE=f"s3://{bucket}/packs",
            REVIEWPACKS_S3_ENDPOINT_URL=endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE="/nonexistent/aws-config",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
            COLUMNS="300",
        )
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", "storage", "init"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    return invoke


def _bucket() -> str:
    return f"reviewpacks-{uuid.uuid4().hex[:12]}"


def test_a_minio_like_provider_gets_warnings_and_exit_0(storage_init, minio_like):
    done = storage_init(minio_like.endpoint_url, _bucket())

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ok      bucket: created"
    assert lines[1].startswith("warning public access block: PutPublicAccessBlock not implemented by the provider (501 NotImplemented); ")
    assert "ok      privacy: an anonymous GET of a probe object is refused" in lines
    assert lines[-1].startswith("artifact store ready (")


def test_an_unreachable_store_is_unavailable_and_exit_1(storage_init):
    dead = f"http://127.0.0.1:{free_port()}"

    done = storage_init(dead, _bucket())

    assert done.returncode == 1
    assert done.stderr.startswith("storage unavailable: check bucket failed: storage unreachable")
    assert dead not in done.stdout + done.stderr


def test_a_public_bucket_fails_and_exit_1(storage_init, s3):
    import boto3

    bucket = _bucket()
    assert storage_init(s3.endpoint_url, bucket).returncode == 0
    client = boto3.client("s3", endpoint_url=s3.endpoint_url)
    client.delete_public_access_block(Bucket=bucket)
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    # storage init puts the block back, but moto does not enforce it against an ACL already
    # granted: the bucket stays public, and only the anonymous GET can tell.

    done = storage_init(s3.endpoint_url, bucket)

    assert done.returncode == 1
    assert "failed  privacy: an anonymous GET of a probe object succeeded: the bucket is public" in done.stdout
    assert "storage init failed" in done.stderr
