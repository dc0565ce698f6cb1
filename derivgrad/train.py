"""Training the course LeNet on MNIST with derivgrad's kernels (``derivgrad train``).

Determinism: epoch e shuffles with ``default_rng([seed, e])``, so a run resumed from a
checkpoint at any batch continues exactly as the uninterrupted run would.
"""

import json
import time

import numpy as np

from . import checkpoint as ckpt
from . import data as mnist
from .errors import DivergedError
from .model import SGD, Adam, lenet

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def prepare(images, normalize):
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    if normalize:
        x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    return np.ascontiguousarray(x, dtype=np.float32)


def evaluate(net, x, y, batch=1000):
    correct, loss = 0, 0.0
    from derivgrad.kernels import softmax_cross_entropy_forward

    for i in range(0, len(y), batch):
        logits = net.forward(x[i : i + batch])
        l, p = softmax_cross_entropy_forward(logits, y[i : i + batch])
        loss += l * len(p)
        correct += int((p.argmax(1) == y[i : i + batch]).sum())
    return loss / len(y), correct / len(y)


def lr_at(cfg, epoch, batch, n_batches):
    if cfg["schedule"] == "cosine":
        t = (epoch + batch / n_batches) / cfg["epochs"]
        return cfg["lr"] * 0.5 * (1 + np.cos(np.pi * t))
    return cfg["lr"]


def make_optimizer(cfg, params):
    if cfg["optimizer"] == "sgd":
        return SGD(params, cfg["lr"], cfg["momentum"], cfg["weight_decay"])
    return Adam(params, cfg["lr"], weight_decay=cfg["weight_decay"])


def _load_state(net, arrays, where):
    """Parameters and buffers of a checkpoint into ``net`` (names and shapes must match)."""
    for prefix, named in (("p", net.named_params()), ("b", net.named_buffers())):
        for k, v in named.items():
            a = arrays.get(f"{prefix}.{k}")
            if a is None or a.shape != v.shape:
                raise ckpt.CheckpointError(
                    f"{where}: {'parameter' if prefix == 'p' else 'buffer'} {k} "
                    f"missing or of the wrong shape"
                )
            v[...] = a


def _arch(cfg):
    return {k: cfg[k] for k in ("filters", "kernel", "hidden", "batchnorm")}


def train(cfg, log=print, progress=True, dist=None):
    """Run training as ``cfg`` says (the command line's options); returns the metrics dict.

    ``dist``: a :class:`derivgrad.distributed.Communicator` for data-parallel training over
    MPI (``None``: one process).  Every rank then takes its shard of each global batch and
    the gradients are averaged; rank 0 alone logs, evaluates and writes checkpoints.
    """
    if dist is not None:
        dist.check_batch(cfg["batch_size"])
        if not dist.is_root:
            log, progress = (lambda s: None), False
        log(dist.describe())
    data = mnist.load(cfg.get("data"))
    xtr, ytr = (
        prepare(data["train_images"], cfg["normalize"]),
        data["train_labels"].astype(np.int64),
    )
    xte, yte = prepare(data["test_images"], cfg["normalize"]), data["test_labels"].astype(np.int64)
    if cfg.get("limit"):
        xtr, ytr = xtr[: cfg["limit"]], ytr[: cfg["limit"]]
    net = lenet(
        cfg["filters"], cfg["kernel"], cfg["hidden"], 10, (1, 28, 28), cfg["batchnorm"], cfg["seed"]
    )
    opt = make_optimizer(cfg, net.named_params())
    if dist is not None:  # synchronised batch norm; optionally the update split over ranks
        from .distributed import make_data_parallel

        opt = make_data_parallel(dist, net, opt)
    params = net.named_params()
    start_epoch, start_batch, history, partial = 0, 0, [], (0.0, 0, 0)
    if cfg.get("resume"):
        if dist is None:
            arrays, meta = ckpt.load(cfg["checkpoint"])
        else:  # rank 0 reads, every rank gets it (no shared file system needed)
            arrays, meta = dist.root_call(ckpt.load, cfg["checkpoint"])
        if meta.get("arch") != _arch(cfg):
            raise ckpt.CheckpointError(
                f"{cfg['checkpoint']}: checkpoint is for architecture {meta.get('arch')} "
                f"but this run builds {_arch(cfg)}; pass the same --filters/--hidden/"
                f"--kernel/--batchnorm or start without --resume"
            )
        _load_state(net, arrays, cfg["checkpoint"])
        opt.load_state_dict(
            {k[2:]: v for k, v in arrays.items() if k.startswith("o.")} | {"steps": meta["steps"]}
        )
        start_epoch, start_batch, history = meta["epoch"], meta["batch"], meta["history"]
        partial = tuple(meta["partial"])
        log(f"resumed from {cfg['checkpoint']} at epoch {start_epoch + 1}, batch {start_batch}")
    for name, shape, n in net.summary():
        log(f"  {name:34s} -> {'x'.join(map(str, shape)):>10s}  {n:>9,d} params")
    log(f"  total {net.n_params():,d} parameters; {len(ytr)} training / {len(yte)} test images")

    def save(epoch, batch, partial):
        if not cfg.get("checkpoint"):
            return
        st = opt.state_dict()  # collective when the optimizer is sharded over the ranks
        if dist is not None and not dist.is_root:
            return
        arrays = {f"p.{k}": v for k, v in params.items()}
        arrays |= {f"b.{k}": v for k, v in net.named_buffers().items()}
        arrays |= {f"o.{k}": v for k, v in st.items() if k != "steps"}
        ckpt.save(
            cfg["checkpoint"],
            arrays,
            dict(
                arch=_arch(cfg),
                config={k: v for k, v in cfg.items() if k != "resume"},
                epoch=epoch,
                batch=batch,
                steps=st["steps"],
                history=history,
                partial=list(partial),
            ),
        )

    # make the first-call JIT cost visible: compile (or load from the cache) on one tiny batch
    t_jit = time.perf_counter()
    log("preparing kernels (compiled on the first run on a machine, loaded from the cache after)")
    # evaluation mode and a zero gradient: every kernel of the step runs, no parameter or
    # batch-norm statistic changes (exact resumption depends on that)
    g = np.zeros_like(net.forward(xtr[:2], train=False))
    for layer in reversed(net.layers):
        g = layer.backward(g)
    log(f"  kernels ready in {time.perf_counter() - t_jit:.1f} s")
    bs = cfg["batch_size"]
    n_batches = len(ytr) // bs if cfg.get("drop_last", True) else -(-len(ytr) // bs)
    t_start = time.perf_counter()
    epoch, b = start_epoch, start_batch
    try:
        for epoch in range(start_epoch, cfg["epochs"]):
            perm = np.random.default_rng([cfg["seed"], epoch]).permutation(len(ytr))
            loss_sum, correct, seen = partial if epoch == start_epoch else (0.0, 0, 0)
            bar = _bar(
                progress,
                n_batches,
                epoch,
                cfg["epochs"],
                start_batch if epoch == start_epoch else 0,
            )
            t0 = time.perf_counter()
            for b in range(start_batch if epoch == start_epoch else 0, n_batches):
                idx = perm[b * bs : (b + 1) * bs]
                if hasattr(opt, "lr"):
                    opt.lr = lr_at(cfg, epoch, b, n_batches)
                if dist is None:
                    loss, probs = net.loss_and_grads(xtr[idx], ytr[idx])
                    n_correct, grads = int((probs.argmax(1) == ytr[idx]).sum()), net.named_grads()
                else:  # this rank's shard; loss, count and gradients of the global batch
                    loss, n_correct, grads, _ = dist.step(net, xtr, ytr, idx)
                if not np.isfinite(loss):
                    raise DivergedError(
                        f"training diverged: the loss is {loss} at epoch {epoch + 1}, batch {b} "
                        f"(lr {getattr(opt, 'lr', cfg['lr']):g}); lower --lr. The last "
                        f"checkpoint, if any, is from before the divergence."
                    )
                opt.step(grads)
                loss_sum += loss * len(idx)
                correct += n_correct
                seen += len(idx)
                if bar is not None:
                    bar.update(1)
                    if b % 20 == 0:
                        bar.set_postfix(
                            loss=f"{loss_sum / seen:.4f}",
                            acc=f"{correct / seen:.4f}",
                            sps=f"{seen / max(time.perf_counter() - t0, 1e-9):.0f}",
                        )
            if bar is not None:
                bar.close()
            train_time = time.perf_counter() - t0
            if dist is None:
                test_loss, test_acc = evaluate(net, xte, yte)
            else:
                dist.check_same_params(params)
                test_loss, test_acc = dist.root_call(evaluate, net, xte, yte)
            history.append(
                dict(
                    epoch=epoch + 1,
                    train_loss=loss_sum / max(seen, 1),
                    train_acc=correct / max(seen, 1),
                    test_loss=test_loss,
                    test_acc=test_acc,
                    seconds=train_time,
                    samples_per_s=seen / max(train_time, 1e-9),
                )
            )
            log(
                f"epoch {epoch + 1}/{cfg['epochs']}: train loss {loss_sum / max(seen, 1):.4f} acc "
                f"{correct / max(seen, 1):.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | "
                f"{train_time:.1f} s, {seen / max(train_time, 1e-9):.0f} samples/s"
            )
            save(epoch + 1, 0, (0.0, 0, 0))
            partial = (0.0, 0, 0)
    except KeyboardInterrupt:
        # the batch b was not applied if the interrupt came inside it: resume at b.  (A
        # sharded optimizer's state is spread over the ranks, which are not at this point
        # together: the last epoch's checkpoint stands.)
        if dist is None or dist.sharded is None:
            save(epoch, b, (loss_sum, correct, seen))
        log(
            f"interrupted at epoch {epoch + 1}, batch {b}; "
            f"checkpoint written to {cfg.get('checkpoint')}"
            if cfg.get("checkpoint")
            else "interrupted (no --checkpoint given, nothing saved)"
        )
        raise
    metrics = dict(history[-1]) if history else {}
    metrics.update(
        total_seconds=time.perf_counter() - t_start,
        params=net.n_params(),
        epochs=cfg["epochs"],
        history=history,
    )
    if cfg.get("plot") and (dist is None or dist.is_root):
        plot(history, cfg["plot"])
        log(f"plot written to {cfg['plot']}")
    return metrics, net


def _bar(progress, total, epoch, epochs, initial):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False
    )


def plot(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["test_loss"] for h in history], "s-", label="test")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.legend(), a.set_title("loss")
    b.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train")
    b.plot(ep, [100 * h["test_acc"] for h in history], "s-", label="test")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy (%)"), b.legend(), b.set_title("accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def predict(checkpoint_path, images):
    """Class probabilities ``(N, 10)`` for uint8 or float images ``(N, 28, 28)``."""
    arrays, meta = ckpt.load(checkpoint_path)
    cfg = meta["config"]
    net = lenet(cfg["filters"], cfg["kernel"], cfg["hidden"], 10, (1, 28, 28), cfg["batchnorm"], 0)
    _load_state(net, arrays, checkpoint_path)
    images = np.asarray(images)
    if images.dtype == np.uint8:
        x = prepare(images, cfg["normalize"])
    else:
        x = prepare(np.clip(images * 255.0, 0, 255), cfg["normalize"])
    from derivgrad.kernels import softmax

    return softmax(net.forward(x))


DEFAULTS = dict(
    data=None,
    epochs=3,
    batch_size=64,
    lr=0.01,
    momentum=0.9,
    optimizer="sgd",
    weight_decay=0.0,
    seed=0,
    checkpoint=None,
    resume=False,
    plot=None,
    filters=20,
    kernel=5,
    hidden=500,
    batchnorm=False,
    normalize=False,
    schedule="constant",
    limit=None,
)


def config(**overrides):
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def metrics_line(metrics):
    return json.dumps(
        {
            k: (round(v, 6) if isinstance(v, float) else v)
            for k, v in metrics.items()
            if k != "history"
        }
    )
