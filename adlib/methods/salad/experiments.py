"""Helpers of notebook 04 (SALAD): the paper's printed numbers, the settings of every method and ablation
variant, and the notebook's figures. Kept here so that the notebook's cells stay short.

The baselines are created through the registry by name (`adlib.detectors.create`), never imported: a method
module does not import a sibling method.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ...plots import embed_2d
from .perturbations import bezier_intensity, inpaint, local_shuffle
from ...data.protocol import cap_splits as cap  # noqa: F401  (the notebooks import it from here)

PAPER_CSV = Path(__file__).with_name("paper_numbers_salad.csv")
METRICS = ("AUROC", "F1", "ACC", "SEN", "SPE")
PAPER_METRIC = {"AUROC": "AUC", "F1": "F1", "ACC": "ACC", "SEN": "SEN", "SPE": "SPE"}
# display name -> (registered detector, fixed options), in the paper's Table I order (+ MemAE, AE with L1)
METHODS = {
    "AE": ("conv_ae", {"loss": "l2"}),
    "AE (L1)": ("conv_ae", {"loss": "l1"}),
    "VAE": ("vae", {}),
    "f-AnoGAN": ("f_anogan", {}),
    "GANomaly": ("ganomaly", {}),
    "SSIM-AE": ("ssim_ae", {}),
    "SALAD": ("salad", {}),
    "MemAE": ("memae", {}),
}
# the learning rates of each method's own paper (Adam); SALAD, GANomaly and SSIM-AE use the profile's lr (2e-4)
OWN_LR = {"AE": 1e-3, "AE (L1)": 1e-3, "VAE": 1e-3, "f-AnoGAN": 1e-4, "MemAE": 1e-4}
PAPER_ORDER = ("AE", "VAE", "f-AnoGAN", "GANomaly", "SSIM-AE", "SALAD")  # the paper's claimed ranking, low to high

# Table III (image/feature-space losses; no self-supervision) and Table IV (self-supervision variants)
TABLE3 = {
    "L1": dict(image_loss="l1", feature_constraint="none", self_supervision="none"),
    "L_str": dict(image_loss="ssim", feature_constraint="none", self_supervision="none"),
    "L_str + L_KL": dict(image_loss="ssim", feature_constraint="kl", self_supervision="none"),
    "L_str + L_ct": dict(image_loss="ssim", feature_constraint="centre", self_supervision="none"),
}
TABLE4 = {
    "w/o SSL": TABLE3["L_str + L_ct"],
    "E. + D.": dict(self_supervision="shared_enc_dec"),
    "E.": dict(self_supervision="encoder"),
    "E. + last decoder layers": dict(self_supervision="encoder_last_layers"),
}
TABLE5 = {"A_I": "image", "A_C": "centre", "A_F": "feature"}


def paper_numbers_salad(table: str | None = None) -> pd.DataFrame:
    """The SALAD paper's printed numbers (Tables I-VI) with a ``fraction`` column (percentages / 100) and our
    metric names (AUC -> AUROC)."""
    frame = pd.read_csv(PAPER_CSV)
    frame["fraction"] = np.where(frame["unit"] == "percent", frame["value"] / 100.0, frame["value"])
    frame["our_metric"] = frame["metric"].replace({"AUC": "AUROC", "AUC_std": "AUROC_std"})
    return frame if table is None else frame[frame["table"] == table].reset_index(drop=True)


def steps_for(cfg, key: str, n_train: int) -> int:
    """A profile's fixed number of steps for ``key``, or (paper profile) ``epochs`` over the training normals."""
    if key in cfg.values:
        return int(cfg[key])
    return int(np.ceil(cfg["epochs"] * n_train / cfg["batch_size"]))


def detector_kwargs(method: str, cfg, n_train: int, **over) -> dict:
    """Keyword arguments of ``method`` (display name) for one notebook run, from the run configuration."""
    name, fixed = METHODS[method]
    steps = steps_for(cfg, "steps", n_train)
    common = dict(batch_size=cfg["batch_size"], eval_every=cfg["eval_every"], progress=False)
    lr = OWN_LR.get(method, cfg["lr"])
    if name == "conv_ae":
        kw = dict(latent=cfg["nz"], width=2 * cfg["width"], steps=steps, lr=lr, patience=None)
    elif name == "f_anogan":
        kw = dict(nz=cfg["nz"], width=cfg["width"], max_width=cfg["max_width"], lr=lr, n_critic=cfg["n_critic"],
                  gan_steps=steps_for(cfg, "gan_steps", n_train), encoder_steps=steps_for(cfg, "encoder_steps", n_train))
    elif name == "salad":
        kw = dict(nz=cfg["nz"], width=cfg["width"], max_width=cfg["max_width"], d_width=cfg["width"],
                  d_hidden=cfg["d_hidden"], lr=lr, steps=steps_for(cfg, "salad_steps", n_train))
    else:
        kw = dict(nz=cfg["nz"], width=cfg["width"], max_width=cfg["max_width"], lr=lr, steps=steps)
    kw = {**common, **kw, **fixed}
    kw.update(over)
    return kw



def table_vs_paper(summary: pd.DataFrame, paper: pd.DataFrame, dataset_in_paper: str,
                   methods: list[str]) -> pd.DataFrame:
    """Ours (mean ± std over seeds) beside the paper's printed numbers, one row per method, fractions."""
    rows = []
    for m in methods:
        ours = summary[summary["method"] == m]
        row = {"method": m}
        if len(ours):
            row.update({c: ours[c].iloc[0] for c in ("n_seeds", "profile", "weights") if c in ours})
        for metric in METRICS:
            if len(ours):
                mean, std = ours[f"{metric}_mean"].iloc[0], ours[f"{metric}_std"].iloc[0]
                row[f"ours {metric}"] = f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"
            else:
                row[f"ours {metric}"] = ""
            printed = paper[(paper["method"] == m) & (paper["dataset"] == dataset_in_paper)
                            & (paper["metric"] == PAPER_METRIC[metric])]["fraction"]
            row[f"paper {metric}"] = round(float(printed.iloc[0]), 4) if len(printed) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def scored_rows(scores: dict[str, np.ndarray], labels: np.ndarray, names: dict[int, str]) -> pd.DataFrame:
    """Table VI analogue: mean ± std of each score per class."""
    rows = []
    for label, name in names.items():
        mask = labels == label
        rows.append({"class": name, **{f"{k} mean": float(v[mask].mean()) for k, v in scores.items()},
                     **{f"{k} std": float(v[mask].std()) for k, v in scores.items()}, "images": int(mask.sum())})
    return pd.DataFrame(rows)


# ----- figures -------------------------------------------------------------------------------------------
def perturbation_rows(images: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fig. 3 analogue: each image and its three perturbations (one generator per row, seeded)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    rows = {"original": x}
    for k, (name, fn) in enumerate((("in-painting", inpaint), ("local shuffling", local_shuffle),
                                    ("non-linear intensity", bezier_intensity))):
        rows[name] = fn(x, torch.Generator().manual_seed(seed * 10 + k))
    return rows


def bezier_figure(n: int = 6, seed: int = 0) -> plt.Figure:
    """A few random Bézier intensity curves (the non-linear transformation of Fig. 3)."""
    from .perturbations import bezier_curves

    xs, ys = bezier_curves(n, torch.Generator().manual_seed(seed))
    fig, ax = plt.subplots(figsize=(3.4, 3.2))
    for i in range(n):
        ax.plot(xs[i], ys[i], lw=1.2)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="identity")
    ax.set(xlabel="input intensity", ylabel="output intensity", title="random Bézier intensity curves")
    ax.legend(fontsize=7)
    return fig


def example_rows(detector, images, labels: tuple[str, str] = ("normal", "pneumonia")) -> tuple[dict, list]:
    """Rows (input / reconstruction / residual) and titles (class, A_F) for `plots.image_grid` (Figs. 5/6)."""
    scores = detector.score(images)
    rows = {"input x_t": images.images, "reconstruction": detector.reconstruct(images),
            "|x_t - x_hat_t|": detector.anomaly_maps(images)}
    titles = [f"{labels[int(y)]} {s:.3f}" for y, s in zip(images.labels, scores)]
    return rows, titles


def compactness(z: np.ndarray) -> float:
    """Mean distance of normal features to their mean, divided by the root mean square norm of the centred
    features' dimensions (scale-free spread: lower = more compact relative to the feature scale)."""
    z = np.asarray(z, dtype=np.float64)
    centred = z - z.mean(0)
    return float(np.linalg.norm(centred, axis=1).mean() / (np.sqrt((centred**2).mean()) * np.sqrt(z.shape[1]) + 1e-12))


def tsne_with_without_centre(features: dict[str, np.ndarray], labels: np.ndarray, seed: int = 0,
                             title: str = "t-SNE of z'") -> plt.Figure:
    """Fig. 7 analogue. Left: the paper's view - normal test features of both models in one t-SNE (red: with
    the centre loss, blue: without; each model's features standardised first, since the two latent spaces
    have different scales). Right two panels: each model's own t-SNE, normal vs pneumonia."""
    names = list(features)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    normal = labels == 0
    joint = [(f[normal] - f[normal].mean(0)) / (f[normal].std() + 1e-12) for f in features.values()]
    xy = embed_2d(np.concatenate(joint), "tsne", seed)
    colours = ("tab:red", "tab:blue")
    start = 0
    for name, part, colour in zip(names, joint, colours):
        axes[0].scatter(*xy[start:start + len(part)].T, s=6, alpha=0.6, color=colour, label=name)
        start += len(part)
    axes[0].set(xticks=[], yticks=[], title="normal test images, both models")
    axes[0].legend(fontsize=7, markerscale=2)
    for ax, name in zip(axes[1:], names):
        xy = embed_2d(features[name], "tsne", seed)
        for label, colour, text in ((0, "tab:green", "normal"), (1, "tab:orange", "pneumonia")):
            m = labels == label
            ax.scatter(*xy[m].T, s=6, alpha=0.6, color=colour, label=text)
        ax.set(xticks=[], yticks=[], title=name)
        ax.legend(fontsize=7, markerscale=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ablation_bars(frame: pd.DataFrame, paper: pd.DataFrame, title: str, order: list[str]) -> plt.Figure:
    """AUROC per variant: ours (bars) beside the paper's OCT numbers (black ticks)."""
    fig, ax = plt.subplots(figsize=(1.4 + 1.3 * len(order), 3.2))
    ours = frame.groupby("variant")["AUROC"].mean().reindex(order)
    ax.bar(range(len(order)), ours.values, color=sns.color_palette("deep", len(order)), label="ours (PneumoniaMNIST)")
    for i, v in enumerate(order):
        printed = paper[(paper["method"] == v) & (paper["metric"] == "AUC")]["fraction"]
        if len(printed):
            ax.plot([i - 0.4, i + 0.4], [printed.iloc[0]] * 2, color="k", lw=2,
                    label="paper (OCT)" if i == 0 else None)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set(xticks=range(len(order)), xticklabels=order, ylabel="test AUROC", ylim=(0, 1.02), title=title)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=7, loc="lower right")
    return fig
