"""Checks shared by every public kernel wrapper.

Every error names the op, the argument, what it needed and what it got.  Wrappers call
these before any compiled code runs, so a kernel only ever sees arrays whose shapes it
can index without a bounds check.

Input policy (documented once here, referenced from the docstrings):

* arrays must be float32 or float64 (integer, bool and complex arrays are refused with
  ``TypeError``: a silent cast would hide a bug upstream);
* all float arguments of one call must share a dtype (``TypeError`` otherwise);
* non-contiguous arrays (slices, transposes) are copied to C order; read-only arrays are
  accepted, since kernels never write to their inputs;
* ndarray subclasses (``np.matrix``, ``np.memmap``, user subclasses) are viewed as plain
  ndarrays (``np.asarray``: the same memory, so an in-place update still reaches the
  caller's array), since a subclass's indexing rules (a matrix row is 2-D) are not NumPy's;
  masked arrays are refused (their masked values would be used);
* an array a kernel updates in place (an optimizer's parameters and state, batch norm's
  running statistics) must share no memory with any other argument of the call: the kernel
  would read what it has just written (``sgd_update(p, g, p, momentum=0.9)``);
* integer hyper-parameters (window, stride, padding, dilation) are at most ``MAX_INT``
  (2**31 - 1), and a shape given as integers must describe an array NumPy can address:
  a size past int64 is a ``ValueError``, not an ``OverflowError`` from inside NumPy;
* NaN and inf values are not refused: they propagate as IEEE arithmetic says (each op's
  docstring says where a NaN goes).
"""

import numbers

import numpy as np

from ._geometry import window_span

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
MAX_INT = 2**31 - 1  # beyond any window, stride or padding an addressable array can use
MAX_BYTES = 2**62  # an array size NumPy can compute without int64 overflow


def plain(op, name, x):
    """``x`` as a plain ndarray: subclasses viewed (same memory), masked arrays refused."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{op}: {name} is a masked array; its masked values would be used "
            f"(fill them first: {name}.filled(0))"
        )
    if isinstance(x, np.ndarray) and type(x) is not np.ndarray:
        return np.asarray(x)
    return x


def no_alias(op, written, **arrays):
    """Each array named in ``written`` shares no memory with any other argument
    (``None`` skipped); the error names both."""
    items = [(k, a) for k, a in arrays.items() if isinstance(a, np.ndarray)]
    for i, (k, a) in enumerate(items):
        for j, (k2, b) in enumerate(items):
            if j <= i or (k not in written and k2 not in written):
                continue
            if np.may_share_memory(a, b) and np.shares_memory(a, b):
                w, o = (k, k2) if k in written else (k2, k)
                raise ValueError(
                    f"{op}: {w} and {o} share memory, but {w} is updated in place (the "
                    f"kernel would read values it has just overwritten); pass separate "
                    f"arrays (e.g. {o}.copy())"
                )


def shape_ints(op, name, shape):
    """A shape of ints >= 1 whose element count NumPy can address."""
    dims = tuple(int_param(op, f"{name}[{i}]", n, 1, maximum=None) for i, n in enumerate(shape))
    count = 1
    for n in dims:
        count *= n
    if count * 8 > MAX_BYTES:
        raise ValueError(
            f"{op}: {name} {dims} describes {count} elements, more than NumPy can address"
        )
    return dims


def _is_int(v):
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def int_param(op, name, value, minimum, maximum=MAX_INT):
    """An integer hyper-parameter in ``[minimum, maximum]`` (bools and floats are refused;
    ``maximum=None``: no upper bound, for counts that never reach compiled code)."""
    if not _is_int(value):
        raise TypeError(
            f"{op}: {name} must be an int, got {value!r} of type {type(value).__name__}"
        )
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{op}: {name} must be <= {maximum} (2**31 - 1), got {value}")
    return int(value)


def pair(op, name, value, minimum):
    """An int or a pair of ints, each ``>= minimum``; returns a 2-tuple of Python ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{op}: {name} must be an int or a pair of ints, got {value!r} "
                f"of length {len(value)}"
            )
        return tuple(int_param(op, f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
    v = int_param(op, name, value, minimum)
    return (v, v)


def single(op, name, value, minimum):
    """An int or a 1-tuple, for the 1-D ops; returns a Python int."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{op}: {name} must be an int or a 1-tuple, got {value!r}")
        value = value[0]
    return int_param(op, name, value, minimum)


def float_array(op, name, x, ndim, layout=None):
    """``x`` as a C-contiguous float32/float64 ndarray of rank ``ndim``.

    ``layout`` names the axes for the error message, e.g. ``"[N, C, H, W]"``.
    """
    if not isinstance(x, np.ndarray):
        if x is None:
            raise TypeError(f"{op}: {name} is required, got None")
        x = np.asarray(x)
    x = plain(op, name, x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: {name} must be a float32 or float64 array, got dtype {x.dtype}; "
            f"convert it with {name}.astype(np.float32)"
        )
    if x.ndim != ndim:
        want = layout or f"{ndim} dimensions"
        raise ValueError(f"{op}: {name} must have rank {ndim} {want}, got shape {x.shape}")
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    return x


def same_dtype(op, **arrays):
    """All given arrays (``None`` skipped) share one dtype; returns it."""
    items = [(k, a) for k, a in arrays.items() if a is not None]
    dt = items[0][1].dtype
    for k, a in items[1:]:
        if a.dtype != dt:
            raise TypeError(
                f"{op}: {k} has dtype {a.dtype} but {items[0][0]} has dtype {dt}; "
                f"mixed dtypes are refused (no silent upcast), cast one of them"
            )
    return dt


def vector(op, name, a, n, dtype, layout):
    """A float vector of length ``n`` and the given dtype (e.g. a bias ``[C_out]``)."""
    a = float_array(op, name, a, 1, layout)
    if a.dtype != dtype:
        raise TypeError(
            f"{op}: {name} has dtype {a.dtype} but the input has dtype {dtype}; "
            f"mixed dtypes are refused (no silent upcast), cast one of them"
        )
    shape_is(op, name, a, (n,), layout)
    return a


def shape_is(op, name, a, needed, layout):
    """``a.shape == needed``; ``layout`` describes the expected shape in words."""
    if tuple(a.shape) != tuple(needed):
        raise ValueError(
            f"{op}: {name} must have shape {layout} = {tuple(needed)}, got {tuple(a.shape)}"
        )


def fits(op, axis, n, k, stride, padding, dilation):
    """The (dilated) window fits in the padded input along one axis."""
    span = window_span(k, dilation)
    if span > n + 2 * padding:
        raise ValueError(
            f"{op}: the window along {axis} spans {span} (kernel {k}, dilation {dilation}) "
            f"but the padded input is only {n} + 2*{padding} = {n + 2 * padding} long; "
            f"use a smaller kernel or more padding"
        )


def addressable(op, *shapes):
    """Every array of these shapes (float64 at most) has a size NumPy can compute: a window
    geometry whose padded input, output or columns overflow int64 is a ValueError naming the
    op, not NumPy's "Maximum allowed dimension exceeded" (sizes that fit but exceed memory
    remain NumPy's MemoryError, which states the size)."""
    for shape in shapes:
        count = 1
        for n in shape:
            count *= int(n)
        if count * 8 > MAX_BYTES:
            raise ValueError(
                f"{op}: the stride, padding or dilation make an array of shape "
                f"{tuple(int(n) for n in shape)}, larger than NumPy can address"
            )


def labels_array(op, labels, n, classes):
    """Integer class labels of shape ``[N]`` with values in ``[0, classes)``."""
    if labels is None:
        raise TypeError(f"{op}: labels is required, got None")
    lab = np.asarray(plain(op, "labels", labels))
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be an integer array, got dtype {lab.dtype}")
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"{op}: labels must have shape [N] = ({n},), got {lab.shape}")
    if n and (lab.min() < 0 or lab.max() >= classes):
        bad = lab[(lab < 0) | (lab >= classes)][0]
        raise ValueError(
            f"{op}: labels must lie in [0, {classes}) for {classes} classes, found {bad}"
        )
    return np.ascontiguousarray(lab, dtype=np.int64)


def nonempty(op, name, a):
    if a.size == 0:
        raise ValueError(f"{op}: {name} is empty (shape {a.shape}); every axis must be at least 1")
