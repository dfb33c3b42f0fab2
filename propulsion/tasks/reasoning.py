"""Commonsense and arithmetic reasoning (paper Table 3), in the LLM-Adapters setup.

A causal LM is fine-tuned on one training set (commonsense_170k or math_10k) and evaluated by greedy or beam
generation on several test sets (boolq ... openbookqa; MultiArith ... mawps). Every file is a JSON list of
``{instruction, input, output, answer}`` rows, laid out as in the LLM-Adapters repository::

    <data_dir>/ft-training_set/<train>.json        e.g. ft-training_set/math_10k.json
    <data_dir>/dataset/<name>/test.json            e.g. dataset/gsm8k/test.json

``task.data_files`` (split name -> path or URL) overrides single files; with neither, the files are read
from ``options.base_url`` (the repository's raw files; ``scripts/fetch_llm_adapters.py`` downloads them
into the layout above). ``task.train_split`` names the training set, ``task.eval_splits`` every test set
(alias -> dataset name) and ``options.test_sets`` the ones a run evaluates (null: all).

Training rows are the Alpaca prompt followed by the output and EOS, cut at ``task.max_length`` (the
reference cutoff, 256) and padded on the right; the loss ignores the prompt unless
``options.train_on_inputs``. Evaluation rows are the prompt alone, padded on the left with an attention
mask, generated in batches with the model in eval mode (both faults of the reference scripts avoided), and
scored by :func:`propulsion.metrics.reasoning_accuracy` (x100). The final evaluation writes one line per
example to ``<run dir>/predictions.jsonl``.
"""

from __future__ import annotations

import json
import random
import urllib.request
from pathlib import Path
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from propulsion import metrics
from propulsion.specs import TaskSpec, UserError
from propulsion.tasks import data as task_data

MODEL_KIND = "causal-lm"
PADDING_SIDE = "left"  # generation continues every prompt from the same column
PREDICTIONS = "predictions.jsonl"
# Columns of evaluation rows that are not model inputs: read by evaluate, dropped by the collator.
EVAL_COLUMNS = ("dataset", "instruction", "gold")
OPTION_KEYS = ("test_sets", "train_on_inputs", "aqua_strict", "generation", "base_url")
LLM_ADAPTERS_URL = "https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/main"

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
PROMPT_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                     "{instruction}\n\n### Input:\n{input}\n\n### Response:\n")


def _options(task: TaskSpec) -> dict[str, Any]:
    unknown = sorted(set(task.options) - set(OPTION_KEYS))
    if unknown:
        raise UserError(f"unknown task.options {unknown} for reasoning; valid: {', '.join(OPTION_KEYS)}")
    defaults = {"test_sets": None, "train_on_inputs": False, "aqua_strict": False, "generation": {},
                "base_url": LLM_ADAPTERS_URL}
    return defaults | {k: v for k, v in task.options.items() if v is not None or k == "test_sets"}


def selected_test_sets(task: TaskSpec) -> dict[str, str]:
    """alias -> dataset name of the test sets this run evaluates (``options.test_sets``, default all)."""
    chosen = _options(task)["test_sets"]
    if chosen is None:
        return dict(task.eval_splits)
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    unknown = [name for name in chosen if name not in task.eval_splits]
    if unknown or not chosen:
        raise UserError(f"unknown task.options.test_sets {unknown or chosen}; valid: {', '.join(task.eval_splits)}")
    return {alias: task.eval_splits[alias] for alias in chosen}


def model_overrides(task: TaskSpec) -> dict[str, Any]:
    return {}


def prompt(instruction: str, input_text: str | None = None) -> str:
    """The Alpaca prompt (LLM-Adapters' generate_prompt), up to and including "### Response:\\n"."""
    if input_text:
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return PROMPT.format(instruction=instruction)


# --------------------------------------------------------------------------------------------------------
# Raw data
# --------------------------------------------------------------------------------------------------------


def _location(task: TaskSpec, split: str, train: bool) -> str:
    if task.data_files and split in task.data_files:
        return str(task.data_files[split])
    relative = f"ft-training_set/{split}.json" if train else f"dataset/{split}/test.json"
    if task.data_dir:
        return str(Path(task.data_dir) / relative)
    return f"{_options(task)['base_url'].rstrip('/')}/{relative}"


def read_rows(location: str, required: tuple[str, ...] = ("instruction", "answer")) -> list[dict[str, Any]]:
    """A JSON list (or JSON lines) of {instruction, input, output, answer} rows from a path or URL; every row must
    have the ``required`` keys (training: instruction, output; testing: instruction, answer)."""
    try:
        if "://" in location:
            with urllib.request.urlopen(location, timeout=60) as response:
                text = response.read().decode("utf-8")
        else:
            text = Path(location).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(
            f"could not read {location!r} ({error}); run `python scripts/fetch_llm_adapters.py --out DIR` where "
            f"GitHub is reachable and pass task.data_dir=DIR (or task.data_files={{split: path}})"
        ) from None
    text = text.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    if not rows:
        raise UserError(f"{location} holds no rows")
    for row in rows:
        missing = [key for key in required if key not in row]
        if missing:
            raise UserError(f"{location}: a row lacks {missing}; expected instruction, input, output, answer")
    return rows


def _answer(value: Any) -> Any:
    """Some versions of the files wrap the answer in a one-element list (["12"], [2304.0]): unwrap it."""
    if isinstance(value, list):
        return value[0] if value else ""
    return value


def _as_dataset(rows: list[dict[str, Any]], name: str) -> datasets.Dataset:
    # Answers are numbers in some files, strings or lists in others: one string column for every file.
    columns = {key: [str(row.get(key) or "") for row in rows] for key in ("instruction", "input", "output")}
    columns["answer"] = [str(_answer(row.get("answer", ""))) for row in rows]
    columns["dataset"] = [name] * len(rows)  # scored by name after batching and shuffling
    return datasets.Dataset.from_dict(columns)


def load_raw(task: TaskSpec, sample_splits=None, seed: int = 0) -> datasets.DatasetDict:
    """The training set and the selected test sets, keyed by their names (the sample set: built here)."""
    wanted = {task.train_split: True} | {name: False for name in selected_test_sets(task).values()}
    if task.source == "sample":
        rows = (sample_splits or globals()["sample_splits"])(task, seed=0)
        return datasets.DatasetDict({name: _as_dataset(rows[name], name) for name in wanted})
    required = {True: ("instruction", "output"), False: ("instruction", "answer")}
    return datasets.DatasetDict({name: _as_dataset(read_rows(_location(task, name, train), required[train]), name)
                                 for name, train in wanted.items()})


def apply_protocol(task: TaskSpec, raw: datasets.DatasetDict, protocol: str, seed: int) -> task_data.Splits:
    """Train on the training set, report every selected test set once at the end: the LLM-Adapters setup has
    no model selection, so both protocols are the same here (recorded)."""
    test = {alias: raw[name] for alias, name in selected_test_sets(task).items()}
    splits = task_data.Splits(train=raw[task.train_split], dev={}, test=test,
                              notes={"selection": "none (fixed schedule, final model)", "report": "test sets",
                                     "train_on_inputs": bool(_options(task)["train_on_inputs"])})
    return task_data._cap(splits, task, seed)


# --------------------------------------------------------------------------------------------------------
# Sample data in the LLM-Adapters schema
# --------------------------------------------------------------------------------------------------------

_THINGS = "apples oranges balls books pens coins".split()
_NAMES = "he she they".split()


def _commonsense_row(name: str, rng: random.Random) -> dict[str, Any]:
    thing = rng.choice(_THINGS)
    if name == "boolq":
        answer = rng.choice(["true", "false"])
        question = f"is the sky {'blue' if answer == 'true' else 'green'}"
        instruction = (f"Please answer the following question with true or false, question: {question}?\n\n"
                       f"Answer format: true/false")
    else:
        labels = {"piqa": "solution", "hellaswag": "ending", "winogrande": "option"}.get(name, "answer")
        count = {"piqa": 2, "winogrande": 2, "hellaswag": 4}.get(name, 5 if name == "openbookqa" else 4)
        index = rng.randrange(1, count + 1)
        choices = " ".join(f"{labels}{i}: {'good' if i == index else 'bad'} {thing}" for i in range(1, count + 1))
        answer = f"{labels}{index}"
        instruction = (f"Please choose the correct {labels} to the question: which is good?\n\n{choices}\n\n"
                       f"Answer format: {'/'.join(f'{labels}{i}' for i in range(1, count + 1))}")
    return {"instruction": instruction, "input": "", "output": f"the correct answer is {answer}", "answer": answer}


def _math_row(name: str, rng: random.Random) -> dict[str, Any]:
    a, b = rng.randrange(1, 50), rng.randrange(1, 50)
    who, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    question = f"{who} has {a} {thing} and buys {b} more. how many {thing} does {who} have?"
    if name == "AQuA":
        letters = "ABCDE"
        index = rng.randrange(5)
        options = " ".join(f"({letter}) {a + b + i - index}" for i, letter in enumerate(letters))
        return {"instruction": f"{question} Answer Choices: {options}", "input": "",
                "output": f"{a} plus {b} equals {a + b}. the answer is {letters[index]}", "answer": letters[index]}
    return {"instruction": question, "input": "", "output": f"{a} plus {b} equals {a + b}. the answer is {a + b}",
            "answer": str(a + b)}


def sample_splits(task: TaskSpec, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """The training set (rows of every test set's format) and 8 rows per test set, in the LLM-Adapters schema."""
    rng = random.Random(seed)
    names = list(task.eval_splits.values())
    make = _math_row if set(names) <= set(metrics.MATH_DATASETS) else _commonsense_row
    splits = {task.train_split: [make(names[i % len(names)], rng) for i in range(64)]}
    for name in names:
        splits[name] = [make(name, rng) for _ in range(8)]
    return splits


# --------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text with the BOS the tokenizer puts first (LLaMA, the tiny tokenizer), never an EOS."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and bos != tokenizer.eos_token_id and tokenizer("a")["input_ids"][:1] == [bos]:
        encoded = [[bos, *ids] for ids in encoded]
    return encoded


def _training_features(ids: list[int], prompt_length: int, cutoff: int, eos: int,
                       train_on_inputs: bool) -> dict[str, list[int]]:
    ids = ids[:cutoff]
    if len(ids) < cutoff and (not ids or ids[-1] != eos):  # EOS only where it fits, as the reference
        ids.append(eos)
    labels = list(ids)
    if not train_on_inputs:
        masked = min(prompt_length, len(ids))
        labels[:masked] = [-100] * masked
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def encode_example(tokenizer, row: dict[str, Any], cutoff: int, train_on_inputs: bool) -> dict[str, list[int]]:
    """Prompt + output + EOS, cut at ``cutoff`` tokens; labels are the ids with -100 on the prompt tokens unless
    ``train_on_inputs``."""
    user = prompt(row["instruction"], row.get("input"))
    full, prompt_ids = _encode(tokenizer, [user + row["output"], user])
    return _training_features(full, len(prompt_ids), cutoff, tokenizer.eos_token_id, train_on_inputs)


def tokenize(task: TaskSpec, dataset, tokenizer, train: bool = True):
    """Training rows: input_ids / attention_mask / labels. Evaluation rows: the prompt's input_ids /
    attention_mask, and the EVAL_COLUMNS evaluate() reads."""
    train_on_inputs = bool(_options(task)["train_on_inputs"])

    def encode(batch: dict[str, list]) -> dict[str, list]:
        prompts = [prompt(i, x) for i, x in zip(batch["instruction"], batch["input"], strict=True)]
        prompt_ids = _encode(tokenizer, prompts)
        if not train:
            return {"input_ids": prompt_ids, "attention_mask": [[1] * len(ids) for ids in prompt_ids],
                    "dataset": batch["dataset"], "instruction": batch["instruction"], "gold": batch["answer"]}
        full = _encode(tokenizer, [p + output for p, output in zip(prompts, batch["output"], strict=True)])
        rows = [_training_features(ids, len(head), task.max_length, tokenizer.eos_token_id, train_on_inputs)
                for ids, head in zip(full, prompt_ids, strict=True)]
        return {key: [row[key] for row in rows] for key in ("input_ids", "attention_mask", "labels")}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenize {task.name}")


class _Collator:
    """Training batches are padded on the right (labels with -100); generation batches (no labels) on the
    left, so that every prompt ends in the last column. Drops EVAL_COLUMNS."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        left = "labels" not in features[0]
        pads = {"input_ids": self.pad_id, "attention_mask": 0, "labels": -100}
        batch: dict[str, list[list[int]]] = {key: [] for key in pads if key in features[0]}
        for feature in features:
            for key in batch:
                fill = [pads[key]] * (length - len(feature[key]))
                batch[key].append(fill + list(feature[key]) if left else list(feature[key]) + fill)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


def collator(tokenizer):
    return _Collator(tokenizer.pad_token_id)


# --------------------------------------------------------------------------------------------------------
# Generation and scoring
# --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(model, dataloader, tokenizer, accelerator, generation: dict[str, Any]) -> list[str]:
    """The decoded continuations (prompt removed) of every row of the loader, in dataset order."""
    generator = accelerator.unwrap_model(model)  # a PeftModel / plain model: both have .generate
    generator.eval()
    settings = {"do_sample": False, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                "synced_gpus": accelerator.num_processes > 1} | generation
    texts: list[str] = []
    for batch in tqdm(dataloader, desc="generate", disable=not accelerator.is_local_main_process, leave=False):
        output = generator.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **settings)
        output = output[:, batch["input_ids"].shape[1]:]  # left padding: the new tokens start here for every row
        output = accelerator.pad_across_processes(output, dim=1, pad_index=tokenizer.pad_token_id)
        output = accelerator.gather_for_metrics(output)
        texts.extend(text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True))
    return texts


def evaluate(model, dataloader, task: TaskSpec, tokenizer, accelerator, output_dir=None) -> dict[str, float]:
    """Accuracy (x100) of one test set. Keys are ``<dataset>/accuracy`` when the run evaluates one test set;
    with several, the suite prefixes the plain ``accuracy`` with each test set's alias."""
    options = _options(task)
    generations = generate(model, dataloader, tokenizer, accelerator, dict(options["generation"]))
    rows = dataloader.dataset.select_columns(list(EVAL_COLUMNS)).to_list()
    if len(rows) != len(generations):
        raise RuntimeError(f"{len(generations)} generations for {len(rows)} rows: order lost in gathering")
    name = rows[0]["dataset"]
    golds = [row["gold"] for row in rows]
    strict = bool(options["aqua_strict"])
    scores = metrics.reasoning_accuracy(name, generations, golds, aqua_strict=strict)
    if output_dir is not None:
        lines = [{"dataset": name, "instruction": row["instruction"], "generation": text,
                  "extracted": metrics.extract_answer(name, text, aqua_strict=strict), "gold": row["gold"],
                  "correct": metrics.reasoning_accuracy(name, [text], [row["gold"]], aqua_strict=strict)["accuracy"]
                  == 100.0}
                 for row, text in zip(rows, generations, strict=True)]
        _write_predictions(Path(output_dir) / PREDICTIONS, name, lines)
    if len(selected_test_sets(task)) == 1:
        return {f"{name}/{key}": value for key, value in scores.items()}
    return scores


def _write_predictions(path: Path, name: str, lines: list[dict[str, Any]]) -> None:
    """Replace this test set's lines in the run's predictions file, keeping the other test sets' lines."""
    kept = []
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["dataset"] != name]
    path.write_text("".join(f"{line}\n" for line in kept + [json.dumps(line) for line in lines]))
