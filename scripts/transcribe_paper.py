"""Transcribe the paper's Tables 1, 2, 3 and 5 from the Markdown paper into results/paper/*.csv (run once).

    python scripts/transcribe_paper.py ../shared/paper/propulsion.md

The CSVs are committed; this script documents how they were made and lets anyone check them against the text.
Long format: table, model, method, task, metric, value (the paper's units, percent), params (as printed), note.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

METHODS = {
    "FT": "full_ft", "Adapter S": "adapter_s", "Prompt tuning": "prompt", "Prompt-tuning": "prompt",
    "Prefix-tuning": "prefix", "(IA) 3": "ia3", "BitFit": "bitfit", "Bitfit": "bitfit", "LoRA": "lora",
    "AdaLoRA": "adalora", "MAM Adapter": "mam", "PROPETL Adapter": "propetl_adapter",
    "PROPETL Prefix": "propetl_prefix", "PROPETL LoRA": "propetl_lora", "Propulsion(All)": "propulsion",
    "Propulsion(Attn)": "propulsion_attn", "Prefix": "prefix", "Parallel": "parallel", "Propulsion": "propulsion",
    "LoKr": "lokr", "LoHa": "loha",
}
GLUE = [("cola", ["matthews_correlation"]), ("sst2", ["accuracy"]), ("mrpc", ["accuracy", "f1"]),
        ("stsb", ["pearson", "spearmanr"]), ("qqp", ["accuracy", "f1"]), ("mnli", ["accuracy"]),
        ("qnli", ["accuracy"]), ("rte", ["accuracy"])]
REASONING = ["boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa",
             "MultiArith", "gsm8k", "AddSub", "SingleEq", "SVAMP"]
LLMS = {"BLOOMz7B": "bloomz-7b1", "GPT-J6B": "gpt-j-6b", "LLaMA7B": "llama-7b", "LLaMA13B": "llama-13b"}
FIELDS = ["table", "model", "method", "task", "metric", "value", "params", "note"]


def clean(cell: str) -> str:
    return re.sub(r"<[^>]+>", " ", cell).replace("*", "").strip()


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+|\d+", clean(cell))]


def method_name(cell: str) -> str:
    return METHODS[re.sub(r"\s+", " ", clean(cell))]


def rows_after(lines: list[str], header: str, stop: str) -> list[list[str]]:
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 1
    out = []
    for line in lines[start:]:
        if line.startswith(stop):
            break
        if "\t" in line:
            out.append(line.split("\t"))
    return out


def table1(lines: list[str]) -> list[dict]:
    rows, model = [], None
    for cells in rows_after(lines, "Model\tPEFT Method", "Table 1:"):
        if clean(cells[0]):
            model = "roberta-base" if "B" in clean(cells[0]).split()[-1] else "roberta-large"
        method, params = method_name(cells[1]), clean(cells[2])
        for (task, metrics), cell in zip(GLUE, cells[3:11], strict=True):
            for metric, value in zip(metrics, numbers(cell), strict=True):
                rows.append(dict(table=1, model=model, method=method, task=task, metric=metric, value=value,
                                 params=params, note=""))
        for metric, value in zip(["accuracy", "f1"], numbers(cells[11]), strict=True):
            rows.append(dict(table=1, model=model, method=method, task="average", metric=metric, value=value,
                             params=params, note="the paper's Avg. column"))
    return rows


def table2(lines: list[str]) -> list[dict]:
    rows = []
    for cells in rows_after(lines, "PEFT Method\t#TPs\tSQuAD", "Table 2:"):
        method = method_name(cells[0])
        for task, cell in (("squad", cells[2]), ("squad_v2", cells[3])):
            for metric, value in zip(["exact_match", "f1"], numbers(cell), strict=True):
                rows.append(dict(table=2, model="deberta-v3-base", method=method, task=task, metric=metric,
                                 value=value, params=clean(cells[1]), note=""))
        for task, cell in (("xsum", cells[5]), ("cnn_dailymail", cells[6])):
            for metric, value in zip(["rouge1", "rouge2", "rougeL"], numbers(cell), strict=True):
                rows.append(dict(table=2, model="bart-large", method=method, task=task, metric=metric,
                                 value=value, params=clean(cells[4]), note=""))
    return rows


def table3(lines: list[str]) -> list[dict]:
    rows, model = [], None
    for cells in rows_after(lines, "LLM\tMethod", "Table 3:"):
        if clean(cells[0]):
            model = LLMS[re.sub(r"\s+", "", clean(cells[0]))]
        for task, cell in zip(REASONING, cells[2:], strict=True):
            rows.append(dict(table=3, model=model, method=method_name(cells[1]), task=task, metric="accuracy",
                             value=numbers(cell)[0], params="", note=""))
    return rows


def table5(lines: list[str]) -> list[dict]:
    targets = {"Embedding": "embedding", "MLP": "mlp", "Key": "key", "Value": "value", "Query": "query",
               "K+Q+V": "attn", "All": "all"}
    rows = []
    for cells in rows_after(lines, "Layer\tSST-2", "Table 5:"):
        for task, cell in zip(["sst2", "mrpc", "qqp", "qnli", "rte"], cells[1:6], strict=True):
            rows.append(dict(table=5, model="roberta-base", method=f"propulsion:{targets[clean(cells[0])]}",
                             task=task, metric="accuracy", value=numbers(cell)[0], params=clean(cells[6]), note=""))
    return rows


def main(paper: str, out: str = "results/paper") -> None:
    lines = Path(paper).read_text().splitlines()
    for name, build in (("table1", table1), ("table2", table2), ("table3", table3), ("table5", table5)):
        path = Path(out) / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(build(lines))
        print(path)


if __name__ == "__main__":
    main(*sys.argv[1:])
