"""Table 3 as LLM-Adapters ran it: their prompt templates byte for byte, train_on_inputs, the decode cut, the
baselines' settings per architecture, and every bad input refused before a run folder exists."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from propulsion import backbones
from propulsion.specs import ModelSpec, TaskSpec, UserError
from propulsion.tasks import reasoning
from tests.suite.helpers import REPO

# The templates as written in AGI-Edgerunners/LLM-Adapters @816657208a (whitespace matters; see reasoning.py).
# finetune.py generate_prompt, without and with an input: two spaces after "request." / one; the blank lines
# inside hold 16 spaces.
THEIR_TRAIN = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.  \n"
               "\n"
               "                ### Instruction:\n"
               "                INSTR\n"
               "                \n"
               "                ### Response:\n"
               "                OUT")
THEIR_TRAIN_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request. \n"
                     "\n"
                     "                ### Instruction:\n"
                     "                INSTR\n"
                     "                \n"
                     "                ### Input:\n"
                     "                INP\n"
                     "                \n"
                     "                ### Response:\n"
                     "                OUT")
# evaluate.py / commonsense_evaluate.py generate_prompt: one space after "request." / none; empty blank lines.
THEIR_EVAL = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
              "request. \n"
              "\n"
              "                ### Instruction:\n"
              "                INSTR\n"
              "\n"
              "                ### Response:\n"
              "                ")
THEIR_EVAL_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                    "context. Write a response that appropriately completes the request.\n"
                    "\n"
                    "                ### Instruction:\n"
                    "                INSTR\n"
                    "\n"
                    "                ### Input:\n"
                    "                INP\n"
                    "\n"
                    "                ### Response:\n"
                    "                ")


def test_templates_are_theirs_byte_for_byte():
    assert reasoning.train_prompt("INSTR", "", "OUT") == THEIR_TRAIN
    assert reasoning.train_prompt("INSTR", None, "OUT") == THEIR_TRAIN
    assert reasoning.train_prompt("INSTR", "INP", "OUT") == THEIR_TRAIN_INPUT
    assert reasoning.eval_prompt("INSTR") == THEIR_EVAL
    assert reasoning.eval_prompt("INSTR", "INP") == THEIR_EVAL_INPUT
    # The masked part (train_on_inputs false) is their generate_prompt with an empty output.
    assert reasoning.train_prompt("INSTR") == THEIR_TRAIN[: -len("OUT")]


def test_decode_cut_as_theirs():
    # Theirs: decode prompt + continuation, split("### Response:")[1].strip(); ours sees the continuation only.
    prompt = reasoning.eval_prompt("what is 2 plus 2?")
    cases = {
        " the answer is 4\n\n                ### Response:\n the answer is 5": "the answer is 4",
        "the answer is 4 ### Response: 5 ### Response: 6": "the answer is 4",
        "  no mark at all \n": "no mark at all",
        "### Response: 7": "",
    }
    for continuation, expected in cases.items():
        assert reasoning.cut_response(continuation) == expected
        assert (prompt + continuation).split("### Response:")[1].strip() == expected


def _task(**changes) -> TaskSpec:
    fields = {"name": "arithmetic", "family": "reasoning", "source": "sample", "train_split": "math_10k",
              "eval_splits": {"gsm8k": "gsm8k", "AQuA": "AQuA"}, "max_length": 256}
    return TaskSpec(**(fields | changes))


def test_train_on_inputs_default_true_and_false_masks_their_user_prompt():
    tokenizer = backbones.load_tokenizer(ModelSpec(name="t", tiny="llama"), padding_side="left")
    raw = reasoning.load_raw(_task())["math_10k"].select(range(3))
    default = reasoning.tokenize(_task(), raw, tokenizer, train=True)
    for row in default:  # the loss covers the prompt too
        assert row["labels"] == row["input_ids"] and row["input_ids"][-1] == tokenizer.eos_token_id
    masked = reasoning.tokenize(_task(options={"train_on_inputs": False}), raw, tokenizer, train=True)
    for source, row, full in zip(raw, masked, default, strict=True):
        assert row["input_ids"] == full["input_ids"]  # the same tokens; only the labels differ
        user = tokenizer(reasoning.train_prompt(source["instruction"]))["input_ids"][:-1]  # <s> ..., no </s>
        n = len(user)
        assert row["input_ids"][:n] == user and row["labels"][:n] == [-100] * n
        assert row["labels"][n:] == row["input_ids"][n:] and -100 not in row["labels"][n:]


def test_held_out_rows_are_scored_by_loss_and_test_rows_by_generation():
    task = _task(options={"val_set_size": 5})
    splits = reasoning.apply_protocol(task, reasoning.load_raw(task), "paper", seed=3)
    assert len(splits.dev["validation"]) == 5 and len(splits.train) == 192 - 5
    assert splits.notes["selection"] == "lowest loss on 5 held-out training rows (split seed 42)"
    again = reasoning.apply_protocol(task, reasoning.load_raw(task), "paper", seed=4)  # their fixed split seed
    assert again.dev["validation"]["instruction"] == splits.dev["validation"]["instruction"]
    tokenizer = backbones.load_tokenizer(ModelSpec(name="t", tiny="gptj"), padding_side="left")
    dev = reasoning.tokenize(task, splits.dev["validation"], tokenizer, train=False)
    assert set(dev.column_names) == {"input_ids", "attention_mask", "labels"}
    test = reasoning.tokenize(task, splits.test["gsm8k"], tokenizer, train=False)
    assert "labels" not in test.column_names and set(reasoning.EVAL_COLUMNS) <= set(test.column_names)
    assert reasoning.EVALUATE_DURING == ("loss",)  # the held-out rows are scored by their loss, never generated on
    none = reasoning.apply_protocol(_task(options={"val_set_size": 0}), reasoning.load_raw(task), "paper", seed=3)
    assert none.dev == {} and len(none.train) == 192


def test_task_config_carries_llm_adapters_trainer_defaults():
    from propulsion.compose import compose_spec

    spec, config = compose_spec(["task=arithmetic", "model=tiny-llama"])
    assert (spec.trainer.warmup_steps, spec.trainer.scheduler, spec.trainer.eval_every) == (100, "linear", 200)
    assert spec.task.options["train_on_inputs"] is True and spec.task.options["val_set_size"] == 120
    trainer = spec.trainer.with_task_defaults(spec.task)
    assert (trainer.lr, trainer.batch_size, trainer.epochs) == (3e-4, 16, 3)
    glue, _ = compose_spec(["task=sst2"])  # other tasks keep the authors' notebook schedule
    assert (glue.trainer.warmup_steps, glue.trainer.scheduler, glue.trainer.eval_every) == (500, "cosine", 100)
    assert glue.method.targets == "all"
    lora, _ = compose_spec(["task=sst2", "method=lora"])
    assert lora.method.targets == ["query", "value"] and lora.method.peft_config["r"] == 8
    user, _ = compose_spec(["task=arithmetic", "method=lora", "method.peft_config.r=4", "trainer.warmup_steps=7"])
    assert user.method.peft_config["r"] == 4 and user.trainer.warmup_steps == 7  # the command line still wins


# LoRA r=32 on LLM-Adapters' modules, by hand: r x (in + out) per module, x layers.
#   llama-7b  (hidden 4096, MLP 11008, 32 layers): q,k,v 3 x 32 x 8192; up, down 2 x 32 x 15104
#   llama-13b (hidden 5120, MLP 13824, 40 layers): q,k,v 3 x 32 x 10240; up, down 2 x 32 x 18944
#   bloomz-7b1 (hidden 4096, 30 layers): query_key_value 32 x (4096 + 12288); h_to_4h, 4h_to_h 2 x 32 x 20480
#   gpt-j-6b  (hidden 4096, 28 layers): q,k,v 3 x 32 x 8192; fc_in, fc_out 2 x 32 x 20480
LLM_LORA = {
    "llama-7b": 32 * (3 * 32 * 8192 + 2 * 32 * 15104),
    "llama-13b": 40 * (3 * 32 * 10240 + 2 * 32 * 18944),
    "bloomz-7b1": 30 * (32 * 16384 + 2 * 32 * 20480),
    "gpt-j-6b": 28 * (3 * 32 * 8192 + 2 * 32 * 20480),
}


def test_every_table3_job_composes_and_lora_is_theirs_on_each_llm():
    from hydra import compose, initialize_config_dir

    from propulsion import adapt
    from propulsion.compose import CONF_DIR, parameter_count, to_spec

    experiments = REPO / "experiments"
    params = OmegaConf.load(experiments / "table3_reasoning.yaml").hydra.sweeper.params
    grid = list(itertools.product(*(str(value).split(",") for value in params.values())))
    assert len(grid) == 4 * 2 * 5  # models x tasks x methods (prefix, adalora, lora, parallel, propulsion)
    with initialize_config_dir(config_dir=str(experiments), version_base="1.3"):
        for job in grid:
            job_overrides = [f"{key}={value}" for key, value in zip(params, job, strict=True)]
            overrides = [f"hydra.searchpath=[file://{CONF_DIR}]", *job_overrides]
            spec, _ = to_spec(compose(config_name="table3_reasoning", overrides=overrides))
            adapt.validate(spec.method)
            assert spec.trainer.warmup_steps == 100 and spec.task.options["val_set_size"] == 120
            if spec.method.name in ("lora", "adalora"):
                assert spec.method.targets["bloom"] == ["query_key_value", "dense_4h_to_h", "dense_h_to_4h"]
    for model, expected in LLM_LORA.items():  # `model=bloomz-7b1 method=lora` resolves (meta device, no weights)
        assert parameter_count(model, "lora", "arithmetic")["trainable"] == expected
    assert LLM_LORA["llama-7b"] == 56_098_816  # 0.83% of LLaMA-7B with the adapters (6.79B)


# ----------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, no run folder (the entrypoint, as a user runs it)
# ----------------------------------------------------------------------------------------------------------

GOOD_TRAIN = [{"instruction": "she has 2 pens and buys 3 more. how many?", "input": "",
               "output": "2 plus 3 equals 5. the answer is 5", "answer": "5"}] * 4
GOOD_TEST = [{"instruction": "he has 1 pen and buys 1 more. how many?", "input": "", "output": "", "answer": "2"}]


def _layout(root: Path, train_text: str | None = None, test_text: str | None = None) -> Path:
    (root / "ft-training_set").mkdir(parents=True)
    (root / "ft-training_set" / "math_10k.json").write_text(train_text or json.dumps(GOOD_TRAIN))
    (root / "dataset" / "gsm8k").mkdir(parents=True)
    (root / "dataset" / "gsm8k" / "test.json").write_text(test_text or json.dumps(GOOD_TEST))
    return root


BAD_INPUTS = {  # name -> (training file, test file, extra overrides, the line's expected start)
    "no_such_target": (None, None, ["method=lora", "method.targets=[no_such_layer]"],
                       "error: method.targets: target pattern(s) ['no_such_layer'] match no Linear/Embedding module"),
    "unknown_test_set": (None, None, ["task.options.test_sets=[nosuch]"],
                         "error: unknown task.options.test_sets ['nosuch']; valid: MultiArith, gsm8k"),
    "object_not_list": (json.dumps(GOOD_TRAIN[0], indent=2), None, [], "error: {train} holds one JSON object"),
    "truncated_list": (json.dumps(GOOD_TRAIN)[:-30], None, [], "error: {train} is not valid JSON"),
    "list_of_scalars": (json.dumps([1, 2, 3]), None, [], "error: {train}: row 0 is int '1', not an object"),
    "gold_not_a_number": (None, json.dumps([GOOD_TEST[0] | {"answer": "five"}]), [],
                          "error: {test}: row 0 has gold answer 'five', which is not a number (gsm8k)"),
}


def test_each_bad_input_is_one_line_exit_2_and_no_run_folder(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    started = {}
    for name, (train, test, extra, _) in BAD_INPUTS.items():  # started together: the imports dominate
        data = _layout(tmp_path / name / "data", train, test)
        command = [sys.executable, "-m", "propulsion.run", "model=tiny-llama", "task=arithmetic",
                   f"task.data_dir={data}", "task.options.val_set_size=1", "logger=none",
                   f"output_root={tmp_path / name / 'runs'}", *extra]
        if not any(override.startswith("task.options.test_sets=") for override in extra):
            command.append("task.options.test_sets=[gsm8k]")
        started[name] = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
    for name, process in started.items():
        _, stderr = process.communicate(timeout=600)
        data = tmp_path / name / "data"
        expected = BAD_INPUTS[name][3].format(train=data / "ft-training_set" / "math_10k.json",
                                              test=data / "dataset" / "gsm8k" / "test.json")
        lines = stderr.strip().splitlines()
        assert process.returncode == 2, (name, stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(expected), (name, lines)
        assert not (tmp_path / name / "runs").exists(), name


def test_validation_functions_directly(tmp_path):
    data = _layout(tmp_path)
    reasoning.validate(_task(source="files", data_dir=str(data), eval_splits={"gsm8k": "gsm8k"},
                             options={"val_set_size": 1}))
    with pytest.raises(UserError, match=r"val_set_size=4 leaves no training rows \(4 in math_10k\)"):
        reasoning.validate(_task(source="files", data_dir=str(data), eval_splits={"gsm8k": "gsm8k"},
                                 options={"val_set_size": 4}))
    with pytest.raises(UserError, match="val_set_size must be an integer >= 0"):
        reasoning.validate(_task(options={"val_set_size": -1}))
    aqua = tmp_path / "aqua.json"
    aqua.write_text(json.dumps([GOOD_TEST[0] | {"answer": "F"}]))
    with pytest.raises(UserError, match="gold answer 'F', which is not a letter A-E"):
        reasoning.check_golds("AQuA", str(aqua), json.loads(aqua.read_text()))
    with pytest.raises(UserError, match="gold answer 'yes', which is not a label word"):
        reasoning.check_golds("boolq", "boolq.json", [{"answer": "yes"}])
    reasoning.check_golds("boolq", "boolq.json", [{"answer": "false"}])
    reasoning.check_golds("gsm8k", "gsm8k.json", [{"answer": [1200.0]}, {"answer": "1,200"}])


def test_tables_compare_records_with_the_settings_composed_for_their_task():
    # conf/method and conf/trainer read task values through oc.select: the tables resolve them the same way, so a
    # Table 3 LoRA run (r=32, 100 warm-up steps) is on the table's setting and a GLUE LoRA run (r=8, 500) on its own.
    from propulsion.compose import compose_spec
    from propulsion.reports import selection
    from propulsion.reports.declarations import TABLES

    table1, table3 = (next(t.protocol for t in TABLES if t.name == name) for name in ("table1", "table3"))

    _, reasoning_lora = compose_spec(["task=arithmetic", "method=lora", "model=llama-7b", "trainer.weight_decay=0.01",
                                      "trainer.precision=bf16"])
    assert selection.deviations(reasoning_lora, table3) == []
    assert selection.protocol_deviations(reasoning_lora, table3) == []
    _, glue_lora = compose_spec(["task=rte", "method=lora"])
    assert selection.deviations(glue_lora, table1) == [] and selection.protocol_deviations(glue_lora, table1) == []
    _, changed = compose_spec(["task=arithmetic", "method=lora", "method.peft_config.r=8", "trainer.warmup_steps=500"])
    assert selection.deviations(changed, table3) == ["peft_config"]
    assert "trainer.warmup_steps" in selection.protocol_deviations(changed, table3)
