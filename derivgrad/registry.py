"""One registry of ops: each entry names the symbolic face (a builder of a
:class:`~derivgrad.symbolic.derivation.Derivation`), the kernel face (a function that runs
the Numba kernels on the derivation's small instance and returns the gradients in the
derivation's shapes) and what the document says about it.  The CLI (``derive``, ``check``),
the renderer and the property tests all iterate this registry."""

from dataclasses import dataclass, field

import numpy as np

from derivgrad import kernels as K

from .symbolic import batchnorm, conv, dense, lenet, pool


@dataclass(frozen=True)
class Op:
    name: str
    build: object  # (**params) -> Derivation
    title: str
    problem: str  # which worked problem(s) it reproduces
    kernel: object = None  # (derivation, {name: array}, upstream) -> (output, {name: grad})
    defaults: dict = field(default_factory=dict)


def _conv_kernel(d, v, up):
    P = d.params
    x = v["x"].reshape(d.extra["x_full"].shape)
    w = v["w"].reshape(d.extra["w_full"].shape)
    b = v.get("b")
    if len(P["input"]) == 2:
        y = K.conv2d_forward(x, w, b, P["stride"], P["padding"], P["dilation"])
        dy = up.reshape(y.shape)
        dx, dw, db = K.conv2d_backward(
            dy, x, w, P["stride"], P["padding"], P["dilation"], bias=b is not None
        )
    else:
        y = K.conv1d_forward(x, w, b, P["stride"][0], P["padding"][0], P["dilation"][0])
        dy = up.reshape(y.shape)
        dx, dw, db = K.conv1d_backward(
            dy, x, w, P["stride"][0], P["padding"][0], P["dilation"][0], bias=b is not None
        )
    g = {"x": dx.reshape(v["x"].shape), "w": dw.reshape(v["w"].shape)}
    if b is not None:
        g["b"] = db
    return y.reshape(up.shape), g


def _pool_kernel(kind):
    def run(d, v, up):
        P = d.params
        x = v["x"].reshape((1, -1) + v["x"].shape[-2:])
        if kind == "max":
            y, idx = K.maxpool2d_forward(x, P["kernel"], P["stride"], P["padding"])
            dx = K.maxpool2d_backward(up.reshape(y.shape), idx, x.shape)
        else:
            y = K.avgpool2d_forward(x, P["kernel"], P["stride"], P["padding"])
            dx = K.avgpool2d_backward(
                up.reshape(y.shape), x.shape, P["kernel"], P["stride"], P["padding"]
            )
        return y.reshape(up.shape), {"x": dx.reshape(v["x"].shape)}

    return run


def _linear_kernel(d, v, up):
    x = v["x"].reshape(-1, d.params["features"])
    b = v.get("b")
    y = K.linear_forward(x, v["W"], b)
    dx, dw, db = K.linear_backward(up.reshape(y.shape), x, v["W"], bias=b is not None)
    g = {"x": dx.reshape(v["x"].shape), "W": dw}
    if b is not None:
        g["b"] = db
    return y.reshape(up.shape), g


def _relu_kernel(d, v, up):
    return K.relu_forward(v["z"]), {"z": K.relu_backward(up, v["z"])}


def _softmax_kernel(d, v, up):
    # the kernels have no separate softmax backward: use the rule dz = p ⊙ (δ − ⟨p, δ⟩)
    p = K.softmax(v["z"])
    return p, {"z": p * (up - np.dot(p, up))}


def _xent_kernel(d, v, up):
    lab = np.array([d.params["label"] - 1])
    loss, p = K.softmax_cross_entropy_forward(v["z"][None], lab)
    return np.array([loss]), {"z": K.softmax_cross_entropy_backward(p, lab)[0]}


def _logreg_kernel(d, v, up):
    lab = np.array([d.params["label"] - 1])
    z = K.linear_forward(v["x"][None], v["W"], v["b"])
    loss, p = K.softmax_cross_entropy_forward(z, lab)
    dz = K.softmax_cross_entropy_backward(p, lab)
    dx, dW, db = K.linear_backward(dz, v["x"][None], v["W"])
    return np.array([loss]), {"x": dx[0], "W": dW, "b": db}


def _residual_kernel(d, v, up):
    x = v["x"][None]
    h = K.linear_forward(x, v["W1"])
    a = K.relu_forward(h)
    y = K.linear_forward(a, v["W2"]) + x
    da, dW2, _ = K.linear_backward(up[None], a, v["W2"], bias=False)
    dh = K.relu_backward(da, h)
    dx, dW1, _ = K.linear_backward(dh, x, v["W1"], bias=False)
    return y[0], {"x": dx[0] + up, "W1": dW1, "W2": dW2}


def _flatten_kernel(d, v, up):
    return v["x"].reshape(-1), {"x": up.reshape(v["x"].shape)}


def _batchnorm_kernel(d, v, up):
    y, cache = K.batchnorm2d_forward(v["x"], v["gamma"], v["beta"], eps=1e-5)
    dx, dg, db = K.batchnorm2d_backward(up, cache)
    return y, {"x": dx, "gamma": dg, "beta": db}


def _lenet_kernel(d, v, up):
    from .model import lenet_loss_and_grads

    return lenet_loss_and_grads(d, v)


OPS = {
    op.name: op
    for op in [
        Op("conv1d", conv.conv1d, "1-D convolution", "5, 6", _conv_kernel),
        Op("conv2d", conv.conv2d, "2-D convolution", "7, 8, 9", _conv_kernel),
        Op("maxpool2d", pool.maxpool2d, "Max pooling", "10", _pool_kernel("max")),
        Op("avgpool2d", pool.avgpool2d, "Average pooling", "10", _pool_kernel("avg")),
        Op("linear", dense.linear, "Linear layer", "2", _linear_kernel),
        Op("relu", dense.relu, "ReLU", "3", _relu_kernel),
        Op("softmax", dense.softmax, "Softmax", "1", _softmax_kernel),
        Op(
            "softmax_cross_entropy",
            dense.softmax_cross_entropy,
            "Softmax cross-entropy",
            "2",
            _xent_kernel,
        ),
        Op(
            "logistic_regression",
            dense.logistic_regression,
            "Multiclass logistic regression",
            "2",
            _logreg_kernel,
        ),
        Op(
            "batchnorm2d",
            batchnorm.batchnorm2d,
            "Batch normalisation for CNNs",
            "11",
            _batchnorm_kernel,
        ),
        Op(
            "residual",
            dense.residual,
            "Skip connection y = W2 relu(W1 x) + x",
            "3",
            _residual_kernel,
        ),
        Op("flatten", dense.flatten, "Flatten", "12", _flatten_kernel),
        Op("lenet", lenet.lenet, "The course LeNet, layer by layer", "12", _lenet_kernel),
    ]
}


def get(name):
    key = name.replace("-", "_").lower()
    if key not in OPS:
        from .symbolic.params import ParamError

        raise ParamError(f"unknown op {name!r}; known ops: {', '.join(OPS)}")
    return OPS[key]
