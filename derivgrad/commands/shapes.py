"""``derivgrad shapes``: output shapes and parameter counts."""

import json

from ..errors import UsageError


def _cmd_shapes(a):
    from ..symbolic.params import pair
    from ..symbolic.shapes import conv_layer, linear_layer, pool_layer

    if a.layer == "lenet":
        from ..model import lenet

        net = lenet(a.filters or 20, a.kernel or 5, a.hidden or 500)
        print(f"{'layer':34s} {'output':>12s} {'params':>11s}")
        print(f"{'input':34s} {'1x28x28':>12s} {0:>11,d}")
        for name, shape, n in net.summary():
            print(f"{name:34s} {'x'.join(map(str, shape)):>12s} {n:>11,d}")
        print(f"{'total':34s} {'':>12s} {net.n_params():>11,d}")
        return
    H, W = pair("shapes", "input", a.input or "32x32", 1)
    if a.layer == "conv2d":
        r = conv_layer(
            (H, W), a.channels or 1, a.kernel or 3, a.filters or 1, a.stride or 1, a.padding or 0
        )
    elif a.layer in ("maxpool2d", "avgpool2d"):
        r = pool_layer((H, W), a.channels or 1, a.kernel or 2, a.stride)
    elif a.layer == "linear":
        r = linear_layer(a.features or H * W, a.outputs or 10)
    else:
        raise UsageError(
            f"unknown layer {a.layer!r}; choose lenet, conv2d, maxpool2d, avgpool2d or linear"
        )
    print(json.dumps(r))


def register(sub):
    p = sub.add_parser(
        "shapes", help="output shapes and parameter counts of a layer or of the LeNet"
    )
    p.add_argument("layer", help="lenet, conv2d, maxpool2d, avgpool2d or linear")
    (
        p.add_argument("--input"),
        p.add_argument("--channels", type=int),
        p.add_argument("--kernel", type=int),
    )
    (
        p.add_argument("--filters", type=int),
        p.add_argument("--stride", type=int),
        p.add_argument("--padding", type=int),
    )
    (
        p.add_argument("--hidden", type=int),
        p.add_argument("--features", type=int),
        p.add_argument("--outputs", type=int),
    )
    p.set_defaults(func=_cmd_shapes)
