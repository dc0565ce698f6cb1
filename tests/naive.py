"""Plain NumPy references, written from the definitions and independently of ``kernels``:
explicit padding and loops over window offsets; slow and obviously correct.
All compute in float64."""

import numpy as np


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x.shape
    CO, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    HO = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    WO = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((N, CO, HO, WO))
    for kh in range(KH):
        for kw in range(KW):
            patch = xp[
                :,
                :,
                kh * dh : kh * dh + sh * (HO - 1) + 1 : sh,
                kw * dw : kw * dw + sw * (WO - 1) + 1 : sw,
            ]  # (N, C, HO, WO)
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, kh, kw])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1):
    """The transpose of :func:`conv2d`'s loops: scatter dy through each window offset."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x.shape
    CO, _, KH, KW = w.shape
    HO, WO = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw_ = np.zeros_like(w)
    for kh in range(KH):
        for kw in range(KW):
            sl = (
                slice(None),
                slice(None),
                slice(kh * dh, kh * dh + sh * (HO - 1) + 1, sh),
                slice(kw * dw, kw * dw + sw * (WO - 1) + 1, sw),
            )
            dw_[:, :, kh, kw] = np.einsum("nohw,nchw->oc", dy, xp[sl])
            dxp[sl] += np.einsum("nohw,oc->nchw", dy, w[:, :, kh, kw])
    dx = dxp[:, :, ph : ph + H, pw : pw + W]
    return dx, dw_, dy.sum(axis=(0, 2, 3))


def maxpool2d(x, k, s=None, p=0):
    """Returns (y, flat indices, dx-routing function)."""
    (kh_, kw_) = _pair(k)
    (sh, sw) = _pair(s if s is not None else k)
    (ph, pw) = _pair(p)
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    HO = (H + 2 * ph - kh_) // sh + 1
    WO = (W + 2 * pw - kw_) // sw + 1
    y = np.empty((N, C, HO, WO))
    idx = np.empty((N, C, HO, WO), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(HO):
                for j in range(WO):
                    best, bi = -np.inf, None
                    for a in range(kh_):
                        for b in range(kw_):
                            r, q = i * sh - ph + a, j * sw - pw + b
                            if 0 <= r < H and 0 <= q < W:
                                v = x[n, c, r, q]
                                if bi is None or v > best:
                                    best, bi = v, r * W + q
                    y[n, c, i, j], idx[n, c, i, j] = best, bi
    return y, idx


def maxpool2d_backward(dy, idx, shape):
    N, C, H, W = shape
    dx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], idx[n, c].ravel(), np.asarray(dy, np.float64)[n, c].ravel())
    return dx.reshape(shape)


def avgpool2d(x, k, s=None, p=0):
    """Average pooling as a convolution of each (n, c) plane with a 1/(KH KW) box filter."""
    (kh_, kw_) = _pair(k)
    N, C = x.shape[:2]
    y = conv2d(
        np.asarray(x, np.float64).reshape(N * C, 1, *x.shape[2:]),
        np.full((1, 1, kh_, kw_), 1.0 / (kh_ * kw_)),
        None,
        s if s is not None else k,
        p,
    )
    return y.reshape(N, C, *y.shape[2:])


def avgpool2d_backward(dy, shape, k, s=None, p=0):
    (kh_, kw_) = _pair(k)
    N, C, H, W = shape
    dy = np.asarray(dy, np.float64)
    dx, _, _ = conv2d_backward(
        dy.reshape(N * C, 1, *dy.shape[2:]),
        np.zeros((N * C, 1, H, W)),
        np.full((1, 1, kh_, kw_), 1.0 / (kh_ * kw_)),
        s if s is not None else k,
        p,
    )
    return dx.reshape(shape)


def im2col(x, k, s=1, p=0, d=1):
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = _pair(k), _pair(s), _pair(p), _pair(d)
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    HO = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    WO = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    cols = np.empty((N, C, KH, KW, HO, WO))
    for kh in range(KH):
        for kw in range(KW):
            cols[:, :, kh, kw] = xp[
                :,
                :,
                kh * dh : kh * dh + sh * (HO - 1) + 1 : sh,
                kw * dw : kw * dw + sw * (WO - 1) + 1 : sw,
            ]
    return cols.reshape(N, C * KH * KW, HO * WO)


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def xent(z, y):
    p = softmax(z)
    n = len(y)
    loss = -np.mean(np.log(p[np.arange(n), y]))
    g = p.copy()
    g[np.arange(n), y] -= 1
    return loss, g / n


def batchnorm2d(x, gamma, beta, eps):
    """Training-mode forward and a backward built from the (N*H*W, C) reshaping of
    worked problem 11, with the textbook fully connected formulas."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    X = x.transpose(0, 2, 3, 1).reshape(-1, C)  # (B, C) with B = N*H*W
    mu = X.mean(0)
    var = X.var(0)
    xh = (X - mu) / np.sqrt(var + eps)
    Y = xh * gamma + beta

    def backward(dy):
        D = np.asarray(dy, np.float64).transpose(0, 2, 3, 1).reshape(-1, C)
        B = D.shape[0]
        dxh = D * gamma
        dvar = np.sum(dxh * (X - mu), 0) * -0.5 * (var + eps) ** -1.5
        dmu = np.sum(-dxh / np.sqrt(var + eps), 0) + dvar * np.mean(-2 * (X - mu), 0)
        DX = dxh / np.sqrt(var + eps) + dvar * 2 * (X - mu) / B + dmu / B
        back = lambda M: M.reshape(N, H, W, C).transpose(0, 3, 1, 2)
        return back(DX), np.sum(D * xh, 0), D.sum(0)

    return Y.reshape(N, H, W, C).transpose(0, 3, 1, 2), mu, var, backward
