"""Where the suite's shipped files are: the Hydra configs, the paper sweeps, the paper's own numbers.

In a source checkout they are the repository's ``conf/``, ``experiments/`` and ``results/paper/``; a ``pip
install .`` ships the same folders inside the package (``propulsion/conf``, ``propulsion/experiments``,
``propulsion/paper``: pyproject maps them, nothing is moved), found through importlib.resources. The packaged
copy is used only where it exists, so a checkout always reads its own (edited) files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
# repository folder -> the package folder it is installed as (see [tool.setuptools] in pyproject.toml)
SHIPPED = {"conf": "conf", "experiments": "experiments", "results/paper": "paper"}


def path(name: str) -> Path:
    """The folder ``name`` (a key of SHIPPED) of this installation."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped folder {name!r}; valid: {', '.join(SHIPPED)}")
    packaged = Path(str(resources.files("propulsion").joinpath(SHIPPED[name])))
    return packaged if packaged.is_dir() else CHECKOUT / name


CONF_DIR = path("conf")
EXPERIMENTS_DIR = path("experiments")
PAPER_DIR = path("results/paper")
