"""The Trainer example of docs/huggingface.md runs as written (offline, tiny model)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "huggingface.md"


def test_the_trainer_example_runs_as_written(tmp_path, monkeypatch):
    section = DOC.read_text().split("## Trainer, unchanged", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the example writes propulsion-sst2/ where it runs
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    trainer, reloaded = namespace["trainer"], namespace["reloaded"]
    assert trainer.state.global_step == 20 and trainer.state.best_model_checkpoint
    assert sorted(p.name for p in (tmp_path / "propulsion-sst2" / "adapter").iterdir()) == [
        "README.md", "adapter_model.safetensors", "propulsion_config.json"]
    assert "| eval_accuracy |" in (tmp_path / "propulsion-sst2" / "adapter" / "README.md").read_text()
    assert (tmp_path / "propulsion-sst2" / "final" / "model.safetensors").exists()  # save_model(): what reloaded
    trained = namespace["model"].state_dict()
    assert all(reloaded.state_dict()[k].equal(v) for k, v in trained.items())
