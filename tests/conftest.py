from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from fedmarket.runtime import Platform, use_platform  # noqa: E402
from fedmarket.settings import Settings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def prefect_backend():
    with prefect_test_harness(server_startup_timeout=60):
        yield


def make_platform(tmp_path) -> Platform:
    return Platform.from_settings(Settings(store_dir=tmp_path / "blocks"))


@pytest.fixture
def platform(tmp_path):
    p = make_platform(tmp_path)
    with use_platform(p):
        yield p
