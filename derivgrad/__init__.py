"""derivgrad: derive, prove, print and run the gradients of convolutional networks.

    d = derivgrad.derive("conv2d", input=(3, 3), kernel=(2, 2))
    d.jacobian("x")    # shape input.shape + output.shape
    d.grad("x")        # the compact rule pad(δ, f-1) ⋆ rot180(W)
    d.verify()         # proved equal to the chain rule, symbolically
    d.latex()          # the worked solution
"""

from .gradcheck import GradcheckError, gradcheck
from .registry import OPS
from .symbolic.params import ParamError


def derive(op, **params):
    """Derive the gradient of ``op`` (a name from :data:`OPS`) on a small instance.

    Parameters use the command line's names (``input``, ``kernel``, ``stride``, ``padding``,
    ``dilation``, ``channels``, ``filters``, ``batch``, ``classes``, ``features``, ...).
    Returns a :class:`~derivgrad.symbolic.derivation.Derivation`; raises
    :class:`ParamError` (a ``ValueError``) for parameters that describe no valid op.
    """
    from .registry import get
    return get(op).build(**params)


__all__ = ["derive", "gradcheck", "GradcheckError", "OPS", "ParamError"]
