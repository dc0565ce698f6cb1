"""Hold your own depthwise-convolution backward to derivgrad's ground truth.

    python examples/check_your_depthwise_conv.py

You wrote a backward pass for a layer no library of yours has (here a depthwise convolution
with stride 2, in NumPy).  Write the layer's forward in index notation; derivgrad derives the
gradient symbolically, proves it, compiles parallel kernels from it, and checks your backward
against the symbolic closed form and central differences on sizes drawn by hypothesis.  A
planted bug (the window of dx placed without the stride) is caught and reported with the
smallest failing shapes.
"""

import numpy as np

import derivgrad

op = derivgrad.define(
    "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]",
    name="my_depthwise",
    x=(2, 3, 7, 7),
    w=(3, 3, 3),
)


def my_depthwise_backward(dy, x, w, stride=2):
    """dL/dx and dL/dw of y[n,c,i,j] = Σ_{u,v} x[n,c,s i+u,s j+v] w[c,u,v], by windows."""
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    kh, kw = w.shape[1:]
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            g = dy[:, :, i, j][:, :, None, None]
            win = x[:, :, stride * i : stride * i + kh, stride * j : stride * j + kw]
            dw += (g * win).sum(axis=0)
            dx[:, :, stride * i : stride * i + kh, stride * j : stride * j + kw] += g * w
    return {"x": dx, "w": dw}


def buggy_backward(dy, x, w):
    # the bug: dx's window placed as if the stride were 1 (dw stays right)
    good = my_depthwise_backward(dy, x, w)
    dx = np.zeros_like(x)
    kh, kw = w.shape[1:]
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            dx[:, :, i : i + kh, j : j + kw] += dy[:, :, i, j][:, :, None, None] * w
    return {"x": dx, "w": good["w"]}


if __name__ == "__main__":
    d = op.derive()
    print(f"derived and proved: {d.verify()}; the rule for dx in index notation is in d.latex()")
    result = op.check(my_depthwise_backward, examples=5)
    print(
        f"my_depthwise_backward: {'PASS' if result.passed else 'FAIL'} "
        f"({result.cases} cases, largest error {result.max_error:.1e})"
    )
    try:  # a failure raises, as torch.autograd.gradcheck does
        op.check(buggy_backward, examples=5)
        print("buggy_backward: PASS")
    except derivgrad.GradcheckError as e:
        print(f"buggy_backward: FAIL\ncaught: {e}")
    # the generated kernels, on a size of your choice
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 16, 32, 32)), rng.standard_normal((16, 5, 5))
    y = op.forward(x=x, w=w)
    g = op.backward(np.ones_like(y), x=x, w=w)
    print(f"generated kernels: y {y.shape}, dx {g['x'].shape}, dw {g['w'].shape}")
