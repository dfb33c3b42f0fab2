"""Commonsense and arithmetic reasoning (paper Table 3), in the LLM-Adapters setup.

A causal LM is fine-tuned on one training set (commonsense_170k or math_10k) and evaluated by greedy or beam
generation on several test sets (boolq ... openbookqa; MultiArith ... mawps). Every file is a JSON list of
``{instruction, input, output, answer}`` rows, laid out as in the LLM-Adapters repository::

    <data_dir>/ft-training_set/<train>.json        e.g. ft-training_set/math_10k.json
    <data_dir>/dataset/<name>/test.json            e.g. dataset/gsm8k/test.json

``task.data_files`` (split name -> path or URL) overrides single files; with neither, the files are read
from ``options.base_url`` (the repository's raw files; ``scripts/fetch_llm_adapters.py`` downloads them
into the layout above). ``options.pinned=true`` makes ``task.data_dir`` a local mirror of the pinned commit: every
file is read in place and refused unless its git blob is the commit's (:mod:`propulsion.tasks.llm_adapters_files`).
``options.train_sets`` trains on the union of some tasks' own train splits (``dataset/<name>/train.json``) instead
of ``task.train_split``'s file; ``options.test_subset_seed`` makes ``task.max_eval_samples`` a seeded subset of each
test set (the same rows for every run) instead of its first rows. ``task.train_split`` names the training set,
``task.eval_splits`` every test set (alias -> dataset name) and ``options.test_sets`` the ones a run evaluates
(null: all).

Training rows are LLM-Adapters' training template with the output, then EOS, cut at ``task.max_length`` (the
reference cutoff, 256) and padded on the right; the loss covers prompt and output (their default
``train_on_inputs``), or the output only with ``options.train_on_inputs=false``. ``options.val_set_size``
training rows (120, their README commands) are held out: their loss is evaluated every trainer.eval_every steps
and the lowest-loss checkpoint is reported. Test rows are their evaluation template alone, padded on the left
with an attention mask, generated in batches with the model in eval mode (both faults of the reference scripts
avoided), cut at a further "### Response:" as theirs, and scored by
:func:`propulsion.tasks.metrics.reasoning_accuracy` (x100). The final evaluation writes one line per example to
``<run dir>/predictions.jsonl``. :func:`validate` refuses bad options and data before a run folder exists.
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

from propulsion import records
from propulsion.specs import TaskSpec, UserError
from propulsion.tasks import data as task_data
from propulsion.tasks import llm_adapters_files, metrics

MODEL_KIND = "causal-lm"
PADDING_SIDE = "left"  # generation continues every prompt from the same column
GENERATES = True  # evaluation generates: its rows are batched by length (task.evaluation.group_by_length)
# LLM-Adapters select on the held-out rows' loss (their load_best_model_at_end with no metric) and generate on the
# test sets once, at the end: the held-out rows are never generated on.
EVALUATE_DURING = ("loss",)
PREDICTIONS = records.PREDICTIONS_NAME
# Columns of evaluation rows that are not model inputs: read by evaluate, dropped by the collator.
EVAL_COLUMNS = ("dataset", "instruction", "gold")
OPTION_KEYS = ("test_sets", "train_on_inputs", "val_set_size", "aqua_strict", "generation", "base_url", "cache_dir",
               "pinned", "train_sets", "test_subset_seed")

# The prompt templates of LLM-Adapters (AGI-Edgerunners/LLM-Adapters @816657208a), byte for byte, whitespace
# included: the training one (finetune.py L323-343: 16-space indents, a blank line of 16 spaces, two spaces after
# "request." without input, one with) differs from the evaluation one (evaluate.py L141-160 and
# commonsense_evaluate.py L121-140: empty blank lines, one space after "request." without input, none with).
TRAIN_TEMPLATE = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                  "request.  \n\n                ### Instruction:\n                {instruction}\n                \n"
                  "                ### Response:\n                {output}")
TRAIN_TEMPLATE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request. \n\n                ### Instruction:\n                "
    "{instruction}\n                \n                ### Input:\n                {input}\n                \n"
    "                ### Response:\n                {output}")
EVAL_TEMPLATE = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                 "request. \n\n                ### Instruction:\n                {instruction}\n\n"
                 "                ### Response:\n                ")
EVAL_TEMPLATE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n                ### Instruction:\n                "
    "{instruction}\n\n                ### Input:\n                {input}\n\n                ### Response:\n"
    "                ")
# Their evaluation keeps the decoded text between the prompt's "### Response:" and the next one
# (evaluate.py L68, commonsense_evaluate.py L67: split("### Response:")[1].strip()).
RESPONSE_MARK = "### Response:"
# Their hold-out: train_test_split(test_size=val_set_size, shuffle=True, seed=42) (finetune.py L254-257).
VAL_SPLIT_SEED = 42


def _options(task: TaskSpec) -> dict[str, Any]:
    unknown = sorted(set(task.options) - set(OPTION_KEYS))
    if unknown:
        raise UserError(f"unknown task.options {unknown} for reasoning; valid: {', '.join(OPTION_KEYS)}")
    # train_on_inputs True and 120 held-out rows: LLM-Adapters' finetune.py default (L62) and README commands.
    defaults = {"test_sets": None, "train_on_inputs": True, "val_set_size": 120, "aqua_strict": False,
                "generation": {}, "base_url": llm_adapters_files.PINNED_URL, "cache_dir": None, "pinned": False,
                "train_sets": None, "test_subset_seed": None}
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


def train_prompt(instruction: str, input_text: str | None = None, output: str = "") -> str:
    """LLM-Adapters' training text (finetune.py generate_prompt); ``output=""`` gives the part the loss masks
    when ``train_on_inputs`` is false (their ``generate_prompt({**data_point, "output": ""})``, L185)."""
    if input_text:  # their test: a non-empty input
        return TRAIN_TEMPLATE_WITH_INPUT.format(instruction=instruction, input=input_text, output=output)
    return TRAIN_TEMPLATE.format(instruction=instruction, output=output)


def eval_prompt(instruction: str, input_text: str | None = None) -> str:
    """LLM-Adapters' evaluation prompt (evaluate.py / commonsense_evaluate.py generate_prompt). Their scripts call
    it without the input (L100 / L86); every test file's input is empty, so passing it changes nothing there."""
    if input_text:
        return EVAL_TEMPLATE_WITH_INPUT.format(instruction=instruction, input=input_text)
    return EVAL_TEMPLATE.format(instruction=instruction)


def cut_response(continuation: str) -> str:
    """The answer text of a generated continuation: up to a further "### Response:" (a model that goes on to
    write another turn), stripped, as their ``split("### Response:")[1].strip()`` of prompt + continuation."""
    return continuation.split(RESPONSE_MARK, 1)[0].strip()


# --------------------------------------------------------------------------------------------------------
# Raw data
# --------------------------------------------------------------------------------------------------------


def _location(task: TaskSpec, split: str, train: bool) -> str:
    """Where a split's file is read from: the union of options.train_sets (the training split), task.data_files,
    task.data_dir (LLM-Adapters' layout; with options.pinned a mirror whose blobs are checked), or the cache of
    options.base_url's files (the pinned commit by default), downloading and checking the file the first time."""
    options = _options(task)
    if train and split == task.train_split and options["train_sets"]:
        parts = _train_set_parts(task)
        return str(llm_adapters_files.union(split, list(parts.values()), options["cache_dir"]))
    if task.data_files and split in task.data_files:
        return str(task.data_files[split])
    if task.data_dir:
        return _in_data_dir(task, llm_adapters_files.relative_path(split, train))
    return str(llm_adapters_files.cached(split, options["base_url"], options["cache_dir"], train=train))


def _in_data_dir(task: TaskSpec, relative: str) -> str:
    if _options(task)["pinned"]:
        return str(llm_adapters_files.mirrored(relative, task.data_dir))
    return str(Path(task.data_dir) / relative)


def _train_set_parts(task: TaskSpec) -> dict[str, str]:
    """``<name>/train`` -> path of each train split options.train_sets unites, read from task.data_dir."""
    names = _options(task)["train_sets"]
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names or not all(
            isinstance(name, str) and name for name in names):
        raise UserError(f"task.options.train_sets must be a non-empty list of dataset names (e.g. [boolq, ARC-Easy]),"
                        f" got {names!r}")
    if not task.data_dir:
        raise UserError(f"task.options.train_sets={list(names)} reads dataset/<name>/train.json from task.data_dir; "
                        f"set task.data_dir to a folder laid out like LLM-Adapters")
    return {f"{name}/train": _in_data_dir(task, f"dataset/{name}/train.json") for name in names}


def split_files(task: TaskSpec, wanted: list[str]) -> dict[str, str]:
    """split -> the file this family reads it from (LLM-Adapters' tree, not <data_dir>/<split>.json), for the
    ``wanted`` splits a run reads (the training split, the test sets options.test_sets selects): what
    ``tasks.data.task_files`` answers for this family, so ``make plan`` counts the rows a run reads."""
    read = {task.train_split, *selected_test_sets(task).values()}
    return {split: _location(task, split, train=split == task.train_split) for split in wanted if split in read}


def file_provenance(task: TaskSpec) -> dict[str, dict[str, Any]] | None:
    """The record's data files (path, bytes, sha256) where this run read them: the training file and the test
    sets it evaluates, laid out as LLM-Adapters lays them out (the cache's copies of the hub files included)."""
    if task.source == "sample":
        return None
    locations = {task.train_split: _location(task, task.train_split, train=True)}
    if _options(task)["train_sets"]:  # the parts the union was made of, each hashed too
        locations |= _train_set_parts(task)
    locations |= {name: _location(task, name, train=False) for name in selected_test_sets(task).values()}
    return task_data.describe_files(locations)


_DOWNLOADED: dict[str, str] = {}  # URL -> text: validation and loading read a file once per process


def _read_text(location: str) -> str:
    try:
        if "://" not in location:
            return Path(location).read_text(encoding="utf-8")
        if location not in _DOWNLOADED:
            with urllib.request.urlopen(location, timeout=60) as response:
                _DOWNLOADED[location] = response.read().decode("utf-8")
        return _DOWNLOADED[location]
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(
            f"could not read {location!r} ({error}); run `python scripts/fetch_llm_adapters.py --out DIR` where "
            f"GitHub is reachable and pass task.data_dir=DIR (or task.data_files={{split: path}})"
        ) from None


def _parse_rows(location: str, text: str) -> list[Any]:
    """A JSON list (the LLM-Adapters files), or JSON lines; anything else is refused in one line."""
    text = text.strip()
    try:
        if text.startswith("["):
            return json.loads(text)
        if text.startswith("{") and "\n" in text:
            try:  # one pretty-printed object is not JSON lines: say what it is, not where line 1 breaks
                value = json.loads(text)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                raise UserError(f"{location} holds one JSON object (keys {sorted(value)[:5]}), not a list of "
                                f"rows; expected a JSON list of {{instruction, input, output, answer}} rows")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise UserError(f"{location} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}; "
                        f"truncated?); expected a JSON list of {{instruction, input, output, answer}} rows") from None


def read_rows(location: str, required: tuple[str, ...] = ("instruction", "answer")) -> list[dict[str, Any]]:
    """A JSON list (or JSON lines) of {instruction, input, output, answer} rows from a path or URL; every row must
    be an object with the ``required`` keys (training: instruction, output; testing: instruction, answer)."""
    rows = _parse_rows(location, _read_text(location))
    if not rows:
        raise UserError(f"{location} holds no rows")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{location}: row {index} is {type(row).__name__} {str(row)[:40]!r}, not an object; "
                            f"expected a JSON list of {{instruction, input, output, answer}} rows")
        missing = [key for key in required if key not in row]
        if missing:
            raise UserError(f"{location}: row {index} lacks {missing}; expected instruction, input, output, answer")
    return rows


def check_golds(name: str, location: str, rows: list[dict[str, Any]]) -> None:
    """Every gold answer of a test set must be scorable: a number for the math sets (their float(label),
    evaluate.py L109-110), a letter A-E for AQuA, one of the label words for the commonsense sets."""
    for index, row in enumerate(rows):
        gold = str(_answer(row.get("answer", ""))).strip()
        if name == "AQuA":
            ok, expected = gold in tuple("ABCDE"), "a letter A-E"
        elif name in metrics.COMMONSENSE_DATASETS:  # a label word is exactly what the metric extracts from it
            ok, expected = metrics.extract_commonsense_answer(name, gold) == gold, "a label word of the dataset"
        else:
            ok, expected = _is_number(gold), "a number"
        if not ok:
            raise UserError(f"{location}: row {index} has gold answer {gold!r}, which is not {expected} ({name})")


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))  # the metric drops commas too (metrics.is_math_correct)
    except ValueError:
        return False
    return True


def validate(task: TaskSpec, read_data: bool = True) -> None:
    """Everything about the data that can be refused before a run folder exists: options, test-set names, every
    file's shape and keys, the test sets' gold answers, a hold-out that leaves training rows (``read_data=False``:
    the options and names only, nothing read)."""
    options = _options(task)
    chosen = selected_test_sets(task)
    size = options["val_set_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UserError(f"task.options.val_set_size must be an integer >= 0 (0: no hold-out), got {size!r}")
    subset_seed = options["test_subset_seed"]
    if subset_seed is not None and (isinstance(subset_seed, bool) or not isinstance(subset_seed, int)):
        raise UserError(f"task.options.test_subset_seed must be an integer or null (null: the first rows), "
                        f"got {subset_seed!r}")
    if options["train_sets"] is not None:
        _train_set_parts(task)
    if not read_data:
        return
    if task.source == "sample":
        n_train = len(sample_splits(task)[task.train_split])
    else:
        n_train = len(read_rows(_location(task, task.train_split, True), ("instruction", "output")))
        for name in chosen.values():
            location = _location(task, name, False)
            check_golds(name, location, read_rows(location, ("instruction", "answer")))
    if size >= n_train:
        raise UserError(f"task.options.val_set_size={size} leaves no training rows ({n_train} in "
                        f"{task.train_split}); use a smaller value or 0")


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
    """LLM-Adapters' protocol under both protocols (recorded): ``options.val_set_size`` training rows held out
    (seed 42, as theirs), their loss evaluated every trainer.eval_every steps and the lowest-loss checkpoint kept
    (their load_best_model_at_end with no metric, L292); 0: no hold-out, the final model. Every selected test
    set is reported once, at the end."""
    options = _options(task)
    test = {alias: raw[name] for alias, name in selected_test_sets(task).items()}
    train, dev = raw[task.train_split], {}
    size = int(options["val_set_size"] or 0)
    notes: dict[str, Any] = {"selection": "none (fixed schedule, final model)", "report": "test sets",
                             "train_on_inputs": bool(options["train_on_inputs"]), "val_set_size": size}
    if size:  # validate() refused a hold-out as large as the training set
        held = train.train_test_split(test_size=size, shuffle=True, seed=VAL_SPLIT_SEED)
        train, dev = held["train"], {"validation": held["test"]}
        notes["selection"] = f"lowest loss on {size} held-out training rows (split seed {VAL_SPLIT_SEED})"
    subset_seed = options["test_subset_seed"]
    if task.max_eval_samples and subset_seed is not None:  # the same rows for every run, method and seed
        test = {alias: _seeded_subset(rows, task.max_eval_samples, subset_seed) for alias, rows in test.items()}
        notes["test_subset"] = f"{task.max_eval_samples} rows a test set, sampled with seed {subset_seed}, file order"
    splits = task_data.Splits(train=train, dev=dev, test=test, notes=notes)
    return task_data._cap(splits, task, seed)


def _seeded_subset(rows: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
    """``size`` rows drawn without replacement by ``random.Random(seed)``, kept in file order."""
    if size >= len(rows):
        return rows
    return rows.select(sorted(random.Random(seed).sample(range(len(rows)), size)))


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
    """The training set (192 rows of every test set's format: room for the 120-row hold-out) and 8 rows per test
    set, in the LLM-Adapters schema."""
    rng = random.Random(seed)
    names = list(task.eval_splits.values())
    make = _math_row if set(names) <= set(metrics.MATH_DATASETS) else _commonsense_row
    splits = {task.train_split: [make(names[i % len(names)], rng) for i in range(192)]}
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
    user = train_prompt(row["instruction"], row.get("input"))
    full, prompt_ids = _encode(tokenizer, [train_prompt(row["instruction"], row.get("input"), row["output"]), user])
    return _training_features(full, len(prompt_ids), cutoff, tokenizer.eos_token_id, train_on_inputs)


def tokenize(task: TaskSpec, dataset, tokenizer, train: bool = True):
    """Training rows, and the held-out validation rows (from the training file: scored by their loss):
    input_ids / attention_mask / labels. Test rows: the evaluation prompt's input_ids / attention_mask, and
    the EVAL_COLUMNS evaluate() reads."""
    train_on_inputs = bool(_options(task)["train_on_inputs"])
    as_training = train or (len(dataset) > 0 and set(dataset["dataset"]) == {task.train_split})

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pairs = list(zip(batch["instruction"], batch["input"], strict=True))
        if not as_training:
            prompt_ids = _encode(tokenizer, [eval_prompt(i, x) for i, x in pairs])
            return {"input_ids": prompt_ids, "attention_mask": [[1] * len(ids) for ids in prompt_ids],
                    "dataset": batch["dataset"], "instruction": batch["instruction"], "gold": batch["answer"]}
        prompt_ids = _encode(tokenizer, [train_prompt(i, x) for i, x in pairs])
        full = _encode(tokenizer, [train_prompt(i, x, output)
                                   for (i, x), output in zip(pairs, batch["output"], strict=True)])
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
        texts.extend(cut_response(text) for text in tokenizer.batch_decode(output, skip_special_tokens=True))
    return texts


def evaluate(model, dataloader, task: TaskSpec, tokenizer, accelerator, output_dir=None,
             generation: dict[str, Any] | None = None) -> dict[str, float]:
    """Accuracy (x100) of one test set. Keys are ``<dataset>/accuracy`` when the run evaluates one test set;
    with several, the suite prefixes the plain ``accuracy`` with each test set's alias. (The held-out rows are
    scored by their loss, task.evaluation.during=loss: the training loop's dev_loss, the HF Trainer's eval_loss.)"""
    options = _options(task)
    settings = dict(options["generation"]) | dict(generation or {})
    generations = generate(model, dataloader, tokenizer, accelerator, settings)
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
