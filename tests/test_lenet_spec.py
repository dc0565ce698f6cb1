"""One description of the course LeNet (model.lenet_spec): the network lenet() builds and the
table lenet_rows() prices from sizes alone agree row by row for any sizes, with or without
batch norm; the layers are found by name wherever batch norm puts them, which is how the
lenet op's kernel face reaches them."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from derivgrad.training.model import Conv2d, Linear, lenet, lenet_rows

SIZES = st.fixed_dictionaries(
    dict(
        filters=st.integers(1, 4),
        kernel=st.integers(1, 5),
        hidden=st.integers(1, 7),
        classes=st.integers(2, 5),
        in_shape=st.tuples(st.integers(1, 3), st.integers(6, 11), st.integers(6, 11)),
        batchnorm=st.booleans(),
    )
)


@settings(max_examples=40, deadline=None)
@given(SIZES)
def test_the_network_and_its_table_are_one_description(sizes):
    net = lenet(**sizes, dtype=np.float64)
    rows = lenet_rows(**sizes)
    assert net.summary() == rows
    # the table's counts are the arrays' sizes, its shapes the layers' own arithmetic
    assert sum(r.params for r in rows) == net.n_params()


@settings(max_examples=10, deadline=None)
@given(SIZES)
def test_layers_are_found_by_name_wherever_batchnorm_puts_them(sizes):
    net = lenet(**sizes, dtype=np.float64)
    C, H, W = sizes["in_shape"]
    f, k = sizes["filters"], sizes["kernel"]
    conv, fc1, fc2 = net.layer("conv"), net.layer("fc1"), net.layer("fc2")
    assert isinstance(conv, Conv2d) and conv.params["w"].shape == (f, C, k, k)
    flat = f * ((H - k + 1) // 2) * ((W - k + 1) // 2)
    assert isinstance(fc1, Linear) and fc1.params["w"].shape == (sizes["hidden"], flat)
    assert fc2.params["w"].shape == (sizes["classes"], sizes["hidden"])
    assert ("bn" in net.names) == sizes["batchnorm"]
