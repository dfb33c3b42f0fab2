"""Reasoning family (commonsense / arithmetic): entrypoint sweeps on tiny causal LMs over data written here in
the LLM-Adapters layout, prompt masking, and batched generation equal to one row at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from propulsion import backbones
from propulsion.specs import ModelSpec, TaskSpec, UserError
from propulsion.tasks import metrics, reasoning
from tests.suite.helpers import REPO, records_under, run_cli

MATH_TRAIN = {"instruction": "tom has 3 apples and buys 4 more. how many apples does he have?", "input": "",
              "output": "3 plus 4 equals 7. the answer is 7", "answer": "7"}
# Test rows as the LLM-Adapters files have them: numeric answers in some files, strings or one-element lists
# (some versions of the repository) in others.
MATH_TEST = {"instruction": "she has 5 pens and gets 6 more. how many pens?", "input": "", "output": "",
             "answer": [11.0]}
AQUA_TEST = {"instruction": "what is 2 plus 2? Answer Choices: (A) 3 (B) 4 (C) 5 (D) 6 (E) 7", "input": "",
             "output": "", "answer": "B"}
BOOLQ = {"instruction": "Please answer the following question with true or false, question: is the sky blue?\n\n"
                        "Answer format: true/false", "input": "", "output": "the correct answer is true",
         "answer": "true"}
# 2 of the 8 training rows held out (the default 120 needs the real files)
FAST = ["trainer=quick", "trainer.max_steps=3", "logger=none", "task.options.generation.max_new_tokens=6",
        "task.options.val_set_size=2"]
GREEDY = ["task.options.generation.num_beams=1"]  # the sweep decodes greedily; the commonsense run keeps 4 beams


def write_layout(root: Path, train: str, train_row: dict, tests: dict[str, dict], n_test: int = 2) -> Path:
    """<root>/ft-training_set/<train>.json and <root>/dataset/<name>/test.json, JSON lists as in LLM-Adapters."""
    (root / "ft-training_set").mkdir(parents=True, exist_ok=True)
    (root / "ft-training_set" / f"{train}.json").write_text(json.dumps([train_row] * 8))
    for name, row in tests.items():
        (root / "dataset" / name).mkdir(parents=True, exist_ok=True)
        (root / "dataset" / name / "test.json").write_text(json.dumps([row] * n_test))
    return root


TABLE3_METHODS = ["adalora", "lora", "parallel", "prefix", "propulsion"]
# LoRA as LLM-Adapters ran it on the tiny models (hidden 32, intermediate 128 for BLOOM/GPT-J, 64 for tiny LLaMA,
# 2 layers), r=32: r x (in + out) per module. LLaMA q,k,v: 3 x 32 x (32+32); up, down: 2 x 32 x (32+64).
# BLOOM query_key_value: 32 x (32+96); dense_h_to_4h, dense_4h_to_h: 2 x 32 x (32+128). GPT-J q,k,v: 3 x 32 x 64;
# fc_in, fc_out: 2 x 32 x (32+128).
TINY_LORA = {"tiny-llama": 2 * (3 * 32 * 64 + 2 * 32 * 96), "tiny-bloom": 2 * (32 * 128 + 2 * 32 * 160),
             "tiny-gptj": 2 * (3 * 32 * 64 + 2 * 32 * 160)}


def test_table3_sweep_every_method_on_each_tiny_family(tmp_path):
    # experiments/table3_reasoning.yaml as written (dropout 0.1, weight decay, 5 vectors), on the three tiny LLM
    # families: every Table 3 method trains, selects on the held-out loss, generates and scores offline.
    data = write_layout(tmp_path / "data", "math_10k", MATH_TRAIN, {"AQuA": AQUA_TEST}, n_test=1)
    command = [sys.executable, "-m", "propulsion.run", "--config-dir", "experiments", "--config-name",
               "table3_reasoning", "model=tiny-llama,tiny-bloom,tiny-gptj", "task=arithmetic",
               f"task.data_dir={data}", *FAST, *GREEDY, "trainer.max_steps=2", "trainer.precision=no",
               "task.options.test_sets=[AQuA]", "task.options.generation.max_new_tokens=3", "save_adapter=false",
               f"output_root={tmp_path / 'runs'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = records_under(tmp_path / "runs")
    assert sorted((r["model"], r["method"]) for r in found) == [
        (model, method) for model in ("tiny-bloom", "tiny-gptj", "tiny-llama") for method in TABLE3_METHODS]
    for record in found:
        assert record["status"] == "completed", record.get("error")
        assert record["data"]["train_on_inputs"] is True  # LLM-Adapters' default
        assert record["data"]["selection"] == "lowest loss on 2 held-out training rows (split seed 42)"
        # The held-out rows are scored by their loss only (task.evaluation.during=loss), never generated on.
        (evaluation,) = record["evaluations"]
        assert evaluation["step"] == 2 and evaluation["metrics"] == {} and evaluation["loss"] > 0
        assert record["best"] == {"step": 2, "value": evaluation["loss"]}
        assert record["evaluation"]["during"] == "loss" and record["evaluation"]["selected_on"] == "loss"
        assert record["evaluation"]["final"]["split"] == "test" and record["evaluation"]["final"]["rows"] == {"AQuA": 1}
        lines = [json.loads(line) for line in (Path(record["run_dir"]) / "predictions.jsonl").read_text().splitlines()]
        assert [line["dataset"] for line in lines] == ["AQuA"]
        assert set(lines[0]) == {"dataset", "instruction", "generation", "extracted", "gold", "correct"}
        for line in lines:
            assert record["metrics"][f"{line['dataset']}/accuracy"] == 100.0 * line["correct"]
        if record["method"] == "lora":
            assert record["params"]["trainable"] == TINY_LORA[record["model"]]
            assert record["config"]["method"]["peft_config"] == {"r": 32, "lora_alpha": 64, "lora_dropout": 0.05}
        if record["method"] == "prefix":
            assert record["config"]["method"]["peft_config"]["num_virtual_tokens"] == 10


def test_commonsense_single_test_set(tmp_path):
    data = write_layout(tmp_path / "data", "commonsense_170k", BOOLQ, {"boolq": BOOLQ}, n_test=3)
    result = run_cli("model=tiny-llama", "task=commonsense", f"task.data_dir={data}", "task.options.test_sets=[boolq]",
                     "model.dropout=0.1", *FAST, f"output_root={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = records_under(tmp_path / "runs")
    assert record["status"] == "completed"
    assert record["model_config_overrides"] == {"attention_dropout": 0.1}  # the paper's LLM dropout, on LLaMA's key
    # No dev set: the loss curve is still recorded, up to the last of the 3 steps.
    assert [entry["step"] for entry in record["train_loss"]][-1] == 3
    assert set(record["metrics"]) == {"boolq/accuracy", "boolq/n"} and record["metrics"]["boolq/n"] == 3.0
    assert len((Path(record["run_dir"]) / "predictions.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("family, keys", [
    ("llama", {"attention_dropout": 0.1}),
    ("bloom", {"attention_dropout": 0.1, "hidden_dropout": 0.1}),
    ("gptj", {"resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1}),
    ("bart", {"dropout": 0.1, "attention_dropout": 0.1}),
    ("roberta", {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}),
])
def test_model_dropout_sets_each_familys_own_keys(family, keys):
    spec = ModelSpec(name=f"tiny-{family}", tiny=family, dropout=0.1)
    assert backbones.config_overrides(spec, {"num_labels": 3}) == keys | {"num_labels": 3}
    assert backbones.config_overrides(ModelSpec(name="x", tiny=family)) == {}  # null keeps the checkpoint's values


def test_model_dropout_reaches_the_built_modules():
    spec = ModelSpec(name="tiny-gptj", tiny="gptj", dropout=0.25)
    model = backbones.load_model(spec, "causal-lm", backbones.config_overrides(spec))
    rates = {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)}
    assert rates == {0.25}  # embedding, residual and attention dropout (tiny-gptj's own are 0.0)
    with pytest.raises(UserError, match=r"model.dropout must be a number in \[0, 1\) or null, got 1.5"):
        ModelSpec(name="tiny-gptj", tiny="gptj", dropout=1.5)


def _task(**changes) -> TaskSpec:
    fields = {"name": "arithmetic", "family": "reasoning", "source": "sample", "train_split": "math_10k",
              "eval_splits": {"gsm8k": "gsm8k", "AQuA": "AQuA"}, "max_length": 256}
    return TaskSpec(**(fields | changes))


def test_prompt_tokens_masked_exactly():
    tokenizer = backbones.load_tokenizer(ModelSpec(name="t", tiny="llama"), padding_side="left")
    prompt_ids = tokenizer(reasoning.train_prompt(MATH_TRAIN["instruction"]))["input_ids"][:-1]  # <s> prompt, no </s>
    encoded = reasoning.encode_example(tokenizer, MATH_TRAIN, cutoff=256, train_on_inputs=False)
    n = len(prompt_ids)
    assert encoded["input_ids"][:n] == prompt_ids
    assert encoded["labels"][:n] == [-100] * n
    assert encoded["labels"][n:] == encoded["input_ids"][n:] and -100 not in encoded["labels"][n:]
    assert encoded["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(encoded["labels"][n:], skip_special_tokens=True) == "3 plus 4 equals 7. the answer is 7"
    unmasked = reasoning.encode_example(tokenizer, MATH_TRAIN, cutoff=256, train_on_inputs=True)
    assert unmasked["labels"] == unmasked["input_ids"]
    cut = reasoning.encode_example(tokenizer, MATH_TRAIN, cutoff=n + 3, train_on_inputs=False)
    assert len(cut["input_ids"]) == n + 3 and cut["labels"][n:] == cut["input_ids"][n:]
    raw = reasoning.load_raw(_task())["math_10k"]  # the batched map gives the same rows
    features = reasoning.tokenize(_task(options={"train_on_inputs": False}), raw, tokenizer, train=True)
    for row, feature in zip(raw.select(range(4)), features.select(range(4)), strict=True):
        assert feature == reasoning.encode_example(tokenizer, row, cutoff=256, train_on_inputs=False)
    default = reasoning.tokenize(_task(), raw.select(range(4)), tokenizer, train=True)  # train_on_inputs: True
    assert all(row["labels"] == row["input_ids"] and -100 not in row["labels"] for row in default)


def test_training_batches_pad_right_generation_batches_left():
    tokenizer = backbones.load_tokenizer(ModelSpec(name="t", tiny="llama"), padding_side="left")
    collate = reasoning.collator(tokenizer)
    train = collate([{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
                     {"input_ids": [5], "attention_mask": [1], "labels": [5]}])
    assert train["input_ids"][1].tolist() == [5, tokenizer.pad_token_id, tokenizer.pad_token_id]
    assert train["labels"][1].tolist() == [5, -100, -100] and train["attention_mask"][1].tolist() == [1, 0, 0]
    evaluation = collate([{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "gold": "7"},
                          {"input_ids": [5], "attention_mask": [1], "gold": "1"}])
    assert set(evaluation) == {"input_ids", "attention_mask"}
    assert evaluation["input_ids"][1].tolist() == [tokenizer.pad_token_id, tokenizer.pad_token_id, 5]
    assert evaluation["attention_mask"][1].tolist() == [0, 0, 1]


@pytest.mark.parametrize("family", ["llama", "bloom", "gptj"])
def test_batched_generation_equals_one_at_a_time(family):
    task = _task()
    spec = ModelSpec(name="t", tiny=family)
    tokenizer = backbones.load_tokenizer(spec, padding_side=reasoning.PADDING_SIDE)
    model = backbones.load_model(spec, reasoning.MODEL_KIND)
    raw = reasoning.load_raw(task)
    rows = datasets.concatenate_datasets([raw["gsm8k"], raw["AQuA"]])  # prompts of different lengths
    data = reasoning.tokenize(task, rows, tokenizer, train=False)
    assert len({len(ids) for ids in data["input_ids"]}) > 1
    accelerator = Accelerator(cpu=True)
    collate = reasoning.collator(tokenizer)
    model.train()  # evaluation must switch dropout off itself
    generation = {"num_beams": 1, "max_new_tokens": 8}
    batched = reasoning.generate(model, DataLoader(data, batch_size=16, collate_fn=collate), tokenizer, accelerator,
                                 generation)
    assert not model.training
    single = reasoning.generate(model, DataLoader(data, batch_size=1, collate_fn=collate), tokenizer, accelerator,
                                generation)
    assert batched == single and any(batched)


def test_sample_set_schema_and_answers():
    task = _task()
    splits = reasoning.sample_splits(task)
    assert set(splits) == {"math_10k", "gsm8k", "AQuA"}
    for rows in splits.values():
        assert all(set(row) == {"instruction", "input", "output", "answer"} for row in rows)
    for row in splits["gsm8k"]:  # the sample's own outputs score as correct
        assert metrics.reasoning_accuracy("gsm8k", [row["output"]], [row["answer"]])["accuracy"] == 100.0
    common = reasoning.sample_splits(_task(name="commonsense", train_split="commonsense_170k",
                                           eval_splits={"boolq": "boolq", "piqa": "piqa"}))
    for name in ("boolq", "piqa"):
        for row in common[name]:
            assert metrics.extract_answer(name, row["output"]) == row["answer"]


def test_bad_test_set_and_missing_file(tmp_path):
    from propulsion.specs import UserError

    with pytest.raises(UserError, match="unknown task.options.test_sets"):
        reasoning.selected_test_sets(_task(options={"test_sets": ["boolq"]}))
    with pytest.raises(UserError, match="fetch_llm_adapters"):
        reasoning.load_raw(_task(data_dir=str(tmp_path)))
    assert reasoning.selected_test_sets(_task(options={"test_sets": "AQuA"})) == {"AQuA": "AQuA"}
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(UserError, match="holds no rows"):
        reasoning.load_raw(_task(source="files", data_files={"math_10k": str(empty)}))
    with pytest.raises(UserError, match="unknown task.options"):
        reasoning.selected_test_sets(_task(options={"beams": 4}))


def test_files_layout_data_files_override_and_answer_forms(tmp_path):
    data = write_layout(tmp_path, "math_10k", MATH_TRAIN, {"gsm8k": MATH_TEST, "AQuA": AQUA_TEST})
    other = tmp_path / "aqua.json"  # data_files names one file directly, JSON lines allowed
    other.write_text(json.dumps(AQUA_TEST | {"answer": "C"}) + "\n")
    raw = reasoning.load_raw(_task(source="files", data_dir=str(data), data_files={"AQuA": str(other)}))
    assert set(raw) == {"math_10k", "gsm8k", "AQuA"} and len(raw["math_10k"]) == 8
    assert raw["gsm8k"]["answer"] == ["11.0", "11.0"] and raw["AQuA"]["answer"] == ["C"]
    assert metrics.reasoning_accuracy("gsm8k", ["so 5 plus 6 is 11"], raw["gsm8k"]["answer"][:1])["accuracy"] == 100.0
    only = reasoning.load_raw(_task(data_dir=str(data), options={"test_sets": ["gsm8k"]}))
    assert set(only) == {"math_10k", "gsm8k"}


def test_fetch_script_writes_the_layout(tmp_path):
    from scripts.fetch_llm_adapters import main

    source = write_layout(tmp_path / "mirror", "math_10k", MATH_TRAIN, {"gsm8k": MATH_TEST})
    out = tmp_path / "out"
    assert main(["--out", str(out), "--only", "math_10k", "gsm8k", "--base-url", source.as_uri()]) == 0
    assert json.loads((out / "ft-training_set" / "math_10k.json").read_text())[0] == MATH_TRAIN
    assert (out / "dataset" / "gsm8k" / "test.json").exists()
    assert main(["--out", str(out), "--only", "AQuA", "--base-url", source.as_uri()]) == 1  # missing: reported


@pytest.mark.parametrize("name", ["fsdp"])
def test_accelerate_configs_parse(name):
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    path = Path(__file__).resolve().parent.parent / "scripts" / "accelerate" / f"{name}.yaml"
    config = ClusterConfig(**yaml.safe_load(path.read_text()))
    assert config.mixed_precision == "bf16" and config.distributed_type.value == name.upper()


def test_two_processes_generate_every_test_row_once_in_order(tmp_path):
    # What `accelerate launch` does on several GPUs, on CPU (gloo): generation is split across processes, padded
    # to one length, gathered without the duplicates the last uneven batch adds, and written once, in file order.
    data = write_layout(tmp_path / "data", "math_10k", MATH_TRAIN, {})
    for name in ("gsm8k", "SVAMP"):
        rows = [MATH_TEST | {"instruction": f"{name} question {i}: she has {i} pens and gets 2 more. how many pens?",
                             "answer": str(i + 2)} for i in range(5)]
        (data / "dataset" / name).mkdir(parents=True)
        (data / "dataset" / name / "test.json").write_text(json.dumps(rows))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "propulsion.run",
               "model=tiny-llama", "task=arithmetic", f"task.data_dir={data}", "task.options.test_sets=[gsm8k,SVAMP]",
               "trainer.eval_batch_size=2", *FAST, *GREEDY, f"output_root={tmp_path / 'runs'}"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = records_under(tmp_path / "runs")
    assert record["status"] == "completed" and record["train"]["num_processes"] == 2
    assert record["metrics"]["gsm8k/n"] == 5.0 and record["metrics"]["SVAMP/n"] == 5.0
    lines = [json.loads(line) for line in (Path(record["run_dir"]) / "predictions.jsonl").read_text().splitlines()]
    for name in ("gsm8k", "SVAMP"):
        ordered = [line["instruction"] for line in lines if line["dataset"] == name]
        assert ordered == [f"{name} question {i}: she has {i} pens and gets 2 more. how many pens?" for i in range(5)]
