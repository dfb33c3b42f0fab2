"""Rules of the house, read from the source (ast): no module outside the method registry (propulsion/adapt/)
branches on a method kind. A module that needs to know something of a method asks its entry
(``adapt.method_entry(kind).trains_whole_model``, ``.takes_degree``, ...)."""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import propulsion

PACKAGE = Path(propulsion.__file__).resolve().parent
ROOT = PACKAGE.parent
REGISTRY = PACKAGE / "adapt"
EXCLUDED = (REGISTRY,)
SCANNED = (PACKAGE, ROOT / "scripts")


def _names_a_kind(node: ast.AST) -> bool:
    """``x.kind``, ``kind``, ``x["kind"]`` or ``x.get("kind")``: an expression that reads a method kind."""
    if isinstance(node, ast.Attribute):
        return node.attr == "kind"
    if isinstance(node, ast.Name):
        return node.id == "kind"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "kind"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "kind"
    return False


# The method kinds the registry knows (tests/adapt/test_registry.py checks this is all of them): a `kind` compared
# with one of these is a method-kind branch; `device.kind == "gpu"` is not.
METHOD_KINDS = {"propulsion", "peft", "bitfit", "full", "head_only", "baseline"}


def _strings(node: ast.AST) -> bool:
    """A method kind's name, or a tuple/list/set holding one: what a method kind would be compared with."""
    if isinstance(node, ast.Constant):
        return node.value in METHOD_KINDS
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(isinstance(e, ast.Constant) and e.value in METHOD_KINDS for e in node.elts)
    return False


def kind_branches(source: str) -> list[int]:
    """Line numbers of comparisons of a method kind with a string (==, !=, in, not in), either side."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for (left, right), op in zip(pairwise(operands), node.ops, strict=True):
            if not isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn):
                continue
            if (_names_a_kind(left) and _strings(right)) or (_names_a_kind(right) and _strings(left)):
                lines.append(node.lineno)
    return lines


def modules() -> list[Path]:
    found = []
    for folder in SCANNED:
        for path in sorted(folder.rglob("*.py")):
            if not any(path.is_relative_to(excluded) for excluded in EXCLUDED):
                found.append(path)
    return found


def test_the_check_flags_a_hand_made_offending_module():
    offending = '''
def run_dir(spec, config, kind):
    if spec.method.kind == "propulsion":         # 3
        pass
    if config["method"].get("kind") != "full":   # 5
        pass
    if kind in ("peft", "bitfit"):               # 7
        pass
    if "baseline" == spec.kind:                  # 9
        pass
    if config["method"]["kind"] not in ["full"]: # 11
        pass
    if spec.model_kind == "seq2seq" or spec.degree is not None or spec.kind == other:  # not a method kind vs str
        pass
    if device.kind == "gpu":                     # a device's kind, not a method's
        pass
'''
    assert kind_branches(offending) == [3, 5, 7, 9, 11]


def test_no_module_outside_the_registry_branches_on_a_method_kind():
    scanned = modules()
    assert PACKAGE / "training" / "one_run.py" in scanned and not any(p.is_relative_to(REGISTRY) for p in scanned)
    found = {str(path.relative_to(ROOT)): lines for path in scanned if (lines := kind_branches(path.read_text()))}
    assert found == {}, f"ask the method registry (propulsion.adapt.method_entry) instead: {found}"


def test_the_check_knows_every_registered_kind():
    from propulsion import adapt

    assert set(adapt.registered_kinds()) == METHOD_KINDS
