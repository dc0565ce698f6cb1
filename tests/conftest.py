"""Hypothesis profiles: ``default`` (a few minutes for the whole suite on 2 cores),
``ci`` (the same, derandomised), ``thorough`` (many more cases, for long runs).
Select with ``DERIVGRAD_PROFILE=thorough pytest`` or ``pytest --hypothesis-profile=thorough``.
``deadline=None`` because the first example of a kernel may pay its JIT compile."""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/naive.py

common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("default", max_examples=40, **common)
settings.register_profile("ci", max_examples=40, derandomize=True, **common)
settings.register_profile("thorough", max_examples=1000, **common)
settings.load_profile(
    os.environ.get("DERIVGRAD_PROFILE", "ci" if os.environ.get("CI") else "default")
)


@pytest.fixture(autouse=True, scope="module")
def _registry_restored():
    """Ops a test module defines (``derivgrad.define``, ``registry.register``) leave the
    registry as they found it: the snapshot and render tests iterate it and expect the
    built-ins only."""
    from derivgrad import registry

    before = dict(registry.OPS)
    yield
    registry.OPS.clear()
    registry.OPS.update(before)
