"""Propulsion (Kowsher et al., arXiv 2409.10927): steer a frozen transformer with z**k.

The library lives in :mod:`propulsion.method`; the reproduction suite around it (tasks, training,
records, tables) in the other modules. Only ``propulsion.run`` knows about Hydra.
"""

from propulsion.method import (
    PropulsionConfig,
    PropulsionModel,
    count_parameters,
    get_propulsion_model,
)

__all__ = ["PropulsionConfig", "PropulsionModel", "count_parameters", "get_propulsion_model"]
__version__ = "0.1.0"
