"""Empirical neural tangent kernels of full fine-tuning and Propulsion (paper §3, App. A-C, Figs. 6-7).

The NTK of a model over a set of trainable parameters θ is K(x, x') = J(x) J(x')^T with J(x) = ∂φ(x)/∂θ,
for a scalar output φ per example. One code path serves both methods; they differ only in θ:
full fine-tuning differentiates every parameter of the plain model, Propulsion only the ``z`` vectors
(parameters whose name contains "propulsion") of the injected model.

The scalar output (``logit_margin``) is the logit of class 1 minus the logit of class 0 (the raw logit for
a one-label regression head): it is the quantity a binary cross-entropy acts on, it ignores a constant
added to every logit, and it matches the scalar φ(x) of the paper's derivation.

Analysis command (Figure 6: K_F, K_P and |K_F - K_P| at init; Figure 7: kernels and Jacobians before and
after t full-batch steps of each method)::

    python -m propulsion.studies.ntk --model tiny-roberta --n 8 --steps 10 --degree 15 --out results/runs/ntk-tiny

It writes ``record.json`` (values under ``record["ntk"]``) and three PNG heatmaps into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call, jacrev

from propulsion import records
from propulsion.specs import UserError

OutputFn = Callable[[Any], torch.Tensor]
PROPULSION_MARK = "propulsion"  # the library names every z vector ...propulsion...
SELECTIONS = ("full", "propulsion")
# A Jacobian block holds at most this many entries (n examples × parameters): 64M floats = 256 MB in fp32.
MAX_BLOCK_ENTRIES = 1 << 26


def logit_margin(output: Any) -> torch.Tensor:
    """One scalar per example: logit[1] - logit[0], or logit[0] for a one-label (regression) head."""
    logits = output.logits if hasattr(output, "logits") else output
    if logits.dim() == 1:
        return logits
    if logits.shape[-1] == 1:
        return logits[..., 0]
    return logits[..., 1] - logits[..., 0]


def select_params(model: torch.nn.Module, which: str) -> dict[str, torch.Tensor]:
    """The parameters the kernel is taken over: "full" (all but z vectors) or "propulsion" (z vectors only).

    "full" on an injected model at z = 1 gives the kernel of plain full fine-tuning: z^k = 1 scales nothing.
    """
    if which not in SELECTIONS:
        raise UserError(f"unknown parameter selection {which!r}; valid choices: {', '.join(SELECTIONS)}")
    chosen = {
        name: param for name, param in model.named_parameters()
        if (PROPULSION_MARK in name) == (which == "propulsion")
    }
    if not chosen:
        raise UserError(f"the model has no {which!r} parameters (is Propulsion injected?)")
    return chosen


def _blocks(params: Mapping[str, torch.Tensor], n: int, max_entries: int) -> list[list[str]]:
    """Parameter names grouped so that each group's Jacobian (n × numel) stays under max_entries."""
    groups: list[list[str]] = [[]]
    size = 0
    for name, param in params.items():
        if groups[-1] and (size + param.numel()) * n > max_entries:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += param.numel()
    return groups


def jacobian_blocks(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor],
                    params: Mapping[str, torch.Tensor], output_fn: OutputFn = logit_margin,
                    max_entries: int = MAX_BLOCK_ENTRIES) -> Iterator[torch.Tensor]:
    """The Jacobian (n × P) of the n outputs w.r.t. ``params``, as column blocks in ``params`` order.

    Examples must not interact in the forward pass (true in eval mode: no batch statistics), so one
    batched forward gives every example's row. Blocks keep memory bounded for full-size models; each
    block costs one forward and n vector-Jacobian products.
    """
    inputs = dict(inputs)
    n = int(next(iter(inputs.values())).shape[0])
    detached = {name: param.detach() for name, param in params.items()}
    others = {name: value.detach() for name, value in model.named_parameters() if name not in detached}
    others.update(dict(model.named_buffers()))
    for names in _blocks(detached, n, max_entries):
        rest = {**others, **{name: detached[name] for name in detached if name not in names}}

        def outputs(block: dict[str, torch.Tensor], rest=rest) -> torch.Tensor:
            return output_fn(functional_call(model, {**rest, **block}, args=(), kwargs=inputs))

        with warnings.catch_warnings():
            # jacrev vmaps the backward; CPU attention kernels fall back to a slower loop and say so.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            jac = jacrev(outputs)({name: detached[name] for name in names})
        yield torch.cat([jac[name].reshape(n, -1) for name in names], dim=1)


def jacobian(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor],
             output_fn: OutputFn = logit_margin) -> torch.Tensor:
    """The whole Jacobian (n × P); for small P only."""
    return torch.cat(list(jacobian_blocks(model, inputs, params, output_fn)), dim=1)


def empirical_ntk(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor],
                  params: Mapping[str, torch.Tensor], output_fn: OutputFn = logit_margin,
                  max_entries: int = MAX_BLOCK_ENTRIES) -> torch.Tensor:
    """K (n × n) with K[i, j] = <∂φ(x_i)/∂θ, ∂φ(x_j)/∂θ> over θ = ``params`` (values taken, not trained)."""
    kernel = None
    for block in jacobian_blocks(model, inputs, params, output_fn, max_entries):
        part = block @ block.T
        kernel = part if kernel is None else kernel + part
    return kernel


def kernel_drift(model_0: torch.nn.Module, model_t: torch.nn.Module, inputs: Mapping[str, torch.Tensor],
                 which: str, output_fn: OutputFn = logit_margin, num_columns: int = 256,
                 max_entries: int = MAX_BLOCK_ENTRIES) -> dict[str, Any]:
    """Kernels and Jacobians of the same parameters before (model_0) and after (model_t) training.

    Returns K_0, K_t, the relative Frobenius changes of K and of J, and ``num_columns`` evenly spaced
    Jacobian columns of each (for heatmaps), computed block by block so J is never held whole.
    """
    params_0, params_t = select_params(model_0, which), select_params(model_t, which)
    if [(k, v.shape) for k, v in params_0.items()] != [(k, v.shape) for k, v in params_t.items()]:
        raise ValueError("model_0 and model_t must have the same parameters")
    total = sum(p.numel() for p in params_0.values())
    columns = torch.linspace(0, total - 1, min(num_columns, total)).round().long().unique()
    k_0 = k_t = None
    diff_sq = ref_sq = 0.0
    cols_0, cols_t = [], []
    offset = 0
    pairs = zip(jacobian_blocks(model_0, inputs, params_0, output_fn, max_entries),
                jacobian_blocks(model_t, inputs, params_t, output_fn, max_entries), strict=True)
    for j_0, j_t in pairs:
        k_0 = j_0 @ j_0.T if k_0 is None else k_0 + j_0 @ j_0.T
        k_t = j_t @ j_t.T if k_t is None else k_t + j_t @ j_t.T
        diff_sq += float((j_t - j_0).pow(2).sum())
        ref_sq += float(j_0.pow(2).sum())
        here = (columns[(columns >= offset) & (columns < offset + j_0.shape[1])] - offset).to(j_0.device)
        cols_0.append(j_0[:, here])
        cols_t.append(j_t[:, here])
        offset += j_0.shape[1]
    return {
        "K_0": k_0, "K_t": k_t,
        "kernel_relative_change": relative_change(k_0, k_t),
        "jacobian_relative_change": math.sqrt(diff_sq / ref_sq) if ref_sq > 0 else float("nan"),
        "J_0_columns": torch.cat(cols_0, dim=1), "J_t_columns": torch.cat(cols_t, dim=1),
        "num_params": total,
    }


def relative_change(k_0: torch.Tensor, k_t: torch.Tensor) -> float:
    """||K_t - K_0||_F / ||K_0||_F."""
    return float(torch.linalg.matrix_norm(k_t - k_0) / torch.linalg.matrix_norm(k_0))


def compare_kernels(k_full: torch.Tensor, k_prop: torch.Tensor) -> dict[str, float]:
    """How close K_P is to K_F: raw differences (Figure 6) and scale-free ones.

    The two kernels sum over different parameter sets (and K_P carries a k² factor at z = 1), so their
    scales differ by construction; ``alignment`` (cosine of the matrices) and the distance between the
    Frobenius-normalised kernels say whether their *shapes* agree. A randomly initialised classifier maps
    every input to nearly the same features, so both kernels are close to c·11^T and their plain
    alignment is near 1 whatever else they share; ``centered_alignment`` (the cosine after removing row
    and column means, as in CKA) compares only how the kernels tell the examples apart.
    """
    # float64: the library keeps z in float32 even in a float64 model, so K_P may be float32 while K_F is not
    k_full, k_prop = k_full.double(), k_prop.double()
    diff = (k_full - k_prop).abs()
    norm_f, norm_p = torch.linalg.matrix_norm(k_full), torch.linalg.matrix_norm(k_prop)
    n = k_full.shape[0]
    center = torch.eye(n, dtype=k_full.dtype, device=k_full.device) - 1.0 / n
    c_full, c_prop = center @ k_full @ center, center @ k_prop @ center
    return {
        "abs_diff_max": float(diff.max()),
        "abs_diff_mean": float(diff.mean()),
        "relative_difference": float(torch.linalg.matrix_norm(k_full - k_prop) / norm_f),
        "frobenius_full": float(norm_f),
        "frobenius_propulsion": float(norm_p),
        "trace_ratio_propulsion_over_full": float(torch.trace(k_prop) / torch.trace(k_full)),
        "alignment": float((k_full * k_prop).sum() / (norm_f * norm_p)),
        "normalized_difference": float(torch.linalg.matrix_norm(k_full / norm_f - k_prop / norm_p)),
        "centered_alignment": float((c_full * c_prop).sum()
                                    / (torch.linalg.matrix_norm(c_full) * torch.linalg.matrix_norm(c_prop))),
    }


def train_steps(model: torch.nn.Module, which: str, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor,
                steps: int, lr: float, optimizer: str = "adamw") -> list[float]:
    """``steps`` full-batch steps on the analysed examples, training only the ``which`` parameters.

    Eval mode (dropout off): the kernel then changes only because the parameters moved. Returns the
    loss before each step.
    """
    trainable = select_params(model, which)
    for param in model.parameters():
        param.requires_grad_(False)
    for param in trainable.values():
        param.requires_grad_(True)
    optimizers = {"adamw": lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.0),
                  "sgd": lambda p: torch.optim.SGD(p, lr=lr)}
    if optimizer not in optimizers:
        raise UserError(f"unknown optimizer {optimizer!r}; valid choices: {', '.join(optimizers)}")
    opt = optimizers[optimizer](list(trainable.values()))
    model.eval()
    losses = []
    for _ in range(steps):
        logits = model(**inputs).logits
        if logits.shape[-1] == 1:
            loss = torch.nn.functional.mse_loss(logits[:, 0], labels.to(logits.dtype))
        else:
            loss = torch.nn.functional.cross_entropy(logits, labels.long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


# ---------------------------------------------------------------- data, model and the analysis command


def load_examples(path: str | None, n: int, seed: int) -> tuple[list[str | tuple[str, str]], list[float], str]:
    """n (text, label) pairs from a JSON list / JSON-lines file of {text|sentence, label} or, for sentence-pair
    tasks in the GLUE hub schema (RTE, MRPC, STS-B), {sentence1, sentence2, label}: a text is then the pair;
    else synthetic."""
    if path is None:
        from propulsion.tasks.samples import glue_rows

        rows = glue_rows("sst2", ["sentence"], 2, n, seed)
        return [r["sentence"] for r in rows], [r["label"] for r in rows], "synthetic-sst2"
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--data {path!r} is not a file; give a JSON list or JSON lines of {{text, label}}")
    text = file.read_text()
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = rows[:n]
    if len(rows) < n:
        raise UserError(f"--data {path!r} has {len(rows)} rows, fewer than --n {n}")
    try:
        texts = [(r["sentence1"], r["sentence2"]) if "sentence1" in r else r["text"] if "text" in r
                 else r["sentence"] for r in rows]
        labels = [r["label"] for r in rows]
    except KeyError as error:
        raise UserError(f"--data {path!r}: each row needs 'text' (or 'sentence', or 'sentence1' and "
                        f"'sentence2') and 'label'; missing {error}"
                        ) from None
    return texts, labels, file.stem


def load_model(name: str, num_labels: int, dtype: torch.dtype):
    """(model, tokenizer): ``tiny-roberta`` built offline from a config, else a hub id or local directory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if name == "tiny-roberta":
        from propulsion import tiny

        model = tiny.build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=num_labels)
        tokenizer = tiny.build_tokenizer()
    else:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_labels)
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"could not load model {name!r} ({first}); valid: tiny-roberta, a hub id "
                            f"or a local directory saved with save_pretrained") from None
    return model.to(dtype).eval(), tokenizer


def inject(model: torch.nn.Module, degree: int, targets: str) -> torch.nn.Module:
    """A Propulsion copy of ``model`` (the original stays plain)."""
    from propulsion.method import PropulsionConfig, inject_propulsion

    injected = copy.deepcopy(model)
    try:
        inject_propulsion(injected, PropulsionConfig(degree=degree, targets=targets))
    except ValueError as error:
        raise UserError(str(error)) from None
    return injected.eval()


def analyse(model: torch.nn.Module, prop_model: torch.nn.Module, inputs: Mapping[str, torch.Tensor],
            labels: torch.Tensor, steps: int, lr: float, optimizer: str,
            num_columns: int = 256) -> dict[str, Any]:
    """Figure 6 and Figure 7 numbers for a plain model and its Propulsion copy (both left untouched)."""
    with torch.no_grad():  # at z = 1 the injected model must compute exactly what the plain one does
        init_gap = float((logit_margin(model(**inputs)) - logit_margin(prop_model(**inputs))).abs().max())
    result: dict[str, Any] = {"init_output_max_abs_gap": init_gap, "drift": {}}
    for which, base in (("full", model), ("propulsion", prop_model)):
        trained = copy.deepcopy(base)
        started = time.time()
        losses = train_steps(trained, which, inputs, labels, steps, lr, optimizer)
        drift = kernel_drift(base.eval(), trained.eval(), inputs, which, num_columns=num_columns)
        drift["losses"] = losses
        drift["seconds"] = round(time.time() - started, 3)
        result["drift"][which] = drift
    drift = result["drift"]
    result["comparison"] = compare_kernels(drift["full"]["K_0"], drift["propulsion"]["K_0"])
    return result


def plot_rows(rows: Sequence[tuple[str, Sequence[tuple[str, torch.Tensor]]]], path: Path, title: str) -> Path:
    """A grid of heatmaps: one row per (label, [(panel title, matrix), ...])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(4.2 * ncols, 3.6 * len(rows)), squeeze=False)
    for r, (label, panels) in enumerate(rows):
        for c, (name, matrix) in enumerate(panels):
            ax = axes[r][c]
            image = ax.imshow(matrix.detach().double().cpu().numpy(), aspect="auto", cmap="viridis",
                              interpolation="nearest")
            ax.set_title(f"{label}: {name}", fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(result: dict[str, Any], out: Path) -> dict[str, str]:
    full, prop = result["drift"]["full"], result["drift"]["propulsion"]
    k_f, k_p = full["K_0"], prop["K_0"]
    fig6 = plot_rows([
        ("raw", [("K_F", k_f), ("K_P", k_p), ("|K_F - K_P|", (k_f - k_p).abs())]),
        ("K/||K||_F", [("K_F", k_f / k_f.norm()), ("K_P", k_p / k_p.norm()),
                       ("|diff|", (k_f / k_f.norm() - k_p / k_p.norm()).abs())]),
    ], out / "fig6_ntk_full_vs_propulsion.png", "NTK at init: full fine-tuning vs Propulsion")
    fig7k = plot_rows([
        (which, [("K_0", d["K_0"]), ("K_t", d["K_t"]), ("|K_t - K_0|", (d["K_t"] - d["K_0"]).abs())])
        for which, d in (("full", full), ("propulsion", prop))
    ], out / "fig7_kernel_before_after.png", "NTK before and after t training steps")
    fig7j = plot_rows([
        (which, [("J_0", d["J_0_columns"]), ("J_t", d["J_t_columns"]),
                 ("|J_t - J_0|", (d["J_t_columns"] - d["J_0_columns"]).abs())])
        for which, d in (("full", full), ("propulsion", prop))
    ], out / "fig7_jacobian_before_after.png", "Jacobian (examples × evenly spaced parameters) before/after")
    return {"fig6": str(fig6), "fig7_kernel": str(fig7k), "fig7_jacobian": str(fig7j)}


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of ``analyse``'s result: numbers and the n × n kernels as nested lists."""
    summary: dict[str, Any] = {
        "init_output_max_abs_gap": result["init_output_max_abs_gap"],
        "comparison_at_init": result["comparison"],
    }
    for which, d in result["drift"].items():
        summary[which] = {
            "num_params": d["num_params"],
            "kernel_relative_change": d["kernel_relative_change"],
            "jacobian_relative_change": d["jacobian_relative_change"],
            "losses": d["losses"],
            "seconds": d["seconds"],
            "K_0": d["K_0"].tolist(),
            "K_t": d["K_t"].tolist(),
            "min_eigenvalue_ratio_K_0": _min_eig_ratio(d["K_0"]),
        }
    return summary


def _min_eig_ratio(kernel: torch.Tensor) -> float:
    eig = torch.linalg.eigvalsh(kernel.double())
    return float(eig.min() / eig.max().clamp_min(1e-300))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m propulsion.studies.ntk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-roberta", help="tiny-roberta | hub id | local directory")
    parser.add_argument("--data", default=None, help="JSON / JSON lines of {text, label}; default: synthetic")
    parser.add_argument("--n", type=int, default=8, help="number of examples (the kernel is n × n)")
    parser.add_argument("--steps", type=int, default=10, help="t: full-batch training steps for Figure 7")
    parser.add_argument("--degree", type=int, default=15, help="k in V ⊙ z^k")
    parser.add_argument("--targets", default="all", help="Propulsion targets (all | attn | ...)")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of both methods' steps")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--max-length", type=int, default=128, help="tokens per example")
    parser.add_argument("--columns", type=int, default=256, help="Jacobian columns shown in the heatmap")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic examples")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the models run (default: cuda when available)")
    parser.add_argument("--out", default=None, help="output folder (default: results/runs/ntk-...)")
    args = parser.parse_args(argv)
    if args.n < 2 or args.steps < 0 or args.degree < 1:
        parser.error(f"need --n >= 2, --steps >= 0, --degree >= 1; got {args.n}, {args.steps}, {args.degree}")
    if args.out is None:
        args.out = f"results/runs/ntk-{Path(args.model).name}-k{args.degree}-n{args.n}-t{args.steps}"
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The analysis end to end; returns the record (also written to ``<out>/record.json``)."""
    out = Path(args.out)
    config = vars(args).copy()
    record = records.new_record(
        run_id=f"ntk-{records.config_fingerprint(config)}", model=args.model, task=None, family="ntk",
        method="propulsion", degree=args.degree, seed=args.seed, config=config, run_dir=str(out),
    )
    with records.recording(record, out / records.RECORD_NAME):
        torch.manual_seed(args.seed)
        texts, labels, task = load_examples(args.data, args.n, args.seed)
        record["task"] = task
        regression = any(isinstance(label, float) and not float(label).is_integer() for label in labels)
        num_labels = 1 if regression else max(2, int(max(labels)) + 1)
        dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
        model, tokenizer = load_model(args.model, num_labels, dtype)
        model = model.to(args.device)
        prop_model = inject(model, args.degree, args.targets)
        pairs = [list(side) for side in zip(*texts, strict=True)] if isinstance(texts[0], tuple) else [texts]
        inputs = {key: value.to(args.device) for key, value in tokenizer(
            *pairs, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt").items()}
        record["data_file"] = _data_provenance(args.data)
        record["model_files"] = _model_provenance(args.model)
        labels = torch.tensor(labels, device=args.device)
        result = analyse(model, prop_model, inputs, labels, args.steps, args.lr, args.optimizer, args.columns)
        trainable = sum(p.numel() for p in select_params(prop_model, "propulsion").values())
        total = sum(p.numel() for p in prop_model.parameters())
        record["params"] = {"trainable": trainable, "total": total, "percent": 100.0 * trainable / total}
        record["ntk"] = summarise(result)
        record["ntk"]["figures"] = write_figures(result, out)
        record["metrics"] = {
            "ntk_alignment": result["comparison"]["alignment"],
            "ntk_centered_alignment": result["comparison"]["centered_alignment"],
            "ntk_relative_difference": result["comparison"]["relative_difference"],
            "kernel_change_full": result["drift"]["full"]["kernel_relative_change"],
            "kernel_change_propulsion": result["drift"]["propulsion"]["kernel_relative_change"],
        }
    return record


def _data_provenance(path: str | None) -> dict[str, Any] | None:
    """The --data file by path and sha256: the record names the exact sentences the kernels were taken on."""
    from propulsion.tasks.data import sha256_file

    if path is None:
        return None
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}


def _model_provenance(name: str) -> dict[str, Any]:
    from propulsion import backbones
    from propulsion.specs import ModelSpec

    if name == "tiny-roberta":
        return {"source": "tiny", "family": "roberta"}
    return backbones.provenance(ModelSpec(name=Path(name).name, name_or_path=name))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        record = run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    ntk = record["ntk"]
    comparison = ntk["comparison_at_init"]
    print(f"NTK at init: alignment(K_F, K_P) = {comparison['alignment']:.4f}, "
          f"centered alignment = {comparison['centered_alignment']:.4f}, "
          f"||K_F - K_P||/||K_F|| = {comparison['relative_difference']:.4g}, "
          f"trace(K_P)/trace(K_F) = {comparison['trace_ratio_propulsion_over_full']:.4g}")
    for which in ("full", "propulsion"):
        drift = ntk[which]
        print(f"{which}: ||K_t - K_0||/||K_0|| = {drift['kernel_relative_change']:.4g}, "
              f"||J_t - J_0||/||J_0|| = {drift['jacobian_relative_change']:.4g} after {args.steps} steps")
    print(f"record: {Path(args.out) / records.RECORD_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
