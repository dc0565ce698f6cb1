"""Type names shared by the kernels' public signatures."""

IntOrPair = int | tuple[int, int]  # a hyper-parameter: one number for both axes, or (h, w)
"""``kernel_size``, ``stride``, ``padding``, ``dilation``: an int or an ``(h, w)`` pair."""
