r"""Numerical gradient checking by central differences (worked problem 13).

For a function ``f`` of named arrays and an upstream gradient ``v`` (same shape as the
output), the checked scalar is :math:`L(x) = \langle v, f(x) \rangle`, and the numerical
derivative along a direction ``u`` is

.. math:: \frac{L(x + h u) - L(x - h u)}{2h} = \langle \nabla L, u \rangle + O(h^2).

Works on any function of NumPy arrays.  Arithmetic is float64 (inputs are up-cast for the
check); the step ``eps = 1e-5`` balances the O(h²) truncation error against round-off
(~1e-16 / h ≈ 1e-11 relative), so analytic and numeric agree to about 1e-8 on smooth
functions, hence the default ``rtol = 1e-5``, ``atol = 1e-7``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import GradcheckError

if TYPE_CHECKING:
    from ..symbolic.derivation import Derivation


class Entry(NamedTuple):
    """One compared entry: which input, where (an index or ``"projection j"``), the two
    values and ``|analytic - numeric|`` (``inf`` when either is not finite)."""

    input: str
    where: object
    analytic: float
    numeric: float
    error: float


@dataclass
class GradcheckReport:
    mode: str
    checked: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst: list[Entry] = field(default_factory=list)  # the largest errors, passing or not
    kinks: list[Entry] = field(default_factory=list)  # out of tolerance where f is not smooth
    failures: list[Entry] = field(default_factory=list)


def entry_error(analytic: float, numeric: float) -> float:
    """``|analytic - numeric|``, and ``inf`` when either is NaN or infinite: a check that
    let NaN through (every comparison with NaN is false) would pass anything."""
    if not (math.isfinite(analytic) and math.isfinite(numeric)):
        return math.inf
    return abs(analytic - numeric)


def entry_passes(analytic: float, numeric: float, rtol: float, atol: float) -> bool:
    """``|a - n| <= atol + rtol |n|`` with both finite (written so NaN fails)."""
    return entry_error(analytic, numeric) <= atol + rtol * abs(numeric)


def _positive_finite(name: str, v: object, allow_zero: bool) -> None:
    real = isinstance(v, numbers.Real) and not isinstance(v, bool)
    x = float(v) if real else math.nan  # type: ignore[arg-type]
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        need = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"gradcheck: {name} must be {need}, got {v!r}")


def _check_tolerances(eps: object, rtol: object, atol: object) -> None:
    _positive_finite("eps", eps, False)
    _positive_finite("rtol", rtol, True)
    _positive_finite("atol", atol, True)


def _count(name: str, v: object, lo: int) -> None:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < lo:
        raise ValueError(f"gradcheck: {name} must be an integer >= {lo}, got {v!r}")


def _check_arguments(f, inputs, grads, projections, max_report, kink_tol) -> None:
    if not callable(f):
        raise TypeError(f"gradcheck: f must be callable, got {type(f).__name__}")
    if not isinstance(inputs, Mapping) or not inputs:
        raise TypeError("gradcheck: inputs must be a non-empty dict {name: array}")
    if not (callable(grads) or isinstance(grads, Mapping)):
        raise TypeError("gradcheck: grads must be a dict {name: array} or a callable")
    _count("projections", projections, 1)
    _count("max_report", max_report, 0)
    if kink_tol is not None:
        _positive_finite("kink_tol", kink_tol, True)


def _finite_array(name: str, v: object) -> np.ndarray:
    """A float64 copy of ``v``; NaN or inf would make every difference NaN: refused."""
    if isinstance(v, np.ma.MaskedArray):
        raise TypeError(f"gradcheck: {name} is a masked array; pass a plain ndarray")
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"gradcheck: {name} must be a real numeric array, got dtype {a.dtype}")
    a = np.array(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"gradcheck: {name} holds NaN or infinite values")
    return a


def _real_array(name: str, v: object) -> np.ndarray:
    """A float64 copy of an analytic gradient (NaN kept: it must fail, not be refused)."""
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"gradcheck: {name} must be a real numeric array, got dtype {a.dtype}")
    return np.array(a, dtype=np.float64)


def _scalar(f, inputs, upstream):
    out = np.asarray(f(**inputs), dtype=np.float64)
    if upstream is None:
        if out.size != 1:
            raise ValueError(
                f"gradcheck: f returns shape {out.shape}; pass upstream= (same shape) "
                f"or a callable grads that takes the upstream gradient"
            )
        return float(out.reshape(()))
    if out.shape != upstream.shape:
        raise ValueError(
            f"gradcheck: upstream has shape {upstream.shape} but f returns {out.shape}"
        )
    return float(np.vdot(upstream, out))


def gradcheck(
    f: Callable[..., Any],
    inputs: Mapping[str, Any],
    grads: Mapping[str, Any] | Callable[..., Mapping[str, Any]],
    eps: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    *,
    mode: str = "full",
    upstream: Any = None,
    projections: int = 8,
    seed: int = 0,
    max_report: int = 5,
    kink_tol: float | None = None,
    oracle: Derivation | None = None,
) -> GradcheckReport:
    r"""Check analytic gradients of ``f`` against central differences; raise on mismatch.

    Args:
        f: ``f(**inputs) -> array``, any function of NumPy arrays.
        inputs: ``{name: array}``; each is copied to float64 for the check.
        grads: either ``{name: array}``, the gradients of ``<upstream, f>`` with respect to
            (some of) the inputs, or a callable ``grads(upstream, **inputs) -> {name: array}``.
            With a callable and no ``upstream``, a seeded non-uniform random upstream is drawn
            (an all-ones upstream hides bugs such as batch norm's, whose channel sums vanish).
        eps: the step h.  rtol, atol: an entry passes when ``|a - n| <= atol + rtol |n|``.
        mode: ``"full"`` perturbs every coordinate (the whole Jacobian-vector product, two
            evaluations of f per coordinate); ``"fast"`` checks ``projections`` random
            directions u, comparing ``<grad, u>`` with the directional difference (two
            evaluations per direction, whatever the input size); ``"symbolic"`` compares
            with ``oracle``, a :class:`~derivgrad.symbolic.derivation.Derivation` whose
            inputs are named like ``inputs``: its closed forms, lambdified, are the truth
            (no differencing; ``f`` is only used to shape a drawn upstream).
        upstream: the output gradient ``v``; ``None`` for a scalar f or a callable grads.
        kink_tol: where one-sided differences disagree by more than this (default
            ``1e-3 + 1e3 * eps``), f is not smooth at that point (a ReLU input or a max-pool
            winner changed between x - h and x + h); such entries are reported in
            ``report.kinks`` and not counted as failures.

    Returns:
        a :class:`GradcheckReport`.  Raises :class:`GradcheckError` listing the worst entries
        (input, index, analytic, numeric, error) when any entry fails.
    """
    if mode not in ("full", "fast", "symbolic"):
        raise ValueError(f"gradcheck: mode must be 'full', 'fast' or 'symbolic', got {mode!r}")
    if mode == "symbolic" and oracle is None:
        raise ValueError("gradcheck: mode='symbolic' needs oracle=derivgrad.derive(...)")
    _check_tolerances(eps, rtol, atol)
    _check_arguments(f, inputs, grads, projections, max_report, kink_tol)
    rng = np.random.default_rng(seed)
    xs, g, up = _arrays(f, inputs, grads, upstream, rng)
    kink_tol = 1e-3 + 1e3 * eps if kink_tol is None else kink_tol
    if mode == "symbolic":
        rows = _symbolic_rows(oracle, xs, g, up)
    else:
        probe = _Prober(f, xs, up, eps, kink_tol)
        rows = _difference_rows(mode, probe, xs, g, projections, rng)
    return _report(mode, rows, rtol, atol, max_report)


# (input name, index or "projection j", analytic, numeric, kink)
Row = tuple[str, object, float, float, bool]


def _arrays(f, inputs, grads, upstream, rng):
    """float64 copies of the inputs, the analytic gradients and the upstream gradient."""
    xs = {k: _finite_array(f"inputs[{k!r}]", v) for k, v in inputs.items()}
    if callable(grads):
        if upstream is None:
            out = np.asarray(f(**xs))
            upstream = rng.standard_normal(out.shape) if out.size != 1 else None
        g = grads(upstream, **{k: v.copy() for k, v in xs.items()})
    else:
        g = grads
    if not isinstance(g, Mapping):
        raise TypeError(f"gradcheck: grads(...) must return a dict, got {type(g).__name__}")
    up = None if upstream is None else _finite_array("upstream", upstream)
    g = {k: _real_array(f"grads[{k!r}]", v) for k, v in g.items() if v is not None}
    for k, v in g.items():
        if k not in xs:
            raise ValueError(f"gradcheck: grads has {k!r} which is not an input ({sorted(xs)})")
        if v.shape != xs[k].shape:
            raise ValueError(
                f"gradcheck: grads[{k!r}] has shape {v.shape}, input has {xs[k].shape}"
            )
    return xs, g, up


class _Prober:
    """Central differences of ``L = <upstream, f>`` along a direction, with a kink test
    (the one-sided differences disagree: f is not smooth there)."""

    def __init__(self, f, xs, up, eps, kink_tol):
        self.f, self.xs, self.up, self.eps, self.kink_tol = f, xs, up, eps, kink_tol
        self.L0 = _scalar(f, xs, up)

    def __call__(self, name, direction):
        xs, eps, x0 = self.xs, self.eps, self.xs[name]
        xs[name] = x0 + eps * direction
        lp = _scalar(self.f, xs, self.up)
        xs[name] = x0 - eps * direction
        lm = _scalar(self.f, xs, self.up)
        xs[name] = x0
        central = (lp - lm) / (2 * eps)
        one_sided = abs((lp - self.L0) / eps - (self.L0 - lm) / eps)
        return central, one_sided > self.kink_tol * max(1.0, abs(central))


def _symbolic_rows(oracle, xs, g, up) -> list[Row]:
    rows: list[Row] = []
    for name, ga in g.items():
        fn = oracle.lambdify(name)
        extra = {"upstream": up} if "upstream" in fn.argnames else {}
        truth = np.asarray(fn(**{k: xs[k] for k in fn.argnames if k in xs}, **extra))
        if truth.shape != ga.shape:
            raise ValueError(f"gradcheck: oracle gives {name} shape {truth.shape}, not {ga.shape}")
        for idx in np.ndindex(*ga.shape):
            rows.append((name, idx, float(ga[idx]), float(truth[idx]), False))
    return rows


def _difference_rows(mode, probe, xs, g, projections, rng) -> list[Row]:
    rows: list[Row] = []
    for name, ga in g.items():
        if mode == "full":
            for idx in np.ndindex(*xs[name].shape):
                e = np.zeros_like(xs[name])
                e[idx] = 1.0
                num, kink = probe(name, e)
                rows.append((name, idx, float(ga[idx]), num, kink))
        else:
            for j in range(projections):
                u = rng.standard_normal(xs[name].shape)
                num, kink = probe(name, u)
                rows.append((name, f"projection {j}", float(np.vdot(ga, u)), num, kink))
    return rows


def _report(mode, rows, rtol, atol, max_report) -> GradcheckReport:
    rep = GradcheckReport(mode)
    for name, idx, a, n, kink in rows:
        err = entry_error(a, n)
        rep.checked += 1
        rep.max_abs_error = max(rep.max_abs_error, err)
        rel = err / max(abs(n), 1e-300) if math.isfinite(err) else math.inf
        rep.max_rel_error = max(rep.max_rel_error, rel)
        if not entry_passes(a, n, rtol, atol):
            # a non-finite value is never a kink: it is a failure whatever f looks like
            is_kink = kink and math.isfinite(err)
            (rep.kinks if is_kink else rep.failures).append(Entry(name, idx, a, n, err))
    rows = sorted(rows, key=lambda r: -entry_error(r[2], r[3]))
    rep.worst = [Entry(r[0], r[1], r[2], r[3], entry_error(r[2], r[3])) for r in rows[:max_report]]
    if rep.failures:
        rep.failures.sort(key=lambda r: -r.error)
        lines = "\n".join(
            f"  {n}[{i}]: analytic {a:.10g}, numeric {m:.10g}, error {e:.3g}"
            for n, i, a, m, e in rep.failures[:max_report]
        )
        raise GradcheckError(
            f"gradcheck ({mode}): {len(rep.failures)} of {rep.checked} entries "
            f"exceed atol={atol:g} + rtol={rtol:g}*|numeric|; worst:\n{lines}",
            rep,
        )
    return rep
