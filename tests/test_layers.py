"""The package's layers: every import, inside functions too, goes down the layer order, and no import circle exists.

The layer order (top to bottom; a module may import its own layer and the layers below, never above)::

    6 entry        emukg (the package's lazy facade), emukg.__main__, emukg.cli, emukg.commands.* (the reference
                   mode, ``emukg.commands.legacy``, included: nothing but the CLI and codes/run.py imports it)
    5 workflows    api, search (hpo), paper, reporting, exports, prediction, bench, pykeen (the PyKEEN bridge)
    4 runs         training (the Trainer and its step), run_folder, parallel
    3 config       config (the settings, validated against the registries of the components below)
    2 components   objectives, negatives, emu, scoring, optim, evaluation, schedule, tracking, nbfnet (its step)
    1 foundations  models, kernels, data, memory, nbfnet.model (NBFNet's network, registered among the models)
    0 leaves       errors, spellings, resolver, version, io_utils, folder_lock

The graph is read from the source with :mod:`ast`: ``import a.b``, ``from a import b`` (an edge to ``a`` and, when
it is a module, to ``a.b``; so ``from . import x`` inside the package is an edge to the package's facade, which
sits on top) and relative imports, at any depth of the file (functions, ``TYPE_CHECKING`` blocks, ``try``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PKG = "emukg"

LAYERS = [  # bottom to top
    ["emukg.errors", "emukg.spellings", "emukg.resolver", "emukg.version", "emukg.io_utils", "emukg.folder_lock"],
    ["emukg.models", "emukg.kernels", "emukg.data", "emukg.memory", "emukg.nbfnet.model"],
    ["emukg.objectives", "emukg.negatives", "emukg.emu", "emukg.scoring", "emukg.optim", "emukg.evaluation",
     "emukg.schedule", "emukg.tracking", "emukg.nbfnet"],
    ["emukg.config"],
    ["emukg.training", "emukg.run_folder", "emukg.parallel", "emukg.multirun"],
    ["emukg.api", "emukg.search", "emukg.paper", "emukg.reporting", "emukg.exports", "emukg.prediction", "emukg.bench",
     "emukg.pykeen"],
    ["emukg", "emukg.__main__", "emukg.cli", "emukg.commands"],
]
NAMES = ["leaves", "foundations", "components", "config", "runs", "workflows", "entry"]
REFERENCE_MODE = "emukg.commands.legacy"


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted((SRC / PKG).rglob("*.py")):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports_of(name: str, path: Path, known) -> set[str]:
    """The emukg modules that ``path`` (module ``name``) imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, f, mods) for m, f in mods.items()}


def layer_of(module: str) -> int:
    best, level = -1, None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    if level is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py (and docs/internals.md)")
    return level


def circles(E: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(E[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(E):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def test_every_module_has_a_layer():
    for m in modules():
        layer_of(m)


def test_no_import_circle():
    assert circles(graph()) == []


def test_every_import_goes_down_the_layers():
    upward = [f"{m} ({NAMES[layer_of(m)]}) imports {t} ({NAMES[layer_of(t)]})"
              for m, targets in graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert upward == []


def test_the_reference_mode_is_imported_only_from_the_command_line():
    importers = sorted(m for m, targets in graph().items() if REFERENCE_MODE in targets)
    assert importers == []  # the CLI finds its sub-commands by name (importlib); codes/run.py is outside the package
    code = (REPO / "codes" / "run.py").read_text(encoding="utf-8")
    assert f"from {REFERENCE_MODE} import run_legacy" in code


@pytest.mark.parametrize("leaf", ["emukg.spellings", "emukg.version"])
def test_leaves_import_nothing_of_emukg(leaf):
    assert graph()[leaf] == set()


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The reader finds an import hidden in a function and resolves ``from .. import`` (a check that can fail)."""
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import a\n")
    known = {"p": pkg / "__init__.py", "p.a": pkg / "a.py", "p.sub": pkg / "sub" / "__init__.py", "p.sub.b": pkg / "sub" / "b.py"}
    E = {m: imports_of(m, f, known) for m, f in known.items()}
    assert E["p.a"] == {"p.sub", "p.sub.b"} and E["p.sub.b"] == {"p", "p.a"}
    assert circles(E) == [["p.a", "p.sub.b"]]
