"""The paper's adapter baselines no kept library offers, as a library: Adapterˢ (Houlsby), the parallel adapter
(He et al. / LLM-Adapters), the MAM adapter, and ProPETL's adapter / LoRA / prefix. No Hydra, no task code."""

from propulsion.baselines.config import METHODS, BaselineConfig
from propulsion.baselines.tuner import accounting, apply_baseline, load_baseline, save_baseline, trainable_tensors

__all__ = ["METHODS", "BaselineConfig", "accounting", "apply_baseline", "load_baseline", "save_baseline",
           "trainable_tensors"]
