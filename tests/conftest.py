"""Shared test setup. The hub is unreachable in CI: offline mode makes its absence fail fast (the same
loading code runs; it just does not retry the network for a minute)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist each worker is one process of several: torch's threads (and those of the runs a test starts,
# through the environment) share the cores instead of each worker taking all of them.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
