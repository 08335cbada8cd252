"""One whole flow on a real S3 server (Ceph RGW), which, unlike moto, checks signatures and expiry.

A real worker generates a pack into the real server; the reader's presigned URL works, and
the server itself refuses the same URL once tampered with, a request without a signature,
a URL past its expiry and, after the pack is expired, the deleted object.  Skipped with a
reason unless REVIEWPACKS_TEST_REAL_S3_URL names a server; failed if it names one that is down.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import redis as redis_lib
import requests

from reviewpacks.settings import Settings
from tests.conftest import Stack, Worker, stack_env
from tests.support.packs import pack_key, seed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def real_stack(pg_url, redis_url, real_s3, tmp_path_factory):
    redis_lib.Redis.from_url(redis_url).flushdb()
    bucket = real_s3.new_bucket_name()
    home = tmp_path_factory.mktemp("real-stack")
    env = stack_env(pg_url=pg_url, redis_url=redis_url, s3_env=real_s3.env, bucket=bucket, home=home)
    built = Stack(settings=Settings.from_env(env), env=env, bucket=bucket, home=home)
    with pytest.MonkeyPatch.context() as patch:
        # boto3 in this process (the producer and the checks) reads the standard AWS_* variables.
        for name, value in real_s3.env.items():
            patch.setenv(name, value)
        report = built.store().initialize()
        assert report.ok, report
        worker = Worker(env, home / "worker.log")
        try:
            worker.wait_ready()
            yield built, real_s3
        finally:
            worker.stop()


def _tampered(url: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    signature = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_a_pack_on_a_real_s3_server_is_private_signed_and_deleted(real_stack):
    stack, real_s3 = real_stack
    ids = seed(stack, findings=300)
    client = stack.client()

    pack = client.wait(client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack.id, ids.manager_id, timeout=120)
    assert pack.status == "ready"

    key = pack_key(stack, pack.id)
    head = real_s3.client().head_object(Bucket=stack.bucket, Key=f"review-packs/{key}")
    assert head["Metadata"] == {"sha256": pack.sha256} and head["ContentLength"] == pack.file_size

    url = client.download_url(pack.id, ids.manager_id)
    download = requests.get(url, timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == pack.sha256
    assert download.headers["Content-Type"] == "application/zip"

    assert requests.get(_tampered(url), timeout=30).status_code == 403
    unsigned = requests.get(url.split("?")[0], timeout=30)
    assert unsigned.status_code == 403 and not unsigned.content.startswith(b"PK")

    # The reader's TTL is in minutes; the store signs the same way with a two-second one.
    short = stack.store().download_url(key, filename=f"{uuid.uuid4().hex}.zip", ttl_seconds=2)
    assert requests.get(short, timeout=30).status_code == 200
    time.sleep(3.5)
    assert requests.get(short, timeout=30).status_code == 403

    client.expire_pack(pack.id, ids.manager_id)
    gone = requests.get(url, timeout=30)
    assert gone.status_code == 404 and not gone.content.startswith(b"PK")
    assert list(stack.store().keys()) == []
