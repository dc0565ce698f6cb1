"""The properties behind ``derivgrad check``: for an op of the registry, hypothesis draws
parameters and values; the kernels' forward and backward must agree with the lambdified
symbolic ground truth and pass a central-difference check.

``check_op(name, kernel=...)`` also accepts a replacement kernel face (same signature as
the registry's), which is how a user's own kernel — or a planted bug — is put to the test.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

from ..errors import GradcheckError
from ..registry import get
from .gradcheck import gradcheck
from .strategies import op_params, op_values

RTOL = 1e-9  # float64 kernels against exact closed forms evaluated in float64


@dataclass
class CheckResult:
    op: str
    cases: int = 0
    max_error: float = 0.0
    passed: bool = True
    failing_params: dict | None = None
    message: str = ""
    seconds: float = 0.0
    command: str = ""


def _derive(name, key):
    return _build(get(name), key)


@functools.lru_cache(maxsize=256)
def _build(op, key):
    # keyed by the op object, not its name: a name defined again (``define(..., name=)``)
    # is another op, and a check must hold it to its own definition's truth
    return op.build(**dict(json.loads(key)))


def _key(params):
    return json.dumps(
        sorted((k, list(v) if isinstance(v, tuple) else v) for k, v in params.items())
    )


def compare(actual: object, expected: object) -> float:
    """The relative error ``max|a - e| / max(max|e|, 1)`` of a kernel's result against the
    symbolic truth; ``inf`` when the shapes differ or either holds NaN or inf, so that a
    NaN can never pass (``nan > tol`` is false).  ``derivgrad check``, ``check_op`` and the
    examples all compare through this one function."""
    a, b = np.asarray(actual), np.asarray(expected)
    if a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf" or a.shape != b.shape:
        return math.inf
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.inf
    return float(np.abs(a - b).max(initial=0.0) / max(np.abs(b).max(initial=0.0), 1.0))


def _within(err: float) -> bool:
    return err <= RTOL  # false for NaN as well as for anything too large


def check_case(
    name: str,
    params: dict,
    values: dict[str, np.ndarray],
    upstream: Any,
    kernel: Callable | None = None,
    numeric: bool = True,
) -> float:
    """One case: returns the largest relative error; raises AssertionError on a mismatch."""
    d = _derive(name, _key(params))
    face = kernel or get(name).kernel
    fwd = d.lambdify()
    scalar_loss = "upstream" not in fwd.argnames
    up = np.ones(d.upstream_array.shape) if scalar_loss else upstream
    extra = {} if scalar_loss else {"upstream": up}
    try:
        y, grads = face(d, {k: v.copy() for k, v in values.items()}, up)
    except Exception as e:  # a kernel under test that raises has failed its check
        raise AssertionError(f"{name}: the kernel raised {type(e).__name__}: {e}") from e
    if not isinstance(grads, dict):
        raise AssertionError(f"{name}: the kernel returned {type(grads).__name__} for grads")
    unknown = sorted(set(grads) - set(values))
    if unknown:
        raise AssertionError(f"{name}: the kernel returned gradients of non-inputs {unknown}")
    if kernel is not None:  # a replacement must give every gradient the built-in face gives
        _, ref = get(name).kernel(d, {k: v.copy() for k, v in values.items()}, up)
        missing = sorted(k for k, g in ref.items() if g is not None and grads.get(k) is None)
        if missing:
            raise AssertionError(f"{name}: the kernel returned no gradient for {missing}")
    err = compare(y, fwd(**values, **extra))
    if not _within(err):
        raise AssertionError(f"{name}: forward differs from the symbolic forward by {err:.3g}")
    for k, g in grads.items():
        if g is None:
            continue
        gerr = compare(g, d.lambdify(k)(**values, **extra))
        err = max(err, gerr)
        if not _within(gerr):
            raise AssertionError(
                f"{name}: gradient of {k} differs from the symbolic closed form by {gerr:.3g}"
            )
    if numeric:
        f = lambda **v: face(d, v, up)[0]
        gradcheck(
            f,
            values,
            {k: g for k, g in grads.items() if g is not None},
            mode="fast",
            upstream=up,
            projections=3,
        )
    return err


def check_op(
    name: str,
    examples: int = 20,
    seed: int = 0,
    kernel: Callable | None = None,
    numeric: bool = True,
    shrink: bool = True,
) -> CheckResult:
    """Run the property for op ``name`` on ``examples`` drawn cases; returns a CheckResult.

    With ``shrink`` (the default) a failure is reduced by hypothesis to the smallest failing
    case, which can take many more derivations; ``shrink=False`` reports the first one found.
    """
    get(name)  # an unknown name is a ParamError naming the known ops
    for arg, v in (("examples", examples), ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if arg == "examples" else 0):
            raise ValueError(
                f"check_op: {arg} must be an integer >= {int(arg == 'examples')}, got {v!r}"
            )
    res = CheckResult(name)
    last_fail: dict[str, Any] = {}
    t0 = time.perf_counter()

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])

    @hseed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(st.data())
    def prop(data):
        params = data.draw(op_params(name), label="params")
        d = _derive(name, _key(params))
        values, up = data.draw(op_values(d), label="values")
        try:
            err = check_case(name, params, values, up, kernel, numeric)
        except (AssertionError, GradcheckError) as e:
            last_fail.update(params=params, message=str(e).splitlines()[0])
            raise
        res.cases += 1
        res.max_error = max(res.max_error, err)

    try:
        prop()
    except (AssertionError, GradcheckError) as e:
        res.passed = False
        res.failing_params = last_fail.get("params")
        res.message = last_fail.get(
            "message", str(e).splitlines()[0] if str(e) else type(e).__name__
        )
        res.command = _command(name, res.failing_params, seed, kernel is None)
    res.seconds = time.perf_counter() - t0
    return res


def _command(name, params, seed=0, own_kernel=True):
    if params is None:
        return ""
    reproduce = getattr(get(name), "command", None)
    if reproduce is not None:
        # a defined op: the command that defines it and checks its own kernels on these
        # shapes, or (a user's kernel failed, which no command runs) derives them
        return reproduce(params, seed) if own_kernel else reproduce(params, verb="derive")
    parts = [f"derivgrad derive {name}"]
    for k, v in params.items():
        if k == "bias":
            if not v:
                parts.append("--no-bias")
            continue
        parts.append(f"--{k} {'x'.join(map(str, v)) if isinstance(v, tuple) else v}")
    return " ".join(parts)


def table(results: Iterable[CheckResult]) -> str:
    lines = [f"{'op':24s} {'cases':>6s} {'largest error':>14s} {'result':>7s} {'seconds':>8s}"]
    for r in results:
        lines.append(
            f"{r.op:24s} {r.cases:6d} {r.max_error:14.2e} "
            f"{'pass' if r.passed else 'FAIL':>7s} {r.seconds:8.1f}"
        )
        if not r.passed:
            lines.append(f"    {r.message}")
            if r.command:
                lines.append(f"    smallest failing case: {r.command}")
    return "\n".join(lines)
