"""Hold YOUR OWN kernel to derivgrad's symbolic ground truth.

Here: a hand-written 2-D convolution backward (plain loops) checked against the gradient
derivgrad derives and proves symbolically, on configurations drawn by hypothesis (stride,
padding, dilation, channels, filters, batch), plus central differences.  Then the same
check catches a subtly wrong version (the filter not flipped).

    python examples/check_your_kernel.py
"""

import numpy as np

from derivgrad.checks.properties import check_op


def my_conv2d_backward(dy, x, w, stride, padding, dilation):
    """The kernel under test: dX, dW, db of y = x ⋆ w by scattering dy through each window."""
    (sh, sw), (ph, pw), (dh, dw_) = stride, padding, dilation
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for n in range(N):
        for o in range(O):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    rows = slice(i * sh, i * sh + dh * (KH - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw_ * (KW - 1) + 1, dw_)
                    dxp[n, :, rows, cols] += dy[n, o, i, j] * w[o]
                    dw[o] += dy[n, o, i, j] * xp[n, :, rows, cols]
    return dxp[:, :, ph : ph + H, pw : pw + W], dw, dy.sum(axis=(0, 2, 3))


def as_face(backward):
    """Adapt a conv backward to derivgrad's kernel-face signature: (derivation, inputs, δ)
    -> (output, gradients), all in the derivation's shapes."""
    from derivgrad import kernels

    def face(d, v, up):
        P = d.params
        x = v["x"].reshape(d.extra["x_full"].shape)
        w = v["w"].reshape(d.extra["w_full"].shape)
        y = kernels.conv2d_forward(x, w, v.get("b"), P["stride"], P["padding"], P["dilation"])
        dx, dw, db = backward(up.reshape(y.shape), x, w, P["stride"], P["padding"], P["dilation"])
        g = {"x": dx.reshape(v["x"].shape), "w": dw.reshape(v["w"].shape)}
        if "b" in v:
            g["b"] = db
        return y.reshape(up.shape), g

    return face


def without_flip(dy, x, w, stride, padding, dilation):
    # a classic mistake: the input gradient with an unrotated filter
    return (
        my_conv2d_backward(dy, x, w[:, :, ::-1, ::-1].copy(), stride, padding, dilation)[:1]
        + my_conv2d_backward(dy, x, w, stride, padding, dilation)[1:]
    )


if __name__ == "__main__":
    good = check_op("conv2d", examples=25, seed=0, kernel=as_face(my_conv2d_backward))
    print(
        f"my_conv2d_backward: {good.cases} cases, largest error {good.max_error:.1e}, "
        f"{'PASS' if good.passed else 'FAIL: ' + good.message}"
    )
    # shrinking makes hypothesis look for the smallest failing configuration
    bad = check_op("conv2d", examples=25, seed=0, kernel=as_face(without_flip))
    print(
        "without_flip: "
        + ("PASS (the check missed the bug!)" if bad.passed else "caught: " + bad.message)
    )
    print(f"  smallest failing case: {bad.command}")
