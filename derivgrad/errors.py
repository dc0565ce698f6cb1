"""derivgrad's exceptions, in one place.

Every error a user can cause derives from :class:`DerivgradError`, and each is also the
built-in exception it has always been (a bad parameter is still a ``ValueError``), so
``except ValueError`` keeps working.  The command line prints any of them as one line.

    DerivgradError
    ├── ParamError       (ValueError)   a parameter that describes no valid op or run
    ├── UsageError       (ValueError)   a bad command-line combination
    ├── DataError        (ValueError)   an unreadable, corrupt or inconsistent data file
    ├── CheckpointError  (ValueError)   an unreadable or mismatched checkpoint
    ├── DivergedError    (ValueError)   training produced a non-finite loss
    ├── DistributedError (RuntimeError) a rank of a multi-process (MPI) run failed or died
    └── GradcheckError   (AssertionError) analytic and numerical gradients disagree
"""

from __future__ import annotations


class DerivgradError(Exception):
    """Base of every error derivgrad raises on purpose."""


class ParamError(DerivgradError, ValueError):
    """A derivation, layer or training parameter that cannot describe a valid op or run."""


class UsageError(DerivgradError, ValueError):
    """A bad command-line combination: printed as one line, exit status 2."""


class DataError(DerivgradError, ValueError):
    """A data file that is missing, truncated, corrupt or inconsistent."""


class CheckpointError(DerivgradError, ValueError):
    """A checkpoint that cannot be read, or does not match the run that loads it."""


class DivergedError(DerivgradError, ValueError):
    """Training produced a non-finite loss; the last checkpoint is left untouched."""


class DistributedError(DerivgradError, RuntimeError):
    """A rank of a multi-process (MPI) run failed, died or disagrees with the others."""


class GradcheckError(DerivgradError, AssertionError):
    """Analytic and numerical gradients disagree; ``.report`` holds the details."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


__all__ = [
    "DerivgradError",
    "ParamError",
    "UsageError",
    "DataError",
    "CheckpointError",
    "DivergedError",
    "DistributedError",
    "GradcheckError",
]
