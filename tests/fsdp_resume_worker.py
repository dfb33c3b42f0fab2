"""One process of the 2-process FSDP2 test (tests/training/test_sharded_checkpoints.py), launched by torchrun
on CPU (gloo). Tiny RoBERTa with Propulsion, every layer sharded with FSDP2 (``fully_shard``: what
scripts/accelerate/fsdp.yaml asks accelerate to do on GPUs), trained with the suite's checkpoint module:

    <dir>/straight    train STEPS steps, save the trained tensors and the adapter
    <dir>/resumed     train to STOP and write a checkpoint; then fresh objects (a killed run's successor) resume
                      from it and train to STEPS, saved as `straight` is

Each process feeds its own batches (by step and rank), so the shards see different gradients.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForSequenceClassification, get_scheduler

from propulsion import adapt, tiny
from propulsion.method import sharding, trainable_state
from propulsion.specs import MethodSpec
from propulsion.training import checkpoints
from propulsion.training.hooks import Hooks

STEPS, STOP = 6, 3
from propulsion.tasks.glue import MODEL_KIND as KIND  # noqa: E402


def build():
    model = tiny.build_tiny_model("roberta", AutoModelForSequenceClassification, seed=0, num_labels=2)
    prepared = adapt.apply_method(model, MethodSpec(name="propulsion", kind="propulsion", degree=3, head="both"), KIND)
    model = prepared.model
    for layer in model.roberta.encoder.layer:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2, weight_decay=0.01)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=1, num_training_steps=STEPS)
    return model, optimizer, scheduler


def batch(step: int, rank: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * step + rank)
    input_ids = torch.randint(5, tiny.vocab_size(), (4, 12), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "labels": torch.randint(0, 2, (4,), generator=generator)}


def train(model, optimizer, scheduler, start: int, stop: int, rank: int) -> None:
    model.train()
    for step in range(start, stop):
        loss = model(**batch(step, rank)).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def run(folder: Path, accelerator, mode: str) -> None:
    """straight: STEPS steps, then the trained tensors and the adapter; first: STOP steps and a checkpoint (the
    objects are then dropped, as a killed process's are); resume: fresh objects from that checkpoint, to STEPS."""
    torch.manual_seed(0)
    model, optimizer, scheduler = build()
    assert sharding.model_is_sharded(model)
    checkpoint_dir = folder / "checkpoint"
    rank = accelerator.process_index
    if mode == "first":
        train(model, optimizer, scheduler, 0, STOP, rank)
        checkpoints.save(checkpoint_dir, accelerator, model, optimizer, scheduler, {"step": STOP}, {}, Hooks())
        return
    start = 0
    if mode == "resume":
        assert checkpoints.exists(checkpoint_dir, accelerator)
        state, _ = checkpoints.load(checkpoint_dir, accelerator, model, optimizer, scheduler, Hooks())
        start = state["step"]
    train(model, optimizer, scheduler, start, STEPS, rank)
    state = trainable_state(model)  # every process gathers
    adapt.save_trained(model, folder / "adapter", write=accelerator.is_main_process)
    if accelerator.is_main_process:
        save_file(state, str(folder / "final.safetensors"))
    accelerator.wait_for_everyone()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    accelerator = Accelerator(cpu=True)  # the process group (gloo) and the process roles the checkpoint uses
    run(args.dir / "straight", accelerator, "straight")
    run(args.dir / "resumed", accelerator, "first")
    run(args.dir / "resumed", accelerator, "resume")


if __name__ == "__main__":
    main()
