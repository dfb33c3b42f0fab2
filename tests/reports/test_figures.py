"""Figures from synthetic records: which runs each figure draws, the values plotted, files, skips, determinism."""

from __future__ import annotations

import pytest

from propulsion import records
from propulsion.reports import figures
from tests.reports.test_tables import write_run


def evals(*points):
    return [{"step": s, "epoch": 1, "split": "validation", "metrics": {"accuracy": a}} for s, a in points]


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for degree, accuracy in ((1, 0.80), (15, 0.90), (55, 0.85)):
        write_run(root, f"sst2-k{degree}", degree=degree, metrics={"accuracy": accuracy},
                  evaluations=evals((10, accuracy - 0.1), (20, accuracy)))
    write_run(root, "sst2-k15-s1", degree=15, seed=1, metrics={"accuracy": 0.94},
              evaluations=evals((10, 0.84), (20, 0.94)))
    write_run(root, "qnli-k55", task="qnli", paper_degree=55, metrics={"accuracy": 0.91})
    write_run(root, "sst2-k15-lr", degree=15, metrics={"accuracy": 0.10})  # another trainer: never averaged in
    write_run(root, "init-normal", init="normal", metrics={"accuracy": 0.70})
    write_run(root, "pool-mean", num_vectors=3, pooling="mean", metrics={"accuracy": 0.93})
    write_run(root, "pool-max", num_vectors=3, pooling="max", metrics={"accuracy": 0.92})
    write_run(root, "lora", method="lora", trainable=887_042, wall_time_s=20.0, steps=10, peak_memory_bytes=2**31,
              metrics={"accuracy": 0.91}, evaluations=evals((10, 0.85), (20, 0.91), (30, 0.92)))
    write_run(root, "query-only", targets="query", metrics={"accuracy": 0.60})  # not a preset run: not in fig3
    # the lr run differs from sst2-k15 in its trainer only
    path = root / "sst2-k15-lr" / "record.json"
    record = records.read_record(path)
    record["config"]["trainer"]["lr"] = 1.0
    records.write_json_atomic(path, record)
    bench = records.new_record(family="bench", status="completed", model="roberta-base",
                               finished_at="2026-01-02T00:00:00Z",
                               bench=[{"method": "propulsion", "trainable": 86_018, "step_time_s": 2.9,
                                       "saved_activation_bytes": 2**30, "peak_memory_bytes": 2**31,
                                       "peak_memory_kind": "estimate_weights_state_grads_saved"},
                                      {"method": "lora", "trainable": 887_042, "step_time_s": 3.0,
                                       "saved_activation_bytes": 2**29, "peak_memory_bytes": None}])
    records.write_json_atomic(root / "bench" / "record.json", bench)
    return root


@pytest.fixture
def drawn(monkeypatch):
    """Capture every figure's lines and bars instead of writing files: {name: {label: (xs, ys)}}."""
    seen = {}

    def capture(fig, folder, name):
        content = {}
        for index, ax in enumerate(fig.axes):
            for line in ax.get_lines():
                content[line.get_label()] = (list(line.get_xdata()), [round(float(y), 4) for y in line.get_ydata()])
            labels = [t.get_text() for t in ax.get_xticklabels()]
            if ax.patches:
                content[f"bars{index}:{ax.get_title()}"] = (labels, [round(p.get_height(), 4) for p in ax.patches])
            elif any(label.isalpha() for label in labels):  # categorical x axis (init, pooling)
                content[f"ticks{index}"] = (labels, [])
        seen[name] = content
        suptitle = fig._suptitle.get_text() if fig._suptitle else None  # matplotlib keeps no public getter
        seen.setdefault("titles", {})[name] = [t for t in [suptitle] + [ax.get_title() for ax in fig.axes] if t]
        figures.plt.close(fig)
        return name

    monkeypatch.setattr(figures, "_save", capture)
    return seen


def make(runs, tmp_path):
    loaded, _skipped = records.load_records(runs)
    good = [r for r in loaded if r.get("family") not in records.STUDY_FAMILIES]
    return figures.make_all(good, tmp_path / "figures", bench=figures.newest_bench(loaded))


def test_degree_sweep_means_seeds_of_one_config(runs, tmp_path, drawn):
    make(runs, tmp_path)
    xs, ys = drawn["fig5_degree"]["sst2"]
    # degree 15: the two seeds of the default config (90, 94); the lr=1.0 config and the ablations stay out
    assert xs == [1, 15, 55] and ys == [80.0, 92.0, 85.0]
    assert drawn["fig5_degree"]["qnli"] == ([55], [91.0])
    assert drawn["fig5_degree"]["paper (text)"][1] == [95.0]  # the paper's stated peak, drawn beside ours


def test_curves_and_efficiency_bars(runs, tmp_path, drawn):
    make(runs, tmp_path)
    steps = drawn["fig5_steps"]
    assert steps["k=15 (n=2)"] == ([10, 20], [82.0, 92.0])  # mean over seeds at each step
    assert set(steps) == {"k=1 (n=1)", "k=15 (n=2)", "k=55 (n=1)"}
    convergence = drawn["fig3_convergence"]
    assert set(convergence) == {"lora (n=1)", "propulsion (n=2)"}
    assert convergence["lora (n=1)"] == ([10, 20, 30], [85.0, 91.0, 92.0])
    bars = drawn["fig3_efficiency"]
    assert bars["bars0:parameters"] == (["lora", "propulsion"], [0.887, 0.086])
    assert bars["bars2:wall time / step"] == (["lora", "propulsion"], [2.0, 0.5])
    assert bars["bars3:make bench (roberta-base, random init): step time"] == (["lora", "propulsion"], [3.0, 2.9])
    memory = drawn["fig4_memory"]
    assert memory["bars0:peak memory (process_peak_rss)"] == (["lora", "propulsion"], [2.0, 1.0])
    # a row without peak memory is left out of that panel; a CPU estimate says so in the title
    assert memory["bars1:make bench (roberta-base, random init): peak memory (estimate)"] == (["propulsion"], [2.0])
    assert memory["bars2:make bench (roberta-base, random init): saved activations"] == (["lora", "propulsion"],
                                                                                        [0.5, 1.0])


def test_ablation_sweeps(runs, tmp_path, drawn):
    make(runs, tmp_path)
    assert drawn["fig8_init"]["sst2"] == ([0, 1], [70.0, 92.0])
    assert drawn["fig8_init"]["ticks0"][0] == ["normal", "ones"]
    assert drawn["fig10_vectors"]["sst2"] == ([1, 3], [92.0, 93.0])
    assert drawn["fig11_pooling"]["sst2"] == ([0, 1], [92.0, 93.0])  # max, mean
    assert drawn["fig11_pooling"]["paper (text)"] == ([1], [96.83])


def test_files_are_written_identically_and_empty_figures_are_skipped(runs, tmp_path):
    made, notes = make(runs, tmp_path / "one")
    again, _ = make(runs, tmp_path / "two")
    assert made == again and len(made) == 8 and notes == []
    for name in made:
        for ext in ("png", "pdf"):
            one = (tmp_path / "one" / "figures" / f"{name}.{ext}").read_bytes()
            assert one == (tmp_path / "two" / "figures" / f"{name}.{ext}").read_bytes(), (name, ext)
    made, notes = figures.make_all([], tmp_path / "none")
    assert made == [] and "fig11_pooling: skipped, no matching records" in notes
    assert not (tmp_path / "none").exists()


def test_main_value_scales_glue_only():
    assert figures.main_value({"family": "glue", "main_metric": "matched/accuracy",
                               "metrics": {"matched/accuracy": 0.5}}) == 50.0
    assert figures.main_value({"family": "qa", "main_metric": "f1", "metrics": {"f1": 88.0}}) == 88.0
    assert figures.main_value({"family": "qa", "main_metric": "f1", "metrics": {}}) is None


def test_titles_name_model_task_and_protocol(runs, tmp_path, drawn):
    make(runs, tmp_path)
    titles = drawn["titles"]
    assert titles["fig3_convergence"] == ["as paper Figure 3 (left): convergence per method\n"
                                          "roberta-base · sst2 · paper protocol"]
    assert titles["fig3_efficiency"][0] == "as paper Figure 3 (right): efficiency\nroberta-base · sst2 · paper protocol"
    # fig5 (left) draws SST-2 and QNLI: the task goes into the legend, model and protocol into the title
    assert titles["fig5_degree"] == ["as paper Figure 5 (left): metric vs degree\nroberta-base · paper protocol"]


def test_off_protocol_runs_say_so_and_never_pass_for_the_papers_figure(tmp_path, drawn):
    # `make tables` over two small-model SST-2 quick runs (the case): the title names the model, the task
    # and that the runs are off the paper's protocol.
    root = tmp_path / "runs"
    for method in ("propulsion", "lora"):
        write_run(root, method, method=method, model="minilm", trainer={"preset": "quick", "lr": 1e-2},
                  task_settings={"max_train_samples": 64}, evaluations=evals((10, 0.6), (20, 0.7)))
    make(root, tmp_path)
    (title,) = drawn["titles"]["fig3_convergence"]
    title = title.replace("\n", " ")  # the protocol line wraps
    assert title == ("as paper Figure 3 (left): convergence per method "
                     "minilm · sst2 · off the paper's protocol: task.max_train_samples, trainer.preset=quick")
    # A paper-protocol Propulsion run beside them is chosen first (the tables' rule); its protocol now differs from
    # LoRA's, so each line's label names its own.
    write_run(root, "paper-run", model="minilm", seed=1, metrics={"accuracy": 0.9},
              evaluations=evals((10, 0.8), (20, 0.9), (30, 0.9)))
    make(root, tmp_path)
    assert {label.replace("\n", " ") for label in drawn["fig3_convergence"]} == {
        "propulsion · paper protocol (n=1)",
        "lora · off the paper's protocol: task.max_train_samples, trainer.preset=quick (n=1)"}
    assert drawn["titles"]["fig3_convergence"] == ["as paper Figure 3 (left): convergence per method\nminilm · sst2"]


def test_a_curve_takes_the_papers_protocol_before_more_evaluation_points(tmp_path, drawn):
    root = tmp_path / "runs"
    write_run(root, "paper", metrics={"accuracy": 0.9}, evaluations=evals((10, 0.8), (20, 0.9)))
    write_run(root, "quick", seed=1, metrics={"accuracy": 0.5}, trainer={"preset": "quick"},
              evaluations=evals((10, 0.3), (20, 0.4), (30, 0.5)))
    make(root, tmp_path)
    assert drawn["fig3_convergence"] == {"propulsion (n=1)": ([10, 20], [80.0, 90.0])}
