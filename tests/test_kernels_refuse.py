"""Every public kernel refuses what it cannot honour, iterated over the public API (issue 31,
item 4): ndarray subclasses give the plain array's answer (or, masked, are refused),
arrays updated in place that share memory with another argument are a one-line ValueError
naming both, and integers past any addressable size are a ValueError naming the op, never
an OverflowError from inside NumPy or Numba."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from derivgrad import kernels as K

NOT_KERNELS = {
    "set_threads",
    "get_threads",
    "thread_settings",
    "blas_info",
    "output_size",
    "window_span",
}


def _examples(rng: np.random.Generator, dt=np.float64) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """A valid call of each public kernel: ``name -> (arguments by name, names of the
    arguments it updates in place)``; every call draws fresh arrays."""

    def r(*shape):
        return rng.standard_normal(shape).astype(dt)

    x4, w4 = r(2, 3, 6, 6), r(4, 3, 3, 3)
    x3, w3 = r(2, 3, 7), r(4, 3, 3)
    _, idx = K.maxpool2d_forward(x4.copy(), 2)
    labels = np.array([0, 2], np.int64)
    logits = r(2, 3)
    probs = K.softmax(logits.copy())
    bx = r(2, 3, 4, 4)
    _, cache = K.batchnorm2d_forward(bx.copy(), np.ones(3, dt), np.zeros(3, dt))
    return {
        "conv2d_forward": (dict(x=x4, w=w4, b=r(4), stride=1, padding=1, dilation=1), ()),
        "conv2d_backward": (dict(dy=r(2, 4, 4, 4), x=x4, w=w4, stride=1, padding=0), ()),
        "conv1d_forward": (dict(x=x3, w=w3, b=r(4), stride=2, padding=1, dilation=1), ()),
        "conv1d_backward": (dict(dy=r(2, 4, 5), x=x3, w=w3, stride=1, padding=0), ()),
        "maxpool2d_forward": (dict(x=x4, kernel_size=2, stride=2, padding=1), ()),
        "maxpool2d_backward": (dict(dy=r(2, 3, 3, 3), indices=idx, input_shape=(2, 3, 6, 6)), ()),
        "avgpool2d_forward": (dict(x=x4, kernel_size=3, stride=1, padding=1), ()),
        "avgpool2d_backward": (
            dict(dy=r(2, 3, 3, 3), input_shape=(2, 3, 6, 6), kernel_size=2, stride=2),
            (),
        ),
        "linear_forward": (dict(x=r(4, 3), w=r(2, 3), b=r(2)), ()),
        "linear_backward": (dict(dy=r(4, 2), x=r(4, 3), w=r(2, 3)), ()),
        "relu_forward": (dict(x=r(3, 5)), ()),
        "relu_backward": (dict(dy=r(3, 5), x=r(3, 5)), ()),
        "softmax": (dict(z=r(3, 4)), ()),
        "softmax_cross_entropy_forward": (dict(logits=logits, labels=labels), ()),
        "softmax_cross_entropy_backward": (dict(probs=probs, labels=labels), ()),
        "batchnorm2d_forward": (
            dict(
                x=bx,
                gamma=r(3),
                beta=r(3),
                running_mean=r(3),
                running_var=np.abs(r(3)),
                momentum=0.1,
            ),
            ("running_mean", "running_var"),
        ),
        "batchnorm2d_backward": (dict(dy=r(2, 3, 4, 4), cache=cache), ()),
        "im2col": (dict(x=x4, kernel_size=3, stride=1, padding=1, dilation=2), ()),
        "col2im": (
            dict(cols=r(2, 27, 36), input_shape=(2, 3, 6, 6), kernel_size=3, padding=1),
            (),
        ),
        "sgd_update": (dict(p=r(7), g=r(7), v=r(7), lr=0.1, momentum=0.9), ("p", "v")),
        "adam_update": (
            dict(p=r(7), g=r(7), m=r(7), v=np.abs(r(7)), lr=0.1, step=2),
            ("p", "m", "v"),
        ),
    }


def _fresh(name, dt=np.float64):
    return _examples(np.random.default_rng(7), dt)[name]


KERNELS = sorted(_examples(np.random.default_rng(0)))


def test_the_table_covers_every_public_kernel():
    public = {
        n for n in K.__all__ if callable(getattr(K, n)) and not inspect.isclass(getattr(K, n))
    }
    assert set(KERNELS) == public - NOT_KERNELS


def _arrays(result) -> list[np.ndarray]:
    if result is None:
        return []
    if dataclasses.is_dataclass(result):
        return _arrays([getattr(result, f.name) for f in dataclasses.fields(result)])
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in _arrays(r)]
    return [np.asarray(result)]


def _run(name, kw, written):
    """Everything the call produced: its results and the arrays it updated in place."""
    out = getattr(K, name)(**kw)
    return _arrays(out) + [np.array(kw[w]) for w in written]


class _Sub(np.ndarray):
    """A subclass that changes nothing but its type (a user's tagged array)."""


def _subclassed(a: np.ndarray, how: str):
    if how == "matrix":
        return np.asmatrix(a) if a.ndim == 2 else None
    if how == "masked":
        return np.ma.masked_array(a)
    return a.view(_Sub)


@pytest.mark.parametrize("how", ["subclass", "matrix", "masked"])
@pytest.mark.parametrize("name", KERNELS)
def test_subclasses_give_the_plain_answer_or_are_refused(name, how):
    kw, written = _fresh(name)
    expected = _run(name, kw, written)
    tried = 0
    for arg in [k for k, a in kw.items() if type(a) is np.ndarray]:
        kw, written = _fresh(name)
        sub = _subclassed(kw[arg], how)
        if sub is None:
            continue
        tried += 1
        kw[arg] = sub
        if how == "masked":
            with pytest.raises(TypeError, match=f"{arg} is a masked array"):
                getattr(K, name)(**kw)
            continue
        got = _run(name, kw, written)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e, err_msg=f"{name}({arg}={how})")
    assert tried or how == "matrix"


def _pairs():
    for name in KERNELS:
        kw, written = _fresh(name)
        for w in written:
            for other, a in kw.items():
                if other != w and isinstance(a, np.ndarray) and a.shape == kw[w].shape:
                    yield name, w, other


@pytest.mark.parametrize("overlap", ["same", "shifted"])
@pytest.mark.parametrize("name, written, other", list(_pairs()))
def test_buffers_updated_in_place_that_share_memory_are_refused(name, written, other, overlap):
    kw, _ = _fresh(name)
    before = {k: a.copy() for k, a in kw.items() if isinstance(a, np.ndarray)}
    a = kw[written]
    if overlap == "same":
        kw[other] = a
    else:  # two views of one buffer, one element apart
        base = np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])
        kw[written] = base[:-1].reshape(a.shape)
        kw[other] = base[1:].reshape(a.shape)
        before[written] = kw[written].copy()
    with pytest.raises(ValueError) as e:
        getattr(K, name)(**kw)
    msg = str(e.value)
    assert "\n" not in msg and "share memory" in msg
    assert written in msg and other in msg
    np.testing.assert_array_equal(kw[written], before[written])  # refused before any write


def _int_slots(kw):
    for k, v in kw.items():
        if isinstance(v, int) and not isinstance(v, bool):
            yield k, None
        elif isinstance(v, tuple) and all(isinstance(e, int) for e in v):
            for i in range(len(v)):
                yield k, i


# past int64 once multiplied by an itemsize: always a ValueError
HUGE = [2**62, 2**63, 2**64, 10**30]
# addressable but past any memory: a ValueError, or NumPy's MemoryError stating the size
LARGE = [2**31, 2**40]


@pytest.mark.parametrize("name", KERNELS)
def test_huge_integers_are_a_value_error(name):
    kw, written = _fresh(name)
    for k, i in list(_int_slots(kw)):
        for big in HUGE + LARGE:
            kw, written = _fresh(name)
            kw[k] = big if i is None else tuple(big if j == i else e for j, e in enumerate(kw[k]))
            try:
                getattr(K, name)(**kw)
            except ValueError as e:
                assert "\n" not in str(e) and str(e).startswith(f"{name}: "), (name, k, big, e)
            except MemoryError as e:
                if big in HUGE:
                    pytest.fail(f"{name}({k}={kw[k]}): MemoryError for an unaddressable size: {e}")
                assert "GiB" in str(e) or "TiB" in str(e) or "PiB" in str(e)
            except Exception as e:  # an OverflowError from inside NumPy or Numba
                pytest.fail(f"{name}({k}={kw[k]}): {type(e).__name__}: {e}")
