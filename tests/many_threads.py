"""Every public kernel at thread counts this machine may not have: run by
``tests/test_kernels_threads.py`` in a fresh process started with ``NUMBA_NUM_THREADS=16``.

A 16-core host cuts the work differently from the 1 or 2 threads the rest of the suite runs
on: fewer units than threads (a batch of 2 over 16 threads), the linear layer's 2-D and
K-split tile grids (fc1's forward is 1 × 4 × 4 at 16 threads, with its partial sums reduced
after the loop), 16 per-chunk partials of every reduction.  Each call here runs at 1 thread
and at each count given on the command line on the same inputs, and the results must agree:

* elementwise kernels (ReLU, SGD, Adam, max-pool backward) bit for bit: a thread count
  changes which thread writes an element, never the arithmetic;
* everything else within ``tests/tolerances.py`` (float64 1e-10, float32 1e-4), since a
  different cut sums the same products in another order.

Oversubscribed threads on a small machine interleave more than a real 16-core host's, which
also makes a race (two chunks writing one element) likelier to show.  Prints one line per
thread count; exits non-zero with the first mismatch.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tolerances import assert_close  # noqa: E402

import derivgrad  # noqa: E402
import derivgrad.kernels as K  # noqa: E402
from derivgrad.kernels import _threads, linear  # noqa: E402

# these shapes stand for a big host's large ones: share even the small work, as those would
_threads.serial_below.update(bytes=0, flops=0)

# (x shape, C_out, window, stride, padding, dilation): im2col with fewer samples than
# threads, LeNet's conv2 (the row-shift path), a strided stem, Winograd F(2x2) (both
# dtypes) and F(4x4) (float32: output side >= 24), a dilated odd one, and a larger stem
# whose input gradient goes by row blocks.
CONVS = [
    ((2, 1, 28, 28), 20, 5, 1, 0, 1),
    ((3, 20, 12, 12), 50, 5, 1, 0, 1),
    ((2, 3, 40, 40), 16, 7, 2, 3, 1),
    ((3, 8, 10, 10), 9, 3, 1, 1, 1),
    ((2, 8, 26, 26), 9, 3, 1, 1, 1),
    ((5, 4, 13, 9), 6, 3, 2, 1, 2),
    ((2, 3, 100, 100), 8, 7, 2, 3, 1),
]
# (N, in, out): fc1 at batch 64, then shapes smaller than a 16-thread grid in one or more
# dimensions.
LINEARS = [(64, 2880, 500), (3, 40, 11), (1, 9, 4), (17, 5, 300), (5, 1, 2)]
# (definition, example shapes): a strided depthwise convolution (loops) and a contraction
# (pack + GEMM, notation/contract.py), at sizes with more outer iterations than threads.
DEFINED = [
    (
        "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]",
        {"x": (3, 5, 15, 13), "w": (5, 3, 3)},
    ),
    ("y[n, o] += x[n, i] * w[o, i]", {"x": (37, 29), "w": (23, 29)}),
]
POOLS = [((2, 20, 24, 24), 2, 2, 0), ((3, 5, 11, 7), 3, 2, 1), ((1, 1, 5, 5), 2, 1, 0)]


def calls(rng, dtype):
    """``(name, exact, fn)``: ``fn()`` returns a tuple of arrays, deterministic given the
    inputs drawn here (every input is drawn before any call)."""

    def draw(*shape):
        return rng.standard_normal(shape).astype(dtype)

    out = []
    for xs, co, k, s, p, d in CONVS:
        x, w, b = draw(*xs), draw(co, xs[1], k, k), draw(co)
        ho, wo = (K.output_size(n, k, s, p, d) for n in xs[2:])
        dy = draw(xs[0], co, ho, wo)
        kw = dict(stride=s, padding=p, dilation=d)
        out.append(
            (
                f"conv2d {xs}->{co}",
                False,
                lambda x=x, w=w, b=b, dy=dy, kw=kw: (
                    K.conv2d_forward(x, w, b, **kw),
                    *K.conv2d_backward(dy, x, w, **kw),
                ),
            )
        )
        x1, w1, dy1 = x[:, :, 0, :], w[:, :, 0, :], dy[:, :, 0, :]
        kw1 = dict(stride=s, padding=p, dilation=d)
        out.append(
            (
                f"conv1d {x1.shape}->{co}",
                False,
                lambda x=x1, w=w1, dy=dy1, kw=kw1: (
                    K.conv1d_forward(x, w, **kw),
                    *K.conv1d_backward(dy, x, w, **kw),
                ),
            )
        )
        out.append(
            (
                f"im2col/col2im {xs}",
                False,
                lambda x=x, k=k, kw=kw: (
                    K.im2col(x, k, **kw),
                    K.col2im(K.im2col(x, k, **kw), x.shape, k, **kw),
                ),
            )
        )
    for n, i, o in LINEARS:
        x, w, b, dy = draw(n, i), draw(o, i), draw(o), draw(n, o)
        for how in linear.STRATEGIES:

            def lin(x=x, w=w, b=b, dy=dy, how=how):
                linear.force_strategy(how)
                try:
                    return (K.linear_forward(x, w, b), *K.linear_backward(dy, x, w))
                finally:
                    linear.force_strategy(None)

            out.append((f"linear {how} {(n, i, o)}", False, lin))
    for xs, k, s, p in POOLS:
        x = draw(*xs)
        y, idx = K.maxpool2d_forward(x, k, s, p)
        dy = draw(*y.shape)
        out.append(
            (
                f"maxpool2d {xs}",
                True,
                lambda x=x, k=k, s=s, p=p, dy=dy, idx=idx: (
                    *K.maxpool2d_forward(x, k, s, p),
                    K.maxpool2d_backward(dy, idx, x.shape),
                ),
            )
        )
        out.append(
            (
                f"avgpool2d {xs}",
                False,
                lambda x=x, k=k, s=s, p=p, dy=dy: (
                    K.avgpool2d_forward(x, k, s, p),
                    K.avgpool2d_backward(dy, x.shape, k, s, p),
                ),
            )
        )
    for xs in [(3, 5, 4, 4), (40, 2, 3, 3), (2, 17, 1, 1)]:
        x, g, be, dy = draw(*xs), draw(xs[1]), draw(xs[1]), draw(*xs)

        def bn(x=x, g=g, be=be, dy=dy):
            y, cache = K.batchnorm2d_forward(x, g, be, eps=1e-5)
            return (y, *K.batchnorm2d_backward(dy, cache))

        out.append((f"batchnorm2d {xs}", False, bn))
    z, labels = draw(37, 10), rng.integers(0, 10, 37)

    def xent(z=z, labels=labels):
        loss, probs = K.softmax_cross_entropy_forward(z, labels)
        return (np.asarray(loss, dtype), probs, K.softmax_cross_entropy_backward(probs, labels))

    out.append(("softmax cross-entropy", False, xent))
    out.append(("softmax", False, lambda z=z: (K.softmax(z),)))
    x, dy = draw(5, 7, 33), draw(5, 7, 33)
    out.append(("relu", True, lambda x=x, dy=dy: (K.relu_forward(x), K.relu_backward(dy, x))))
    p0, g0 = draw(100_003), draw(100_003)

    def sgd(p0=p0, g0=g0):
        p, v = p0.copy(), g0 * 0.5
        K.sgd_update(p, g0, v, 0.1, momentum=0.9, weight_decay=1e-4)
        return p, v

    def adam(p0=p0, g0=g0):
        p, m, v = p0.copy(), g0 * 0.1, g0 * g0
        K.adam_update(p, g0, m, v, 1e-3, weight_decay=1e-4, step=3)
        return p, m, v

    out += [("sgd_update", True, sgd), ("adam_update", True, adam)]
    # User-defined ops: their phases run on Python threads, one chunk each (notation/runtime.py)
    for spec, shapes in DEFINED:
        op = derivgrad.define(spec, **shapes)
        arrays = {k: draw(*v) for k, v in shapes.items()}
        dy = draw(*op.forward(**arrays).shape)
        out.append(
            (
                f"defined {spec!r}",
                False,
                lambda op=op, arrays=arrays, dy=dy: (
                    op.forward(**arrays),
                    *(g for _, g in sorted(op.backward(dy, **arrays).items())),
                ),
            )
        )
    return out


def main(counts):
    for dtype in (np.float64, np.float32):
        table = calls(np.random.default_rng(0), dtype)
        K.set_threads(1)
        ref = [fn() for _, _, fn in table]
        for t in counts:
            K.set_threads(t)
            for (name, exact, fn), want in zip(table, ref, strict=True):
                got = fn()
                what = f"{name} {np.dtype(dtype).name} at {t} threads against 1"
                assert len(got) == len(want), what
                for i, (a, b) in enumerate(zip(got, want, strict=True)):
                    if b is None:
                        assert a is None, f"{what}, output {i}"
                    elif exact or np.issubdtype(np.asarray(b).dtype, np.integer):
                        assert np.array_equal(a, b), f"{what}, output {i}"
                    else:
                        assert_close(a, b, dtype, f"{what}, output {i}")
            print(f"{np.dtype(dtype).name}: {len(table)} calls agree at {t} threads", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]])
