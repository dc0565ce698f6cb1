"""Hypothesis profiles: ``default`` (a few minutes for the whole suite on 2 cores),
``ci`` (the same, derandomised), ``thorough`` (many more cases, for long runs).
Select with ``DERIVGRAD_PROFILE=thorough pytest`` or ``pytest --hypothesis-profile=thorough``.
``deadline=None`` because the first example of a kernel may pay its JIT compile."""

import os
import subprocess
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


@pytest.fixture(autouse=True, scope="session")
def _small_work_shared():
    """The suite's shapes are small and stand for large ones: every kernel call goes through
    its parallel cut, not the one-thread path of work too small to share
    (``kernels._threads.serial_if``; ``tests/test_kernels_busy.py`` checks that path)."""
    from derivgrad.kernels import _threads

    before = dict(_threads.serial_below)
    _threads.serial_below.update(bytes=0, flops=0)
    yield
    _threads.serial_below.update(before)


_warm: dict = {}


def pytest_collection_finish(session):
    """Compile the Winograd kernels on a spare core while the tests before
    ``test_kernels_conv.py`` run (see ``tests/warm_kernels.py``); the session's result does
    not depend on it.  ``DERIVGRAD_NO_WARM=1`` turns it off."""
    if os.environ.get("DERIVGRAD_NO_WARM") or (os.cpu_count() or 1) < 2:
        return
    if not any(item.path.name == "test_kernels_conv.py" for item in session.items):
        return
    script = os.path.join(os.path.dirname(__file__), "warm_kernels.py")
    _warm["proc"] = subprocess.Popen(
        [sys.executable, script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NUMBA_NUM_THREADS": "1"},
    )


def pytest_sessionfinish(session, exitstatus):
    proc = _warm.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()  # a cache entry is written by rename: none is left half-written
        proc.wait()
