"""The one base of every module that wraps another (a Propulsion layer, the Propulsion model, the baselines'
adapter layers): attributes the wrapper lacks are the wrapped module's, so code that inspects the wrapper
(``weight``, ``in_features``, ``config``, ``generate``, ...) sees the module it replaced."""

from __future__ import annotations

from torch import nn


class Wrapper(nn.Module):
    """Subclasses keep the wrapped module as the attribute named by ``WRAPPED``."""

    WRAPPED = "base_layer"

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == self.WRAPPED:  # not set (yet, or while unpickling): no endless lookup
                raise
            return getattr(getattr(self, self.WRAPPED), name)
