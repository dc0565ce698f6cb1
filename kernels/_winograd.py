"""When and how the convolutions take the Winograd F(2x2, 3x3) path (:mod:`._winograd_kernels`).

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
(:func:`weight_grad`, 16 GEMMs over the same tiles), dX as this forward on dY with the
filters flipped and their channels swapped.

Accuracy: the transforms have entries 0, ±1, ±1/2 and add at most 4 terms per stage, so
the result's rounding error is a small multiple of the direct sum's (measured relative
error 1.3e-7 in float32, 2.4e-16 in float64, within ``tests/tolerances.py``).  A non-finite
input still makes exactly the outputs whose windows hold it non-finite, but an inf may come
out as NaN (the transforms subtract it from itself).
"""

import numba
import numpy as np

from ._geometry import output_shape2d
from ._winograd_kernels import winograd_forward, winograd_weight_grad
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

# G of F(2x2, 3x3): U = G g Gᵀ.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def applies(c_in: int, c_out: int, k, s, d) -> bool:
    """Whether a convolution of this geometry takes the Winograd path."""
    return (
        tuple(k) == (3, 3)
        and tuple(s) == (1, 1)
        and tuple(d) == (1, 1)
        and min(c_in, c_out) >= MIN_CHANNELS
        and c_in * c_out <= MAX_CHANNEL_PAIRS
    )


def weights(w: np.ndarray) -> np.ndarray:
    """``U[ξ, o, c] = (G w[o, c] Gᵀ)[ξ]`` for ``w (CO, C, 3, 3)``, in w's dtype: computed in
    float64 and rounded once (``G`` has halves, exact in both)."""
    co, c = w.shape[:2]
    u = np.einsum("ia,ocab,jb->ijoc", _G, w.astype(np.float64), _G)
    return np.ascontiguousarray(u.reshape(16, co, c), dtype=w.dtype)


def _blocks(N, C, CO, HO, WO, itemsize, block_tiles, block_bytes):
    """Tile rows per block, chunk count and slots per block for the kernels."""
    TH, TW = (HO + 1) // 2, (WO + 1) // 2
    if block_tiles <= 0:
        block_tiles = max(MIN_BLOCK_TILES, block_bytes // (16 * (C + CO) * itemsize))
    threads = numba.get_num_threads()
    # at most the block size, and small enough that every thread gets a block
    rows = max(1, min(-(-block_tiles // TW), -(-(N * TH) // threads)))
    blocks = -(-(N * TH) // rows)
    nch = max(1, min(blocks, threads))
    return rows, nch, rows * (TW + 1)  # a dummy slot per tile row (see _winograd_kernels)


def forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, block_tiles: int = 0
) -> np.ndarray:
    """``conv2d(x, w) + b`` for a 3x3 window, stride 1, padding ``pad`` (both sides); x and
    w contiguous, one dtype, shapes checked by the caller (``H + 2 pad >= 3``, likewise W).
    ``block_tiles`` is the tiles per block (rounded to whole tile rows; tests vary it), 0
    for the size that fits ``BLOCK_BYTES``."""
    N, C, H, W = x.shape
    CO = w.shape[0]
    HO, WO = output_shape2d((H, W), (3, 3), (1, 1), (pad, pad), (1, 1))
    rows, nch, slots = _blocks(N, C, CO, HO, WO, x.itemsize, block_tiles, BLOCK_BYTES)
    vws = buffer("wino_v", nch * 16 * C * slots, x.dtype).reshape(nch, -1)
    mws = buffer("wino_m", nch * 16 * CO * slots, x.dtype).reshape(nch, -1)
    y = np.empty((N, CO, HO, WO), dtype=x.dtype)
    winograd_forward(x, weights(w), b, pad, rows, vws, mws, y)
    return y


def weight_grad(x: np.ndarray, dy: np.ndarray, pad: int, block_tiles: int = 0) -> np.ndarray:
    """``dW (CO, C, 3, 3)`` of :func:`forward` for upstream ``dy (N, CO, HO, WO)``, in x's
    dtype: ``Gᵀ M G`` with ``M[ξ] = Σ_tiles (A dY Aᵀ)[ξ] (Bᵀ d B)[ξ]ᵀ`` (2.25x fewer
    multiplications than im2col's ``dY @ colsᵀ``).  The caller checks the result: a
    non-finite input can make more entries non-finite than the direct sum would."""
    N, C, H, W = x.shape
    CO, HO, WO = dy.shape[1:]
    rows, nch, slots = _blocks(N, C, CO, HO, WO, x.itemsize, block_tiles, DW_BLOCK_BYTES)
    vws = buffer("wino_v", nch * 16 * C * slots, x.dtype).reshape(nch, -1)
    yws = buffer("wino_m", nch * 16 * CO * slots, x.dtype).reshape(nch, -1)
    part = np.empty((nch, 16, CO, C), dtype=x.dtype)
    winograd_weight_grad(x, dy, pad, rows, vws, yws, part)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite: the caller falls back
        m = part.sum(axis=0, dtype=np.float64).reshape(4, 4, CO, C)
        return np.einsum("ia,ijoc,jb->ocab", _G, m, _G).astype(x.dtype)
