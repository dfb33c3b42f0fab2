"""One process of the 2-process FSDP2 test (tests/test_sharded_checkpoint.py), launched by torch.distributed.run
on CPU (gloo). Tiny RoBERTa with Propulsion, every layer sharded with FSDP2 (``fully_shard``: what
scripts/accelerate/fsdp.yaml asks accelerate to do on GPUs), trained with the suite's checkpoint module:

    --mode straight   train STEPS steps, save the trained tensors and the adapter
    --mode first      train to STOP, write a checkpoint, exit (a killed run)
    --mode resume     a fresh model, resume from that checkpoint, train to STEPS, save as `straight` does

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

from propulsion import adapt, checkpoint, tiny
from propulsion.hooks import Hooks
from propulsion.method import sharding, trainable_state
from propulsion.specs import MethodSpec

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("straight", "first", "resume"), required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    accelerator = Accelerator(cpu=True)  # the process group (gloo) and the process roles the checkpoint uses
    torch.manual_seed(0)
    model, optimizer, scheduler = build()
    assert sharding.model_is_sharded(model)
    folder = args.dir / "checkpoint"
    rank = accelerator.process_index
    if args.mode == "first":
        train(model, optimizer, scheduler, 0, STOP, rank)
        checkpoint.save(folder, accelerator, model, optimizer, scheduler, {"step": STOP}, {}, Hooks())
        return
    start = 0
    if args.mode == "resume":
        assert checkpoint.exists(folder, accelerator)
        state, _ = checkpoint.load(folder, accelerator, model, optimizer, scheduler, Hooks())
        start = state["step"]
    train(model, optimizer, scheduler, start, STEPS, rank)
    state = trainable_state(model)  # every process gathers
    adapt.save_trained(model, args.dir / "adapter", write=accelerator.is_main_process)
    if accelerator.is_main_process:
        save_file(state, str(args.dir / "final.safetensors"))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
