"""The package's import graph, read statically (ast): no cycle inside propulsion/, only run.py knows Hydra, and the
tables and figures never reach up to the entrypoint or the training stack."""

from __future__ import annotations

import ast
from pathlib import Path

import propulsion

PACKAGE = Path(propulsion.__file__).resolve().parent


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Every import anywhere in a module (function-level ones too) to another module of the package."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def reaches(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")  # a function-level import counts too
    (package / "b.py").write_text("from pkg.c import x\n")
    (package / "c.py").write_text("from . import a\nx = 1\n")
    (package / "d.py").write_text("import pkg.a\n")
    assert cycles(graph(package)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_cycle_in_the_package():
    assert cycles(graph()) == []


def test_reports_do_not_reach_the_entrypoint_the_training_stack_or_the_method_registry():
    edges = graph()
    assert edges["propulsion.reports.engine"] >= {"propulsion.reports.selection", "propulsion.reports.declarations"}
    assert "propulsion.reports.selection" in edges["propulsion.reports.figures"]
    assert "propulsion.reports.selection" in edges["propulsion.reports.study"]
    forbidden = {"propulsion.run", "propulsion.adapt", "propulsion.compose"} | {
        m for m in edges if m.startswith("propulsion.training")}
    for module in (m for m in edges if m.startswith("propulsion.reports") and m not in ENTRYPOINTS):
        assert not reaches(edges, module) & forbidden, module
    # The command line alone reaches compose.py, for the meta-device #TPs of rows no record fills (and through it
    # the method registry, which imports training.hooks), never the Hydra entrypoint or the training loop.
    for module in ENTRYPOINTS:
        assert not reaches(edges, module) & {"propulsion.run", "propulsion.training.one_run",
                                             "propulsion.training.loop"}, module


ENTRYPOINTS = ("propulsion.reports.cli", "propulsion.reports.__main__")


def test_only_run_py_imports_hydra():
    users = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n.split(".")[0] in ("hydra", "omegaconf") for n in names):
                users.add(module_name(path))
    assert users == {"propulsion.run", "propulsion.compose"}


# The house's floors, lowest first: a module imports its own floor and the floors below, never one above.
# The package's __init__ re-exports the library (method/), whose PropulsionConfig declares the specs' fields.
# training.hooks is the one interface adapt hands the loop (AdaLoRA's per-step hook), so it sits below both.
FLOORS = (
    ("propulsion.version", "propulsion.resources"),
    ("propulsion", "propulsion.method"),  # the library: imports nothing of the suite
    ("propulsion.specs", "propulsion.tiny", "propulsion.records", "propulsion.training.hooks"),
    ("propulsion.tasks", "propulsion.baselines", "propulsion.backbones", "propulsion.hub_access",
     "propulsion.gguf_weights"),
    ("propulsion.adapt",),
    ("propulsion.training",),
    ("propulsion.compose",),
    ("propulsion.run", "propulsion.reports", "propulsion.studies"),
)


def floor_of(module: str, floors=FLOORS) -> int:
    """The floor of the longest prefix that names the module or a package above it."""
    matches = [(len(prefix), level) for level, names in enumerate(floors) for prefix in names
               if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS")
    return max(matches)[1]


def upward_imports(edges: dict[str, set[str]], floors=FLOORS) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                  if floor_of(b, floors) > floor_of(a, floors))


def test_the_floor_check_finds_an_import_going_up(tmp_path):
    package = tmp_path / "pkg"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("def f():\n    from pkg import high\n")  # a function-level import counts
    (package / "high.py").write_text("from pkg.low import a\n")
    floors = (("pkg",), ("pkg.low",), ("pkg.high",))
    assert upward_imports(graph(package), floors) == ["pkg.low.a -> pkg.high"]


def test_no_import_goes_up_a_floor():
    assert upward_imports(graph()) == []


def test_the_package_root_has_at_most_twelve_modules():
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(modules) <= 12, modules
