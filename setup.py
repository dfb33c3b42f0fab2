"""Package layout only (metadata and dependencies: pyproject.toml).

The suite's configs, sweeps and the paper's numbers live at the repository root (conf/, experiments/,
results/paper/) and are shipped inside the package as propulsion/conf, propulsion/experiments and
propulsion/paper by mapping, not by moving them (propulsion/resources.py finds either). A setup.py because
pyproject's static fields cannot combine package discovery (new subpackages are found by themselves) with
such mappings.
"""

from setuptools import find_packages, setup

SHIPPED = {"propulsion.conf": "conf", "propulsion.experiments": "experiments", "propulsion.paper": "results/paper"}

setup(
    packages=find_packages(include=["propulsion", "propulsion.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    # config groups are folders of YAML (conf/model/*.yaml, conf/hydra/help/*.yaml): every level is listed
    package_data={"propulsion.conf": ["*.yaml", "*/*.yaml", "*/*/*.yaml"], "propulsion.experiments": ["*.yaml"],
                  "propulsion.paper": ["*.csv", "*.md"]},
)
