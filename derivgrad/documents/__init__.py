"""Documents: the block model, the renderer that writes a derivation as one, the worked
problems, the numbers carried through each step and the small instances they use.
The writers of each output format live in ``derivgrad.formats``."""
