"""A network of one's own written out: ``derivgrad derive --model net.py --input 1x6x6``.

Each layer of :mod:`derivgrad.nn` names the op whose derivation it is (``Module.face``); this
package derives and proves each op at the layer's shapes, carries one sample's numbers from
the input to the loss and back through the layers' derivations, holds them to the network's
own forward and backward pass (the kernels), and writes the whole as one document.  It is
the one place where the network (``derivgrad.nn``) and the derivations (``derivgrad.ops``
through the registry, ``derivgrad.documents``) meet.
"""

from .derivation import NetworkDerivation, derive_network
from .document import network_document, render_network

__all__ = ["NetworkDerivation", "derive_network", "network_document", "render_network"]
