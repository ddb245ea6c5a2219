"""Shared pytest set-up. Fixtures live in one module per area, loaded as plugins."""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytest_plugins = [
    "tests.fixtures_store",  # S3-compatible server (SeaweedFS) and store fixtures
    "tests.fixtures_cluster",  # Ray, Prefect harness
    "tests.fixtures_codec",  # tiny random codec models, sample clips
]
