"""All thirteen worked problems of the course notes in one document with a table of
contents: LaTeX, and a PDF when a TeX engine is installed.

    python examples/worked_problems.py [OUTDIR]
"""

import shutil
import sys
from pathlib import Path

from derivgrad.atomic import write_output
from derivgrad.documents.render import compile_pdf
from derivgrad.documents.worked import document

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
out.mkdir(parents=True, exist_ok=True)
tex = document("latex")  # every derivation is built and rendered here
write_output(out / "worked_problems.tex", tex.encode())
write_output(out / "worked_problems.md", document("markdown").encode())
print("wrote", out / "worked_problems.tex", "and", out / "worked_problems.md")
if shutil.which("pdflatex"):
    print("wrote", compile_pdf(tex, out / "worked_problems.pdf"))
