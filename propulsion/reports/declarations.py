"""What ``make tables`` renders, as data: every table, figure and study is a declaration here, and one engine
renders any of them (``engine`` the paper's tables, ``figures`` the figures, ``study`` a study's table).

A new table is one ``TableDeclaration`` added to ``TABLES`` plus the sweep that fills it (experiments/<name>.yaml);
docs/contributing.md ("Add a table") walks through one. A declaration names:
- its columns (header, the paper CSV's task and metric, the record's metric key),
- its row rule (which row a record fills, ``selection.rows_by_method`` or ``selection.rows_by_targets``),
- its protocol (``selection.Protocol``: the trainer presets it accepts, the preset preferred for rows with a degree,
  the method settings its rows mean, the sweep whose trainer settings are the protocol's),
- the sweeps that fill it (experiments/), the paper's numbers beside it (results/paper/<paper_csv>), and its notes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from propulsion.reports.selection import EXPERIMENTS_DIR, Protocol, rows_by_method, rows_by_targets

CONTAMINATED = ("MultiArith", "AddSub", "SingleEq")  # subsets of MAWPS, which math_10k contains


@dataclass(frozen=True)
class Column:
    header: str
    task: str  # the paper CSV's task; for a record, its task (or, Table 3, the test set)
    metric: str  # the paper CSV's metric
    record_key: str  # key in record["metrics"]
    run_task: str  # the task= a fill command names
    optional: bool = False  # shown only when a record has it (not in the paper)
    fallback: str | None = None  # key read when a record lacks record_key (older records: GLUE's binary f1)

    def key_in(self, record: dict[str, Any]) -> str:
        """The metric key this column reads from a record: record_key, else the fallback if the record has it."""
        metrics = record.get("metrics") or {}
        if self.fallback is not None and self.record_key not in metrics and self.fallback in metrics:
            return self.fallback
        return self.record_key



def _glue_columns() -> list[Column]:
    spec = [("CoLA", "cola", "matthews_correlation"), ("SST-2", "sst2", "accuracy"), ("MRPC acc", "mrpc", "accuracy"),
            ("MRPC F1", "mrpc", "f1"), ("STS-B P", "stsb", "pearson"), ("STS-B S", "stsb", "spearmanr"),
            ("QQP acc", "qqp", "accuracy"), ("QQP F1", "qqp", "f1"), ("MNLI-m", "mnli", "accuracy"),
            ("QNLI", "qnli", "accuracy"), ("RTE", "rte", "accuracy")]
    # The paper's F1 is macro F1 (sklearn average="macro" in the authors' notebooks): f1_macro, else binary f1.
    keys = {"mnli": "matched/accuracy"}
    return [Column(h, t, m, "f1_macro" if m == "f1" else keys.get(t, m), t, fallback="f1" if m == "f1" else None)
            for h, t, m in spec]


def _table2_columns() -> list[Column]:
    columns = [Column(f"{name} {short}", task, metric, metric, task)
               for task, name in (("squad", "SQuAD1.1"), ("squad_v2", "SQuAD2.0"))
               for short, metric in (("EM", "exact_match"), ("F1", "f1"))]
    # The paper's R-L may be rougeL or rougeLsum: its number stands beside both of ours.
    for task, name in (("xsum", "XSum"), ("cnn_dailymail", "CNN/DM")):
        columns += [Column(f"{name} {short}", task, paper_metric, key, task)
                    for short, paper_metric, key in (("R-1", "rouge1", "rouge1"), ("R-2", "rouge2", "rouge2"),
                                                     ("R-L", "rougeL", "rougeL"), ("R-Lsum", "rougeL", "rougeLsum"))]
    return columns


COMMONSENSE = ["boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"]
ARITHMETIC = ["MultiArith", "gsm8k", "AddSub", "SingleEq", "SVAMP"]
EXTRA_ARITHMETIC = ["AQuA", "mawps"]  # in our arithmetic task, not in the paper's Table 3


def _table3_columns() -> list[Column]:
    return ([Column(d, d, "accuracy", f"{d}/accuracy", "commonsense") for d in COMMONSENSE]
            + [Column(d + (" †" if d in CONTAMINATED else ""), d, "accuracy", f"{d}/accuracy", "arithmetic")
               for d in ARITHMETIC]
            + [Column(d, d, "accuracy", f"{d}/accuracy", "arithmetic", optional=True) for d in EXTRA_ARITHMETIC])





@dataclass(frozen=True)
class TableDeclaration:
    """One paper table: what ``engine.make_table`` needs to render it from records, beside the paper's numbers."""
    name: str  # output files results/tables/<name>.{md,csv,tex}
    title: str
    columns: tuple[Column, ...]
    sweeps: tuple[str, ...]  # experiments/<sweep>.yaml that fill it
    rows: Callable[[dict[str, Any]], str] = rows_by_method  # the row a record fills ("" = none)
    protocol: Protocol = Protocol()
    notes: tuple[str, ...] = ()
    paper_csv: str = ""  # the paper's numbers in results/paper/ ("" = <name>.csv)
    fill_sweep: str | None = None  # fill commands run this sweep (it sets settings of its own or runs one seed)
    row_settings: tuple[str, ...] = ()  # method settings the rows are made of (Table 5: targets): never set aside
    by_family: str | None = None  # a column takes any run of this family that scored its test set (Table 3)
    average: bool = False  # the paper's Table 1 Avg. pair
    counts: bool = False  # a #TPs column: the chosen records', else the meta-device count

    @property
    def paper_file(self) -> str:
        return self.paper_csv or f"{self.name}.csv"


NOTES = {
    "table1": ["BitFit's paper #TPs (0.086M / 0.225M) equal Propulsion's and match no BitFit configuration "
               "(roberta-base has 102,144 non-head biases); ours is all biases + the head.",
               "Avg.: mean of each task's first metric over the 8 tasks (MNLI: matched) / mean of the MRPC, "
               "STS-B, QQP second metrics. Applied to the paper's own cells this rule gives 26 of its 28 printed "
               "Avg. pairs to rounding; not roberta-base / bitfit (printed Avg. 84.20, its cells give 84.01) and "
               "roberta-large / adalora (printed 88.20, its cells give 87.11); their Avg. 2nd agree.",
               "MRPC F1 and QQP F1: the paper's F1 is sklearn's macro F1 (average=\"macro\" in the authors' "
               "notebooks); ours is the records' f1_macro. A cell whose records hold only GLUE's binary F1 (f1) "
               "is filled with it and footnoted below.",
               "Trainer presets: `authors` (the notebooks' settings, which produced the paper's Table 1 as far as "
               "the notebooks show) and `paper` (§4.2's text) both count as the paper's protocol here; Propulsion "
               "rows take `authors` runs first. The notes below name the preset of every filled cell whose "
               "records say.",
               "MNLI-m is MNLI matched; our records also hold mismatched/accuracy.",
               "Adapter baselines' #TPs (docs/baselines.md): Adapterˢ, the paper counts the adapters alone "
               "(He et al.'s Houlsby config, bottleneck 200: 7,414,464 / 19,768,704, ours exactly); ours adds the "
               "LayerNorms and head Houlsby trains. ProPETL adapter: equal. ProPETL LoRA: the paper's 1.77M / 4.19M "
               "is per-layer LoRA r=32 + head (1,771,778 / 4,197,378), without the sharing; ours counts the shared "
               "prototype once beside the masks. ProPETL prefix: the paper's 10.49M / 26.85M is plain unshared "
               "prefix tuning (64 tokens, 512-wide MLP) + head, which no ProPETL configuration gives. MAM: no "
               "prefix length and bottleneck reproduce 46.78M / 122.20M (He et al.'s prefix module builds three "
               "prefix MLPs, about 46.2M on roberta-base, which may explain most of it).",
               "Baselines' trainers: full FT and LoRA (roberta-base) run their sources' published settings "
               "(trainer=sources: the RoBERTa GLUE grid; microsoft/LoRA's roberta_base_<task>.sh); prompt, prefix, "
               "(IA)³, BitFit, AdaLoRA, LoRA on roberta-large and the adapter baselines run Propulsion's trainer "
               "(trainer=paper), since no published RoBERTa GLUE settings are encoded for them; the paper's numbers "
               "for those rows come from the cited sources' own runs."],
    "table2": ["#TPs: ours are counted with Table 1's method settings (conf/method/, r=8 on query and value, 20 "
               "virtual tokens, the task head trained where the model has one: qa_outputs on DeBERTa, none on "
               "BART, whose lm_head is tied to the embeddings). They differ from the paper's on 19 of 20 rows; "
               "bart-large / propulsion_attn is 110,592, printed 0.110M (truncated, as the paper also prints "
               "roberta-large's 73,728 as 0.073M in Table 1). Per row family (counts in "
               "tests/suite/test_paper_counts.py):",
               "LoRA, AdaLoRA, LoHa: the paper's DeBERTa counts fit the same ranks on query, key and value, head "
               "excluded (442,368, 663,984, 884,736 vs 0.442M, 0.663M, 0.885M; with the head 443,906, 665,522, "
               "886,274); on BART, LoRA and AdaLoRA on query, key and value give 1,769,472 and 2,655,504 (paper "
               "1.763M, 2.655M), and the paper's LoHa 1.769M is that LoRA count, not LoHa's (3,538,944).",
               "Prompt: the paper's counts fit 200 virtual tokens on DeBERTa (155,138 with the head = 0.155M) and "
               "256 on BART (524,288 = 0.524M); ours use Table 1's 20. Prefix and LoKr: no configuration we tried "
               "gives the paper's 2.683M / 4.482M and 0.089M / 0.194M.",
               "FT: the paper prints 460M for both models; DeBERTaV3-base with its QA head has 183,833,090 "
               "parameters and BART-large 406,291,456 (the paper's own text: 406M).",
               "BitFit: as in Table 1, the paper's counts are other rows' (DeBERTa 0.161M = its Propulsion(All); "
               "BART 0.885M = its DeBERTa LoHa); ours is all biases + the head.",
               "Propulsion(All): DeBERTa 83,714 (12 × (5 × 768 + 3,072) + 768 word-embedding + 2 head entries; "
               "no natural module set gives 0.161M, which is also the paper's BitFit count) and BART 324,697 vs "
               "0.330M. Propulsion(Attn): DeBERTa 27,648 (12 × 3 × 768) vs 0.055M, exactly twice ours.",
               "The paper's ROUGE-L is not specified as rougeL or rougeLsum: its number stands beside both of "
               "ours (R-L = rougeL, R-Lsum = rougeLsum, sentences split onto lines).",
               "R-Lsum's sentences are split by a regular expression (propulsion/tasks/metrics.py; works offline), "
               "which "
               "also breaks after abbreviations such as 'U.S.'; HF's run_summarization uses nltk's punkt, so R-Lsum "
               "can differ from numbers computed that way (R-1, R-2 and R-L do not split)."],
    "table3": ["† AddSub, MultiArith and SingleEq are subsets of MAWPS, which the math_10k training set contains: "
               "contaminated. mawps (and AQuA) appear when runs report them; they are not in the paper.",
               "Paper LLM setup (§4.3): degree 15, 5 Propulsion vectors per layer, dropout 0.1, L2 regularisation; "
               "`make experiment NAME=table3_reasoning` runs the grid with them (model.dropout=0.1, "
               "trainer.weight_decay=0.01, trainer.precision=bf16) and LLM-Adapters' 100 warm-up steps with "
               "linear decay.",
               "The parallel-adapter rows are the paper's only: the `adapters` package (1.3.0, the newest) requires "
               "transformers ~=4.57 and this suite runs on transformers 5."],
    "table5": ["attn = K+Q+V (qkv on fused architectures). The paper's K+Q+V row differs from its own Table 1 "
               "Propulsion(Attn) row on SST-2 (92.72 vs 92.03) and QQP (85.82 vs 86.73); its All row equals "
               "Table 1 Propulsion(All).",
               "#TPs (roberta-base, head z included where the targets reach it): all 86,018 vs 0.0861M (Table 1: "
               "0.086M); attn 27,648 (12 × 3 × 768, Table 1's Propulsion(Attn)) vs 0.0283M (Table 1: 0.028M). "
               "The paper prints 0.0115M for all five single layer types, whose sizes differ: query, key, value "
               "9,216 each (12 × 768), mlp 46,080 (12 × (3,072 + 768)), embedding 2,304 (3 × 768). 0.0115M = "
               "11,520 = 15 × 768, one of the 12 × 768 types plus the three embeddings."],
}


# Table 3's Propulsion: 5 vectors per layer (paper §4.3); its sweep's trainer settings are the protocol's.
TABLE3_PROTOCOL = Protocol(method_settings={"propulsion": {"num_vectors": 5}}, trainer_sweep="table3_reasoning")
TABLES: tuple[TableDeclaration, ...] = (
    # The authors' notebooks produced Table 1's numbers as far as the notebooks show (issue 17); §4.2's text
    # (`paper`) is the other reading. Rows whose method has a degree (Propulsion) take `authors` runs first.
    TableDeclaration("table1", "Table 1: GLUE (validation), RoBERTa", tuple(_glue_columns()),
                     sweeps=("table1_roberta_base", "table1_roberta_base_paper", "table1_roberta_base_baselines",
                             "table1_roberta_large", "table1_roberta_large_paper",
                             "table1_roberta_large_baselines"),
                     protocol=Protocol(presets=("authors", "paper"), preferred_preset="authors"),
                     notes=tuple(NOTES["table1"]), average=True, counts=True),
    TableDeclaration("table2", "Table 2: SQuAD (EM / F1, DeBERTaV3-base) and summarisation (ROUGE, BART-large)",
                     tuple(_table2_columns()), sweeps=("table2_qa", "table2_summarization"),
                     notes=tuple(NOTES["table2"]), counts=True),
    TableDeclaration("table3", "Table 3: commonsense and arithmetic reasoning accuracy", tuple(_table3_columns()),
                     sweeps=("table3_reasoning",), protocol=TABLE3_PROTOCOL, fill_sweep="table3_reasoning",
                     notes=tuple(NOTES["table3"]), by_family="reasoning"),
    TableDeclaration("table5", "Table 5: Propulsion on each layer type (RoBERTa-base, accuracy)",
                     tuple(Column(t.upper().replace("SST2", "SST-2"), t, "accuracy", "accuracy", t)
                           for t in ("sst2", "mrpc", "qqp", "qnli", "rte")),
                     sweeps=("table5_layers",), rows=rows_by_targets, protocol=Protocol(trainer_sweep="table5_layers"),
                     fill_sweep="table5_layers", row_settings=("targets",), notes=tuple(NOTES["table5"]),
                     counts=True),
)


@dataclass(frozen=True)
class FigureDeclaration:
    """One figure (``figures.draw``): how it is drawn, the paper figure whose setting it is, and what it reads.
    ``draw``: "sweep" (main metric against one method setting, a line per model, task and protocol), "steps" (dev
    curves by degree), "convergence" (dev curves per method), "efficiency" and "memory" (bars per method)."""
    name: str  # results/figures/<name>.{png,pdf}; the paper's stated numbers: rows of results/paper/figures.csv
    paper_figure: str  # "as paper <paper_figure>: <what>" in the title
    draw: str
    what: str = ""  # what is drawn, in the title ("sweep": "metric vs <key>")
    sweep: str | None = None  # experiments/<sweep>.yaml that fills it
    key: str = ""  # "sweep": the setting on the x axis
    tasks: tuple[str, ...] = ()  # "sweep": the tasks drawn
    swept: tuple[str, ...] = ()  # "sweep": the settings that may differ from the preset (default: key)
    only: dict[str, Any] = field(default_factory=dict)  # "sweep": only records with these method settings


# Pooling is compared at one number of vectors (the fig11 sweep's), so that fig10's runs cannot mix in.
FIG11_VECTORS = yaml.safe_load((EXPERIMENTS_DIR / "fig11_pooling.yaml").read_text())["method"]["num_vectors"]
FIGURES: tuple[FigureDeclaration, ...] = (
    FigureDeclaration("fig5_degree", "Figure 5 (left)", "sweep", sweep="fig5_degree", key="degree",
                      tasks=("sst2", "qnli", "mrpc")),
    FigureDeclaration("fig5_steps", "Figure 5 (right)", "steps", "dev metric by degree", "fig5_steps"),
    FigureDeclaration("fig3_convergence", "Figure 3 (left)", "convergence", "convergence per method",
                      "fig3_convergence"),
    FigureDeclaration("fig3_efficiency", "Figure 3 (right)", "efficiency", "efficiency", "fig3_convergence"),
    FigureDeclaration("fig4_memory", "Figure 4", "memory", "memory per method", "fig3_convergence"),
    FigureDeclaration("fig8_init", "Figure 8", "sweep", sweep="fig8_init", key="init", tasks=("sst2",),
                      swept=("init", "init_scale")),
    FigureDeclaration("fig10_vectors", "Figure 10", "sweep", sweep="fig10_vectors", key="num_vectors",
                      tasks=("sst2", "qnli", "mrpc", "mnli", "rte")),
    FigureDeclaration("fig11_pooling", f"Figure 11 ({FIG11_VECTORS} vectors)", "sweep",
                      sweep="fig11_pooling", key="pooling", tasks=("sst2", "mrpc", "mnli", "qnli", "rte"),
                      swept=("pooling", "num_vectors"),
                      only={"num_vectors": FIG11_VECTORS}),
)


@dataclass(frozen=True)
class PilotDeclaration:
    """A study's pilot (``pilot.render``): one Propulsion method over a grid of degree × k·lr cells, each run once
    per task (and some cells with BERT's pooler re-drawn at random); a table of the held-out score at the selected
    checkpoint, the select-half best and its step, the learning curves and the "degree as lr multiplier" figure."""
    title: str
    sweep: str  # experiments/<sweep>.yaml: its vars.cells and swept tasks are the expected grid
    runs: str
    out: str  # table.md, learning_curves.png, degree_as_lr.png
    random_pooler_cells: tuple[str, ...]  # cells also run with the pooler re-drawn (the sweep's second command)
    command: str


@dataclass(frozen=True)
class StudyDeclaration:
    """A study of our own (no paper numbers beside it): a table of mean ± std over seeds per (task, method), its
    figure, its learning-rate search and the README block it writes (``study.render``). The fields after
    ``readme_end`` turn on what a paired study adds (issue 25); their defaults leave a study as the small-scale one."""
    name: str
    title: str
    columns: tuple[tuple[str, str, str], ...]  # (header, task, metric key); a task's first one is its Avg. metric
    average: dict[str, str]  # task -> the metric averaged into "Avg."
    methods: dict[str, str]  # method -> row label, in row order
    sweep: str  # experiments/<sweep>.yaml
    lr_search_sweep: str | None  # experiments/<sweep>.yaml whose records choose each method's lr
    runs: str  # the sweep's records (relative to the checkout)
    lr_search_runs: str
    out: str  # table.md, lr_search.md and the figure go here
    figure: str  # <out>/<figure>.png: score against trainable parameters
    command: str  # how the table is regenerated, printed under its title
    readme_start: str | None  # README.md's markers around the study's block (None: the study writes none)
    readme_end: str | None
    protocol: Protocol = Protocol(paper_first=False)  # groups rank by most seeds, then newest
    # The sweep YAML's vars.report (baseline, expected seeds per method, equivalence margins) drives verdict columns,
    # stats.csv (reports/stats.py) and the list of missing runs; the figure is then score vs #TPs outside the head.
    paired: bool = False
    split_head: bool = False  # #TPs shown as outside the head / in the head (record params.head)
    curves: str | None = None  # <out>/<curves>.png: dev-half metric against step, one line per method, per task
    flag_edges: bool = False  # the lr search's table marks a choice at the edge of its method's range
    pilot: PilotDeclaration | None = None  # rendered with the study


SMALL_SCALE = StudyDeclaration(
    name="small_scale",
    title="Small-scale Table 1: all-MiniLM-L6-v2 on real GLUE data (CPU)",
    columns=(("CoLA MCC", "cola", "matthews_correlation"), ("MRPC acc", "mrpc", "accuracy"),
             ("MRPC F1", "mrpc", "f1"), ("STS-B P", "stsb", "pearson"), ("STS-B S", "stsb", "spearmanr"),
             ("RTE acc", "rte", "accuracy")),
    average={"cola": "matthews_correlation", "mrpc": "accuracy", "stsb": "pearson", "rte": "accuracy"},
    methods={"full_ft": "Full FT", "bitfit": "BitFit", "lora": "LoRA", "propulsion_attn": "Propulsion(Attn)",
             "propulsion": "Propulsion(All)",  # table order: the paper's Table 1 rows we run, then our variant
             "propulsion_head": "Propulsion(All) + head"},
    sweep="small_scale",
    lr_search_sweep="small_scale_lr_search",
    runs="results/small_scale/runs",
    lr_search_runs="results/small_scale/lr_search/runs",
    out="results/small_scale",
    figure="score_vs_params",
    command="make tables   (python -m propulsion.reports --only small_scale)",
    readme_start="<!-- small-scale table: written by `make tables` (python -m propulsion.reports --readme) -->",
    readme_end="<!-- end of the small-scale table -->",
)
GLUE_MINILM = StudyDeclaration(
    name="glue_minilm",
    title="GLUE study: all-MiniLM-L6-v2 on MRPC and STS-B (CPU, issue 25)",
    columns=(("MRPC acc", "mrpc", "accuracy"), ("MRPC F1", "mrpc", "f1"), ("STS-B P", "stsb", "pearson"),
             ("STS-B S", "stsb", "spearmanr")),
    average={},  # no average over tasks
    methods={"lora": "LoRA r=8", "lora_r2": "LoRA r=2", "head_only": "Head only", "bitfit": "BitFit",
             "propulsion": "Propulsion(All)", "propulsion_head": "Propulsion(All) + head"},
    sweep="study_glue_minilm",
    lr_search_sweep="study_glue_minilm_lr",
    runs="results/studies/glue_minilm/runs",
    lr_search_runs="results/studies/glue_minilm/lr_search/runs",
    out="results/studies/glue_minilm",
    figure="score_vs_params",
    command="make tables   (python -m propulsion.reports --only glue_minilm)",
    readme_start=None,
    readme_end=None,
    paired=True,
    split_head=True,
    curves="learning_curves",
    flag_edges=True,
    pilot=PilotDeclaration(
        title="Pilot of the GLUE study: frozen-head Propulsion(All), degree × k·lr (all-MiniLM-L6-v2)",
        sweep="study_glue_minilm_pilot",
        runs="results/studies/glue_minilm/pilot/runs",
        out="results/studies/glue_minilm/pilot",
        random_pooler_cells=("k15_mid",),
        command="make tables   (python -m propulsion.reports --only glue_minilm)",
    ),
)
STUDIES: tuple[StudyDeclaration, ...] = (SMALL_SCALE, GLUE_MINILM)
TABLE1 = next(table for table in TABLES if table.name == "table1")
TABLE3 = next(table for table in TABLES if table.name == "table3")


@dataclass(frozen=True)
class ReasoningStudyDeclaration:
    """A reasoning study of our own (``reasoning_study.render``; issue 26): Table 3's columns on the test sets it
    evaluates, one table per task (its Column.run_task), each accuracy beside the share of rows whose answer
    extraction found nothing; rows per method, the untrained model's zero-shot row and a majority-answer reference.
    The runs its sweep plans (seed × task × method of hydra.sweeper.params, and a zero-shot run per task and seed)
    that no completed record fills are listed."""
    name: str
    title: str
    columns: tuple[Column, ...]  # Table 3's columns of the study's test sets, in Table 3's order
    methods: dict[str, str]  # method -> row label, in row order
    sweep: str  # experiments/<sweep>.yaml
    runs: str  # its records (relative to the checkout)
    out: str  # table.md goes here
    command: str  # how the table is regenerated, printed under its title
    zero_shot_method: str = "propulsion"  # its record with trainer.max_steps=0 is the zero-shot row, never trained


REASONING_SMOLLM2_SETS = ("boolq", "ARC-Easy", "ARC-Challenge", "openbookqa", *ARITHMETIC, *EXTRA_ARITHMETIC)
REASONING_SMOLLM2 = ReasoningStudyDeclaration(
    name="reasoning_smollm2",
    title="Table 3 at small scale: SmolLM2-135M-Instruct on the LLM-Adapters files (CPU, issue 26)",
    columns=tuple(c for c in TABLE3.columns if c.task in REASONING_SMOLLM2_SETS),
    methods={"propulsion": "Propulsion", "lora": "LoRA", "adalora": "AdaLoRA", "parallel": "Parallel",
             "prefix": "Prefix"},
    sweep="study_reasoning_smollm2",
    runs="results/studies/reasoning_smollm2/runs",
    out="results/studies/reasoning_smollm2",
    command="make tables   (python -m propulsion.reports --only reasoning_smollm2)",
)
REASONING_STUDIES: tuple[ReasoningStudyDeclaration, ...] = (REASONING_SMOLLM2,)
