r"""A user-defined op: a definition in index notation behind the :class:`~derivgrad.ops.base.Op`
protocol, so that every face of a built-in works for it (derive, render, check, kernels).

    op = derivgrad.define("y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]",
                          x=(2, 3, 7, 7), w=(3, 3, 3))
    d = op.derive()               # Derivation on the example shapes; d.verify() proves it
    y = op.forward(x=x, w=w)      # generated parallel Numba kernels, any sizes
    g = op.backward(dy, x=x, w=w) # {"x": dL/dx, "w": dL/dw}
    op.check(my_backward)         # a hand-written backward against the ground truth
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ParamError
from ..ops.base import Op
from .parse import DefineError, Statement, parse
from .program import Program, Ranges

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from ..document import Block
    from ..symbolic.derivation import Derivation

# bump when the generated code changes meaning: old cache entries are then never loaded
CODEGEN_VERSION = "11"


def cache_dir() -> Path:
    """Where generated kernels (and Numba's compiled objects beside them) are kept:
    ``$DERIVGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/derivgrad/define``, else
    ``~/.cache/derivgrad/define``."""
    env = os.environ.get("DERIVGRAD_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "derivgrad" / "define"


def _canonical(statements: list[Statement]) -> str:
    return "\n".join(" ".join(st.text.split()) for st in statements)


class DefinedOp(Op):
    """An op given by a definition in index notation (see :func:`derivgrad.define`).

    Attributes:
        spec: the definition as written; ``program``: its checked statements;
        example: the example shapes (``build()`` with no argument derives on them);
        inputs: the input tensors in order of first read; ``output``: the output's name.
    """

    problems = ""

    def __init__(
        self,
        spec: str,
        shapes: Mapping[str, Any],
        name: str | None = None,
        title: str | None = None,
        ranges: Mapping[str, Any] | None = None,
    ) -> None:
        statements = parse(spec)
        self.fixed = _fixed_ranges(statements, ranges or {})
        self.spec = spec
        example = {k: _shape(k, v) for k, v in shapes.items()}
        self.program = Program(statements, {k: len(v) for k, v in example.items()})
        self.example = {k: example[k] for k in self.program.inputs}
        self.example_ranges = self.program.infer(self.example, fixed=self.fixed)
        self.inputs = tuple(self.program.inputs)
        self.output = self.program.output
        self.key = hashlib.sha256(
            json.dumps(
                [
                    CODEGEN_VERSION,
                    _canonical(statements),
                    sorted(self.example.items()),
                    sorted(self.fixed.items()),
                ]
            ).encode()
        ).hexdigest()[:16]
        if name is not None and (not isinstance(name, str) or not name.isidentifier()):
            raise ParamError(f"define: name must be an identifier, got {name!r}")
        self.name = name or f"defined_{self.key[:8]}"  # type: ignore[misc]
        self.title = title or "User-defined layer"  # type: ignore[misc]
        self._module: ModuleType | None = None
        self._lock = threading.Lock()
        self._derivations: dict[str, Derivation] = {}

    # -- symbolic face ----------------------------------------------------------------------
    def build(self, **shapes: Any) -> Derivation:
        """The derivation on ``shapes`` (default: the example shapes given to ``define``)."""
        from .derivation import build

        unknown = set(shapes) - set(self.inputs)
        if unknown:
            raise ParamError(
                f"{self.name}: unknown input(s) {', '.join(sorted(unknown))}; "
                f"inputs are {', '.join(self.inputs)}"
            )
        full = {k: _shape(k, shapes.get(k, v)) for k, v in self.example.items()}
        key = json.dumps(sorted(full.items()))
        if key not in self._derivations:
            self._derivations[key] = build(self, full)
        return self._derivations[key]

    def derive(self, **shapes: Any) -> Derivation:
        """Same as :meth:`build`: forward, Jacobians, chain rule, closed forms, proof."""
        return self.build(**shapes)

    # -- kernel face --------------------------------------------------------------------------
    def kernels(self) -> ModuleType:
        """The generated Numba module (written to :func:`cache_dir` once per definition)."""
        with self._lock:
            if self._module is None:
                self._module = _load(self)
            return self._module

    def source(self) -> str:
        """The Python source of the generated kernels."""
        from .codegen import numba_source

        return numba_source(self.program, self.example_ranges, self.spec)

    def _prepare(self, arrays: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], Ranges]:
        missing = [k for k in self.inputs if k not in arrays]
        extra = [k for k in arrays if k not in self.inputs]
        if missing or extra:
            what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise ParamError(f"{self.name}: {what}; the inputs are {', '.join(self.inputs)}")
        out: dict[str, np.ndarray] = {}
        dtype = None
        for k in self.inputs:
            a = np.asarray(arrays[k])
            if a.dtype not in (np.float32, np.float64):
                raise TypeError(f"{self.name}: {k} must be float32 or float64, got {a.dtype}")
            if dtype is not None and a.dtype != dtype:
                raise TypeError(f"{self.name}: {k} is {a.dtype} but the others are {dtype}")
            dtype = a.dtype
            if a.ndim != self.program.ranks[k]:
                raise ParamError(
                    f"{self.name}: {k} must have {self.program.ranks[k]} axes, got shape {a.shape}"
                )
            out[k] = np.ascontiguousarray(a)
        try:
            ranges = self.program.infer(
                {k: tuple(int(n) for n in v.shape) for k, v in out.items()}, fixed=self.fixed
            )
        except DefineError as e:
            raise ParamError(
                f"{self.name}: the input shapes do not fit the definition: {e}"
            ) from None
        return out, ranges

    def _run_forward(self, arrays: Mapping[str, Any], compute: bool = True) -> tuple:
        """Validated inputs, ranges, ``R`` and the defined tensors, filled by the forward
        kernel unless ``compute`` is false (then left uninitialised)."""
        import numba

        from .codegen import range_values

        x, ranges = self._prepare(arrays)
        dtype = next(iter(x.values())).dtype
        # the ranges, then the thread count (how many partial sums a split contraction keeps)
        R = np.array([*range_values(self.program, ranges), numba.get_num_threads()], dtype=np.int64)
        T = {n: np.empty(ranges.shapes[n], dtype) for n in self.program.defined}
        if compute:
            self.kernels().forward(R, *x.values(), *T.values())
        return x, ranges, R, T

    def forward(self, **arrays: Any) -> np.ndarray:
        """The output for input arrays named as in the definition (float32 or float64, one
        dtype; any sizes that fit the definition)."""
        return self._run_forward(arrays)[3][self.output]

    def backward(self, dy: Any, **arrays: Any) -> dict[str, np.ndarray]:
        """``{input: dL/d input}`` for the upstream gradient ``dy = dL/d output``."""
        # the backward kernel reads the inputs and the intermediate tensors, never the output
        # itself (no statement reads it): one statement needs no forward run first
        x, ranges, R, T = self._run_forward(arrays, compute=len(self.program.defined) > 1)
        dtype = T[self.output].dtype
        dy = np.asarray(dy)
        if dy.shape != T[self.output].shape:
            raise ParamError(
                f"{self.name}: dy must have the output's shape {T[self.output].shape}, "
                f"got {dy.shape}"
            )
        if dy.dtype != dtype:
            raise TypeError(f"{self.name}: dy is {dy.dtype} but the inputs are {dtype}")
        adj = {n: np.empty_like(T[n]) for n in self.program.defined[:-1]}
        adj[self.output] = np.ascontiguousarray(dy)
        grads = {k: np.empty_like(v) for k, v in x.items()}
        adj_ordered = [adj[n] for n in self.program.defined]
        self.kernels().backward(R, *x.values(), *T.values(), *adj_ordered, *grads.values())
        return grads

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.forward(**values), self.backward(upstream, **values)

    # -- property tests -----------------------------------------------------------------------
    def strategy(self) -> SearchStrategy[dict[str, Any]]:
        """The example shapes, then shapes around them: each group of axes that must agree
        gets one size drawn from ``[max(1, n - 2), n + 1]``; draws that fit no range are
        rejected.  Hypothesis tries the first branch of ``one_of`` first and shrinks towards
        it, so a check given a failing case's shapes as its example tests those first."""
        from hypothesis import strategies as st

        groups = self.size_groups()

        def shapes(sizes: dict[str, int]) -> dict[str, tuple[int, ...]]:
            return {
                k: tuple(sizes[groups[(k, a)][0]] for a in range(len(v)))
                for k, v in self.example.items()
            }

        reps = {g for g, _ in groups.values()}
        ex = {g: n for g, n in groups.values()}
        draw = st.fixed_dictionaries(
            {g: st.integers(max(1, ex[g] - 2), ex[g] + 1) for g in sorted(reps)}
        ).map(shapes)
        return st.one_of(st.just(dict(self.example)), draw.filter(self._fits))

    def command(
        self, shapes: Mapping[str, tuple[int, ...]], seed: int = 0, verb: str = "check"
    ) -> str:
        """The shell command that checks (or derives, ``verb``) this definition with
        ``shapes`` as its example shapes, which :meth:`strategy` draws first: the smallest
        failing case of ``derivgrad check --define`` as a command that reproduces it."""
        import shlex

        spec = "; ".join(st.text for st in self.program.statements)
        parts = ["derivgrad", verb, "--define", shlex.quote(spec)]
        for k in self.inputs:
            parts += ["--shape", shlex.quote(f"{k}={'x'.join(str(n) for n in shapes[k])}")]
        for t, (lo, hi) in sorted(self.fixed.items()):
            parts += ["--range", shlex.quote(f"{t}={hi}" if lo == 0 else f"{t}={lo}:{hi}")]
        return " ".join(parts + (["--seed", str(int(seed))] if verb == "check" else []))

    def _fits(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        try:
            self.program.infer(shapes, fixed=self.fixed)
        except DefineError:
            return False
        return True

    def size_groups(self) -> dict[tuple[str, int], tuple[str, int]]:
        """``(input, axis) -> (group, example size)``: axes read by one index must agree."""
        from .derivation import general_sizes

        sizes, equal = general_sizes(self)
        parent: dict[str, str] = {}

        def find(s: str) -> str:
            while parent.get(s, s) != s:
                s = parent[s]
            return s

        for a, b in equal:
            parent[find(str(b))] = find(str(a))
        return {
            (k, ax): (find(str(sizes[k][ax])), self.example[k][ax])
            for k in self.example
            for ax in range(len(self.example[k]))
        }

    def values(self, d: Derivation, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Standard normal inputs; positive ones (``0.5 + |z|``) when the definition takes a
        logarithm, whose argument is then usually an input or a sum of them."""
        positive = "log(" in self.spec
        out = {}
        for k, v in d.inputs.items():
            z = rng.standard_normal(v.shape)
            out[k] = 0.5 + np.abs(z) if positive else z
        return out

    # -- checking a user's kernel ------------------------------------------------------------
    def check(
        self,
        user_backward: Callable[..., Mapping[str, np.ndarray]],
        examples: int = 10,
        seed: int = 0,
        user_forward: Callable[..., np.ndarray] | None = None,
        shrink: bool = False,
    ) -> Any:
        """Hold ``user_backward(dy, **inputs) -> {input: gradient}`` (and optionally
        ``user_forward(**inputs)``) to the symbolic ground truth and to central differences on
        ``examples`` hypothesis-drawn sizes and values.  Returns a
        :class:`derivgrad.checks.CheckResult` (``.passed``, ``.message``,
        ``.failing_params`` — the smallest failing shapes with ``shrink``)."""
        from ..checks import check_op
        from ..registry import register

        register(self)
        fwd = user_forward or self.forward

        def face(d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray) -> tuple:
            y = np.asarray(fwd(**values), dtype=np.float64)
            grads = user_backward(upstream, **values)
            if not isinstance(grads, Mapping):
                raise AssertionError(
                    f"{self.name}: the backward must return a dict of gradients, got "
                    f"{type(grads).__name__}"
                )
            return y, {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()}

        return check_op(self.name, examples=examples, seed=seed, kernel=face, shrink=shrink)

    # -- document face ------------------------------------------------------------------------
    def sections(self, d: Derivation) -> list[Block]:
        from .derivation import sections

        return sections(self, d)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v}" for k, v in self.example.items())
        return f"<defined op {self.name}: {self.output} from {', '.join(self.inputs)} ({shapes})>"


def _fixed_ranges(statements: list[Statement], ranges: Mapping[str, Any]) -> dict:
    """``ranges={"u": 2}`` or ``{"u": (lo, hi)}``: an index's range, fixed in every statement
    (for an index no read determines, as a pooling window's offsets)."""
    names = {t for st in statements for t in st.indices}
    out = {}
    for t, r in ranges.items():
        if t not in names:
            raise ParamError(f"define: ranges names {t!r}, which is no index of the definition")
        lo, hi = (0, r) if isinstance(r, (int, np.integer)) else tuple(r)
        if (
            not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer)))
            or hi <= lo
        ):
            raise ParamError(
                f"define: the range of {t} must be n > 0 or (lo, hi) with lo < hi, got {r!r}"
            )
        out[t] = (int(lo), int(hi))
    return out


def _shape(name: str, v: Any) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        v = (int(v),)
    if isinstance(v, (str, bytes)):
        raise ParamError(f"define: the shape of {name} must be a tuple of positive ints, got {v!r}")
    try:
        shape = tuple(int(n) for n in v)
        ok = all(float(n) == int(n) for n in v)
    except (TypeError, ValueError):
        ok = False
    if not ok or any(n < 1 for n in shape):
        raise ParamError(f"define: the shape of {name} must be a tuple of positive ints, got {v!r}")
    return shape


def _load(op: DefinedOp) -> ModuleType:
    """Import the generated module for ``op``, writing it first if the cache lacks it.  The
    file name is the definition's hash, so a warm start needs neither SymPy nor a compile."""
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"dg_{op.key}.py"
    if not path.exists():
        src = op.source()
        # atomic: another process may be importing the same file (and Numba keys its cache on
        # the file's time stamp, so an existing file is never rewritten)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(src)
        os.replace(tmp, path)
    modname = f"derivgrad_define_{op.key}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module
