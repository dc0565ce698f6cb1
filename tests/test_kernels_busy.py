"""The settings that keep the kernels fast on a busy machine take effect (``kernels/_threads.py``):
idle workers sleep, the default count follows the cores this process may use (affinity,
cgroup quota), and work too small to share runs on the calling thread.  What they buy is
measured by ``derivgrad bench --busy N``, never here."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import derivgrad.kernels as K
from derivgrad.kernels import _threads, activation, linear, optim, pool

CLEAN = {
    k: v
    for k, v in os.environ.items()
    if k not in _threads.WAIT_VARS + (_threads.ENV, "NUMBA_NUM_THREADS", "OMP_DISPLAY_ENV")
}
SHOW = (
    "import json, os, derivgrad.kernels as K; "
    "print(json.dumps(dict(K.thread_settings(), env=os.environ.get('OMP_WAIT_POLICY'))))"
)


def _run(env, preexec_fn=None):
    r = subprocess.run(
        [sys.executable, "-c", SHOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec_fn,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def _gnu_display(stderr):
    """libgomp's ``OMP_DISPLAY_ENV=VERBOSE`` lines as a dict (empty for another runtime)."""
    out = {}
    for line in stderr.splitlines():
        name, sep, value = line.strip().partition(" = ")
        if sep:
            out[name] = value.strip("'")
    return out


def test_numbas_openmp_workers_wait_passively_and_the_variable_is_given_back():
    settings, err = _run(dict(CLEAN, OMP_DISPLAY_ENV="VERBOSE"))
    shown = _gnu_display(err)
    if settings["layer"] != "omp" or "GOMP_SPINCOUNT" not in shown:
        pytest.skip(f"Numba's layer here is {settings['layer']}, not GNU libgomp")
    # libgomp spins 300,000 times before sleeping by default; passive: not at all
    assert shown["OMP_WAIT_POLICY"] == "PASSIVE" and shown["GOMP_SPINCOUNT"] == "0", shown
    assert settings["wait"].startswith("passive"), settings
    # removed again: a runtime loaded later (PyTorch's) keeps its own default
    assert settings["env"] is None


def test_a_users_own_wait_setting_is_kept():
    settings, err = _run(dict(CLEAN, OMP_DISPLAY_ENV="VERBOSE", GOMP_SPINCOUNT="12345"))
    shown = _gnu_display(err)
    if settings["layer"] != "omp" or "GOMP_SPINCOUNT" not in shown:
        pytest.skip(f"Numba's layer here is {settings['layer']}, not GNU libgomp")
    assert shown["GOMP_SPINCOUNT"] == "12345", shown
    assert settings["wait"] == "the user's GOMP_SPINCOUNT=12345", settings


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs an affinity mask of at least 2 CPUs to narrow",
)
def test_a_narrowed_affinity_mask_gives_its_cores_as_the_default():
    one = min(os.sched_getaffinity(0))
    settings, _ = _run(CLEAN, preexec_fn=lambda: os.sched_setaffinity(0, {one}))
    assert settings["available_cpus"] == 1 and settings["default"] == 1, settings
    assert settings["threads"] == 1, settings


def _tree(tmp_path, cgroup_line, files):
    (tmp_path / "self").write_text(cgroup_line + "\n")
    for rel, text in files.items():
        f = tmp_path / "fs" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return dict(root=tmp_path / "fs", self_cgroup=str(tmp_path / "self"))


@pytest.mark.parametrize(
    "line, files, quota",
    [
        ("0::/job", {"job/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/job", {"job/cpu.max": "max 100000\n"}, None),
        # a parent's quota binds the group below it
        ("0::/a/b", {"a/cpu.max": "100000 100000\n", "a/b/cpu.max": "max 100000\n"}, 1.0),
        ("0::/", {"cpu.max": "250000 100000\n"}, 2.5),
        (
            "4:cpu,cpuacct:/docker/x",
            {
                "cpu,cpuacct/docker/x/cpu.cfs_quota_us": "50000\n",
                "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n",
            },
            0.5,
        ),
        (
            "4:cpu,cpuacct:/x",
            {"cpu,cpuacct/x/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/x/cpu.cfs_period_us": "1\n"},
            None,
        ),
        ("0::/job", {}, None),
    ],
)
def test_the_cgroup_cpu_quota_is_read_in_v1_and_v2(tmp_path, line, files, quota):
    paths = _tree(tmp_path, line, files)
    assert _threads.cgroup_cpu_limit(**paths) == quota
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    want = cpus if quota is None else min(cpus, max(1, int(quota)))
    assert _threads.available_cpus(**paths) == want


def test_set_threads_without_a_count_takes_the_quota(monkeypatch):
    before = K.get_threads()
    monkeypatch.delenv(_threads.ENV, raising=False)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "cgroup_cpu_limit", lambda *a, **k: 1.0)
    try:
        assert K.set_threads() == 1 and K.get_threads() == 1
    finally:
        K.set_threads(before)


def _recording(monkeypatch, module, name):
    seen = []
    real = getattr(module, name)

    def record(*a):
        import numba

        seen.append(numba.get_num_threads())
        return real(*a)

    monkeypatch.setattr(module, name, record)
    return seen


rng = np.random.default_rng(0)
f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
SMALL_AND_LARGE = [
    # (module, kernel the wrapper calls, call on small inputs, call on large inputs)
    (
        activation,
        "relu_fwd",
        lambda: K.relu_forward(f32(64, 500)),
        lambda: K.relu_forward(f32(64, 4000)),
    ),
    (
        optim,
        "_sgd",
        lambda: K.sgd_update(f32(5010), f32(5010), f32(5010), 0.1, 0.9),
        lambda: K.sgd_update(f32(200_000), f32(200_000), f32(200_000), 0.1, 0.9),
    ),
    (
        pool,
        "maxpool2x2_fwd",
        lambda: K.maxpool2d_forward(f32(4, 20, 24, 24), 2),
        lambda: K.maxpool2d_forward(f32(64, 20, 24, 24), 2),
    ),
    (
        linear,
        "tiled_gemm",
        lambda: K.linear_forward(f32(64, 500), f32(10, 500)),
        lambda: K.linear_forward(f32(64, 2880), f32(500, 2880)),
    ),
]


@pytest.mark.skipif(_threads.max_threads() < 2, reason="needs a pool of at least 2 threads")
@pytest.mark.parametrize("module, name, small, large", SMALL_AND_LARGE)
def test_work_too_small_to_share_runs_on_the_calling_thread(
    monkeypatch, module, name, small, large
):
    # the suite shares all work (conftest.py); here the library's own thresholds
    monkeypatch.setitem(_threads.serial_below, "bytes", _threads.SMALL_BYTES)
    monkeypatch.setitem(_threads.serial_below, "flops", _threads.SMALL_FLOPS)
    before = K.get_threads()
    K.set_threads(2)
    try:
        seen = _recording(monkeypatch, module, name)
        small()
        large()
        assert seen == [1, 2]
        assert K.get_threads() == 2  # the count is given back after the small call
    finally:
        K.set_threads(before)
