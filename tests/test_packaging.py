"""The installable suite (issue 14, item 4): declared dependencies are what the code imports; shipped files.

The real `pip install .` into a fresh venv, run from outside the checkout, is scripts/check_install.sh; its test
is skipped by default because it takes minutes (install, one tiny training run, the tables):
PROPULSION_SLOW=1 pytest tests/test_packaging.py runs it.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from propulsion import resources

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the suite supports 3.10, whose stdlib lacks it)

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# import name -> distribution, where the two differ and the installed metadata may not say
DISTRIBUTIONS = {"yaml": "pyyaml", "sklearn": "scikit-learn", "hydra": "hydra-core", "rouge_score": "rouge-score",
                 "huggingface_hub": "huggingface-hub", "tensorboardX": "tensorboardX"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_distributions() -> set[str]:
    """Every third-party distribution a module of the package imports, at the top or inside a function."""
    names: set[str] = set()
    for path in (REPO / "propulsion").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    third_party = names - set(sys.stdlib_module_names) - {"propulsion"}
    packages = metadata.packages_distributions()
    return {DISTRIBUTIONS.get(n) or packages.get(n, [n])[0].lower().replace("_", "-") for n in third_party}


def test_dependencies_are_the_imported_distributions():
    core = {requirement_name(r) for r in PROJECT["dependencies"]}
    extras = {requirement_name(r) for group in PROJECT["optional-dependencies"].values() for r in group}
    imported = imported_distributions()
    assert imported - core - extras == set(), "imported but not declared"
    assert core - imported == set(), "declared but never imported"
    # wandb is core (the default logger); TensorBoard is imported by accelerate's tracker, not by us
    assert imported - core == set(), imported - core


def test_console_scripts_point_at_callables():
    import importlib

    scripts = PROJECT["scripts"]
    assert set(scripts) == {"propulsion-run", "propulsion-tables", "propulsion-compare"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_every_shipped_file_is_in_the_package_data():
    """setup.py's package_data patterns cover every YAML of conf/ and experiments/ and the paper's CSVs (a
    config group nested deeper than the patterns would silently be left out of an install)."""
    source = (REPO / "setup.py").read_text()
    shipped = ast.literal_eval(re.search(r"SHIPPED = (\{.*?\})", source).group(1))
    patterns = ast.literal_eval(re.search(r"package_data=(\{.*?\}),\n", source, re.S).group(1))
    assert set(shipped.values()) == set(resources.SHIPPED)
    for package, folder in shipped.items():
        files = [p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix in (".yaml", ".csv", ".md")]
        assert files, folder
        for path in files:
            relative = path.relative_to(REPO / folder)
            assert any(relative.match(pattern) and len(relative.parts) == len(Path(pattern).parts)
                       for pattern in patterns[package]), f"{folder}/{relative} is not shipped"


def test_a_checkout_reads_its_own_folders():
    assert resources.CONF_DIR == REPO / "conf" and resources.PAPER_DIR == REPO / "results" / "paper"
    with pytest.raises(ValueError, match=r"unknown shipped folder 'data'; valid: conf, experiments, results/paper"):
        resources.path("data")


def test_unknown_experiment_is_one_line():
    from propulsion.compose import expand_experiment

    argv, problem = expand_experiment(["--experiment", "fig11_pooling", "seed=1"])
    assert problem is None and argv == ["--config-dir", str(resources.EXPERIMENTS_DIR), "--config-name",
                                        "fig11_pooling", "seed=1"]
    _, problem = expand_experiment(["--experiment=nope"])
    assert problem.startswith("error: unknown experiment 'nope'; valid choices: ") and "table1_roberta_base" in problem


@pytest.mark.skipif(not os.environ.get("PROPULSION_SLOW"), reason="minutes: a real install and a training run; "
                                                                 "PROPULSION_SLOW=1 to run")
def test_pip_install_in_a_fresh_venv_runs_from_anywhere(tmp_path):
    result = subprocess.run(["bash", str(REPO / "scripts" / "check_install.sh"), str(tmp_path / "install")],
                            env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "install check passed" in result.stdout
