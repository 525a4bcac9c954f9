"""Helpers of notebook 05 (MADDR): the paper's printed numbers, the joint protocol, the runs of Tables 1 and 2
(`MaddrRuns`), per-dataset evaluation of a model trained on all datasets, latent codes, the heads' diagnostics and
the notebook's figures. The reading tables and the generated conclusions are in `conclusions`."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from sklearn.metrics import confusion_matrix

from ...data.imageset import concat, iter_float_batches
from ...data.protocol import Protocol
from ...data.protocol import cap_splits as cap  # noqa: F401  (the notebooks import it from here)
from ...detectors import available, create, latent_detectors
from ...experiment import ExperimentResult, run_experiment, score_and_record, scored_part
from ...plots import embed_2d, projection_name
from .wrapper import MADDR

PAPER_CSV = Path(__file__).with_name("paper_numbers_maddr.csv")
PAPER_DATASETS = ("LiTS", "Lung-CT", "Lung-X-rays")
# our dataset -> the paper's dataset of the same organ and modality (None: the paper has none)
NEAREST = {"pneumonia": "Lung-X-rays", "breast": None, "retina": None}
TERMS = ("baseline", "organ_focal", "modality_focal", "centre")


def paper_numbers_maddr(table: str | None = None) -> pd.DataFrame:
    """The paper's printed Tables 1 and 2 (percent, mean and std over its three seeds)."""
    frame = pd.read_csv(PAPER_CSV)
    return frame if table is None else frame[frame["table"] == table].reset_index(drop=True)


def paper_beside(dataset: str, method: str, metric: str) -> tuple[str, float, float]:
    """(label, mean, std) of the paper's Table 1 for ``method`` on the dataset nearest ours; the mean over its
    three datasets when none shares organ and modality with ours."""
    t1 = paper_numbers_maddr("Table 1")
    rows = t1[(t1["method"] == method) & (t1["metric"] == metric)]
    if rows.empty:
        return "", float("nan"), float("nan")
    near = NEAREST.get(dataset)
    if near is not None:
        r = rows[rows["dataset"] == near].iloc[0]
        return near, float(r["mean"]), float(r["std"])
    return "mean of 3 (no counterpart)", float(rows["mean"].mean()), float("nan")


def joint_protocol(parts: list[Protocol]) -> Protocol:
    """All datasets in one protocol (the same images as the per-dataset protocols), with per-image domains."""
    name = "+".join(p.dataset for p in parts)

    def join(attr: str, split: str):
        return concat([getattr(p, attr) for p in parts],
                      meta={"dataset": name, "split": split, "size": parts[0].train.size,
                            "source": "; ".join(f"{p.dataset}: {p.data_source()}" for p in parts)})

    joint = Protocol(name, join("train", "train"), join("val", "val"), join("test", "test"),
                     join("train_anomaly_pool", "train"))
    joint.parts = {p.dataset: p for p in parts}
    return joint


def per_dataset_rows(result: ExperimentResult, joint: Protocol, *, table, config, method: str, seed: int,
                     variant: str = "default", **extra) -> list[dict]:
    """One row per dataset for a model trained on all of them: its scores of that dataset's validation and test
    images, the threshold chosen on that dataset's validation split."""
    rows = []
    for name, part in joint.parts.items():
        val = test = None  # a diverged run: NaN metrics
        if result.val is not None:
            val = scored_part(result.val.scores, joint.val, joint.val.domains["dataset"] == name)
            test = scored_part(result.test.scores, joint.test, joint.test.domains["dataset"] == name)
        rows.append(score_and_record(table, val, test, config=config, protocol=part, method=method, seed=seed,
                                     detector=result.detector, variant=variant, dataset=name, status=result.status,
                                     trained_on=joint.dataset, **extra)[1])
    return rows


# ----- the runs of Tables 1 and 2 ----------------------------------------------------------------------------
def wrappable_methods(cfg) -> tuple[dict[str, dict], list[str]]:
    """The configuration's baselines that MADDR can wrap here ({display name: spec}), and one line per baseline
    left out (its detector is not registered, or declares no latent code)."""
    methods, left_out = {}, []
    for m in cfg["methods"]:
        spec = cfg["detectors"][m]
        if spec["detector"] not in available():
            left_out.append(f"{m}: detector {spec['detector']!r} is not registered; left out")
        elif spec["detector"] not in latent_detectors():
            left_out.append(f"{m}: detector {spec['detector']!r} declares no latent code, MADDR cannot wrap it")
        else:
            methods[m] = spec
    return methods, left_out


# Table 2: variant -> (the paper's row(s), MADDR options; None = the plain baseline trained on all datasets)
NOFD = dict(disentangle=False, mixup=False)
ABLATION = {
    "3 all datasets, no constraints": ("3", None),
    "4/7 organ head on z": ("4/7", dict(heads=("organ",), centre=None, **NOFD)),
    "5/8 organ head + centre on z": ("5/8", dict(heads=("organ",), centre="z", **NOFD)),
    "10 two heads on z": ("10", dict(centre=None, **NOFD)),
    "11 two heads + centre on z": ("11", dict(centre="z", **NOFD)),
    "6/9 MADDR, one head": ("6/9", dict(heads=("organ",))),
    "ours: MADDR, centre on z": ("-", dict(centre="z")),
    "ours: MADDR without mixup": ("-", dict(mixup=False)),
}
# the rows of Table 2 that are Table 1's runs (the same seeds), and their paper rows
TABLE1_ROWS = {"DPA": ("2 single dataset, latent 128", "2"), "MADDR + DPA": ("12 MADDR", "12")}
ROW_LATENT16 = ("1 single dataset, latent 16", "1")
TABLE2_ORDER = [ROW_LATENT16[0], TABLE1_ROWS["DPA"][0], *ABLATION, TABLE1_ROWS["MADDR + DPA"][0]]
PAPER_ROWS = {ROW_LATENT16[0]: ROW_LATENT16[1], **dict(TABLE1_ROWS.values()),
              **{v: r for v, (r, _) in ABLATION.items()}}


@dataclass
class MaddrRuns:
    """The notebook's run helper. ``single`` fits a baseline on one dataset (``steps`` steps); ``on_all`` fits a
    model (from a factory: MADDR or the plain baseline) on all datasets (``steps`` x number of datasets, i.e. the
    same passes over each image) and records one row per dataset, each with that dataset's own validation
    threshold. Every run goes through `adlib.experiment.run_experiment`; its timing rows are collected."""

    cfg: object
    parts: list
    joint: Protocol
    methods: dict
    timing: list = field(default_factory=list)
    results: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.cfg["steps"])

    @property
    def joint_steps(self) -> int:
        return self.steps * len(self.parts)

    def base_kwargs(self, method: str, steps: int, **over) -> dict:
        spec = self.methods[method]
        kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec["kwargs"].items()}
        kw.update({key: steps for key in spec["step_keys"]}, **over)
        return kw

    def maddr(self, method: str, seed: int, **options):
        """A factory of MADDR around ``method`` (the configuration's Eq. 1 settings, ``options`` on top)."""
        cfg = self.cfg
        kw = dict(category_dims=cfg["category_dims"], mixup_alpha=cfg["mixup_alpha"], mixup_prob=cfg["mixup_prob"],
                  lambdas=tuple(cfg["lambdas"]), focal_alpha=cfg["focal"]["alpha"], focal_gamma=cfg["focal"]["gamma"],
                  mixup_from=int(cfg["mixup_start"] * self.joint_steps), **options)
        return lambda: MADDR(self.methods[method]["detector"], self.base_kwargs(method, self.joint_steps), seed=seed,
                             progress=False, **kw)

    def plain(self, method: str, seed: int):
        """A factory of the plain baseline trained on all datasets (Table 2 row 3)."""
        return lambda: create(self.methods[method]["detector"], seed=seed, progress=False,
                              **self.base_kwargs(method, self.joint_steps))

    def single(self, method: str, protocol: Protocol, seed: int, table, variant: str = "per dataset",
               **over) -> ExperimentResult:
        det = create(self.methods[method]["detector"], seed=seed, progress=False,
                     **self.base_kwargs(method, self.steps, **over))
        result = run_experiment(det, protocol, config=self.cfg, seed=seed, method=method, table=table, variant=variant,
                                use_val_in_fit=True, dataset=protocol.dataset, steps=self.steps,
                                trained_on=protocol.dataset)
        self.timing.extend(dict(t, dataset=protocol.dataset) for t in result.timing)
        return result

    def on_all(self, method: str, seed: int, table, variant: str, factory) -> ExperimentResult:
        result = run_experiment(factory, self.joint, config=self.cfg, seed=seed, method=method, table=None,
                                variant=variant, use_val_in_fit=True)
        self.timing.extend(dict(t, dataset="all") for t in result.timing)
        per_dataset_rows(result, self.joint, table=table, config=self.cfg, method=method, seed=seed, variant=variant,
                         steps=self.joint_steps)
        return result

    def table1(self, table) -> dict:
        """Table 1: each baseline per dataset, and MADDR around it on all datasets, for every seed."""
        for method in self.methods:
            for seed in self.cfg["seeds"]:
                for prot in self.parts:
                    self.results[(method, prot.dataset, seed)] = self.single(method, prot, seed, table)
                self.results[(f"MADDR + {method}", "all", seed)] = self.on_all(
                    f"MADDR + {method}", seed, table, "all datasets", self.maddr(method, seed))
        return self.results

    def table2(self, table, table1) -> bool:
        """Table 2 (the ablation of MADDR + DPA); rows 2 and 12 are copied from Table 1's runs of the same seeds.
        False when the profile skips it or DPA is not among the baselines."""
        if not (self.cfg["table2"] and "DPA" in self.methods):
            return False
        for seed in self.cfg["table2_seeds"]:
            for prot in self.parts:
                self.single("DPA", prot, seed, table, variant=ROW_LATENT16[0], latent=16)
            for variant, (_, options) in ABLATION.items():
                factory = self.plain("DPA", seed) if options is None else self.maddr("DPA", seed, **options)
                self.results[("DPA ablation", variant, seed)] = self.on_all("DPA", seed, table, variant, factory)
        for row in table1.rows:
            if row["method"] in TABLE1_ROWS and row["seed"] in self.cfg["table2_seeds"]:
                table.add_row({**row, "method": "DPA", "variant": TABLE1_ROWS[row["method"]][0]})
        return True

    def model(self, method: str, seed: int):
        """The fitted MADDR model of Table 1 (``method``: the baseline's display name)."""
        return self.results[(f"MADDR + {method}", "all", seed)].detector

    def timing_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.timing)


def data_table(parts: list[Protocol]) -> pd.DataFrame:
    """One line per dataset: organ, modality, split sizes and the data source."""
    return pd.DataFrame([{"dataset": p.dataset, "organ": p.train.domains["organ"][0],
                          "modality": p.train.domains["modality"][0], "train normals": len(p.train),
                          "val (normal/anomalous)": f"{p.val.counts()['normal']}/{p.val.counts()['anomalous']}",
                          "test (normal/anomalous)": f"{p.test.counts()['normal']}/{p.test.counts()['anomalous']}",
                          "source": p.data_source()} for p in parts])


def profile_text(cfg, runs: MaddrRuns) -> str:
    """What this profile runs and cuts, from the configuration (Markdown)."""
    n_train = ", ".join(f"{p.dataset} {len(p.train)}" for p in runs.parts)
    widths = {m: spec["kwargs"].get("width", spec["kwargs"].get("widths")) for m, spec in runs.methods.items()}
    return (f"**Profile {cfg.profile.name}**: {len(runs.parts)} datasets at {cfg['image_size']} px (the paper: 224; "
            f"the authors' code: 64), training normals {n_train}; {runs.steps} training steps per dataset, "
            f"{runs.joint_steps} for a model on all datasets (the same passes over each image); network widths "
            f"{', '.join(f'{m} {w}' for m, w in widths.items())} (the paper's networks: 64); "
            f"{len(cfg['seeds'])} seed(s) for Table 1, {len(cfg['table2_seeds'])} for the ablation (Table 2). "
            "At this budget the numbers say how the variants compare early in training, not what they reach.")


def timing_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean wall time and images/s per method, training set (one dataset or all) and stage."""
    if frame.empty:
        return frame
    f = frame.assign(**{"trained on": np.where(frame["dataset"] == "all", "all datasets", "one dataset")})
    out = (f.groupby(["method", "trained on", "stage"], sort=False)
           .agg(runs=("seconds", "size"), seconds=("seconds", "mean"), images=("images", "mean"),
                **{"images/s": ("images_per_s", "mean")}).reset_index())
    return out.round({"seconds": 1, "images": 0, "images/s": 1})


@torch.no_grad()
def latent_codes(detector, images, batch_size: int = 128) -> np.ndarray:
    """z_c of a MADDR model; the whole declared latent z of a plain detector (every network in eval mode)."""
    if isinstance(detector, MADDR):
        return detector.embed(images)
    for m in vars(detector).values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return torch.cat([detector.encode_latent(b.to(detector.device)).flatten(1).cpu()
                      for b in iter_float_batches(images, batch_size)]).numpy()


# ----- figures -------------------------------------------------------------------------------------------
def embedding_panels(codes: dict[str, np.ndarray], images, method: str = "tsne", seed: int = 0,
                     title: str = "") -> plt.Figure:
    """One row per model (e.g. without / with MADDR), coloured by dataset (left) and normal/anomalous (right)."""
    fig, axes = plt.subplots(len(codes), 2, figsize=(9, 4 * len(codes)), squeeze=False)
    datasets = np.asarray(images.domains["dataset"])
    labels = np.where(images.labels == 1, "anomalous", "normal")
    for row, (name, z) in enumerate(codes.items()):
        xy = embed_2d(z, method, seed)
        for col, (hue, what) in enumerate(((datasets, "dataset"), (labels, "normal / anomalous"))):
            ax = axes[row, col]
            sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=hue, style=labels if col == 0 else None, s=12, alpha=0.7,
                            linewidth=0, ax=ax)
            ax.set(xticks=[], yticks=[], title=f"{name}: by {what}")
            ax.legend(fontsize=9, markerscale=1.5)
    fig.suptitle(title or f"{projection_name(method)} of the latent code (test images)", y=1.0)
    fig.tight_layout()
    return fig


def head_diagnostics(model: MADDR, images, window: int = 10) -> pd.DataFrame:
    """Why a head scores what it scores, one line per head: its accuracy on ``images`` with the kept weights (eval
    mode, as it is scored), the same weights with each batch's own normalisation statistics (as in training),
    always guessing the most frequent class, the training accuracy logged over the ``window`` steps up to the kept
    step and over the last 20 steps, and the step the checkpoint criterion kept. A head far below its logged
    training accuracy at the kept step, but not with batch statistics, is undone by normalisation running averages
    that had few updates at that step; a head whose logged accuracy at the kept step is low was rolled back to an
    early step (the checkpoint is chosen on anomaly detection, not on the heads). Neither is a label mapping."""
    pred = model.predict_domains(images)
    batch_size = int(getattr(model.base, "hp", {}).get("batch_size", 32))
    batch = model.predict_domains(images, batch_statistics=True, batch_size=batch_size)
    history = model.base.history
    kept = history.best_step if history.best_step is not None else len(history.steps)
    rows = []
    for h, predicted in pred.items():
        truth = np.asarray(images.domains[h]).astype(str)
        log = np.asarray(history.logs.get(f"{model.base.latent_phase}/{h}_acc", []), dtype=float)
        at_kept = log[max(0, kept - window):kept]
        rows.append({"head": h, "accuracy (kept weights)": float((predicted == truth).mean()),
                     "accuracy (batch statistics)": float((batch[h] == truth).mean()),
                     "always the most frequent": float(pd.Series(truth).value_counts(normalize=True).iloc[0]),
                     "training accuracy at the kept step": float(np.nanmean(at_kept)) if len(at_kept) else np.nan,
                     "training accuracy (last 20 steps)": float(np.nanmean(log[-20:])) if len(log) else float("nan"),
                     "kept step": history.best_step, "steps": len(history.steps),
                     "checkpoint criterion": history.checkpoint_criterion or history.monitor_name})
    return pd.DataFrame(rows)


def head_report(models: dict[str, MADDR], images) -> pd.DataFrame:
    """`head_diagnostics` of several MADDR models ({method: model}) in one table, a ``method`` column first."""
    frames = [head_diagnostics(model, images).assign(method=method) for method, model in models.items()]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out[["method", *[c for c in out.columns if c != "method"]]] if len(out) else out


def label_mapping_check(models: dict[str, MADDR], train, test) -> pd.DataFrame:
    """Whether a head's class order could be wrong, measured, one line per model and head: the class order its
    training targets index (``hook.vocab``; the confusion matrices use the same), whether every training label
    encodes to an index that decodes back to itself, and on ``test`` (kept weights, as scored) how many classes it
    predicts and whether its confusion is a permutation (each true class mostly sent to its own, distinct predicted
    class: what a label-order error looks like). Accuracies under the identity order and under the best
    one-to-one relabelling of its predictions."""
    from itertools import permutations

    from .wrapper import encode_labels

    rows = []
    for method, model in models.items():
        pred = model.predict_domains(test)
        for h in model.hook.heads:
            vocab = list(model.hook.vocab[h])
            labels = np.asarray(train.domains[h]).astype(str)
            codes = encode_labels(labels, vocab)
            round_trip = bool((codes >= 0).all() and (np.asarray(vocab)[codes] == labels).all())
            cm = confusion_matrix(np.asarray(test.domains[h]).astype(str), pred[h], labels=vocab)
            present = cm.sum(1) > 0
            modal = cm.argmax(1)[present]
            share = (cm.max(1)[present] / cm.sum(1)[present])
            permutation = bool(len(set(modal)) == len(modal) and (share > 0.5).all())
            best = max(sum(cm[i, perm[i]] for i in range(len(vocab))) for perm in permutations(range(len(vocab))))
            rows.append({"method": method, "head": h, "class order (training targets = confusion)": ", ".join(vocab),
                         "training labels round-trip": round_trip,
                         "classes predicted (test)": f"{len(set(pred[h]))} of {len(vocab)}",
                         "confusion is a permutation": permutation,
                         "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
                         "accuracy, best relabelling": float(best / max(cm.sum(), 1))})
    return pd.DataFrame(rows)


def _wrapped(names, width: int = 11) -> list[str]:
    return [textwrap.fill(str(n), width) for n in names]


def head_confusions(model: MADDR, images, title: str = "") -> plt.Figure:
    """Confusion matrices of the organ and modality heads on ``images`` with the kept weights (rows: true label,
    columns: predicted label, both in the head's own class order)."""
    pred = model.predict_domains(images)
    heads = list(pred)
    fig, axes = plt.subplots(1, len(heads), figsize=(5.0 * len(heads), 4.2), squeeze=False)
    for ax, h in zip(axes[0], heads):
        names = model.hook.vocab[h]
        cm = confusion_matrix(np.asarray(images.domains[h]).astype(str), pred[h], labels=names)
        sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=True, cbar_kws={"label": "images", "shrink": 0.8},
                    xticklabels=_wrapped(names), yticklabels=_wrapped(names), ax=ax)
        ax.tick_params(axis="y", labelrotation=0)
        ax.tick_params(axis="x", labelrotation=0)
        acc = np.trace(cm) / max(cm.sum(), 1)
        ax.set(xlabel=f"predicted {h}", ylabel=f"true {h}", title=f"{h} head (accuracy {acc:.1%})")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def head_training_curves(models: dict[str, MADDR], report: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per model: each head's logged training accuracy over the steps (moving average), the kept step, and at
    the kept step the test accuracy of the kept weights (x: as scored; o: with batch statistics)."""
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models), 3.4), squeeze=False, sharey=True)
    for ax, (method, model) in zip(axes[0], models.items()):
        history, mine = model.base.history, report[report["method"] == method].set_index("head")
        for i, h in enumerate(model.hook.heads):
            log = pd.Series(history.logs.get(f"{model.base.latent_phase}/{h}_acc", []), dtype=float)
            steps = np.arange(1, len(log) + 1)
            ax.plot(steps, 100 * log.rolling(max(1, len(log) // 20), min_periods=1).mean(), color=f"C{i}",
                    label=f"{h}: training (logged)")
            kept = mine.loc[h, "kept step"]
            if pd.notna(kept):
                ax.plot([kept], [100 * mine.loc[h, "accuracy (kept weights)"]], "x", color=f"C{i}", ms=8,
                        label=f"{h}: test, kept weights")
                ax.plot([kept], [100 * mine.loc[h, "accuracy (batch statistics)"]], "o", mfc="none", color=f"C{i}",
                        ms=8, label=f"{h}: test, batch statistics")
        if pd.notna(mine["kept step"].iloc[0]):
            ax.axvline(mine["kept step"].iloc[0], color="grey", ls=":", lw=1, label="kept step")
        majority = mine["always the most frequent"]
        for i, h in enumerate(majority.index if majority.round(3).nunique() > 1 else majority.index[:1]):
            who = f"{h}: " if majority.round(3).nunique() > 1 else ""
            ax.axhline(100 * majority[h], color=f"C{i}" if who else "grey", ls="--", lw=1,
                       label=f"{who}always the most frequent class")
        ax.set(title=f"MADDR + {method}", xlabel="training step (all datasets)", ylabel="head accuracy (%)",
               ylim=(0, 105))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=10, bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.suptitle(title or "The heads: training accuracy and the kept weights' test accuracy")
    fig.tight_layout()
    return fig


def loss_terms(history, phase: str, title: str = "", mixup_from: int | None = None) -> plt.Figure:
    """The terms of Eq. 1 over training (moving average), one panel each; mixup's start marked."""
    frame = history.frame()
    cols = [(t, f"{phase}/{t}") for t in TERMS if f"{phase}/{t}" in frame]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.4 * len(cols), 2.9), squeeze=False)
    for ax, (term, col) in zip(axes[0], cols):
        v = frame[col].astype(float)
        ax.plot(frame["step"], v, color="0.8", lw=0.8, label="per step")
        ax.plot(frame["step"], v.rolling(max(1, len(v) // 30), min_periods=1).mean(), color="C0",
                label="moving average")
        if mixup_from is not None:
            ax.axvline(mixup_from, color="C3", ls=":", lw=1, label="mixup on")
        ax.set(title=term if term != "baseline" else "L_b (baseline)", xlabel="step", ylabel="loss term")
    # one legend for every panel, below them: inside a panel it covered a noisy per-step line
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9, bbox_to_anchor=(0.5, 0.0),
               frameon=False)
    fig.suptitle(title, y=1.03)
    fig.tight_layout()
    return fig


def auroc_bars(frame: pd.DataFrame, order: list[str], title: str) -> plt.Figure:
    """Test AUROC per dataset: each baseline per dataset vs under MADDR on all datasets (dots: seeds)."""
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(order), 3.6))
    frame = frame.assign(AUROC=100 * pd.to_numeric(frame["AUROC"], errors="coerce"))
    sns.barplot(data=frame, x="method", y="AUROC", hue="dataset", order=order, errorbar=None, ax=ax, alpha=0.8)
    sns.stripplot(data=frame, x="method", y="AUROC", hue="dataset", order=order, dodge=True, size=3, ax=ax,
                  palette={d: "k" for d in frame["dataset"].unique()}, legend=False)
    for k, dots in enumerate(ax.collections):  # the seeds: one legend entry for all of them
        dots.set_label("one seed (dots)" if k == 0 else "_seed")
    ax.axhline(50, color="grey", ls="--", lw=1, label="chance (50 %)")
    ax.set(title=title, xlabel="method", ylabel="test AUROC (%, bars: mean over seeds)", ylim=(0, 100))
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=9, title="dataset", title_fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5),
              frameon=False)
    return fig
