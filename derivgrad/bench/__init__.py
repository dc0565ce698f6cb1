"""``derivgrad bench``: each kernel against PyTorch CPU, and the same under busy
neighbours (``--busy N``)."""
