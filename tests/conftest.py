"""Shared test setup: a fresh default graph per test and a derandomized hypothesis profile in CI."""
import os

import pytest
from hypothesis import HealthCheck, settings

import graphflow as gf

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

os.environ.setdefault("GRAPHFLOW_VERIFY", "1")


@pytest.fixture(autouse=True)
def fresh_default_graph():
    gf.reset_default_graph()
    yield
    gf.reset_default_graph()
