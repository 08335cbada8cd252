"""The deployment settings: the public S3 endpoint for presigning and the worker's metrics port."""

from __future__ import annotations

import pytest

from reviewpacks.settings import Settings, SettingsError


def test_defaults_leave_presigning_to_the_worker_endpoint_and_metrics_off():
    settings = Settings.from_env({})
    assert settings.s3_public_endpoint_url is None
    assert (settings.metrics_port, settings.metrics_address) == (None, "127.0.0.1")


def test_the_public_endpoint_and_metrics_port_are_read():
    settings = Settings.from_env(
        {
            "REVIEWPACKS_S3_PUBLIC_ENDPOINT_URL": "https://files.example.test/",
            "REVIEWPACKS_METRICS_PORT": "9808",
            "REVIEWPACKS_METRICS_ADDRESS": "0.0.0.0",
        }
    )
    assert settings.s3_public_endpoint_url == "https://files.example.test"
    assert (settings.metrics_port, settings.metrics_address) == (9808, "0.0.0.0")


@pytest.mark.parametrize("value", ["minio:9000", "ftp://x", "http://x/?a=b", "http://x/#frag", "javascript:alert(1)"])
def test_a_public_endpoint_that_is_not_a_base_url_is_refused(value):
    with pytest.raises(SettingsError, match="REVIEWPACKS_S3_PUBLIC_ENDPOINT_URL"):
        Settings.from_env({"REVIEWPACKS_S3_PUBLIC_ENDPOINT_URL": value})


@pytest.mark.parametrize("value", ["-1", "0", "65536", "http", "1e3"])
def test_a_metrics_port_out_of_range_is_refused(value):
    with pytest.raises(SettingsError, match="REVIEWPACKS_METRICS_PORT"):
        Settings.from_env({"REVIEWPACKS_METRICS_PORT": value})
