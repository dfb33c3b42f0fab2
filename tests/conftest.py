"""Shared test setup. The hub is unreachable in CI: offline mode makes its absence fail fast (the same
loading code runs; it just does not retry the network for a minute)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
