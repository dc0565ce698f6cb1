"""Derive the gradient of a 2-D convolution, prove the compact rule, write the worked
solution as LaTeX (and a PDF when a TeX engine is installed).

    python examples/derive_conv2d.py [OUTDIR]
"""

import shutil
import sys
from pathlib import Path

import derivgrad
from derivgrad.atomic import write_output
from derivgrad.documents.render import compile_pdf

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
out.mkdir(parents=True, exist_ok=True)

# A 3x3 input and a 2x2 filter, as in worked problem 7.
d = derivgrad.derive("conv2d", input=(3, 3), kernel=(2, 2), bias=False)

print("Jacobian dY/dX has shape", d.jacobian("x").shape)  # input shape + output shape
print("closed form dL/dX =", d.grad("x"))  # pad(δ, 1) ⋆ rot180(W)
print("rule:", d.rules["x"])
print("proved equal to the chain rule:", d.verify())  # symbolic, not by sampling

tex = d.latex()
write_output(out / "conv2d.tex", tex.encode())
print("wrote", out / "conv2d.tex")
if shutil.which("pdflatex"):
    print("wrote", compile_pdf(tex, out / "conv2d.pdf"))
else:
    print("no pdflatex: compile conv2d.tex elsewhere, or install texlive-latex-base")
