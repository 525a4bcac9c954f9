"""Notebook 01's study, written once: pooled-feature read-outs (kNN anomaly score, linear probe, retrieval) per
backbone and weight source on the validation split, its tables, figures and generated conclusions.

The backbones announce their weights once per process; inside this study the announcements are collected
(`quiet_weights`) because the weights of every row are in the tables (source, file, SHA-256).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .. import verdicts
from ..metrics import auroc
from ..results import ResultsTable
from .architectures import LITE_ARCHS
from .extractor import FeatureExtractor
from .readouts import cosine_neighbours, knn_anomaly_scores, linear_probe_scores, pooled_features

ANNOUNCEMENT = "[adlib.backbones]"


@contextlib.contextmanager
def quiet_weights():
    """Swallow the backbones' '[adlib.backbones] ... using ... weights' lines; anything else is printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    other = [line for line in buffer.getvalue().splitlines() if line.strip() and not line.startswith(ANNOUNCEMENT)]
    if other:
        print("\n".join(other))


def weight_sources(archs, directory=None) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """Per arch: the weight sources compared (random and each pretrained one available), and a table of what
    weights='auto' resolves to."""
    from .weight_files import WeightsNotAvailableError, imagenet_available
    from .weights import resolve_weights

    sources, rows = {}, []
    for arch in archs:
        try:
            auto = resolve_weights(arch, "auto", directory)
        except WeightsNotAvailableError as err:
            auto = f"none ({err})"
        if arch in LITE_ARCHS:
            sources[arch] = ["random", "imagenet-lite"]
        else:
            sources[arch] = ["random", "cifar10"] + (["imagenet"] if imagenet_available(arch) else [])
        rows.append({"arch": arch, "weights='auto' uses": auto, "compared below": ", ".join(sources[arch])})
    return sources, pd.DataFrame(rows)


def pretraining_table(ckpts: dict) -> pd.DataFrame:
    """The CIFAR-10 pretraining of each arch, the columns a reader compares (the rest is in the manifests)."""
    return pd.DataFrame([{
        "arch": arch, "images seen": c.manifest["config"]["steps"] * c.manifest["config"]["batch_size"],
        "train time (min)": round(c.manifest["train_seconds"] / 60, 1),
        "train images/s": round(c.manifest["train_images_per_second"], 1),
        "CIFAR-10 test accuracy (%)": round(c.manifest["test_accuracy"] * 100, 1),
        "test images": c.manifest["test_images"], "file": c.path.name} for arch, c in ckpts.items()])


def pretraining_curves_figure(ckpts: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for arch, c in ckpts.items():
        curve = c.manifest["curve"]
        axes[0].plot(curve["steps"], curve["train_loss"], label=arch)
        axes[1].plot(curve["val_steps"], np.array(curve["val_accuracy"]) * 100, marker="o", label=arch)
    axes[0].set(xlabel="step", ylabel="cross-entropy", title="CIFAR-10 training loss")
    axes[1].axhline(10, color="grey", ls=":", label="chance (10 %)")
    axes[1].set(xlabel="step", ylabel="accuracy (%)", title="held-out CIFAR-10 accuracy", ylim=(0, 100))
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def feature_map_rows(arch: str, layers, sources, image: torch.Tensor, directory=None, top: int = 8) -> dict:
    """Rows for `plots.image_grid`: the input, then per source and layer the ``top`` channels with the largest
    spatial variance, each scaled to [0, 1]."""
    rows = {"input": image}
    for source in sources:
        with quiet_weights():
            ext = FeatureExtractor(arch, layers, weights=source, directory=directory)
        with torch.no_grad():
            feats = ext(image)
        for layer, f in feats.items():
            maps = f[0, f[0].flatten(1).var(dim=1).argsort(descending=True)[:top]]
            low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
            rows[f"{source} {layer}"] = (maps - low) / (high - low).clamp_min(1e-8)
    return rows


def probe_train_set(protocol, n: int | None, seed: int):
    """A seeded class-balanced subset of the training split: normals and pneumonia images."""
    return protocol.train.sample(n, seed=seed), protocol.train_anomaly_pool.sample(n, seed=seed)


@dataclass
class ReadoutStudy:
    """What `run_readouts` produced: per-seed rows, timing rows, and the first seed's features and neighbours."""

    probe: ResultsTable
    timing: ResultsTable
    features: dict = field(default_factory=dict)  # (arch, source) -> (normal, anomalous, val) features, first seed
    retrieval: dict = field(default_factory=dict)  # (arch, source) -> (neighbours, y_train, normals, anomalies)


def run_readouts(cfg, protocol, val, sources: dict, *, layers: dict, directory=None, provenance: dict | None = None,
                 k: int = 5) -> ReadoutStudy:
    """For every arch, weight source and seed: pooled features of one layer for a balanced training subset and
    the validation images; the kNN anomaly score (normals only), a linear probe and precision@5 of retrieval, all
    on the validation split. Rows go to 01_feature_readouts, extraction time to 01_feature_timing."""
    from ..meter import ResourceMeter

    study = ReadoutStudy(ResultsTable("01_feature_readouts"), ResultsTable("01_feature_timing"))
    common = dict(dataset="pneumonia", profile=cfg.profile.name, image_size=cfg.image_size,
                  data_source=protocol.data_source(), **(provenance or {}))
    for arch in cfg.archs:
        layer = layers[arch]
        for source in sources[arch]:
            for seed in cfg.seeds:
                normals, anomalies = probe_train_set(protocol, cfg.get("probe_per_class"), seed)
                with quiet_weights():
                    ext = FeatureExtractor(arch, [layer], weights=source, seed=seed if source == "random" else 0,
                                           directory=directory)
                weights = dict(weights=source, weights_file=ext.weights_file, weights_sha256=ext.weights_sha256)
                with ResourceMeter(images=len(normals) + len(anomalies) + len(val)) as meter:
                    f_norm, f_anom, f_val = (pooled_features(ext, s) for s in (normals, anomalies, val))
                study.timing.add(method=arch, seed=seed, variant=f"pooled {layer}", **weights, **common,
                                 **meter.as_row())
                x_train = np.concatenate([f_norm, f_anom])
                y_train = np.r_[np.zeros(len(f_norm)), np.ones(len(f_anom))].astype(int)
                neighbours = cosine_neighbours(f_val, x_train, k=k)
                study.probe.add(method=f"{arch} {layer}", seed=seed, variant="validation", **weights, **common,
                                kNN_AUROC=auroc(val.labels, knn_anomaly_scores(f_norm, f_val, k=k)),
                                probe_AUROC=auroc(val.labels, linear_probe_scores(x_train, y_train, f_val, seed=seed)),
                                retrieval_P5=float((y_train[neighbours] == val.labels[:, None]).mean()))
                if seed == cfg.seeds[0]:
                    study.features[(arch, source)] = (f_norm, f_anom, f_val)
                    study.retrieval[(arch, source)] = (neighbours, y_train, normals, anomalies)
    return study


# ----------------------------------------------------------------------------------------------------------------
# tables, figures, sentences
# ----------------------------------------------------------------------------------------------------------------
def readout_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per backbone layer and weight source: kNN AUROC, probe AUROC, retrieval P@5 (validation, %), and a
    note saying where the kNN read-out is below or at chance."""
    from ..notebook import reading_table

    table = reading_table(rows, "kNN_AUROC", keys=("method", "weights"), extra_metrics=("probe_AUROC", "retrieval_P5"))
    notes = {key: verdicts.chance_status(g, "kNN_AUROC") for key, g in rows.groupby(["method", "weights"], sort=False)}
    table["note"] = [("kNN " + notes[(m, w)]) if notes.get((m, w), "above chance") != "above chance" else ""
                     for m, w in zip(table["method"], table["weights"])]
    return table.rename(columns={"method": "backbone layer", "ours kNN_AUROC": "kNN AUROC (val)",
                                 "probe_AUROC": "linear probe AUROC (val)", "retrieval_P5": "retrieval P@5 (val)"})


def readout_figure(summary: pd.DataFrame, title: str):
    """Validation AUROC of both read-outs per backbone and weight source. The y axis starts at the chance level
    (50 %, drawn) when every bar lies above it, else at 0; the legend sits outside the axes. When every backbone
    has one pretrained source, the bars are 'random init' vs 'pretrained' and the label names the source."""
    import matplotlib.pyplot as plt

    frame = summary.assign(short=[m.replace("efficientnet_lite", "Lite").replace(" ", "\n") for m in summary["method"]])
    frame["bar"] = np.where(frame["weights"] == "random", "random init", "pretrained")
    if frame.groupby(["method", "bar"]).size().max() == 1:
        source = frame[frame["bar"] == "pretrained"].set_index("method")["weights"]
        frame["short"] = [f"{s}\n({source.get(m, '-')})" for s, m in zip(frame["short"], frame["method"])]
    else:
        frame["bar"] = frame["weights"]
    fig, axes = plt.subplots(2, 1, figsize=(9.5, 7.6), sharey=True, sharex=True)
    lowest = 100.0
    for ax, metric, name in zip(axes, ["kNN_AUROC", "probe_AUROC"], ["kNN anomaly score (normals only)",
                                                                     "linear probe (supervised)"]):
        by = frame.set_index(["short", "bar"])
        pivot = by[f"{metric}_mean"].unstack() * 100
        err = by[f"{metric}_std"].unstack().reindex_like(pivot).fillna(0) * 100  # one seed: no spread, no bar
        pivot.plot.bar(ax=ax, yerr=err, rot=0, capsize=3, legend=False, width=0.7)
        lowest = min(lowest, float(np.nanmin((pivot - err).to_numpy())))
        ax.axhline(50, color="black", ls="--", lw=1.2, clip_on=False, zorder=5, label="chance (50 %)")
        ax.grid(axis="x", visible=False)
        ax.tick_params(axis="x", labelsize=10)
        ax.set(title=name, ylabel="validation AUROC (%)")
    sources = ("backbone, layer (source of the pretrained weights; random init: the same network untrained)"
               if set(frame["bar"]) == {"pretrained", "random init"} else "backbone, layer")
    axes[1].set_xlabel(sources)
    axes[0].set_ylim(50 if lowest >= 50 else 0, 100)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="weights (bars: mean ± std over seeds)", loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=10, title_fontsize=10)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def retrieval_figure(val, study: ReadoutStudy, arch: str, sources, n_per_class: int = 2, seed: int = 0):
    """Validation queries (n per class) and their 5 nearest training images per weight source; a green title
    marks a neighbour with the query's label."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    queries = np.concatenate([rng.choice(np.flatnonzero(val.labels == c), n_per_class, replace=False) for c in (0, 1)])
    n_src = len(sources)
    fig, axes = plt.subplots(len(queries) * n_src, 6, figsize=(7.5, 1.3 * len(queries) * n_src), squeeze=False)
    for s, source in enumerate(sources):
        neighbours, y_train, normals, anomalies = study.retrieval[(arch, source)]
        gallery = torch.cat([normals.images, anomalies.images])
        for q, qi in enumerate(queries):
            row = axes[q * n_src + s]
            row[0].imshow(val.images[qi, 0], cmap="gray")
            row[0].set_title(f"{source}: query ({'pneum.' if val.labels[qi] else 'normal'})", fontsize=8)
            for j, gi in enumerate(neighbours[qi]):
                row[j + 1].imshow(gallery[gi, 0], cmap="gray")
                same = y_train[gi] == val.labels[qi]
                row[j + 1].set_title("pneum." if y_train[gi] else "normal", fontsize=8,
                                     color="green" if same else "red")
            for ax in row:
                ax.axis("off")
    fig.suptitle(f"{arch}: validation queries and their 5 nearest training images (cosine, pooled features)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def validation_warning(rows: pd.DataFrame) -> str:
    """The read-outs' AUROCs are validation AUROCs; how much validation flatters, from committed rows that have
    both numbers (PatchCore, a kNN on pretrained patch features, is the closest analogue)."""
    from ..protocol_notes import validation_flatters_sentence, validation_vs_test

    frame = validation_vs_test()
    focus = frame[(frame["method"] == "PatchCore") & frame["table"].isin(["06_table1_pneumonia.csv",
                                                                          "06_weights.csv"])]
    best = rows.groupby(["method", "weights"])["kNN_AUROC"].mean()
    (method, weights), value = best.idxmax(), best.max()
    return (f"⚠ **These are validation AUROCs.** The best kNN read-out here, {method} with {weights} weights, "
            f"reaches {value * 100:.1f} % on the *validation* split, which is cut from the same pool as the training "
            "images; the test split (collected separately) is not scored in this notebook except in exercise 4. "
            + validation_flatters_sentence(frame, focus) + " Expect the test AUROC of a read-out to be lower than "
            "the validation AUROCs above.")


def conclusions(rows: pd.DataFrame, ckpts: dict, archs) -> list[str]:
    """Per arch: its pretraining, and pretrained vs random weights on both read-outs (verdicts.compare: 'better'
    only beyond the seed spread)."""
    lines = []
    for arch in archs:
        mine = rows[rows["method"].str.startswith(arch + " ")]
        text = f"**{arch}**: "
        if arch in ckpts:
            c = ckpts[arch].manifest
            text += (f"CIFAR-10 pretraining reached {c['test_accuracy'] * 100:.1f} % test accuracy on "
                     f"{c['test_images']} test images after {c['config']['steps'] * c['config']['batch_size']} "
                     f"training images ({c['train_seconds'] / 60:.1f} min). ")
        random = mine[mine["weights"] == "random"]
        for source in [s for s in mine["weights"].unique() if s != "random"]:
            for metric, name in (("kNN_AUROC", "kNN"), ("probe_AUROC", "linear probe")):
                comparison = verdicts.compare(mine[mine["weights"] == source], random, metric,
                                              names=(f"{source} weights", "random weights"))
                text += (f"{name}: **{comparison.label}** ({comparison.a.text()} vs {comparison.b.text()}, "
                         "validation). ")
        lines.append(text.strip())
    return lines
