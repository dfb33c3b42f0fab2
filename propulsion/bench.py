"""Training cost per method, measured side by side in one run: ``make bench`` / ``python scripts/bench.py``.

The same random-init RoBERTa-sized classifier is built for every method through the suite's own method
builder (so the benchmark measures what the suite trains). Per method: trainable parameters, median step time
(forward + backward + AdamW step), saved-activation bytes (unique storages kept for backward, parameters
excluded, counted with ``torch.autograd.graph.saved_tensors_hooks``), peak CUDA memory on a GPU, and ratios
to LoRA and to the floor — backpropagation through the same frozen model with one trainable scalar on the
embedding output, i.e. nothing per layer to keep. Steps are timed in interleaved rounds (A, B, C, ..., A, B,
C, ...) so that drift on a shared machine hits every method alike. Merged and unmerged Propulsion inference
are timed against the base model.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import RobertaConfig, RobertaForSequenceClassification

from propulsion import records
from propulsion.method import PropulsionModel, count_parameters, scaling
from propulsion.methods import apply_method
from propulsion.specs import MethodSpec

CONF_METHODS = Path(__file__).resolve().parent.parent / "conf" / "method"
METHODS = ("floor", "propulsion", "propulsion_simple", "propulsion_attn", "lora", "adalora", "ia3", "bitfit",
           "prefix", "full_ft")
SIZES = {  # hidden, layers, heads, intermediate, batch, tokens
    "default": (768, 12, 12, 3072, 8, 128),
    "quick": (256, 4, 4, 1024, 8, 64),
    "tiny": (32, 2, 4, 64, 2, 8),
}


@dataclass
class Contender:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    simple_scaling: bool = False


def saved_activation_bytes(run_forward, exclude: list[torch.Tensor]) -> int:
    """Bytes of the unique storages autograd keeps for backward during ``run_forward()``, minus ``exclude``
    (the parameters: weights kept for the input gradient are not activations)."""
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded and storage.data_ptr() != 0:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = run_forward()
    return sum(storages.values()), output


def method_spec(name: str) -> MethodSpec:
    """The suite's method YAML as a MethodSpec (degree 15, the paper's SST-2 degree)."""
    fields = yaml.safe_load((CONF_METHODS / f"{name}.yaml").read_text())
    if fields.get("kind") == "propulsion":
        fields["degree"] = 15
    return MethodSpec(**fields)


def build(name: str, base: torch.nn.Module, total_steps: int) -> Contender:
    model = copy.deepcopy(base)
    if name == "floor":
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.floor_scalar = torch.nn.Parameter(torch.ones(()))
        embeddings = model.roberta.embeddings
        embeddings.register_forward_hook(lambda module, args, output: output * model.floor_scalar)
    else:
        spec = method_spec("propulsion" if name == "propulsion_simple" else name)
        model = apply_method(model, spec, "sequence-classification", total_steps=total_steps).model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return Contender(name, model, torch.optim.AdamW(params, lr=1e-5), simple_scaling=name == "propulsion_simple")


def step(contender: Contender, batch: dict[str, torch.Tensor]) -> float:
    scaling.IMPLEMENTATION = "simple" if contender.simple_scaling else "lean"
    try:
        started = time.perf_counter()
        loss = contender.model(**batch).loss
        loss.backward()
        contender.optimizer.step()
        contender.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - started
    finally:
        scaling.IMPLEMENTATION = "lean"


def measure(size: str = "default", methods: tuple[str, ...] = METHODS, rounds: int = 5, warmup: int = 2,
            threads: int | None = None, device: str | None = None, seed: int = 0) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    hidden, layers, heads, ffn, batch_size, tokens = SIZES[size]
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=50265, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=ffn, max_position_embeddings=514, type_vocab_size=1, num_labels=2)
    base = RobertaForSequenceClassification(config).to(device)
    generator = torch.Generator().manual_seed(seed)
    batch = {"input_ids": torch.randint(3, 50265, (batch_size, tokens), generator=generator).to(device),
             "attention_mask": torch.ones(batch_size, tokens, dtype=torch.long, device=device),
             "labels": torch.randint(0, 2, (batch_size,), generator=generator).to(device)}
    contenders = [build(name, base, total_steps=1000) for name in methods]
    rows: dict[str, dict[str, Any]] = {}
    for contender in contenders:
        scaling.IMPLEMENTATION = "simple" if contender.simple_scaling else "lean"
        params = list(contender.model.parameters())
        saved, output = saved_activation_bytes(lambda c=contender: c.model(**batch), params)
        output.loss.backward()
        contender.optimizer.zero_grad(set_to_none=True)
        scaling.IMPLEMENTATION = "lean"
        counted = count_parameters(contender.model)
        rows[contender.name] = {"method": contender.name, "trainable": counted.trainable,
                                "saved_activation_bytes": saved, "times": []}
    for _ in range(warmup):
        for contender in contenders:
            step(contender, batch)
    for _ in range(rounds):  # interleaved: every method sees the same machine state
        for contender in contenders:
            rows[contender.name]["times"].append(step(contender, batch))
    for contender in contenders:
        peak = None
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            step(contender, batch)
            peak = int(torch.cuda.max_memory_allocated())
        row = rows[contender.name]
        row["step_time_s"] = statistics.median(row.pop("times"))
        row["peak_memory_bytes"] = peak
    for row in rows.values():
        for reference in ("lora", "floor"):
            if reference in rows:
                row[f"time_vs_{reference}"] = row["step_time_s"] / rows[reference]["step_time_s"]
                row[f"saved_vs_{reference}"] = row["saved_activation_bytes"] / rows[reference]["saved_activation_bytes"]
    inference = measure_inference(base, batch, rounds) if "propulsion" in methods else {}
    return {"size": size, "device": device, "threads": torch.get_num_threads(), "batch": batch_size,
            "tokens": tokens, "rows": list(rows.values()), "inference": inference}


@torch.no_grad()
def measure_inference(base: torch.nn.Module, batch: dict[str, torch.Tensor], rounds: int) -> dict[str, Any]:
    """Base vs Propulsion(All) unmerged vs merged (merge_and_unload), perturbed z, outputs compared."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    plain = copy.deepcopy(base).eval()
    wrapped = PropulsionModel(copy.deepcopy(base), method_spec_config()).eval()
    generator = torch.Generator().manual_seed(1)
    for name, parameter in wrapped.named_parameters():
        if name.endswith("propulsion"):
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator).to(parameter.device))
    unmerged_logits = wrapped(**inputs).logits
    merged = copy.deepcopy(wrapped).merge_and_unload().eval()
    gap = (merged(**inputs).logits - unmerged_logits).abs().max().item()
    times: dict[str, list[float]] = {"base": [], "unmerged": [], "merged": []}
    models = {"base": plain, "unmerged": wrapped, "merged": merged}
    for _ in range(rounds + 1):
        for name, model in models.items():
            started = time.perf_counter()
            model(**inputs)
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values[1:]) for name, values in times.items()}
    return {"median_s": median, "unmerged_vs_base": median["unmerged"] / median["base"],
            "merged_vs_base": median["merged"] / median["base"], "max_abs_output_difference": gap}


def method_spec_config():
    from propulsion.methods import propulsion_config

    return propulsion_config(method_spec("propulsion"))


def table(result: dict[str, Any]) -> str:
    lines = [f"size {result['size']} (batch {result['batch']} x {result['tokens']} tokens), device "
             f"{result['device']}, {result['threads']} threads; median step over interleaved rounds", "",
             "| method | trainable | step time (ms) | saved activations (MiB) | time / LoRA | saved / LoRA | "
             "time / floor | saved / floor |", "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['method']} | {row['trainable']:,} | {1000 * row['step_time_s']:.1f} | "
                     f"{row['saved_activation_bytes'] / 2**20:.1f} | {row.get('time_vs_lora', float('nan')):.2f} | "
                     f"{row.get('saved_vs_lora', float('nan')):.2f} | {row.get('time_vs_floor', float('nan')):.2f} | "
                     f"{row.get('saved_vs_floor', float('nan')):.2f} |")
    inference = result.get("inference")
    if inference:
        lines += ["", f"inference: unmerged / base {inference['unmerged_vs_base']:.2f}, merged / base "
                      f"{inference['merged_vs_base']:.2f}, max |merged - unmerged| "
                      f"{inference['max_abs_output_difference']:.2e}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Propulsion vs PEFT baselines: step time and saved activations.")
    parser.add_argument("--quick", action="store_true", help="a smaller model (about a minute on 2 CPU cores)")
    parser.add_argument("--size", choices=sorted(SIZES), default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/runs/bench/record.json")
    args = parser.parse_args(argv)
    size = args.size or ("quick" if args.quick else "default")
    record = records.new_record(run_id=f"bench-{size}", family="bench", model=f"roberta-{size}", task=None,
                                method=None, seed=0, config=vars(args))
    with records.recording(record, args.out):
        result = measure(size=size, rounds=args.rounds, threads=args.threads)
        record["bench"] = result["rows"]
        record["bench_inference"] = result["inference"]
        record["bench_setup"] = {k: result[k] for k in ("size", "device", "threads", "batch", "tokens")}
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
