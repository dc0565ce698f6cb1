"""The built-in ops, one module per op family, each exporting ``OPS``: a tuple of
:class:`~derivgrad.ops.base.Op` instances.  :mod:`derivgrad.registry` collects them by walking
this package, so adding an op is adding a module here (and its tests) — nothing else."""
