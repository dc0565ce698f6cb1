"""When and how the convolutions take a Winograd path: F(2x2, 3x3) (:mod:`._winograd_kernels`)
and, on large enough images, F(4x4, 3x3) (:mod:`._winograd4_kernels`).

Chosen by measurement (``benchmarks/bench_kernels.py`` for the 64-channel case; the table
below from one-thread CPU time, float32, padding 1, against PyTorch 2.13 on a 2-core AMD
EPYC with AVX-512): a 3x3 window at stride 1 and dilation 1 needs 2.25x fewer
multiplications this way, and the transforms cost less than that saves unless U, the
transformed filters that every block of tiles streams, outgrows the cache, or there are so
few channels that the GEMMs are tiny.

=====================  ================  =================
x -> C_out             im2col / PyTorch  Winograd / PyTorch
=====================  ================  =================
(32, 64, 32, 32) -> 64       1.42              0.98
(32, 32, 32, 32) -> 32       1.97              1.24
(32, 8, 32, 32) -> 8         2.40              1.27
(64, 64, 8, 8) -> 64         2.72              2.06
(16, 16, 16, 16) -> 32       2.56              1.87
(8, 128, 16, 16) -> 128      1.92              2.53
(8, 256, 8, 8) -> 256        1.38              3.67
(8, 3, 64, 64) -> 64         1.24              2.64
=====================  ================  =================

The gradients take the same path (:mod:`.conv`): dW as the forward's adjoint
(:func:`weight_grad`, 16 or 36 GEMMs over the same tiles), dX as this forward on dY with
the filters flipped and their channels swapped.

Accuracy: F(2x2, 3x3)'s transforms have entries 0, ±1, ±1/2 and add at most 4 terms per
stage, so the result's rounding error is a small multiple of the direct sum's (measured
relative error 1.3e-7 in float32, 2.4e-16 in float64).  F(4x4, 3x3)'s have entries up to 8
and 1/24: 2.7e-6 (forward, drawn sizes) and 4.9e-6 (dW, 64-channel case) in float32, the
only dtype that takes it (6e-15 in float64 when asked for); all within
``tests/tolerances.py`` (1e-4, 1e-10).  A non-finite input
still makes exactly the outputs whose windows hold it non-finite, but an inf may come out
as NaN (the transforms subtract it from itself); F(4x4) gets there by redoing the forward
on F(2x2), and dW falls back to im2col's (:mod:`.conv`).
"""

import numba
import numpy as np

from ._geometry import output_shape2d
from ._winograd4_kernels import winograd4_forward, winograd4_weight_grad
from ._winograd_kernels import wide_product, winograd_forward, winograd_weight_grad
from ._workspace import buffer

MIN_CHANNELS = 8  # input and output channels both at least this
MAX_CHANNEL_PAIRS = 8192  # C_in * C_out at most: U (16 C_in C_out values) stays in cache
# Tiles per block: the block's V and M (16 (C + CO) values a tile) within about 1 MiB,
# the L2 of one core here; 64-256 tiles measured best at 32-128 channels.
BLOCK_BYTES = 1 << 20
# The weight gradient's blocks are the GEMMs' inner dimension: longer ones accumulate the
# small (C_out, C_in) products less often.  64-channel case, 1 / 2 threads, paired: 1 MiB
# 15.6-16.0 / 9.0-9.5 ms, 2 MiB 14.7-15.1 / 8.5, 4 MiB 15.0 / 8.4, 8 MiB 18.4 / 9.3.
DW_BLOCK_BYTES = 2 << 20
MIN_BLOCK_TILES = 32

# F(4x4, 3x3) for the forward (and so dX) and dW where it measured faster than F(2x2, 3x3).
# Forward, one-thread time, float32, padding 1, F(2x2) -> F(4x4): (32, 64, 32, 32) -> 64
# 12.8 -> 9.5 ms, (32, 64, 24, 24) -> 64 8.1 -> 6.9, (32, 32, 32, 32) -> 32 4.3 -> 3.9,
# (8, 64, 56, 56) -> 64 10.1 -> 8.6; slower on small images, whose tile rows waste more on
# the dummy slot and the partial last tile ((64, 64, 8, 8) -> 64 2.3 -> 3.3, 16x16 a tie,
# 6 output rows 4.8 -> 5.1), and where U4 (36 C_in C_out values, 2.25x U) outgrows the
# cache ((8, 90, 16, 16) -> 90 3.1 -> 4.6).  Its transforms mix values across a tile, so a
# non-finite result is redone on the F(2x2) path, which keeps a non-finite input to the
# windows that hold it.  dW, 64-channel case, F(2x2) -> F(4x4), paired: 14.6 -> 12.1-12.8
# ms at 1 thread, 8.4-8.9 -> 6.4-8.3 at 2.
MIN_SIDE4 = 24  # output height and width at least this
MAX_U4_BYTES = 640 << 10
# float32 only: float64 is what users choose for accuracy, and F(4x4)'s rounding error is
# about 8x F(2x2)'s (dW, 64-channel case: 4.9e-6 against 6.2e-7 in float32); it also keeps
# its two kernels, 13-15 s each to compile, from compiling a second time for float64.
F4_ITEMSIZE = 4
# Its blocks: 2 MiB of V and M measured best, 64-channel case, tiles per block 96 / 128 /
# 192 / 256 / 384: 12.9 / 11.9 / 11.8 / 13.8 / 14.4 ms at 1 thread, 6.7 / 6.9 / 6.5 / 8.2 /
# 9.0 at 2.
BLOCK_BYTES4 = 2 << 20

# G of F(2x2, 3x3): U = G g Gᵀ.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
# G of F(4x4, 3x3) (points 0, ±1, ±2, ∞).
_G4 = np.array(
    [
        [1 / 4, 0.0, 0.0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0.0, 0.0, 1.0],
    ]
)
# G ⊗ G per tile: U[(i, j), (o, c)] = Σ_(a, b) (G ⊗ G)[(i, j), (a, b)] w[o, c, a, b], and
# its transpose for dW = Gᵀ M G; built once here, used by every call.
_GG = {2: np.kron(_G, _G), 4: np.kron(_G4, _G4)}
_GG_T = {t: np.ascontiguousarray(gg.T) for t, gg in _GG.items()}


def applies(c_in: int, c_out: int, k, s, d) -> bool:
    """Whether a convolution of this geometry takes the Winograd path."""
    return (
        tuple(k) == (3, 3)
        and tuple(s) == (1, 1)
        and tuple(d) == (1, 1)
        and min(c_in, c_out) >= MIN_CHANNELS
        and c_in * c_out <= MAX_CHANNEL_PAIRS
    )


def weights(w: np.ndarray, tile: int = 2) -> np.ndarray:
    """``U[ξ, o, c] = (G w[o, c] Gᵀ)[ξ]`` for ``w (CO, C, 3, 3)`` and F(tile x tile, 3x3), in
    w's dtype: computed in float64 and rounded once."""
    co, c = w.shape[:2]
    gg = _GG[tile]
    u = np.empty((len(gg), co * c))
    wide_product(gg, np.ascontiguousarray(w.reshape(co * c, 9).T, np.float64), u)
    return np.ascontiguousarray(u.reshape(len(gg), co, c), dtype=w.dtype)


def _filter_grad(m: np.ndarray, tile: int, dtype) -> np.ndarray:
    """``dW[o, c] = Gᵀ M[:, :, o, c] G`` for ``m ((tile + 2)², CO, C)`` (float64), rounded
    once to ``dtype``: the same product with G ⊗ G as :func:`weights`, transposed."""
    n, co, c = m.shape
    dw = np.empty((9, co * c))
    wide_product(_GG_T[tile], m.reshape(n, co * c), dw)
    return np.ascontiguousarray(dw.T.reshape(co, c, 3, 3), dtype=dtype)


def tile_size(c_in: int, c_out: int, ho: int, wo: int, itemsize: int) -> int:
    """The output tile, 4 or 2 (F(4x4, 3x3) or F(2x2, 3x3)), of the forward and the weight
    gradient of a convolution that takes the Winograd path."""
    if (
        itemsize == F4_ITEMSIZE
        and min(ho, wo) >= MIN_SIDE4
        and 36 * c_in * c_out * itemsize <= MAX_U4_BYTES
    ):
        return 4
    return 2


def _blocks(N, C, CO, HO, WO, itemsize, block_tiles, block_bytes, tile=2):
    """Tile rows per block, chunk count and slots per block for the kernels."""
    TH, TW = -(-HO // tile), -(-WO // tile)
    if block_tiles <= 0:
        per_tile = (tile + 2) ** 2 * (C + CO) * itemsize
        block_tiles = max(MIN_BLOCK_TILES, block_bytes // per_tile)
    threads = numba.get_num_threads()
    # at most the block size, and small enough that every thread gets a block
    rows = max(1, min(-(-block_tiles // TW), -(-(N * TH) // threads)))
    blocks = -(-(N * TH) // rows)
    nch = max(1, min(blocks, threads))
    return rows, nch, rows * (TW + 1)  # a dummy slot per tile row (see _winograd_kernels)


def forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, block_tiles: int = 0, tile: int = 0
) -> np.ndarray:
    """``conv2d(x, w) + b`` for a 3x3 window, stride 1, padding ``pad`` (both sides); x and
    w contiguous, one dtype, shapes checked by the caller (``H + 2 pad >= 3``, likewise W).
    ``block_tiles`` is the tiles per block (rounded to whole tile rows; tests vary it), 0
    for the size that fits the block bytes; ``tile`` 2 or 4 picks F(2x2, 3x3) or F(4x4,
    3x3), 0 lets :func:`tile_size` choose."""
    N, C, H, W = x.shape
    CO = w.shape[0]
    HO, WO = output_shape2d((H, W), (3, 3), (1, 1), (pad, pad), (1, 1))
    if tile == 0:
        tile = tile_size(C, CO, HO, WO, x.itemsize)
    if tile == 4:
        rows, nch, slots = _blocks(N, C, CO, HO, WO, x.itemsize, block_tiles, BLOCK_BYTES4, tile=4)
        vws = buffer("wino_v", nch * 36 * C * slots, x.dtype).reshape(nch, -1)
        mws = buffer("wino_m", nch * 36 * CO * slots, x.dtype).reshape(nch, -1)
        y = np.empty((N, CO, HO, WO), dtype=x.dtype)
        flags = np.empty(nch, dtype=x.dtype)
        winograd4_forward(x, weights(w, 4), b, pad, rows, vws, mws, y, flags)
        if np.isfinite(flags).all():
            return y
        # a non-finite output: F(2x2, 3x3) says exactly which (see the rule above)
    rows, nch, slots = _blocks(N, C, CO, HO, WO, x.itemsize, block_tiles, BLOCK_BYTES)
    vws = buffer("wino_v", nch * 16 * C * slots, x.dtype).reshape(nch, -1)
    mws = buffer("wino_m", nch * 16 * CO * slots, x.dtype).reshape(nch, -1)
    y = np.empty((N, CO, HO, WO), dtype=x.dtype)
    winograd_forward(x, weights(w), b, pad, rows, vws, mws, y)
    return y


def weight_grad(
    x: np.ndarray, dy: np.ndarray, pad: int, block_tiles: int = 0, tile: int = 0
) -> np.ndarray:
    """``dW (CO, C, 3, 3)`` of :func:`forward` for upstream ``dy (N, CO, HO, WO)``, in x's
    dtype: ``Gᵀ M G`` with ``M[ξ] = Σ_tiles (A dY Aᵀ)[ξ] (Bᵀ d B)[ξ]ᵀ`` (2.25x fewer
    multiplications than im2col's ``dY @ colsᵀ`` with F(2x2, 3x3), 4x with F(4x4, 3x3);
    ``tile`` as in :func:`forward`).  The caller checks the result: a non-finite input can
    make more entries non-finite than the direct sum would."""
    N, C, H, W = x.shape
    CO, HO, WO = dy.shape[1:]
    if tile == 0:
        tile = tile_size(C, CO, HO, WO, x.itemsize)
    nxi = (tile + 2) ** 2
    rows, nch, slots = _blocks(N, C, CO, HO, WO, x.itemsize, block_tiles, DW_BLOCK_BYTES, tile=tile)
    vws = buffer("wino_v", nch * nxi * C * slots, x.dtype).reshape(nch, -1)
    yws = buffer("wino_m", nch * nxi * CO * slots, x.dtype).reshape(nch, -1)
    part = np.empty((nch, nxi, CO, C), dtype=x.dtype)
    kernel = winograd4_weight_grad if tile == 4 else winograd_weight_grad
    kernel(x, dy, pad, rows, vws, yws, part)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite: the caller falls back
        return _filter_grad(part.sum(axis=0, dtype=np.float64), tile, x.dtype)
