"""The subcommands other than ``bench``: each registers its parser with :func:`cli.subcommand`."""

import json
import signal
import sys

from .cli import UsageError, subcommand


# -- train ------------------------------------------------------------------------------
def _cmd_train(a):
    import numba

    from . import data as mnist
    from .train import config, metrics_line, train
    for name in ("epochs", "batch_size", "filters", "hidden", "kernel"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    for name in ("lr",):
        if not getattr(a, name) > 0:
            raise UsageError(f"--lr must be positive, got {a.lr}")
    if a.momentum < 0 or a.momentum >= 1:
        raise UsageError(f"--momentum must be in [0, 1), got {a.momentum}")
    if a.resume and not a.checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if a.threads:
        numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    data_dir = a.data
    if a.download:
        data_dir = str(mnist.download(a.data))
    cfg = config(data=data_dir, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                 optimizer=a.optimizer, weight_decay=a.weight_decay, seed=a.seed, checkpoint=a.checkpoint,
                 resume=a.resume, plot=a.plot, filters=a.filters, hidden=a.hidden, kernel=a.kernel,
                 batchnorm=a.batchnorm, normalize=a.normalize, schedule=a.schedule, limit=a.limit)
    # SIGTERM behaves like Ctrl-C: the current position is checkpointed before exiting
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    log = lambda s: print(s, file=sys.stderr)
    metrics, _ = train(cfg, log=log, progress=not a.quiet and sys.stderr.isatty())
    log(f"test accuracy {100 * metrics['test_acc']:.2f}% after {metrics['epochs']} epochs")
    print(metrics_line(metrics))


@subcommand
def _train(sub):
    from .train import DEFAULTS
    p = sub.add_parser("train", help="train the course LeNet on MNIST with derivgrad's kernels",
                       description="Train the course LeNet. Without --data it uses the MNIST subset embedded "
                                   "in the package (10,000 training, 2,000 test images).")
    p.add_argument("--data", help="directory with the four MNIST IDX files (gzip or not) or a mnist.pkl.gz")
    p.add_argument("--download", action="store_true", help="download MNIST into --data or the user cache first")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--normalize", action="store_true", help="standardise pixels with MNIST's mean and std")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="checkpoint file, written atomically after each epoch and on Ctrl-C")
    p.add_argument("--resume", action="store_true", help="continue exactly from --checkpoint")
    p.add_argument("--plot", help="write loss and accuracy curves to this PNG")
    p.add_argument("--threads", type=int, help="number of threads (default: all cores)")
    p.add_argument("--filters", type=int, default=20)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--batchnorm", action="store_true", help="batch normalisation after the convolution")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


# -- predict ----------------------------------------------------------------------------
def _load_images(paths):
    import numpy as np

    from .data import read_idx
    out = []
    for path in paths:
        if path.endswith(".npy"):
            a = np.load(path, allow_pickle=False)
        elif path.endswith(".png"):
            import matplotlib.image
            a = matplotlib.image.imread(path)
            a = a[..., :3].mean(-1) if a.ndim == 3 else a
            a = (np.asarray(a, np.float64) * (255 if a.max() <= 1 else 1)).round().clip(0, 255).astype(np.uint8)
        else:
            a = read_idx(path, 3)
        a = a.reshape((-1, 28, 28)) if a.size % 784 == 0 else None
        if a is None:
            raise UsageError(f"{path}: expected 28x28 images")
        out.append(a)
    return np.concatenate(out)


def _cmd_predict(a):
    from .train import predict
    images = _load_images(a.images)
    probs = predict(a.checkpoint, images)
    for i, p in enumerate(probs):
        print(json.dumps(dict(index=i, label=int(p.argmax()), probability=round(float(p.max()), 4))))


@subcommand
def _predict(sub):
    p = sub.add_parser("predict", help="classify images with a trained checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+", help=".npy arrays (N x 28 x 28), PNG files or an IDX image file")
    p.set_defaults(func=_cmd_predict)


# -- shapes -----------------------------------------------------------------------------
def _cmd_shapes(a):
    from .symbolic.params import pair
    from .symbolic.shapes import conv_layer, linear_layer, pool_layer
    if a.layer == "lenet":
        from .model import lenet
        net = lenet(a.filters or 20, a.kernel or 5, a.hidden or 500)
        print(f"{'layer':34s} {'output':>12s} {'params':>11s}")
        print(f"{'input':34s} {'1x28x28':>12s} {0:>11,d}")
        for name, shape, n in net.summary():
            print(f"{name:34s} {'x'.join(map(str, shape)):>12s} {n:>11,d}")
        print(f"{'total':34s} {'':>12s} {net.n_params():>11,d}")
        return
    H, W = pair("shapes", "input", a.input or "32x32", 1)
    if a.layer == "conv2d":
        r = conv_layer((H, W), a.channels or 1, a.kernel or 3, a.filters or 1, a.stride or 1, a.padding or 0)
    elif a.layer in ("maxpool2d", "avgpool2d"):
        r = pool_layer((H, W), a.channels or 1, a.kernel or 2, a.stride)
    elif a.layer == "linear":
        r = linear_layer(a.features or H * W, a.outputs or 10)
    else:
        raise UsageError(f"unknown layer {a.layer!r}; choose lenet, conv2d, maxpool2d, avgpool2d or linear")
    print(json.dumps(r))


@subcommand
def _shapes(sub):
    p = sub.add_parser("shapes", help="output shapes and parameter counts of a layer or of the LeNet")
    p.add_argument("layer", help="lenet, conv2d, maxpool2d, avgpool2d or linear")
    p.add_argument("--input"), p.add_argument("--channels", type=int), p.add_argument("--kernel", type=int)
    p.add_argument("--filters", type=int), p.add_argument("--stride", type=int), p.add_argument("--padding", type=int)
    p.add_argument("--hidden", type=int), p.add_argument("--features", type=int), p.add_argument("--outputs", type=int)
    p.set_defaults(func=_cmd_shapes)


# -- derive -------------------------------------------------------------------------------
DERIVE_PARAMS = ("input", "kernel", "stride", "padding", "dilation", "channels", "filters", "batch", "classes",
                 "features", "outputs", "hidden", "label", "region")


def _cmd_derive(a):
    from pathlib import Path

    from . import derive
    from .render import compile_pdf, render
    fmt = a.format
    if a.op.replace("_", "-") == "worked-problems":
        from .worked import document
        text = document(fmt)
        op_name = "worked-problems"
    else:
        params = {k: getattr(a, k) for k in DERIVE_PARAMS if getattr(a, k) is not None}
        if a.no_bias:
            params["bias"] = False
        d = derive(a.op, **params)
        if not a.no_verify:
            d.verify()
        text = render(d, fmt, standalone=not a.fragment)
        op_name = d.op
    if a.pdf:
        if fmt != "latex" or a.fragment:
            raise UsageError("--pdf needs --format latex and a standalone document (no --fragment)")
        out = Path(a.output or f"{op_name}.pdf").with_suffix(".pdf")
        Path(out).with_suffix(".tex").write_text(text)
        try:
            compile_pdf(text, out)
        except RuntimeError as e:
            raise UsageError(f"{e} (the .tex is at {Path(out).with_suffix('.tex')})") from None
        print(f"wrote {out} and {Path(out).with_suffix('.tex')}", file=sys.stderr)
        return
    if a.output:
        Path(a.output).write_text(text)
        print(f"wrote {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


@subcommand
def _derive(sub):
    p = sub.add_parser("derive", help="derive an op's gradient symbolically and write the worked solution",
                       description="Derive, prove and print the gradient of OP on a small instance.")
    p.add_argument("op", help="conv1d, conv2d, maxpool2d, avgpool2d, linear, relu, softmax, softmax_cross_entropy, "
                              "logistic_regression, batchnorm2d, residual, flatten, lenet, or worked-problems "
                              "(all thirteen worked problems in one document with a table of contents)")
    for name in ("input", "kernel", "stride", "padding", "dilation"):
        p.add_argument(f"--{name}", help="an int or AxB")
    for name in ("channels", "filters", "batch", "classes", "features", "outputs", "hidden", "label", "region"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--no-bias", action="store_true")
    p.add_argument("--format", choices=["latex", "markdown", "text"], default="latex")
    p.add_argument("--fragment", action="store_true", help="LaTeX without preamble, to paste into a document")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.add_argument("--pdf", action="store_true", help="compile the LaTeX with pdflatex")
    p.add_argument("--no-verify", action="store_true", help="skip the symbolic proof")
    p.set_defaults(func=_cmd_derive)


# -- check --------------------------------------------------------------------------------
def _cmd_check(a):
    from .checks import check_op, table
    from .registry import OPS
    names = a.ops or list(OPS)
    for n in names:
        if n not in OPS:
            raise UsageError(f"unknown op {n!r}; known ops: {', '.join(OPS)}")
    results = []
    for n in names:
        results.append(check_op(n, examples=1 if n == "lenet" else a.examples, seed=a.seed))
        print(table(results[-1:]).splitlines()[-1 if results[-1].passed else 1], file=sys.stderr)
    print(table(results))
    failed = [r for r in results if not r.passed]
    if failed:
        print(f"{len(failed)} op(s) failed; reproduce with --seed {a.seed}", file=sys.stderr)
    return 1 if failed else 0


@subcommand
def _check(sub):
    p = sub.add_parser("check", help="check the kernels against symbolic ground truth and numerical gradients")
    p.add_argument("ops", nargs="*", help="ops to check (default: all)")
    p.add_argument("--examples", type=int, default=8, help="hypothesis examples per op")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_check)
