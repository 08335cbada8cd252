"""S3 over real HTTP for tests: moto's server, a MinIO-like variant of it, and a real S3 server.

The root conftest loads this module with ``pytest_plugins = ["tests.support.s3"]``,
which makes these fixtures available everywhere:

``s3_server``   (session) the running :class:`MotoS3Server`.
``s3``          (function) the same server, running, with its state wiped and the
                AWS_* / REVIEWPACKS_S3_ENDPOINT_URL variables set for the test.
``minio_like``  (session) moto behind a front that answers the public-access-block
                APIs with 501 NotImplemented, as MinIO does.
``real_s3``     (session) a real S3 server (Ceph RADOS Gateway) named by
                REVIEWPACKS_TEST_REAL_S3_URL; see :func:`real_s3`.

Boto3 talks to these exactly as it would to MinIO or AWS, so retries, timeouts,
presigned URLs and anonymous requests are exercised over sockets rather than
through moto's in-process patching.  Moto checks no signature, no presigned
expiry and encrypts nothing, which is why the conformance suite also runs on
the real server.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from threading import Thread
from urllib.parse import parse_qs

import boto3
import pytest
import requests
from botocore.config import Config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

HOST = "127.0.0.1"
REAL_S3_URL_VAR = "REVIEWPACKS_TEST_REAL_S3_URL"


def free_port() -> int:
    """A TCP port on HOST that nothing listens on at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def s3_environment(endpoint_url: str, access_key: str = "testing", secret_key: str = "testing") -> dict[str, str]:
    """The variables a process needs to use a test server instead of AWS."""
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "REVIEWPACKS_S3_ENDPOINT_URL": endpoint_url,
    }


class MotoS3Server:
    """moto's threaded server, stoppable and restartable on the same port.

    Moto keeps its state in process-wide backends rather than in the server
    thread, so buckets and objects survive ``stop()``/``start()``; use
    ``reset()`` to wipe them.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self.env = s3_environment(self.endpoint_url)
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self.running = False

    def start(self) -> None:
        if not self.running:
            self._server.start()
            self.running = True

    def stop(self) -> None:
        """Stop serving; werkzeug closes the listening socket, so clients get "connection refused"."""
        if self.running:
            self._server.stop()
            self.running = False

    def reset(self) -> None:
        response = requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10)
        response.raise_for_status()


_NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
    b"<Message>A header you provided implies functionality that is not implemented</Message></Error>"
)


class _MinioLikeFront:
    """WSGI middleware: the public-access-block APIs answer like MinIO (501), the rest is moto."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.refused: list[str] = []

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        if "publicAccessBlock" in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            self.refused.append(environ["REQUEST_METHOD"])
            start_response("501 Not Implemented", [("Content-Type", "application/xml"), ("Content-Length", str(len(_NOT_IMPLEMENTED)))])
            return [_NOT_IMPLEMENTED]
        return self.app(environ, start_response)


class MinioLikeServer:
    """moto with MinIO's answer to PutPublicAccessBlock (minio/minio#13714: not supported).

    It shares moto's process-wide state with :class:`MotoS3Server`, so tests use their own buckets.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self.env = s3_environment(self.endpoint_url)
        self.front = _MinioLikeFront(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(HOST, self.port, self.front, threaded=True)
        self._thread = Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class RealS3:
    """A real S3 server the tests may create buckets on; buckets are removed at session end."""

    endpoint_url: str
    env: dict[str, str]
    buckets: list[str] = field(default_factory=list)

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def new_bucket_name(self) -> str:
        name = f"reviewpacks-{uuid.uuid4().hex[:12]}"
        self.buckets.append(name)
        return name

    def remove_buckets(self) -> None:
        client = self.client()
        for bucket in self.buckets:
            try:
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    for item in page.get("Contents", []):
                        client.delete_object(Bucket=bucket, Key=item["Key"])
                for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                    client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                client.delete_bucket(Bucket=bucket)
            except client.exceptions.NoSuchBucket:
                pass


def real_s3_expected() -> bool:
    return bool(os.environ.get(REAL_S3_URL_VAR))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    server = MotoS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def minio_like() -> Iterator[MinioLikeServer]:
    server = MinioLikeServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def real_s3() -> Iterator[RealS3]:
    """The real S3 server named by REVIEWPACKS_TEST_REAL_S3_URL (``.ci/run`` starts one and sets it).

    Without the variable the tests that need it are skipped, and pytest's summary lists
    them with this reason.  With the variable set, a server that does not answer fails
    every such test: the run expected it, so its absence is an error, not a skip.
    """
    url = os.environ.get(REAL_S3_URL_VAR)
    if not url:
        pytest.skip(f"no real S3 server: set {REAL_S3_URL_VAR} (CI runs .ci/real-s3 start; see README)")
    env = s3_environment(
        url,
        os.environ.get("REVIEWPACKS_TEST_REAL_S3_ACCESS_KEY", "realkey"),
        os.environ.get("REVIEWPACKS_TEST_REAL_S3_SECRET_KEY", "realsecret"),
    )
    server = RealS3(endpoint_url=url, env=env)
    try:
        server.client().list_buckets()
    except Exception as exc:  # noqa: BLE001 - any failure to answer means the expected server is absent
        pytest.fail(f"{REAL_S3_URL_VAR} is set but the real S3 server does not answer: {type(exc).__name__}", pytrace=False)
    try:
        yield server
    finally:
        server.remove_buckets()


def isolate_aws_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Point boto3 in this process at one test server and nowhere else."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Keep a developer's own AWS profile, session token or config file from
    # leaking into the tests and pointing boto3 somewhere real.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def s3(s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3Server]:
    # A previous test may have stopped the server and failed before restarting it.
    s3_server.start()
    s3_server.reset()
    isolate_aws_environment(monkeypatch, s3_server.env)
    yield s3_server
    s3_server.start()
