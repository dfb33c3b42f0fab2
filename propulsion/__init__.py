"""Propulsion (Kowsher et al., arXiv 2409.10927): steer a frozen transformer with z**k.

The library lives in :mod:`propulsion.method`; the reproduction suite around it (tasks, training,
records, tables) in the other modules. Only ``propulsion.run`` and ``propulsion.compose`` know about Hydra.
"""

__all__ = ["PropulsionConfig", "PropulsionModel", "count_parameters", "get_propulsion_model"]
from propulsion.version import __version__ as __version__  # noqa: E402  (re-exported)


def __getattr__(name: str):
    # Imported lazily so that light modules (records, reports) don't pull in torch/transformers.
    if name in __all__:
        from propulsion import method

        return getattr(method, name)
    raise AttributeError(f"module 'propulsion' has no attribute {name!r}")
