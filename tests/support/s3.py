"""S3 over real HTTP for tests: moto's server on a free local port.

The root conftest loads this module with ``pytest_plugins = ["tests.support.s3"]``,
which makes these fixtures available everywhere:

``s3_server``  (session) the running :class:`MotoS3Server`.
``s3``         (function) the same server, running, with its state wiped and the
               AWS_* / REVIEWPACKS_S3_ENDPOINT_URL variables set for the test.

Boto3 talks to it exactly as it would to MinIO or AWS, so retries, timeouts,
presigned URLs and anonymous requests are exercised over sockets rather than
through moto's in-process patching.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests
from moto.server import ThreadedMotoServer

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on HOST that nothing listens on at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def s3_environment(endpoint_url: str) -> dict[str, str]:
    """The variables a process needs to use the test server instead of AWS."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    server = MotoS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3Server]:
    # A previous test may have stopped the server and failed before restarting it.
    s3_server.start()
    s3_server.reset()
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    # Keep a developer's own AWS profile, session token or config file from
    # leaking into the tests and pointing boto3 somewhere real.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    yield s3_server
    s3_server.start()
