"""Helpers of notebook 05 (MADDR): the paper's printed numbers, the joint protocol, per-dataset evaluation of a
model trained on all datasets, latent codes, and the notebook's figures."""
from __future__ import annotations

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
from ...experiment import ExperimentResult, score_and_record, scored_part
from ...plots import embed_2d
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
            ax.legend(fontsize=7, markerscale=1.5)
    fig.suptitle(title or f"{method.upper()} of the latent code (test images)", y=1.0)
    fig.tight_layout()
    return fig


def head_diagnostics(model: MADDR, images) -> pd.DataFrame:
    """Why a head scores what it scores: its accuracy on ``images`` with the kept weights, always guessing the most
    frequent class, the training accuracy logged over the last 20 steps, and the step the checkpoint criterion
    kept. A head far below its logged training accuracy was rolled back to an early step (the detector's
    checkpoint is chosen on anomaly detection, not on the heads), not mislabelled."""
    pred = model.predict_domains(images)
    history = model.base.history
    rows = []
    for h, predicted in pred.items():
        truth = np.asarray(images.domains[h]).astype(str)
        log = history.logs.get(f"{model.base.latent_phase}/{h}_acc", [])
        rows.append({"head": h, "accuracy (kept weights)": float((predicted == truth).mean()),
                     "always the most frequent": float(pd.Series(truth).value_counts(normalize=True).iloc[0]),
                     "training accuracy (last 20 steps)": float(np.nanmean(log[-20:])) if len(log) else float("nan"),
                     "kept step": history.best_step, "steps": len(history.steps),
                     "checkpoint criterion": history.checkpoint_criterion or history.monitor_name})
    return pd.DataFrame(rows)


def head_confusions(model: MADDR, images, title: str = "") -> plt.Figure:
    """Confusion matrices of the organ and modality heads on ``images`` (rows: true, columns: predicted)."""
    pred = model.predict_domains(images)
    heads = list(pred)
    fig, axes = plt.subplots(1, len(heads), figsize=(4.4 * len(heads), 3.8), squeeze=False)
    for ax, h in zip(axes[0], heads):
        names = model.hook.vocab[h]
        cm = confusion_matrix(np.asarray(images.domains[h]).astype(str), pred[h], labels=names)
        sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=names, yticklabels=names, ax=ax)
        acc = np.trace(cm) / max(cm.sum(), 1)
        ax.set(xlabel="predicted", ylabel="true", title=f"{h} head (accuracy {acc:.3f})")
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def loss_terms(history, phase: str, title: str = "", mixup_from: int | None = None) -> plt.Figure:
    """The terms of Eq. 1 over training (moving average), one panel each; mixup's start marked."""
    frame = history.frame()
    cols = [(t, f"{phase}/{t}") for t in TERMS if f"{phase}/{t}" in frame]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.4 * len(cols), 2.9), squeeze=False)
    for ax, (term, col) in zip(axes[0], cols):
        v = frame[col].astype(float)
        ax.plot(frame["step"], v, color="0.8", lw=0.8)
        ax.plot(frame["step"], v.rolling(max(1, len(v) // 30), min_periods=1).mean(), color="C0")
        if mixup_from is not None:
            ax.axvline(mixup_from, color="C3", ls=":", lw=1, label="mixup on")
            ax.legend(fontsize=7)
        ax.set(title=term if term != "baseline" else "L_b (baseline)", xlabel="step")
    fig.suptitle(title, y=1.03)
    fig.tight_layout()
    return fig


def auroc_bars(frame: pd.DataFrame, order: list[str], title: str) -> plt.Figure:
    """Test AUROC per dataset: each baseline per dataset vs under MADDR on all datasets (dots: seeds)."""
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(order), 3.6))
    sns.barplot(data=frame, x="method", y="AUROC", hue="dataset", order=order, errorbar=None, ax=ax, alpha=0.8)
    sns.stripplot(data=frame, x="method", y="AUROC", hue="dataset", order=order, dodge=True, palette="dark:k", size=3,
                  ax=ax, legend=False)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set(title=title, xlabel="", ylim=(0, 1))
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=7)
    return fig
