r"""Shape arithmetic, symbolic and numeric (worked problems 4 and 12), from the one
output-size formula ``kernels.output_size``:
``n_out = floor((n + 2p − d(k−1) − 1)/s) + 1``; with d = 1 and s | (n + 2p − k),
``(n + 2p − k)/s + 1``."""

from typing import Any

import sympy as sp

from derivgrad.kernels import output_size


def symbolic_output_size() -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
    n, p, k, s, d = sp.symbols("n p k s d", integer=True, positive=True)
    return output_size(n, k, s, p, d), (n, p, k, s, d)


def conv_layer(
    input: tuple[int, int],
    channels: int,
    kernel: int,
    filters: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> dict[str, Any]:
    """Output shape ``(filters, H_out, W_out)`` and parameter counts of one conv layer."""
    H, W = input
    k = kernel
    out = (
        filters,
        output_size(H, k, stride, padding, dilation),
        output_size(W, k, stride, padding, dilation),
    )
    weights = filters * channels * k * k
    return dict(output=out, weights=weights, biases=filters, params=weights + filters)


def pool_layer(
    input: tuple[int, int], channels: int, kernel: int, stride: int | None = None
) -> dict[str, Any]:
    s = stride or kernel
    H, W = input
    return dict(output=(channels, output_size(H, kernel, s), output_size(W, kernel, s)), params=0)


def linear_layer(n_in: int, n_out: int) -> dict[str, Any]:
    return dict(output=(n_out,), weights=n_in * n_out, biases=n_out, params=n_in * n_out + n_out)
