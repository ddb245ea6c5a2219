"""Fixtures for the cluster area (see tests/conftest.py): one real local Ray per test session (2 CPUs)
and Prefect's test harness (a temporary API + SQLite database), started once per session."""

from __future__ import annotations

import os
import tempfile

import pytest

TINY_MODEL = "random:tiny:0"  # workers.codec_actor model spec: tiny random codec


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs, shared by every test that needs it; shut down at the end."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        started = True
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness for the whole session, with its own PREFECT_HOME."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="progvc-prefect-test-"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def tiny_pool(ray_session):
    """Two codec actors (1 CPU each) with the tiny random model, for one test module. Flows create their
    own pools, so a module must not hold this one while it runs flows (the cluster has 2 CPUs)."""
    from workers.pool import CodecPool

    pool = CodecPool(TINY_MODEL, n_actors=2, device="cpu")
    yield pool
    pool.close()
