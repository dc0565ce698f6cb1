"""Text that becomes SymPy is parsed, never evaluated: a derivation's JSON read back, the
``values=`` of a numeric instance, the command line's ``--value``.  Hostile strings (calls,
dunder attributes, lambdas, comprehensions, huge exponents, deep nesting) are drawn into
every expression field and every value: each gives one line (``DataError``/``ParamError``),
never a traceback, and the canary file a payload would create never appears.  A document
whose declared shapes exceed what it holds is refused before anything is allocated; indices
are 1-based and checked.  Names are drawn too: every identifier a user may give a tensor
round-trips through JSON exactly and stays apart from the others in LaTeX and text."""

from __future__ import annotations

import copy
import json
import keyword
import os
import tempfile
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import derivgrad
from derivgrad import derive
from derivgrad.documents.document import tex
from derivgrad.documents.instance import parse_array
from derivgrad.documents.render import render
from derivgrad.errors import DataError, ParamError
from derivgrad.formats._schema_check import violation
from derivgrad.formats.json import read, schema
from derivgrad.formats.text import inline
from derivgrad.notation.parse import DefineError
from derivgrad.symbolic.reader import MAX_DEPTH, read_expr

CANARY_DIR = Path(tempfile.mkdtemp(prefix="derivgrad-canary-"))
CANARY = CANARY_DIR / "pwned"


def _payloads(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"__import__('os').system('touch {c}')",
        f"open({c!r}, 'w')",
        f"(lambda: open({c!r}, 'w'))()",
        f"[open({c!r}, 'w') for _ in (1,)]",
        "x.__class__.__bases__[0].__subclasses__()",
        "().__class__.__base__.__subclasses__()",
        f"exec('open({c!r}, \"w\")')",
        f"eval(\"open('{c}', 'w')\")",
        "Relu.__init__.__globals__",
        "Symbol('x')",
        "sympify('1')",
        "2**10**10",
        "10**-10**10",
        "x**99999999",
        "1e99999999",
        "9" * 5000,
        "(" * 200 + "1" + ")" * 200,
        "-" * 500 + "1",
        "exp(" * 300 + "1" + ")" * 300,
        "Relu(1, 2)",
        "Step()",
        "1 if 1 else 0",
        "1; 2",
        "x = 1",
        "import os",
        "f'{1}'",
        "b'1'",
        "1 @ 2",
        "1 // 2",
        "1 % 2",
        "~1",
        "not 1",
        "1 < 2",
        "{1: 2}",
        "{1}",
        "...",
        "",
        " ",
        "\x00",
        "𝟏",
    ]


def hostile_strings():
    fixed = st.sampled_from(_payloads(CANARY))
    # text built from the grammar's own pieces and Python's: most are malformed, some valid
    pieces = st.sampled_from(
        ["x_1", "(", ")", "**", "*", "/", "+", "-", ",", ".", "__class__", "[", "]", "1",
         "1e999", "lambda", ":", "'", "Relu", "exp", "__import__", "9" * 50, " "]
    )  # fmt: skip
    assembled = st.lists(pieces, min_size=1, max_size=30).map("".join)
    return st.one_of(fixed, assembled, st.text(max_size=40))


@pytest.fixture(scope="module")
def documents():
    """Two JSON documents to plant strings in: a layer with upstream (every field but the
    shared subexpressions) and one with values; plus the whole network (subexpressions)."""
    plain = json.loads(render(derive("relu", features=2), "json"))
    with_constant = json.loads(render(derive("batchnorm2d", batch=2, channels=1), "json"))
    numeric = json.loads(render(derive("relu", features=2, values={"z": [1, -2]}), "json"))
    assert with_constant["constants"], "a document with a constant (epsilon)"
    return {"plain": plain, "numeric": numeric, "constant": with_constant}


def _fields(data: dict) -> list[tuple]:
    """Paths of every string the reader parses as an expression or a value."""
    out: list[tuple] = []

    def walk(v, path):
        if isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, (*path, i))
        elif isinstance(v, str):
            out.append(path)

    walk(data["output"]["expressions"], ("output", "expressions"))
    for k, v in data["inputs"].items():
        walk(v["symbols"], ("inputs", k, "symbols"))
    if data["upstream"]:
        walk(data["upstream"]["symbols"], ("upstream", "symbols"))
    for k, e in data["jacobian"]["entries"].items():
        for n, _ in enumerate(e["nonzero"] or []):
            out.append(("jacobian", "entries", k, "nonzero", n, "expression"))
    for k, g in data["gradients"].items():
        walk(g["expressions"], ("gradients", k, "expressions"))
    for k, v in data["values"].items():
        walk(v, ("values", k))
    walk(data["forward_values"], ("forward_values",))
    for k, g in data["gradients"].items():
        walk(g["values"], ("gradients", k, "values"))
    for k in data["constants"]:
        out.append(("constants", k))
    return out


def _set(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return data


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


@settings(max_examples=60)
@given(data=st.data(), text=hostile_strings())
def test_hostile_expressions_in_every_field_are_one_line_errors(documents, data, text):
    doc = documents[data.draw(st.sampled_from(sorted(documents)), label="document")]
    path = data.draw(st.sampled_from(_fields(doc)), label="field")
    planted = _set(doc, path, text)
    try:
        read(json.dumps(planted))
    except DataError as e:
        _one_line(e)
    # nothing raised: the string was a well-formed expression over the file's own names
    assert not CANARY.exists(), f"code ran from {text!r}"


@pytest.mark.parametrize("payload", _payloads(CANARY))
def test_every_payload_in_values_and_on_the_command_line_is_refused(payload):
    with pytest.raises(ParamError) as e:
        derive("relu", features=2, values={"z": [payload, 1]})
    _one_line(e.value)
    try:
        derive("relu", features=2, values={"z": parse_array(f"[{payload}, 1]", "z")})
    except ParamError as err:
        _one_line(err)
    assert not CANARY.exists()


def test_a_known_payload_planted_in_each_field_does_not_run(documents, tmp_path):
    canary = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {canary}')"
    doc = documents["plain"]
    for path in _fields(doc):
        with pytest.raises(DataError, match="cannot read"):
            read(json.dumps(_set(doc, path, payload)))
    shared = [{"name": "cse_0", "expression": "z_1 + 1"}, {"name": "cse_1", "expression": payload}]
    with pytest.raises(DataError, match=r"subexpressions\[1\]"):
        read(json.dumps(_set(doc, ("subexpressions",), shared)))
    for name in ("z_1", "exp", "__import__('os')"):  # a subexpression shadows nothing
        with pytest.raises(DataError, match="new identifier"):
            read(json.dumps(_set(doc, ("subexpressions",), [{"name": name, "expression": "1"}])))
    assert not canary.exists()


def test_the_reader_against_sympy_on_what_the_writers_print():
    """The grammar gives what SymPy's own parser gives on the texts derivgrad writes
    (operator precedence, unary minus under a power, left-to-right division)."""
    x, y = sp.symbols("x y", real=True)
    names = {"x": x, "y": y}
    for text in ["x/y*2", "-x**2", "2**-1", "x - y - 2*(x + y)", "x**(-3/2)", "1/(x*y)",
                 "-3*x/4", "x**2**y", "(-x)**2", "1.5e-3*x", "exp(-x)/(exp(-x) + 1)",
                 "sqrt(x**2 + 1)", "log(1 + exp(x))", "Abs(x)*sign(y)", "tanh(x)**2",
                 "2*pi*E", "Max(x, y) - Min(x, y)", "erf(x/sqrt(2))"]:  # fmt: skip
        assert read_expr(text, names) == sp.sympify(text, locals=names), text


def test_limits_are_one_line_and_bounded():
    x = sp.Symbol("x")
    # a flat chain is read in a loop: no RecursionError at 200,000 factors
    assert read_expr("*".join(["x"] * 200_000), {"x": x}) == x**200_000
    assert read_expr("+".join(["x"] * 50_000), {"x": x}) == 50_000 * x
    for text in ["(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), "2**100000", "1e5000"]:
        with pytest.raises(DataError) as e:
            read_expr(text, {"x": x})
        _one_line(e.value)


def test_read_takes_a_path_a_file_or_the_text(tmp_path):
    d = derive("relu", features=2)
    text = render(d, "json")
    p = tmp_path / "relu.json"
    p.write_text(text)
    with open(p) as f:
        from_file = read(f)
    for back in (read(text), read(str(p)), read(p), from_file, read(json.loads(text))):
        assert (back["output"] == d.output_array).all()
    numeric = derive("relu", features=2, values={"z": ["1/3", -2], "upstream": [0.5, 1]})
    back = read(render(numeric, "json"))
    assert (back["values"]["z"] == numeric.values["z"]).all()
    assert (back["values"]["upstream"] == numeric.values["upstream"]).all()
    assert list(back["forward_values"]) == [sp.Rational(1, 3), 0]
    assert list(back["gradient_values"]["z"]) == [sp.Float(0.5), 0]
    with pytest.raises(DataError, match="not a file"):
        read(str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="not JSON"):
        read("{nope")


def _jac_entry(data):
    k = next(iter(data["jacobian"]["entries"]))
    return k, data["jacobian"]["entries"][k]


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.pop("symbols"), "'symbols' is missing"),
        (lambda d: d["output"].pop("shape"), "'shape' is missing"),
        (lambda d: _jac_entry(d)[1].__setitem__("shape", [16000, 16000]), "input shape"),
        (lambda d: d["inputs"]["z"].__setitem__("shape", [16000]), "do not have shape"),
        (lambda d: d["output"].__setitem__("shape", [4000, 4000]), "larger than"),
        (lambda d: d["output"].__setitem__("shape", [2, 1]), "do not have shape"),
        (lambda d: _jac_entry(d)[1]["nonzero"][0].__setitem__("index", [0, 0]), "minimum 1"),
        (lambda d: _jac_entry(d)[1]["nonzero"][0].__setitem__("index", [3, 1]), "outside"),
        (lambda d: _jac_entry(d)[1]["nonzero"][0].__setitem__("index", [1]), "outside"),
        (lambda d: d["symbols"].__setitem__("exp", d["symbols"].pop("z_1")), "identifier"),
        (
            lambda d: d["symbols"]["z_1"]["assumptions"].__setitem__("__class__", True),
            "assumption",
        ),
        (lambda d: d.__setitem__("version", 2), "version"),
        (lambda d: d["output"].__setitem__("expressions", [[["z_1"]]]), "do not have shape"),
    ],
)
def test_malformed_documents_are_refused_before_building(edit, words):
    data = json.loads(render(derive("relu", features=2), "json"))
    edit(data)
    with pytest.raises(DataError) as e:
        read(json.dumps(data))
    msg = _one_line(e.value)
    assert words in msg, msg


def test_deep_nesting_is_refused_not_a_recursion_error():
    deep = "[" * 100_000 + "]" * 100_000
    text = json.dumps(json.loads(render(derive("relu", features=2), "json")))
    with pytest.raises(DataError):
        read(text.replace('"expressions": [', f'"expressions": [{deep}, ', 1))


@settings(max_examples=30)
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12,
))  # fmt: skip
def test_the_schema_check_agrees_with_jsonschema(doc):
    jsonschema = pytest.importorskip("jsonschema")
    valid = jsonschema.Draft202012Validator(schema()).is_valid(doc)
    assert (violation(doc, schema()) is None) == valid


NAMES = st.one_of(
    st.sampled_from(
        ["x", "x_1", "x1", "delta", "alpha", "lambda_", "pi", "E", "exp", "log", "sqrt", "d",
         "dy", "upstream_in", "w_1_1", "s", "cse_0", "Relu", "r_0", "lo0_i", "y_1", "I", "N"]
    ),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True),
)  # fmt: skip


@settings(max_examples=25)
@given(names=st.lists(NAMES, min_size=3, max_size=3, unique=True), n=st.integers(1, 3))
def test_every_tensor_name_round_trips_and_stays_apart(names, n):
    a, b, c = names
    assume(not any(keyword.iskeyword(k) for k in names) and {"i", "y"}.isdisjoint(names))
    try:
        op = derivgrad.define(
            f"y[i] = {a}[i] * {b}[i, 0] + {c}[i]", **{a: (n,), b: (n, 2), c: (n,)}
        )
    except DefineError:
        return  # a name the notation itself refuses (said in one line, tested elsewhere)
    d = op.derive()
    back = read(render(d, "json"))
    for k, v in d.input_arrays.items():
        assert (back["inputs"][k] == v).all(), k
    assert (back["output"] == d.output_array).all()
    assert (back["upstream"] == d.upstream_array).all()
    for k in d.grad_names:
        assert (back["gradients"][k] == d.grad_array(k)).all(), k
        assert (back["jacobian"][k] == d.jacobian_array(k)).all(), k
    symbols = [s for arr in (*d.input_arrays.values(), d.upstream_array) for s in arr.reshape(-1)]
    latex = [tex(s) for s in symbols]
    assert len(set(latex)) == len(symbols), latex
    assert len({inline(t) for t in latex}) == len(symbols), [inline(t) for t in latex]


def test_named_collisions_of_the_issue():
    """x (2x2) and x_1 (2,) no longer share x_1_1; an input delta is not δ; an input
    upstream is refused in one line naming the alternative."""
    op = derivgrad.define("y[i] = x[i, 0] * x_1[i] + delta[i]", x=(2, 2), x_1=(2,), delta=(2,))
    d = op.derive()
    data = json.loads(render(d, "json"))
    assert len(data["symbols"]) == len(set(data["symbols"]))
    back = read(json.dumps(data))
    assert (back["inputs"]["delta"] == d.input_arrays["delta"]).all()
    assert not set(back["inputs"]["delta"].reshape(-1)) & set(back["upstream"].reshape(-1))
    with pytest.raises(DefineError, match="upstream_in"):
        derivgrad.define("y[i] = x[i] * upstream[i]", x=(2,), upstream=(2,))


def teardown_module():
    assert not CANARY.exists()
    os.rmdir(CANARY_DIR)
