r"""The op protocol: everything derivgrad knows about one layer, behind one class.

An *op* is a layer with three faces — symbolic (a :class:`Derivation` built by SymPy on a
small instance), kernel (the Numba kernels run on that instance) and document (the worked
solution) — plus what the command line and the property tests need to drive it: its
parameters and a hypothesis strategy.  The registry (:mod:`derivgrad.registry`), the command
line, the renderer, ``derivgrad check`` and the tests ask an :class:`Op` these questions and
never name an op; adding a built-in op is one module in :mod:`derivgrad.ops` (plus its tests),
and a user-defined op (``derivgrad.define``) comes through the same door.

A minimal op (see :mod:`derivgrad.ops.sigmoid` for a complete one)::

    class Sigmoid(Op):
        name = "sigmoid"
        title = "Sigmoid"
        params = (Param("features", "int", "length of the input vector"),)

        def build(self, **params) -> Derivation: ...            # symbolic face
        def kernel(self, d, values, upstream): ...              # kernel face
        def strategy(self): return st.fixed_dictionaries(...)   # valid parameters

Residuals flow as return values (``kernel`` returns the output and the gradients), never as
attributes set on the derivation afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from ..documents.document import Block
    from ..symbolic.derivation import Derivation

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Param:
    """One parameter of an op, as ``derive(op, name=...)`` and ``--name`` take it.

    ``kind``: ``"int"`` (a whole number), ``"size"`` (an int or ``AxB``, e.g. ``--input 3x3``),
    ``"bool"`` (``True``/``False``; on the command line a ``--no-NAME`` switch).  Defaults
    and range checks live in the op's builder, next to the formula that needs them.
    """

    name: str
    kind: Literal["int", "size", "bool"]
    help: str


@dataclass(frozen=True)
class Problem:
    """A worked problem of the course notes that an op's documents reproduce.

    ``number`` orders the collection (``"10b"`` after ``"10"``); ``title`` says what the
    problem is about and heads its section (two problems of one op must not share the op's
    title in the table of contents).  Either ``params``: the op's generic worked solution for
    ``build(**params)``; or ``make``: a function returning a
    :class:`derivgrad.documents.document.Doc` of its own (shape arithmetic, a matrix, index
    notation), whose heading it writes itself.
    ``values``: numbers for a numeric instance of ``params`` (as ``derive(..., values=)``
    takes them), carried through every step of the worked solution.  ``source``: where the
    problem comes from, when it is not the notes' worked problem of that number (``"the
    lecture's example"``); the heading names it instead of a problem number.
    """

    number: str
    title: str
    params: Mapping[str, Any] | None = None
    make: Callable[[], Any] | None = None
    values: Mapping[str, Any] | None = None
    source: str | None = None


# The guard refuses an instance whose derive + verify is estimated to take longer than this
# (seconds, one core): a minute is past waiting for an answer; seconds are not.  The estimate
# is Op.seconds: the op's count of steps (Op.cost) times its measured time per step
# (Op.us_per_step), calibrated by benchmarks/bench_symbolic.py, which prints each estimate
# beside its measurement.  The documents (rendering) are not in the estimate.
#
# Calibration (2026-12-07, 23:52 UTC, this project's 2-core machine shared with 6 other jobs,
# load average 10.6, so about 3x a quiet core's times: the estimates err towards refusing),
# measured by
#     PYTHONPATH=. python benchmarks/bench_symbolic.py
#   op                    parameters                          steps     measured s  µs/step
#   conv2d                12x12, 3x3, padding 1                3,204        0.18      57
#   conv2d                28x28, 5x5                          34,576        0.56      16
#   conv2d                16x16, 5x5, 2 channels, 2 filters   40,288        0.55      14
#   conv2d                24x24, 5x5, 3 channels, 4 filters  294,400        5.63      19
#   conv2d                40x40, 5x5, 2 channels, 3 filters  438,288        8.67      20
#   conv1d                200, 5, 2 channels, 2 filters        8,312        0.43      52
#   conv1d                600, 5, 3 channels, 4 filters       74,144        1.81      24
#   linear                30 -> 30                            57,690        0.53       9
#   relu                  2000 features                        4,000        2.84     710
#   sigmoid               300 features                           600        7.73  12,879
#   flatten               20x20, 4 channels                    3,200        0.22      68
#   softmax               20 classes                             420        1.47   3,509
#   softmax               40 classes                           1,640        5.53   3,373
#   softmax_cross_entropy 60 classes                           3,660        1.52     415
#   logistic_regression   10 classes, 10 features             13,320        1.52     114
#   residual              8 features, 8 hidden                79,560        3.22      41
#   maxpool2d             24x24, 2x2                           2,880        1.60     556
#   avgpool2d             24x24, 2x2                           2,880        0.22      75
#   batchnorm2d           batch 2, 2 channels, 3x3            13,000       52.33   4,025
#   squared_error         20x20                              640,800       10.26      16
#   lenet                 defaults                            15,600       19.80   1,270
#   define conv           12x12 input, 3x3 filter                900        0.72     798
#   define normalisation  3 statements, x 4x8                    864        1.65   1,905
#   define group norm     x 2x2x2x3x3                          4,104        5.68   1,384
#   define batch norm     x 2x3x3x3                            3,078        4.18   1,357
#   define residual block x 2x3x10x10, w 3x3x3x3              21,120       11.11     526
# Each op's us_per_step is its largest rate, rounded up, except the convolutions': the rate
# of their largest instances (25 µs), since a small one's fixed tenth of a second is no step
# and the rate near the limit is what the guard must get right.  Before the structural proofs
# (symbolic/tensors.py's ranked correlations, the monomial comparison in Derivation.verify,
# a defined layer proved over its named steps) conv2d ran 62-97 µs per step and a defined
# layer of several statements up to 3,000,000 (group norm above: 642 s).
SYMBOLIC_SECONDS_LIMIT = 60.0


def symbolic_work(outputs: int, terms: int, symbols: int, inputs: int) -> int:
    """The symbolic work of a derivation with ``outputs`` output entries, each a sum of about
    ``terms`` terms in about ``symbols`` input symbols, out of ``inputs`` input symbols in all:
    differentiating every output by every symbol it holds (``outputs·terms·symbols``) plus
    a row of the sparse Jacobian per input (its non-zeros are in the first count; the dense
    ``inputs·outputs`` table is built for documents only)."""
    return outputs * terms * symbols + inputs


def check_size(op: Op, params: Mapping[str, Any], advice: str | None = None) -> None:
    """Refuse, before any symbolic work, an instance whose estimated derive + verify time
    passes :data:`SYMBOLIC_SECONDS_LIMIT`, naming the limit and a smaller instance that fits
    (``advice``: what to say instead, where the instance is not given as options)."""
    secs = op.seconds(**params)
    if secs is None or secs <= SYMBOLIC_SECONDS_LIMIT:
        return
    from ..errors import ParamError

    raise ParamError(
        f"{op.name}: too large for a symbolic derivation: about "
        f"{_duration(secs)} of symbolic work (derive and prove, one core), over the limit of "
        f"{SYMBOLIC_SECONDS_LIMIT:.0f} s; {advice or _smaller(op, params)}"
    )


def _duration(secs: float) -> str:
    if secs < 3600:
        return f"{secs:,.0f} s"
    if secs < 86400 * 365:
        return f"{secs / 3600:,.0f} hours"
    return "more than a year"


def _smaller(op: Op, params: Mapping[str, Any]) -> str:
    """A suggestion: halve the given size parameter that saves the most work until the
    estimate fits (greedy, a few dozen estimates at most)."""
    from ..errors import ParamError
    from ..symbolic.params import count, pair

    kinds = {p.name: p.kind for p in op.params}
    current: dict[str, Any] = {}
    for name, value in params.items():
        if kinds.get(name) == "size" and value is not None:
            current[name] = pair(op.name, name, value, 0)
        elif kinds.get(name) == "int" and value is not None:
            current[name] = count(op.name, name, value, 0)
    original = dict(current)
    trial = dict(params)
    trial.update(current)
    for _ in range(64):
        best: tuple[float, str, Any] | None = None
        for name, value in current.items():
            smaller = tuple(v // 2 for v in value) if isinstance(value, tuple) else value // 2
            if smaller == value:
                continue
            try:
                work = op.seconds(**dict(trial, **{name: smaller}))
            except ParamError:
                continue
            if work is not None and (best is None or work < best[0]):
                best = (work, name, smaller)
        if best is None:
            break
        trial[best[1]] = current[best[1]] = best[2]
        if best[0] <= SYMBOLIC_SECONDS_LIMIT:
            changed = [
                f"--{n} "
                + (
                    "x".join(map(str, v))
                    if isinstance(v, tuple) and len(set(v)) > 1
                    else str(v[0] if isinstance(v, tuple) else v)
                )
                for n, v in current.items()
                if v != original[n]
            ]
            return "try a smaller instance, e.g. " + " ".join(changed)
    return f"try a smaller instance (the defaults: derivgrad derive {op.name})"


class Op:
    """Base class of every op: subclass it and fill in the faces.

    Class attributes:
        name: the registry key and command-line name (``"conv2d"``).
        title: the document's title (``"2-D convolution"``).
        problems: worked problem numbers of the course notes this op reproduces (``"7, 8, 9"``).
        params: the :class:`Param` s ``build`` accepts.
        slow: one derivation takes seconds (the whole network): property checks draw one case.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    problems: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    slow: ClassVar[bool] = False
    # microseconds of derive + verify per step of cost(), measured (see SYMBOLIC_SECONDS_LIMIT);
    # the default is the defined layers' (derivgrad.define)
    us_per_step: ClassVar[float] = 900.0

    # -- symbolic face ----------------------------------------------------------------------
    def build(self, **params: Any) -> Derivation:
        """The derivation on a small instance; raises ``ParamError`` for invalid parameters."""
        raise NotImplementedError(f"{type(self).__name__} has no symbolic face")

    def cost(self, /, **params: Any) -> int | None:
        """The steps of symbolic work of ``build(**params)`` and its proof, computed from the
        parameters alone in well under a second, in Python ints (no overflow); ``None``: no
        estimate, no guard.  Most ops return :func:`symbolic_work` of their sizes."""
        return None

    def seconds(self, /, **params: Any) -> float | None:
        """Estimated seconds of ``build(**params)`` and ``verify()`` on one core:
        :meth:`cost` × :attr:`us_per_step`.  :func:`check_size` refuses an instance whose
        estimate passes :data:`SYMBOLIC_SECONDS_LIMIT`."""
        steps = self.cost(**params)
        return None if steps is None else steps * self.us_per_step * 1e-6

    # -- kernel face --------------------------------------------------------------------------
    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, Arrays]:
        """Run the numeric kernels on ``d``'s instance.

        ``values`` holds float64 arrays shaped like ``d.inputs``; ``upstream`` is shaped like
        ``d.output``.  Returns ``(output, {name: gradient})`` in the derivation's shapes, so
        that they compare entry by entry with ``d.lambdify()``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no kernel face")

    # -- property tests -----------------------------------------------------------------------
    def strategy(self) -> SearchStrategy[dict[str, Any]]:
        """A hypothesis strategy of valid ``build`` parameters, small enough for SymPy."""
        raise NotImplementedError(f"{type(self).__name__} has no hypothesis strategy")

    def values(self, d: Derivation, rng: np.random.Generator) -> Arrays:
        """Input values for a numeric check of ``d``: standard normal by default; ops with
        kinks override this to keep away from them (a central difference across a kink
        measures nothing)."""
        return {k: rng.standard_normal(v.shape) for k, v in d.inputs.items()}

    # -- document face ------------------------------------------------------------------------
    def definitions(self, d: Derivation) -> list[Block]:
        """Document blocks placed before the forward pass: the named intermediates (softmax's
        ``p`` and its stable form) the rest of the document prints (default none)."""
        return []

    def sections(self, d: Derivation) -> list[Block]:
        """Document blocks specific to this op, placed after the closed form (default none)."""
        return []

    def document(self, d: Derivation) -> Any:
        """A whole document replacing the generic one (a network); ``None`` for the generic."""
        return None

    def worked_problems(self) -> list[Problem]:
        """The worked problems of the notes this op's documents reproduce (default none)."""
        return []

    # -- command line -------------------------------------------------------------------------
    def shapes(self, **params: Any) -> str | None:
        """What ``derivgrad shapes NAME`` prints (output shapes, parameter counts) for
        full-size parameters, or ``None`` when the op has no such report."""
        return None

    def __repr__(self) -> str:
        return f"<op {self.name}: {self.title}>"
