"""``op.check`` holds a user's backward to the truth of its own definition (issue 26, items 4
and 8): a name defined twice is two ops, and a failure raises, as ``torch.autograd.gradcheck``
does, naming the smallest failing case and the command that derives its truth."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import derivgrad
from derivgrad.errors import GradcheckError

ROOT = Path(__file__).resolve().parents[1]


def times(k: float):
    """The backward of ``y[i] = x[i] * k`` (written here, not generated)."""
    return lambda dy, x: {"x": k * np.asarray(dy)}


def test_a_redefined_name_is_checked_against_its_own_body():
    first = derivgrad.define("y[i] = x[i] * 2", name="t_mylayer", x=(3,))
    assert first.check(times(2), examples=2).passed
    second = derivgrad.define("y[i] = x[i] * 3", name="t_mylayer", x=(3,))
    # with the truth cached by name, this was a false FAIL and the next a false PASS
    assert second.check(times(3), examples=2).passed
    res = second.check(times(2), examples=2, raise_on_failure=False)
    assert not res.passed and "gradient of x differs" in res.message
    assert first.check(times(2), examples=2).passed  # and the first is still itself


def test_a_failing_check_raises_with_the_smallest_case_and_its_command():
    op = derivgrad.define("y[n, d] += x[n, d, k] * w[k]", name="t_contract", x=(3, 2, 4), w=(4,))

    def wrong(dy, x, w):  # the weight gradient forgets to sum over n
        return {"x": dy[:, :, None] * w, "w": np.einsum("nd,ndk->k", dy[:1], x[:1])}

    with pytest.raises(GradcheckError) as info:
        op.check(wrong, examples=5)
    message = str(info.value)
    assert "\n" not in message
    assert "gradient of w differs from the symbolic closed form" in message
    res = info.value.report
    assert not res.passed
    # hypothesis tries the example shapes first and shrinks towards them
    assert res.failing_params == {"x": (3, 2, 4), "w": (4,)}
    assert "smallest failing case: x=3x2x4, w=4;" in message
    command = re.search(r"its ground truth: (.*)\)$", message).group(1)
    assert command == res.command
    args = shlex.split(command)
    assert args[:3] == ["derivgrad", "derive", "--define"]
    r = subprocess.run(
        [sys.executable, "-m", *args, "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert '"x"' in r.stdout and '"w"' in r.stdout


def test_raise_on_failure_false_returns_the_result():
    op = derivgrad.define("y[i] = x[i] * 5", x=(3,))
    res = op.check(times(4), examples=2, raise_on_failure=False)
    assert not res.passed and res.failing_params == {"x": (3,)}
    assert op.check(times(5), examples=2).passed
