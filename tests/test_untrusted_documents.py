"""A layer's title is the user's text, and text is data in every format: hostile titles (LaTeX
commands that read files or run the shell, MathML links and remote styles, HTML scripts,
images and event handlers, Markdown links) are rendered in LaTeX, Markdown, text, HTML and
JSON (with values, so the numeric blocks are there too).  The LaTeX runs no command the
user wrote (and pdflatex reads no file it names), the HTML opened in headless Chromium makes
no request and runs no script, the text and JSON carry the title as written."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading

import pytest

import derivgrad
from derivgrad.documents.render import render
from derivgrad.errors import ParamError
from derivgrad.formats._mathml import mathml

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
SPEC = "y[i] = x[i] * w[i, 0]"
SHAPES = {"x": (2,), "w": (2, 2)}
VALUES = {"x": [1, -2], "w": [[3, 0], [1, 2]], "upstream": [1, "1/2"]}
MARK = "document.body.setAttribute('data-pwned', 'yes')"


def _titles(url: str, secret: str, canary: str) -> list[str]:
    return [
        r"$\href{javascript:" + MARK + "}{x}$ and \\href{" + url + "/href}{y}",
        r"$\style{background-image:url(" + url + r"/style)}{x}$",
        r"\input{" + secret + r"} \include{" + secret + r"} \openin5=" + secret,
        r"\immediate\write18{touch " + canary + r"} \def\x{1} \catcode`\@=11 %",
        f"<script>{MARK}</script><img src='{url}/img' onerror=\"{MARK}\">",
        f'$\\text{{<img src={url}/mtext onerror={MARK}>}}$ <svg onload="{MARK}"></svg>',
        f"[click](javascript:{MARK}) <style>body{{background:url({url}/css)}}</style>",
        "$x$ & # ^ _ ~ { } \\ $$ \\$ end",
    ]


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (the http.server protocol's name)
        type(self).hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture(scope="module")
def rendered(server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    secret = tmp / "secret.txt"
    secret.write_text("SECRETMARKER\n")
    canary = tmp / "pwned"
    title = "  ".join(_titles(server, str(secret), str(canary)))
    op = derivgrad.define(SPEC, **SHAPES, name="hostile_title", title=title)
    d = derivgrad.derive(op.name, values=VALUES)
    formats = {f: render(d, f) for f in ("latex", "markdown", "text", "html", "json")}
    plain = derivgrad.define(SPEC, **SHAPES, name="plain_title", title="Plain title")
    benign = render(derivgrad.derive(plain.name, values=VALUES), "latex")
    return {"title": title, "secret": secret, "canary": canary, "tmp": tmp, "benign": benign,
            **formats}  # fmt: skip


def _commands(latex: str) -> set[str]:
    return set(re.findall(r"\\([A-Za-z@]+)", latex))


def test_latex_runs_no_command_of_the_title(rendered):
    extra = _commands(rendered["latex"]) - _commands(rendered["benign"])
    # the escapes that spell the title's own characters, nothing else (< and > too: OT1 text
    # fonts print them as ¡ and ¿)
    spelled = {"textbackslash", "textasciicircum", "textasciitilde", "textless", "textgreater"}
    assert extra <= spelled, extra
    for live in ("input", "include", "openin", "write", "immediate", "def", "catcode", "href"):
        assert not re.search(r"(?<!textbackslash\{\})\\" + live + r"\b", rendered["latex"]), live


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex")
def test_the_pdf_reads_no_file_the_title_names(rendered):
    tmp = rendered["tmp"]
    (tmp / "doc.tex").write_text(rendered["latex"])
    r = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", "-recorder", "doc.tex"],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (tmp / "doc.pdf").exists(), r.stdout[-3000:]
    inputs = (tmp / "doc.fls").read_text()
    assert str(rendered["secret"]) not in inputs
    if shutil.which("pdftotext"):
        subprocess.run(["pdftotext", "doc.pdf", "doc.txt"], cwd=tmp, check=True, timeout=60)
        words = (tmp / "doc.txt").read_text()
        assert "SECRETMARKER" not in words
        assert "secret.txt" in words  # the title is printed as written
    assert not rendered["canary"].exists()


def test_html_holds_no_live_markup(rendered):
    page = rendered["html"]
    body = page.split("<body>", 1)[1]
    tags = re.findall(r"<([A-Za-z][\w-]*)([^>]*)>", body)  # text has its < escaped
    names = {t for t, _ in tags}
    assert not names & {"script", "img", "svg", "style", "iframe", "object", "embed", "link"}
    for name, attrs in tags:
        for key, value in re.findall(r"([\w:-]+)\s*=\s*\"([^\"]*)\"", attrs):
            assert not (key in ("src", "style") or key.startswith("on")), (name, key, value)
            assert key != "href" or value.startswith("#"), (name, key, value)
            assert "url(" not in value and "javascript:" not in value.lower(), (name, value)


def test_mathml_allow_list():
    hostile = [
        r"\href{javascript:alert(1)}{x}",
        r"\style{background:url(http://e/x)}{x}",
        r"\text{<img src=x onerror=alert(1)>}",
        r"\class{c}{x}",
        r"\cssId{i}{x}",
    ]
    for latex in hostile:
        try:
            m = mathml(latex)
        except Exception:  # noqa: BLE001 (a converter refusal is safe: nothing is emitted)
            continue
        assert not re.search(r"\s(href|style|on[a-z]+|class|id|src)\s*=", m), m
        assert "<img" not in m and "url(" not in m, m


def test_markdown_text_and_json_carry_the_title_as_data(rendered):
    md = rendered["markdown"]
    assert not re.search(r"(?<!\\)<(script|img|svg|style)", md)
    assert not re.search(r"(?<!\\)\]\(javascript", md)
    assert rendered["title"] + ": the gradient" in rendered["text"]
    assert json.loads(rendered["json"])["title"] == rendered["title"]


def test_a_name_is_an_identifier_or_refused():
    with pytest.raises(ParamError):
        derivgrad.define(SPEC, **SHAPES, name="<script>x</script>")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium")
def test_the_page_in_chromium_makes_no_request_and_runs_no_script(rendered, server):
    page = rendered["tmp"] / "hostile.html"
    page.write_text(rendered["html"])
    _Recorder.hits.clear()
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert "SECRETMARKER" not in dom and "<math" in dom
    assert not re.search(r"<body[^>]*data-pwned", dom), "a script of the title ran"
    assert _Recorder.hits == [], f"the page fetched {_Recorder.hits}"
    # the same check sees what it looks for: a page that does run the payload is caught
    live = rendered["tmp"] / "live.html"
    live.write_text(f"<body><img src='{server}/probe' onerror=\"{MARK}\"></body>")
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
         "--dump-dom", live.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert re.search(r"<body[^>]*data-pwned", r.stdout) and _Recorder.hits == ["/probe"]
