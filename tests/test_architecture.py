"""The invariants of ARCHITECTURE.md, checked from the source and from fresh interpreters:
no import circles (imports inside functions count too), layers that do not know about each
other stay apart, nothing outside derivgrad/ops names an op, and the install name
``derivgrad.kernels`` neither shadows nor is shadowed by the package index's ``kernels``."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import derivgrad
from derivgrad.registry import OPS

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for derivgrad/ and kernels/ (as derivgrad.kernels)."""
    out = {}
    for top, dotted in ((ROOT / "derivgrad", "derivgrad"), (ROOT / "kernels", "derivgrad.kernels")):
        for path in top.rglob("*.py"):
            parts = list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([dotted, *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every derivgrad module ``name`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from pkg import sub" imports the submodule when there is one
            targets = [
                f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names
            ]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is_package_of(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def test_no_import_circles():
    # a package importing its own submodules (re-exports) is not a circle; anything else is
    graph = {a: {b for b in deps if not _is_package_of(a, b)} for a, deps in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle = stack[stack.index(m) :] + [m]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("derivgrad.kernels", ["derivgrad"]),  # the low level knows nothing above it
        (
            "derivgrad.symbolic",
            [
                "derivgrad.ops",
                "derivgrad.registry",
                "derivgrad.documents.render",
                "derivgrad.documents.document",
            ],
        ),
        (
            "derivgrad.ops",
            ["derivgrad.documents.render", "derivgrad.registry", "derivgrad.documents.worked"],
        ),
        (
            "derivgrad.documents.document",
            ["derivgrad.documents.render", "derivgrad.registry", "derivgrad.ops"],
        ),
        # a network of one's own trains on kernels; documents and derivations stay out
        (
            "derivgrad.nn",
            [
                "derivgrad.documents.render",
                "derivgrad.documents.document",
                "derivgrad.registry",
                "derivgrad.symbolic",
                "derivgrad.formats",
                "derivgrad.netdoc",
            ],
        ),
        # training runs on kernels: no SymPy (the symbolic engine), no documents
        (
            "derivgrad.training",
            [
                "derivgrad.symbolic",
                "derivgrad.documents",
                "derivgrad.formats",
                "derivgrad.registry",
                "derivgrad.checks",
            ],
        ),
        # the documents and the checks read derivations; they never train
        (
            "derivgrad.documents",
            ["derivgrad.training", "derivgrad.nn", "derivgrad.bench", "derivgrad.netdoc"],
        ),
        ("derivgrad.formats", ["derivgrad.training", "derivgrad.nn", "derivgrad.ops"]),
        ("derivgrad.checks", ["derivgrad.training", "derivgrad.nn", "derivgrad.documents"]),
    ],
)
def test_layers_stay_apart(layer, forbidden):
    inside = lambda m: m == layer or m.startswith(layer + ".")
    for name, deps in GRAPH.items():
        if not inside(name):
            continue
        for dep in deps:
            bad = [
                f for f in forbidden if (dep == f or dep.startswith(f + ".")) and not inside(dep)
            ]
            assert not bad, f"{name} imports {dep}: {layer} must not import {bad[0]}"


OP_AGNOSTIC = [
    "derivgrad/documents/render.py",
    "derivgrad/registry.py",
    "derivgrad/cli.py",
    "derivgrad/checks/properties.py",
    "derivgrad/checks/strategies.py",
    "derivgrad/documents/worked.py",
    "derivgrad/documents/document.py",
    "derivgrad/documents/instance.py",
    "derivgrad/documents/numeric_steps.py",
    "derivgrad/api.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "derivgrad" / "formats").glob("*.py")),
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "derivgrad" / "commands").glob("*.py")),
    # a network's document asks each layer for its op (Module.face), never names one
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "derivgrad" / "netdoc").glob("*.py")),
]


@pytest.mark.parametrize("path", OP_AGNOSTIC)
def test_no_op_names_outside_the_ops(path):
    source = ROOT / path
    if not source.exists():
        pytest.skip(f"{path} is not in this tree")
    strings = {
        n.value
        for n in ast.walk(ast.parse(source.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    named = sorted(op for op in OPS if op in strings)
    assert not named, f"{path} names op(s) {named}: ask the Op protocol instead"


@pytest.mark.parametrize("path", OP_AGNOSTIC)
def test_no_proof_methods_outside_the_proofs(path):
    """A proof method carries its own sentence: the renderer and the formats print
    ``d.proof.sentence`` and never switch on a method's name."""
    from derivgrad.symbolic.proofs import Proof

    source = ROOT / path
    if not source.exists():
        pytest.skip(f"{path} is not in this tree")
    strings = {
        n.value
        for n in ast.walk(ast.parse(source.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    methods = {cls.name for cls in Proof.__subclasses__()}
    assert methods >= {"expand", "rational", "radical"}
    named = sorted(methods & strings)
    assert not named, f"{path} names proof method(s) {named}: print d.proof.sentence instead"


def _fresh(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_importing_the_kernels_or_the_package_does_not_load_sympy(tmp_path):
    r = _fresh(
        "import sys, derivgrad, derivgrad.kernels; "
        "print(sorted(m for m in sys.modules if m == 'sympy' or m.startswith('derivgrad.')))",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    loaded = eval(r.stdout)
    assert "sympy" not in loaded
    assert all(m.startswith("derivgrad.kernels") for m in loaded), loaded


def test_training_does_not_load_sympy_or_the_documents(tmp_path):
    """A training run (and ``predict``) imports the kernels, the network and the data, never
    the symbolic engine: a run's start-up does not pay for SymPy."""
    modules = sorted(n for n in MODULES if n.startswith("derivgrad.training."))
    assert "derivgrad.training.train" in modules
    r = _fresh(
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'sympy' or m.startswith("
        "('derivgrad.documents', 'derivgrad.formats', 'derivgrad.symbolic'))))",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert eval(r.stdout) == []


def test_the_top_level_holds_few_modules():
    """derivgrad/ reads as a map: subsystems are packages (ops, notation, symbolic, documents,
    formats, checks, training, nn, bench, commands), and few modules stand alone."""
    modules = sorted(p.name for p in (ROOT / "derivgrad").glob("*.py"))
    assert len(modules) <= 12, modules


def test_derivgrad_kernels_is_the_one_way_in(tmp_path):
    spec = importlib.util.find_spec("derivgrad.kernels")
    assert spec is not None and spec.origin is not None
    ours = Path(spec.origin).resolve().parent
    r = _fresh(
        "import importlib.util; s = importlib.util.find_spec('kernels'); "
        "print(s.origin if s else None)",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    found = r.stdout.strip()
    # either no top-level "kernels" at all, or the package index's, never ours
    assert found == "None" or Path(found).resolve().parent != ours


def test_works_side_by_side_with_the_index_kernels_package(tmp_path):
    """CI installs the index's ``kernels`` (compute kernels for ML models) next to derivgrad."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        distribution("kernels")
    except PackageNotFoundError:
        pytest.skip("the package index's 'kernels' is not installed here (.ci/run installs it)")
    r = _fresh(
        "import numpy as np, kernels, derivgrad.kernels as K; "
        "assert kernels.__name__ == 'kernels' and hasattr(kernels, 'LayerRepository'); "
        "y = K.conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))); print(y.sum())",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == 16.0  # four windows of four ones


def test_version_is_in_one_place():
    from importlib.metadata import version

    assert derivgrad.__version__ == version("derivgrad")


def test_every_package_is_installed():
    """A non-editable ``pip install .`` (what CI and users run) ships only the packages that
    pyproject.toml lists: every folder with an ``__init__.py`` must be there."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    present = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert present <= listed, f"packages missing from pyproject.toml: {sorted(present - listed)}"


def _unannotated() -> list[str]:
    """Public functions and methods (of public classes, in public modules) missing a hint."""
    missing = []
    for name, path in MODULES.items():
        if any(part.startswith("_") for part in name.split(".")):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            members = [node]
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                members = [n for n in node.body if isinstance(n, ast.FunctionDef)]
            for f in members:
                if not isinstance(f, ast.FunctionDef):
                    continue
                if f.name.startswith("_") and f.name not in ("__init__", "__call__"):
                    continue
                args = [a for a in f.args.args + f.args.kwonlyargs if a.arg not in ("self", "cls")]
                if any(a.annotation is None for a in args) or (
                    f.returns is None and f.name != "__init__"
                ):
                    missing.append(f"{path.relative_to(ROOT)}:{f.lineno} {f.name}")
    return missing


def test_every_public_function_is_annotated():
    missing = _unannotated()
    assert not missing, f"{len(missing)} public functions without type hints: {missing[:10]}"


def _exported_unannotated(module_name: str) -> list[str]:
    """Names in ``module_name.__all__`` (re-exports from private modules included) whose
    function, or whose class's public methods, lack a hint for an argument or the result."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    missing = []

    def check(where: str, f: object) -> None:
        f = inspect.unwrap(getattr(f, "py_func", f))  # a Numba dispatcher: its Python function
        if not inspect.isfunction(f):
            return
        sig = inspect.signature(f)
        args = [p for n, p in sig.parameters.items() if n not in ("self", "cls")]
        unhinted = [p.name for p in args if p.annotation is inspect.Parameter.empty]
        if unhinted or (
            sig.return_annotation is inspect.Signature.empty and f.__name__ != "__init__"
        ):
            missing.append(f"{where} ({', '.join(unhinted) or 'result'})")

    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") or attr in ("__init__", "__call__"):
                    check(f"{module_name}.{name}.{attr}", member)
        else:
            check(f"{module_name}.{name}", obj)
    return missing


@pytest.mark.parametrize("module_name", ["derivgrad", "derivgrad.kernels"])
def test_every_exported_name_is_annotated(module_name):
    missing = _exported_unannotated(module_name)
    assert not missing, f"exported without type hints: {missing}"
