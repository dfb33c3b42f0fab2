"""Inputs of the paired-statistics studies: per-example GLUE predictions beside the record, and model.reinit."""

from __future__ import annotations

import json

import pytest
import torch

from propulsion import backbones
from propulsion.specs import ModelSpec, UserError
from tests.suite.helpers import QUICK, records_under, run_cli, write_glue


def test_heldout_run_writes_one_prediction_per_held_out_example_agreeing_with_its_metric(tmp_path):
    data = write_glue(tmp_path / "data", "mrpc", n_train=40, n_eval=30)
    result = run_cli(*QUICK, "task=mrpc", f"task.data_dir={data}", "protocol=heldout", "trainer.max_steps=4",
                     "trainer.eval_every=2", f"output_root={tmp_path / 'runs'}", "save_adapter=false")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    lines = [json.loads(line) for line in (tmp_path / "runs").rglob("predictions.jsonl").__next__().read_text()
             .splitlines()]
    assert len(lines) == record["data"]["sizes"]["test/validation"] == 15  # the held-out half of 30 dev rows
    assert [line["index"] for line in lines] == list(range(15)) and len({line["set"] for line in lines}) == 1
    accuracy = sum(line["prediction"] == line["label"] for line in lines) / len(lines)
    assert accuracy == pytest.approx(record["metrics"]["accuracy"])


def test_reinit_redraws_only_the_named_module():
    spec = ModelSpec(name="tiny-bert", tiny="bert")
    torch.manual_seed(1)
    plain = backbones.load_model(spec, "sequence-classification", {"num_labels": 2})
    torch.manual_seed(1)
    redrawn = backbones.load_model(ModelSpec(name="tiny-bert", tiny="bert", reinit=["bert.pooler"]),
                                   "sequence-classification", {"num_labels": 2})
    before, after = dict(plain.named_parameters()), dict(redrawn.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"bert.pooler.dense.weight"}  # the bias is initialised to zeros both times


def test_reinit_of_a_module_the_model_lacks_is_one_line():
    with pytest.raises(UserError, match=r"model.reinit names 'pooler', which this bert model does not have; "
                                        r"modules with that name: bert.pooler"):
        backbones.load_model(ModelSpec(name="tiny-bert", tiny="bert", reinit=["pooler"]), "sequence-classification")
    with pytest.raises(UserError, match="model.reinit must be a list of module names"):
        ModelSpec(name="tiny-bert", tiny="bert", reinit="bert.pooler")


def test_reinit_redraws_a_module_loaded_from_a_checkpoint(tmp_path):
    # transformers 5 marks loaded tensors as initialised and its initialisers skip them: a reinit that only called
    # _init_weights left a checkpoint's pooler exactly as saved (caught on the GLUE pilot's "random pooler" run,
    # whose metrics equalled the pretrained pooler's to the last digit). Loaded from disk, it must change.
    torch.manual_seed(0)
    backbones.load_model(ModelSpec(name="tiny-bert", tiny="bert"), "sequence-classification",
                         {"num_labels": 2}).save_pretrained(tmp_path / "ckpt")
    saved = backbones.load_model(ModelSpec(name="ckpt", name_or_path=str(tmp_path / "ckpt")),
                                 "sequence-classification", {"num_labels": 2})
    torch.manual_seed(1)
    redrawn = backbones.load_model(ModelSpec(name="ckpt", name_or_path=str(tmp_path / "ckpt"), reinit=["bert.pooler"]),
                                   "sequence-classification", {"num_labels": 2})
    before, after = dict(saved.named_parameters()), dict(redrawn.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    # the classifier was saved with the checkpoint, so only the pooler differs (its bias is redrawn to zeros)
    assert "bert.pooler.dense.weight" in changed and changed <= {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    assert after["bert.pooler.dense.weight"].std().item() == pytest.approx(0.02, rel=0.3)  # BERT's initializer_range
