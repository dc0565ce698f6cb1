r"""Two-factor contractions ``C[c(t)] += k · A[a(t)] · B[b(t)]`` lowered to pack + GEMM.

A statement ``y[...] += k * A[...] * B[...]`` (two distinct reads, ``k`` free of tensors) is
a contraction, and so is each of its adjoints written in *scatter* form,
``dA[a(t)] += k · dy[lhs(t)] · B[b(t)]``.  The statement's indices fall into four groups
by where they occur (in any subscript, affine or bare):

* batch: in the written array and in both factors;
* ``X``: in the written array and in the first factor only; ``Y``: likewise the second;
* ``K``: in both factors and not in the written array (summed).

With all of ``X``, ``Y``, ``K`` non-empty (and no index elsewhere) the statement is a batch
of GEMMs ``C[X, Y] = A[X, K] · B[K, Y]``: each factor is *packed* into a contiguous matrix
(an im2col: ``A[a(t)]`` gathered over the group's ranges), one single-threaded BLAS GEMM
multiplies them (Numba's ``np.dot``: SciPy's BLAS, pinned to one thread by
:mod:`derivgrad.kernels._blas`; it compiled in 0.34 s against 0.83 s for the strided
:func:`derivgrad.kernels._gemm.gemm`, whose leading dimensions and ``beta`` these contiguous
blocks do not need), and ``C`` is *scattered* back with
``+=`` through the written array's subscripts (for ``dx[n, c, i + u, j + v]`` a col2im).
A zero-padded factor (``(x[n, c, i + u - 1, j + v - 1] ?? 0)``) is packed with its guarded
subscripts tested (0 outside the array), and the adjoint of such a read scatters only the
entries inside: the GEMM multiplies the zeros of the padding with the rest (a "same" 3x3
convolution's forward + backward: 1,534 ms as loop nests, 232 ms this way, one thread,
``benchmarks/bench_define.py`` under load ~8).

Measured on the LeNet's conv2 (``benchmarks/bench_define.py``): direct loop nests, even with
the reductions outside and the contiguous index innermost, ran 15-20x slower than derivgrad's
hand-written conv kernels (the innermost extents, 8 or 5, are too short to vectorise well and
every step reloads and stores the output); pack + GEMM runs the multiply at BLAS speed and
the packing is a small fraction of it (``K`` times less data than multiply-adds).  The
statements this does not apply to (an elementwise product, a depthwise conv: no ``Y`` or no
``K``) keep the loop nests of :mod:`derivgrad.notation.codegen`.

*Direct* (:func:`direct`): where every subscript is one index with coefficient 1, the
batch indices lead every array in one order, and the other indices of each array form two
runs (the written array's rows then columns, a factor's own run and the summed run in
either order), the arrays already are the GEMM's matrices.  Then, when at run time every
index covers its axes whole, the chunk calls BLAS on the arrays themselves (strided
:func:`derivgrad.kernels._gemm.gemm_scaled`, transposes as flags, ``beta = 0`` where the
chunk owns its block), with no packing and no scatter; otherwise it takes the packed path.
Measured on ``y[n, o] += x[n, i] * w[o, i]`` at (256, 1024) -> 1024, float32, one thread:
the packed forward 9.4 ms, backward 25 ms, against 5.8 ms for each of its three GEMMs.

Parallel, race-free (each entry of the written array written by one ``prange`` iteration):

* *batch*: a batch index that is alone on an axis of the written array runs the ``prange``:
  iteration ``b`` writes only entries with that axis ``b`` (and zeroes them first, where it is
  the array's only writer).  Without a batch index, chunks of a ``Y`` index alone on an axis
  (or of an ``X`` index, the roles swapped) run it the same way.  ``Y`` is packed in blocks
  of its first index so that a block stays within ``BLOCK`` elements (a large image never
  allocates its whole im2col); each chunk packs its own copy of the ``X`` factor (the
  weights in a conv's forward, the upstream gradient in its weight gradient ``dw[o, c, u,
  v]``, whose chunks are of ``c``), which keeps the contraction one parallel phase to
  compile, at one extra copy of that factor per thread.
* *split K* (no index alone on an axis of the written array, e.g. ``da[i + u]`` of
  ``y[o, i] += a[i + u] * b[o, u]``): the first ``K`` index is cut into one chunk per
  thread; a chunk accumulates its GEMMs (in blocks of that index) into its own partial
  ``C``; the partials are summed and scattered after the parallel loop, serially (``X·Y``
  work against ``X·Y·K``; the scatter's entries may collide).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

# elements of one packed block (1 MiB of float64): the hand-written conv kernels' measured best
BLOCK = 1 << 17


@dataclass
class Ref:
    """A subscripted array in the generated code: ``array[subs]``; ``order[j]`` lists the
    indices of ``subs[j]`` as written (for picking the innermost loop); ``pad[j]``: axis
    ``j``'s subscript may fall outside the array (a ``(x[...] ?? 0)`` read, 0 there)."""

    array: str
    subs: tuple[sp.Expr, ...]
    order: tuple[tuple[str, ...], ...]
    pad: tuple[bool, ...] = ()


@dataclass
class Contraction:
    """``out[...] += coef · a[...] · b[...]`` over ``indices`` (``name -> (symbol, lo, hi)``,
    ``hi`` exclusive, in the bound symbols of :mod:`.program`)."""

    out: Ref
    a: Ref
    b: Ref
    coef: sp.Expr
    indices: dict[str, tuple[sp.Symbol, sp.Expr, sp.Expr]]


@dataclass
class Plan:
    c: Contraction
    batch: list[str]
    par: str | None  # the index that runs the prange: batch or Y[0] (None: split K)
    axis: int  # the axis of the written array that par is alone on (-1: split K)
    X: list[str]
    Y: list[str]
    K: list[str]
    fx: Ref  # the factor holding X (packed as [X, K])
    fy: Ref  # the factor holding Y (packed as [K, Y])


def _uses(r: Ref) -> list[str]:
    seen: dict[str, None] = {}
    for names in r.order:
        for t in names:
            seen[t] = None
    return list(seen)


def plan(c: Contraction) -> Plan | None:
    """The GEMM plan of ``c``, or ``None`` where it is not a batch of proper GEMMs."""
    out, a, b = set(_uses(c.out)), set(_uses(c.a)), set(_uses(c.b))
    batch, xa, xb, K = [], [], [], []
    for t in c.indices:
        where = (t in out, t in a, t in b)
        if where == (True, True, True):
            batch.append(t)
        elif where == (True, True, False):
            xa.append(t)
        elif where == (True, False, True):
            xb.append(t)
        elif where == (False, True, True):
            K.append(t)
        else:
            return None
    if not (xa and xb and K):
        return None
    # C[X, Y] row-major: Y holds the index of the written array's last axis (first as
    # written), so the scatter's innermost loop runs along contiguous memory
    last = [t for t in c.out.order[-1] if t in xa or t in xb]
    fx, fy, X, Y = c.a, c.b, xa, xb
    if last and last[0] in xa:
        fx, fy, X, Y = c.b, c.a, xb, xa
    order = _uses(c.out)
    X.sort(key=order.index)
    Y.sort(key=order.index)
    fy_order = _uses(fy)
    K.sort(key=fy_order.index)
    # an axis whose subscript may fall outside (a padded read's adjoint) is owned by no
    # chunk: its slice at an outside value is no slice of the array
    guarded = c.out.pad or (False,) * len(c.out.subs)
    alone = [
        names[0]
        for j, names in enumerate(c.out.order)
        if len(names) == 1
        and not guarded[j]
        and c.out.subs[j].coeff(c.indices[names[0]][0]) in (1, -1)
    ]
    par = next((t for t in alone if t in batch), None)
    if par is None:
        # no batch index: chunks of a Y index alone on an axis of the written array (each
        # chunk owns that slice); else of an X index, the roles swapped (the scatter then
        # runs across rows); else split K
        par = next((t for t in alone if t in Y), None)
        if par is None:
            par = next((t for t in alone if t in X), None)
            if par is not None:
                fx, fy, X, Y = fy, fx, Y, X
        if par is not None:
            Y.remove(par)
            Y.insert(0, par)
    axis = next((j for j, names in enumerate(c.out.order) if names == (par,)), -1)
    return Plan(c, batch, par, axis, X, Y, K, fx, fy)


@dataclass
class Direct:
    """How a planned contraction is strided GEMMs on the arrays themselves: for each value of
    the loop indices (``lead``: the written array's first axes, each first in the factors
    that hold it; ``summed``: summed indices next in both factors), ``out[R, S] (+)= coef ·
    P[R|K] · Q[K|S]`` (``ta``: ``P`` stored ``[K, R]``; ``tb``: ``Q`` stored ``[S, K]``)."""

    lead: list[str]
    summed: list[str]
    R: list[str]
    S: list[str]
    K: list[str]
    P: Ref
    Q: Ref
    ta: bool
    tb: bool


def _bare(r: Ref, sym: dict[str, sp.Symbol]) -> list[str] | None:
    """The index on each axis of ``r``, where each subscript is one index plus a constant
    (coefficient 1) and no index occurs twice; else ``None``."""
    out: list[str] = []
    for sub, names in zip(r.subs, r.order):
        if len(names) != 1 or names[0] in out:
            return None
        t = names[0]
        if sp.expand(sub).coeff(sym[t]) != 1 or (sub - sym[t]).free_symbols & set(sym.values()):
            return None
        out.append(t)
    return out


def _gemm_form(
    pl: Plan, o: list[str], a: list[str], b: list[str], lead: list[str], summed: list[str]
) -> Direct | None:
    """``pl`` as GEMMs over the loop indices ``lead`` and ``summed``, or ``None``."""
    c = pl.c
    rest = {}
    for name, ax in (("a", a), ("b", b)):
        mine = [t for t in lead if t in ax] + summed
        if ax[: len(mine)] != mine:
            return None
        rest[name] = ax[len(mine) :]
    rows = o[len(lead) :]
    if not rows:
        return None
    first_in_a = rows[0] in rest["a"]
    P, Q = (c.a, c.b) if first_in_a else (c.b, c.a)
    pa, qa = (rest["a"], rest["b"]) if first_in_a else (rest["b"], rest["a"])
    R = [t for t in rows if t in pa]
    S = rows[len(R) :]
    if rows[: len(R)] != R or not S or any(t not in qa for t in S):
        return None
    Kp = [t for t in pa if t not in R]
    Kq = [t for t in qa if t not in S]
    if Kp != Kq or not Kp:
        return None
    if pa == R + Kp:
        ta = False
    elif pa == Kp + R:
        ta = True
    else:
        return None
    if qa == Kq + S:
        tb = False
    elif qa == S + Kq:
        tb = True
    else:
        return None
    if pl.par not in lead and pl.par not in (R[0], S[0]):
        return None  # a chunk of a later index is no block of rows or columns
    return Direct(lead, summed, R, S, Kp, P, Q, ta, tb)


def direct(pl: Plan) -> Direct | None:
    """The direct form of ``pl`` with the fewest loop indices (see the module docstring), or
    ``None``."""
    c = pl.c
    if pl.par is None:
        return None
    if any(any(r.pad) for r in (c.out, c.a, c.b)):
        return None  # a padded read's zeros are the packed path's (its pack tests bounds)
    sym = {t: c.indices[t][0] for t in c.indices}
    axes = [_bare(r, sym) for r in (c.out, c.a, c.b)]
    if any(x is None for x in axes):
        return None
    o, a, b = (x for x in axes if x is not None)
    for nl in range(len(o)):
        lead = o[:nl]
        if not set(pl.batch) <= set(lead):
            continue
        ra = a[len([t for t in lead if t in a]) :]
        rb = b[len([t for t in lead if t in b]) :]
        common = 0
        while common < min(len(ra), len(rb)) and ra[common] == rb[common] and ra[common] in pl.K:
            common += 1
        for ns in range(common + 1):
            form = _gemm_form(pl, o, a, b, lead, ra[:ns])
            if form is not None:
                return form
    return None


class Writer:
    """The emitter's hooks: ``w(depth, line)`` and ``p(expr, names) -> code``."""

    def __init__(self, w: Callable[[int, str], None], p: Callable[[sp.Expr, dict], str]):
        self.w, self.p = w, p


def emit(
    pl: Plan, wr: Writer, depth: int, uid: int, names: dict[sp.Symbol, str], zero: bool
) -> None:
    """The code of one planned contraction at ``depth`` (the function body's level);
    ``zero``: each chunk first zeroes the slice of the written array it owns (only for a plan
    with ``par``, and only where no other contraction writes that array)."""
    c = pl.c
    w, p = wr.w, wr.p
    sym = {t: c.indices[t][0] for t in c.indices}
    lo = {t: p(c.indices[t][1], names) for t in c.indices}
    ext = {t: f"e{uid}_{t}" for t in c.indices}
    var = {t: names[sym[t]] for t in c.indices}
    for t in c.indices:
        w(depth, f"{ext[t]} = {p(c.indices[t][2], names)} - {lo[t]}")

    def size(group: list[str]) -> str:
        return " * ".join(ext[t] for t in group) if group else "1"

    def pos(group: list[str], start: str | None = None) -> str:
        """Row-major position of the group's current values (``start``: the first index's
        value where the block begins, else its low bound)."""
        out = ""
        for j, t in enumerate(group):
            first = start if (j == 0 and start is not None) else lo[t]
            term = f"({var[t]} - {first})"
            out = term if not out else f"({out}) * {ext[t]} + {term}"
        return f"({out})" if out else "0"

    def read(r: Ref) -> str:
        return f"{r.array}[{', '.join(p(s, names) for s in r.subs)}]"

    def inside(r: Ref) -> str:
        """The test that a padded reference's guarded subscripts fall inside its array, as
        signed values before any load or store ("" when no axis is guarded)."""
        return " and ".join(
            f"0 <= {p(s, names)} < {r.array}.shape[{j}]"
            for j, (s, g) in enumerate(zip(r.subs, r.pad))
            if g
        )

    def packed(r: Ref) -> str:
        """A factor's entry as packed: 0 where a padded read falls outside."""
        cond = inside(r)
        return f"({read(r)} if {cond} else 0.0)" if cond else read(r)

    def scatter(d: int, value: str) -> None:
        """``out += value`` at depth ``d``; a padded read's adjoint drops the entries outside
        (the read there is a constant 0)."""
        cond = inside(c.out)
        if cond:
            w(d, f"if {cond}:")
            d += 1
        w(d, f"{read(c.out)} += {value}")

    def loops(d: int, group: list[str], r: Ref, bounds: dict[str, tuple[str, str]]) -> int:
        """Nested loops over ``group``, the index of ``r``'s last axis innermost."""
        inner = [t for t in r.order[-1] if t in group]
        order = [t for t in group if not inner or t != inner[0]] + inner[:1]
        for t in order:
            a, b = bounds.get(t, (lo[t], f"{lo[t]} + {ext[t]}"))
            w(d, f"for {var[t]} in range({a}, {b}):")
            d += 1
        return d

    n = f"_n{uid}"
    X, Y, K = pl.X, pl.Y, pl.K
    w(depth, f"{n}X = {size(X)}")
    w(depth, f"{n}Y = {size(Y)}")
    w(depth, f"{n}K = {size(K)}")
    dt = f"{c.out.array}.dtype"
    scale = "" if c.coef == 1 else f"({p(c.coef, names)}) * "
    pa, pb, pc = f"_A{uid}", f"_B{uid}", f"_C{uid}"
    if pl.par is not None:
        par = pl.par
        fx_batch = any(t in pl.batch for t in _uses(pl.fx))
        y0 = Y[0]
        rest = f"{n}Y // {ext[y0]}"
        w(depth, f"{n}b = max(1, min({ext[y0]}, {BLOCK} // max(1, {n}K * {rest})))")
        rank = len(c.out.subs)
        owned = ", ".join(
            p(c.out.subs[j], names) if j == pl.axis else f"_z{j}" for j in range(rank)
        )

        def zero_owned(d: int) -> None:
            # explicit loops: a sliced assignment (``out[b, :, :] = 0``) took Numba's general
            # broadcasting setitem, measured 0.2-0.3 s more to compile
            for j in range(rank):
                if j != pl.axis:
                    w(d, f"for _z{j} in range({c.out.array}.shape[{j}]):")
                    d += 1
            w(d, f"{c.out.array}[{owned}] = 0.0")

        dr = direct(pl)
        if dr is not None:
            w(depth, f"_ok{uid} = {_covers(c, (c.out, dr.P, dr.Q), ext, p, names)}")
        if par in pl.batch:  # one batch value an iteration, Y[0] in blocks
            w(depth, f"for {var[par]} in prange({lo[par]}, {lo[par]} + {ext[par]}):")
            y_lo, y_hi = lo[y0], f"{lo[y0]} + {ext[y0]}"
        else:  # par is Y[0]: one chunk of it an iteration, in blocks
            w(depth, f"{n}c = max(1, min(nthreads, {ext[par]}))")
            w(depth, f"for _ch{uid} in prange({n}c):")
            y_lo = f"{lo[par]} + _ch{uid} * {ext[par]} // {n}c"
            y_hi = f"{lo[par]} + (_ch{uid} + 1) * {ext[par]} // {n}c"
        d0 = depth + 1
        if dr is not None and _whole(c, (c.out, dr.P, dr.Q)):
            # each index is bare on every axis it reads, so program.infer made its range the
            # axis (the sizes must agree): the packed path would never run, and not compiling
            # it saves its compile; the run-time test stays, loud, should that ever not hold
            w(d0, f"# contraction, direct GEMM: {c.out.array} += {c.a.array} . {c.b.array}")
            w(d0, f"if not _ok{uid}:")
            w(d0 + 1, 'raise ValueError("derivgrad: a direct GEMM\'s index misses an axis")')
            _emit_direct(pl, dr, wr, d0, uid, names, zero, (y_lo, y_hi))
            return
        if dr is not None:
            w(d0, f"if _ok{uid}:")
            _emit_direct(pl, dr, wr, d0 + 1, uid, names, zero, (y_lo, y_hi))
            w(d0, "else:")
            d0 += 1
        if zero and par in pl.batch:
            zero_owned(d0)
        elif zero:
            w(d0, f"for {var[par]} in range({y_lo}, {y_hi}):")
            zero_owned(d0 + 1)
        w(d0, f"# contraction, pack + GEMM: {c.out.array} += {c.a.array} . {c.b.array}")
        # the first factor is packed by every chunk (once, unless it holds a batch index):
        # a copy per thread, against a serial phase more to compile and run
        w(d0, f"{pa} = np.empty({n}X * {n}K, {dt})")
        w(d0, f"{pb} = np.empty({n}K * {n}b * {rest}, {dt})")
        w(d0, f"{pc} = np.empty({n}X * {n}b * {rest}, {dt})")
        if not fx_batch:
            dd = loops(d0, X + K, pl.fx, {})
            w(dd, f"{pa}[{pos(X)} * {n}K + {pos(K)}] = {packed(pl.fx)}")
        d = loops(d0, [t for t in pl.batch if t != par], c.out, {})
        if fx_batch:
            dd = loops(d, X + K, pl.fx, {})
            w(dd, f"{pa}[{pos(X)} * {n}K + {pos(K)}] = {packed(pl.fx)}")
        w(d, f"for _s{uid} in range({y_lo}, {y_hi}, {n}b):")
        d += 1
        w(d, f"_s1{uid} = min({y_hi}, _s{uid} + {n}b)")
        w(d, f"_m{uid} = (_s1{uid} - _s{uid}) * {rest}")
        blk = {y0: (f"_s{uid}", f"_s1{uid}")}
        dd = loops(d, K + Y, pl.fy, blk)
        w(dd, f"{pb}[{pos(K)} * _m{uid} + {pos(Y, f'_s{uid}')}] = {packed(pl.fy)}")
        w(
            d,
            f"np.dot({pa}.reshape({n}X, {n}K), {pb}[: {n}K * _m{uid}].reshape({n}K, _m{uid}), "
            f"{pc}[: {n}X * _m{uid}].reshape({n}X, _m{uid}))",
        )
        dd = loops(d, X + Y, c.out, blk)
        scatter(dd, f"{scale}{pc}[{pos(X)} * _m{uid} + {pos(Y, f'_s{uid}')}]")
        return
    # split K: one chunk of the first K index per thread, partial sums, then one scatter
    k0 = K[0]
    krest = f"{n}K // {ext[k0]}"
    w(depth, f"{n}c = max(1, min(nthreads, {ext[k0]}))")
    w(depth, f"{n}b = max(1, {BLOCK} // max(1, ({n}X + {n}Y) * {krest}))")
    w(depth, f"_P{uid} = np.empty({n}c * {n}X * {n}Y, {dt})")
    w(depth, f"for _ch{uid} in prange({n}c):")
    d0 = depth + 1
    w(d0, f"# contraction, pack + GEMM, split: {c.out.array} += {c.a.array} . {c.b.array}")
    w(d0, f"_a0{uid} = {lo[k0]} + _ch{uid} * {ext[k0]} // {n}c")
    w(d0, f"_a1{uid} = {lo[k0]} + (_ch{uid} + 1) * {ext[k0]} // {n}c")
    w(d0, f"{pa} = np.empty({n}X * {n}b * {krest}, {dt})")
    w(d0, f"{pb} = np.empty({n}b * {krest} * {n}Y, {dt})")
    w(d0, f"{pc} = np.empty({n}X * {n}Y, {dt})")
    w(d0, f"_o{uid} = _P{uid}[_ch{uid} * {n}X * {n}Y : (_ch{uid} + 1) * {n}X * {n}Y]")
    w(d0, f"for _s{uid} in range(_a0{uid}, _a1{uid}, {n}b):")
    d = d0 + 1
    w(d, f"_s1{uid} = min(_a1{uid}, _s{uid} + {n}b)")
    w(d, f"_m{uid} = (_s1{uid} - _s{uid}) * {krest}")
    blk = {k0: (f"_s{uid}", f"_s1{uid}")}
    dd = loops(d, X + K, pl.fx, blk)
    w(dd, f"{pa}[{pos(X)} * _m{uid} + {pos(K, f'_s{uid}')}] = {packed(pl.fx)}")
    dd = loops(d, K + Y, pl.fy, blk)
    w(dd, f"{pb}[{pos(K, f'_s{uid}')} * {n}Y + {pos(Y)}] = {packed(pl.fy)}")
    # the chunk's first block writes its partial sum, the others add to it
    dot = (
        f"{pa}[: {n}X * _m{uid}].reshape({n}X, _m{uid}), "
        f"{pb}[: _m{uid} * {n}Y].reshape(_m{uid}, {n}Y)"
    )
    w(d, f"if _s{uid} == _a0{uid}:")
    w(d + 1, f"np.dot({dot}, _o{uid}.reshape({n}X, {n}Y))")
    w(d, "else:")
    w(d + 1, f"np.dot({dot}, {pc}.reshape({n}X, {n}Y))")
    w(d + 1, f"for _q{uid} in range({n}X * {n}Y):")
    w(d + 2, f"_o{uid}[_q{uid}] += {pc}[_q{uid}]")
    dd = loops(depth, X + Y, c.out, {})
    w(dd, f"_q{uid} = {pos(X)} * {n}Y + {pos(Y)}")
    w(dd, f"_v{uid} = _P{uid}[_q{uid}]")
    w(dd, f"for _ch{uid} in range(1, {n}c):")
    w(dd + 1, f"_v{uid} += _P{uid}[_ch{uid} * {n}X * {n}Y + _q{uid}]")
    scatter(dd, f"{scale}_v{uid}")


def _whole(c: Contraction, refs: tuple[Ref, ...]) -> bool:
    """Whether each subscript of ``refs`` is its index itself or the index less its low
    bound (how a defined tensor, stored from 0, is addressed)."""
    return all(
        sub == c.indices[t][0] or sp.expand(sub - c.indices[t][0] + c.indices[t][1]) == 0
        for r in refs
        for sub, (t,) in zip(r.subs, r.order)
    )


def _covers(
    c: Contraction,
    refs: tuple[Ref, ...],
    ext: dict[str, str],
    p: Callable[[sp.Expr, dict], str],
    names: dict[sp.Symbol, str],
) -> str:
    """The run-time test that every index of ``refs`` covers its axes whole: its subscript
    is 0 at the index's low bound and its extent is the axis's length."""
    tests = []
    for r in refs:
        for j, (sub, (t,)) in enumerate(zip(r.subs, r.order)):
            first = p(sub.subs(c.indices[t][0], c.indices[t][1]), names)
            tests.append(f"({first}) == 0 and {ext[t]} == {r.array}.shape[{j}]")
    return " and ".join(tests)


def _emit_direct(
    pl: Plan,
    dr: Direct,
    wr: Writer,
    d: int,
    uid: int,
    names: dict[sp.Symbol, str],
    zero: bool,
    chunk: tuple[str, str],
) -> None:
    """One chunk (or batch value) of ``pl`` as BLAS on the arrays themselves (:class:`Direct`)."""
    c = pl.c
    w, p = wr.w, wr.p
    ext = {t: f"e{uid}_{t}" for t in c.indices}
    lo = {t: p(c.indices[t][1], names) for t in c.indices}
    var = {t: names[c.indices[t][0]] for t in c.indices}
    par = pl.par
    assert par is not None

    def size(group: list[str]) -> str:
        return "(" + " * ".join(ext[t] for t in group) + ")" if group else "1"

    rz, sz, kz = size(dr.R), size(dr.S), size(dr.K)
    lda = rz if dr.ta else kz
    ldb = kz if dr.tb else sz
    alpha = "1.0" if c.coef == 1 else f"float({p(c.coef, names)})"
    base = "0.0" if zero else "1.0"
    # the loops: a batch index's value is the prange's; a chunked one runs its chunk
    for t in dr.lead + dr.summed:
        if t == par and par in pl.batch:
            continue
        a, b = chunk if t == par else (lo[t], f"{lo[t]} + {ext[t]}")
        w(d, f"for {var[t]} in range({a}, {b}):")
        d += 1

    def offset(r: Ref) -> str:
        """Where ``r``'s block for the loops' values starts."""
        axes = [t for (t,) in r.order]
        terms = []
        for j, t in enumerate(axes):
            if t in dr.lead or t in dr.summed:
                terms.append(f"({var[t]} - {lo[t]}) * {size(axes[j + 1 :])}")
        return " + ".join(terms) if terms else "0"

    at = [offset(dr.P), offset(dr.Q), offset(c.out)]
    m, n = rz, sz
    if par == dr.S[0] and par not in dr.lead:  # a chunk of whole columns
        y_lo, y_hi = chunk
        rest = f"{sz} // {ext[par]}"
        w(d, f"_c0{uid} = ({y_lo} - {lo[par]}) * {rest}")
        w(d, f"_c1{uid} = ({y_hi} - {lo[par]}) * {rest}")
        n = f"_c1{uid} - _c0{uid}"
        at[1] += f" + _c0{uid} * {ldb}" if dr.tb else f" + _c0{uid}"
        at[2] += f" + _c0{uid}"
    elif par == dr.R[0] and par not in dr.lead:  # a chunk of whole rows
        y_lo, y_hi = chunk
        rest = f"{rz} // {ext[par]}"
        w(d, f"_r0{uid} = ({y_lo} - {lo[par]}) * {rest}")
        w(d, f"_r1{uid} = ({y_hi} - {lo[par]}) * {rest}")
        m = f"_r1{uid} - _r0{uid}"
        at[0] += f" + _r0{uid}" if dr.ta else f" + _r0{uid} * {lda}"
        at[2] += f" + _r0{uid} * {sz}"
    beta = base
    if dr.summed:  # the first summed value writes (or adds to what was there), later ones add
        first = " and ".join(f"{var[t]} == {lo[t]}" for t in dr.summed)
        beta = f"({base} if {first} else 1.0)"
    flat = [f"{r.array}.reshape(-1)" for r in (dr.P, dr.Q, c.out)]
    w(
        d,
        f"gemm_scaled({dr.ta}, {dr.tb}, {m}, {n}, {kz}, {alpha}, {flat[0]}, {at[0]}, {lda}, "
        f"{flat[1]}, {at[1]}, {ldb}, {beta}, {flat[2]}, {at[2]}, {sz})",
    )
