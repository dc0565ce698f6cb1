"""The hyper-parameter rules the kernels apply (an int, or a pair of ints, at least a minimum;
bools and floats refused), public so that the symbolic face and the command line accept
exactly what the kernels accept."""

from ._validate import int_param, pair

__all__ = ["int_param", "pair"]
