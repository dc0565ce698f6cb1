"""The subcommands of ``derivgrad``: one module each, each with ``register(subparsers)``.

The command line (:mod:`derivgrad.cli`) imports this package; nothing here imports the
command line, so there is no import circle.
"""

from . import bench, check, derive, predict, shapes, train

SUBCOMMANDS = (derive, shapes, check, train, predict, bench)
