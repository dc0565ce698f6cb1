"""Every op's HTML page (a numeric instance, so the numbers are on it too) and the worked
problems page, opened in a real headless Chromium (Debian's package, installed by .ci/run):
no MathML ``merror``, no raw ``\\command`` text in the rendered DOM, every ``math`` element
laid out by the browser's MathML engine with a non-zero box, nothing wider than a phone's
screen except inside the scrolling equation boxes, and one screenshot that is not blank.
The LaTeX and the HTML of each derivation agree: the same numbers row by row, and a sample of
rows read back from the browser's DOM into SymPy equal the same rows read from the LaTeX."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from latex_parse import parse as parse_latex
from mathml_parse import Node, read_chain, tree

from derivgrad import derive
from derivgrad.documents.instance import attach, random_values
from derivgrad.documents.render import build, render
from derivgrad.registry import OPS

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium (CI installs Debian's 'chromium' package; apt-get install "
    "chromium here)",
)
PHONE = (412, 915)  # CSS pixels of a common phone screen

# Runs in the page after it is laid out and leaves its findings in the DOM for --dump-dom.
PROBE = """<script>
(() => {
  const maths = [...document.getElementsByTagName('math')];
  const rects = maths.map(m => m.getBoundingClientRect());
  const report = {
    maths: maths.length,
    merror: document.getElementsByTagName('merror').length,
    empty: rects.filter(r => !(r.width > 0 && r.height > 0)).length,
    notMathLayout: maths.filter(m => !getComputedStyle(m).display.includes('math')).length,
    raw: (document.body.innerText.match(/\\\\[A-Za-z]+/g) || []).slice(0, 5),
    pageWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
  };
  const pre = document.createElement('pre');
  pre.id = 'derivgrad-probe';
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
})();
</script>"""


def _derivation(name):
    d = derive(name)
    d = attach(d, random_values(d, 0))
    return d


def _chromium(*args: str) -> str:
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={PHONE[0]},{PHONE[1]}", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _open(page: Path) -> tuple[dict, str]:
    dom = _chromium("--dump-dom", page.as_uri())
    m = re.search(r'<pre id="derivgrad-probe">(.*?)</pre>', dom, re.S)
    assert m, "the probe did not run"
    return json.loads(html.unescape(m.group(1))), dom


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{name: (derivation or None, probe report, rendered DOM)} for every op and the
    worked problems."""
    from derivgrad.documents.worked import document

    tmp = tmp_path_factory.mktemp("html")
    sources = {}
    for name in OPS:
        d = _derivation(name)
        sources[name] = (d, render(d, "html"))
    sources["worked-problems"] = (None, document("html"))
    paths = {}
    for name, (_, text) in sources.items():
        paths[name] = tmp / f"{name}.html"
        paths[name].write_text(text.replace("</body>", PROBE + "\n</body>"))
    with ThreadPoolExecutor(4) as pool:  # a browser start mostly waits: four at a time
        opened = dict(zip(paths, pool.map(_open, paths.values())))
    return {k: (sources[k][0], *opened[k]) for k in paths}


@pytest.mark.parametrize("name", [*OPS, "worked-problems"])
def test_page_renders_in_chromium(pages, name):
    _, report, _ = pages[name]
    assert report["maths"] > 0
    assert report["merror"] == 0, f"{name}: {report['merror']} MathML errors"
    assert report["raw"] == [], f"{name}: raw LaTeX in the rendered page: {report['raw']}"
    assert report["empty"] == 0, f"{name}: {report['empty']} math elements without a box"
    assert report["notMathLayout"] == 0, f"{name}: math not laid out as MathML"
    # on a phone, text wraps and wide equations scroll inside their own boxes
    assert report["pageWidth"] <= report["viewport"], f"{name}: the page is wider than a phone"


def _eq_tables(root: Node) -> list[Node]:
    """The top-level mtable of each displayed equation block, in order."""
    out = []
    for div in root.find_all("div"):
        if "eq" in (div.attrs.get("class") or "").split():
            out.append(div.find_all("mtable")[0])
    return out


GREEK = {r"\delta", r"\gamma", r"\beta", r"\epsilon", r"\sigma", r"\mu"}


def _unread(e) -> bool:
    syms = e.free_symbols if hasattr(e, "free_symbols") else set()
    return any(s.name.startswith("\\") and s.name.split("_")[0] not in GREEK for s in syms)


def _numbers(s: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", s)


def _tokens_text(node: Node) -> str:
    if node.tag in ("mi", "mn", "mo", "mtext"):
        return " " + node.all_text() + " "
    return "".join(_tokens_text(c) for c in node.children)


@pytest.mark.parametrize("name", list(OPS))
def test_latex_and_html_state_the_same_equations(pages, name):
    d, _, dom = pages[name]
    doc = build(d)
    tables = _eq_tables(tree(dom))
    blocks = [x for kind, x in doc.blocks if kind == "eq"]
    assert len(tables) == len(blocks)
    compared = 0
    for rows, table in zip(blocks, tables):
        trs = [tr for tr in table.children if tr.tag == "mtr"]
        assert len(trs) == sum(len(frags) for _, frags in rows)
        k = 0
        for r, (_lhs, frags) in enumerate(rows):
            mine = trs[k : k + len(frags)]
            k += len(frags)
            latex = " ".join(frags)
            latex = re.sub(r"\\\\\[[^\]]*\]", "", latex)  # row gaps: layout only
            shown = "".join(_tokens_text(tr.children[-1]) for tr in mine)
            # the same numbers (as a multiset: W^{(2)}_{1,1} lists its scripts sub first)
            assert Counter(_numbers(latex)) == Counter(_numbers(shown)), f"{name}: {latex!r}"
            if r >= 3 or len(frags) > 1:
                continue  # a sample: the first rows of each block
            if r"\partial" in latex or re.search(r"\\[cvd]dots", latex):
                continue  # a chain-rule statement (∂p/∂z)ᵀ ∂L/∂p, or an abbreviated matrix
            try:
                want = [parse_latex(p) for p in latex.replace(r"\cdot", " ").split(" = ")]
            except (ValueError, IndexError, TypeError):
                continue  # a row the independent LaTeX reader does not cover
            if any(_unread(w) for w in want):
                continue  # ... or reads as an unknown \command symbol (\log)
            got = read_chain(mine[0].children[-1])
            assert len(got) == len(want), f"{name}: {latex!r}"
            for a, b in zip(got, want):
                same = (a - b).equals(np.zeros_like(a) if hasattr(a, "shape") else 0)
                assert a == b or same, f"{name}: HTML {a} != LaTeX {b} in {latex!r}"
            compared += 1
    assert compared >= 2, f"{name}: only {compared} rows could be read back from both"


def test_a_screenshot_is_not_blank(tmp_path):
    import matplotlib.image as mpimg

    name = next(iter(OPS))
    page = tmp_path / "page.html"
    page.write_text(render(_derivation(name), "html"))
    shot = tmp_path / "page.png"
    _chromium(f"--screenshot={shot}", page.as_uri())
    img = mpimg.imread(shot)[..., :3]
    dark = (img.mean(axis=2) < 0.5).mean()  # the share of pixels that are ink
    assert img.shape[1] == PHONE[0]
    assert 0.005 < dark < 0.5, f"screenshot looks blank or solid: {dark:.3%} dark pixels"
