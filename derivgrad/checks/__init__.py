"""Checks that hold kernels to the symbolic ground truth: ``gradcheck`` (central
differences, or an exact oracle), the hypothesis strategies that draw an op's parameters
and values, and the properties behind ``derivgrad check``."""
