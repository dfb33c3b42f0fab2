"""Training one run: the loop (loop.py), checkpoints, the evaluation schedule, the choice of the reported
evaluation, hooks, tracking, and one_run.py, which takes a run's specs to its one record."""
