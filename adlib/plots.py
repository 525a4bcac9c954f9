"""Figures used across notebooks: shown inline in the notebook *and* saved under figures/ with stable names.

`save_figure` renders a figure to PNG once, writes that file atomically and, inside a Jupyter kernel, displays
the same PNG as the cell's output, so an executed notebook shows every figure it saved (on GitHub too), whatever
matplotlib backend is active. Heatmap rows share one colour scale across normal and anomalous examples, with a
colour bar, so a reader can tell which map is hotter.
"""
from __future__ import annotations

import io
import os

import matplotlib.pyplot as plt
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .io import atomic_path  # noqa: E402
from .paths import figures_dir  # noqa: E402
from .runtime import in_notebook_kernel  # noqa: E402

sns.set_theme(context="notebook", style="whitegrid")
LABEL_NAMES = {0: "normal", 1: "anomalous"}


def save_figure(fig: plt.Figure, name: str, dpi: int = 120, show: bool = True) -> None:
    """Write ``fig`` to figures/<name>.png atomically (figures/<profile>/ outside the cpu profile), show the
    same image inline when running in a notebook, and close the figure. With ``$ADLIB_FIGURE_RULES=strict`` a
    figure that breaks `figure_problems`' rules is refused (for checking notebooks before they are executed)."""
    if os.environ.get("ADLIB_FIGURE_RULES", "").lower() == "strict":
        problems = figure_problems(fig)
        if problems:
            plt.close(fig)
            raise ValueError(f"figure {name!r} lacks what a reader needs: {'; '.join(problems)}")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    png = buffer.getvalue()
    with atomic_path(figures_dir() / f"{name}.png") as tmp:
        tmp.write_bytes(png)
    plt.close(fig)
    if show and in_notebook_kernel():
        from IPython.display import Image, display

        display(Image(data=png, format="png"))


def figure_problems(fig: plt.Figure) -> list[str]:
    """What a reader would miss in ``fig``: a title (of an axes or the figure), axis labels on plotting axes, a
    legend where an axes draws several labelled series, a colour bar where a colour scale carries values."""
    problems = []
    suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    plotting = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_visible()]
    if not suptitle and not any(ax.get_title() for ax in plotting):
        problems.append("no title")
    has_colorbar = any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    for i, ax in enumerate(plotting):
        drawn = ax.lines or ax.patches or ax.collections
        if ax.axison and drawn and not ax.images:  # axes with ticks carry values: name them (t-SNE axes have none)
            twins = [o for o in plotting if o is not ax and o.bbox.bounds == ax.bbox.bounds]
            for axis, ticks, label in (("x", ax.get_xticks(), ax.get_xlabel()), ("y", ax.get_yticks(), ax.get_ylabel())):
                named = label or (axis == "x" and any(o.get_xlabel() for o in twins))
                if len(ticks) and getattr(ax, f"{axis}axis").get_visible() and not named:
                    problems.append(f"axes {i}: no {axis} label")
        labelled = {a.get_label() for a in [*ax.lines, *ax.patches, *ax.collections, *ax.containers]
                    if a.get_label() and not a.get_label().startswith("_")}
        if len(labelled) > 1 and ax.get_legend() is None and not fig.legends:
            problems.append(f"axes {i}: {len(labelled)} labelled series but no legend")
        scaled = [im for im in ax.images if im.get_array() is not None and im.get_array().ndim == 2
                  and im.get_cmap().name not in ("gray", "Greys", "binary", "Greys_r", "gray_r")]
        if scaled and not has_colorbar:
            problems.append(f"axes {i}: a colour-scaled image but no colour bar")
    return problems


def _to_hwc(img) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    return a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else np.clip(a, 0, 1)


def image_grid(rows: dict[str, "torch.Tensor | np.ndarray"], titles: list[str] | None = None, cmap: str = "gray",
               heat_rows: tuple[str, ...] = (), figsize_per: float = 1.4) -> plt.Figure:
    """A grid with one row per entry of ``rows`` (images (N,C,H,W) or maps (N,H,W)); rows named in
    ``heat_rows`` are drawn as heatmaps (e.g. residuals) with one colour bar per row."""
    unknown = [name for name in heat_rows if name not in rows]
    if unknown:  # a misspelt name would draw the map in grey on [0, 1], near-black and without a colour bar
        raise ValueError(f"heat_rows {unknown} are not rows of the grid; its rows are {list(rows)}")
    n = max(len(v) for v in rows.values())
    extra = 0.35 if heat_rows else 0.0
    fig, axes = plt.subplots(len(rows), n, figsize=(figsize_per * n + extra * 3, figsize_per * len(rows) + 0.3),
                             squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        heat = name in heat_rows
        if heat:  # one scale for the whole row: normal and anomalous maps are comparable
            values = np.stack([_heat_values(m) for m in imgs])
            vmin, vmax = float(np.min(values)), float(np.percentile(values, 99.5))
            vmax = vmax if vmax > vmin else vmin + 1e-12
        mappable = None
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(imgs):
                continue
            if heat:
                mappable = ax.imshow(_heat_values(imgs[c]), cmap="inferno", vmin=vmin, vmax=vmax)
            else:
                ax.imshow(_to_hwc(imgs[c]), cmap=cmap, vmin=0, vmax=1)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=8)
        axes[r, 0].text(-0.08, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
        if heat and mappable is not None:
            bar = fig.colorbar(mappable, ax=list(axes[r, :]), fraction=0.015, pad=0.01)
            _plain_ticks(bar)
    return fig


def _heat_values(m) -> np.ndarray:
    a = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
    a = a.astype(np.float32)
    if a.ndim == 3:  # (C, H, W) residual: mean over channels
        a = a.mean(axis=0)
    return a


def overlay_maps(images, maps, masks=None, titles: list[str] | None = None, alpha: float = 0.45) -> plt.Figure:
    """Images with their anomaly maps overlaid (and true lesion outlines when masks are given)."""
    n = len(images)
    maps = np.stack([_heat_values(m) for m in maps])
    vmin, vmax = float(maps.min()), float(np.percentile(maps, 99.5))  # one scale for every example
    vmax = vmax if vmax > vmin else vmin + 1e-12
    fig, axes = plt.subplots(1, n, figsize=(1.8 * n + 0.6, 2.0), squeeze=False)
    mappable = None
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(_to_hwc(images[i]), cmap="gray", vmin=0, vmax=1)
        mappable = ax.imshow(maps[i], cmap="jet", alpha=alpha, vmin=vmin, vmax=vmax)
        if masks is not None and np.asarray(masks[i]).any():
            ax.contour(np.asarray(masks[i]).astype(float), levels=[0.5], colors="white", linewidths=0.8)
        ax.axis("off")
        if titles:
            ax.set_title(titles[i], fontsize=8)
    bar = fig.colorbar(mappable, ax=list(axes[0, :]), fraction=0.02, pad=0.01)
    _plain_ticks(bar)
    bar.set_label("anomaly score", fontsize=8)
    return fig


def _plain_ticks(bar) -> None:
    """Colour-bar ticks without a detached offset/exponent label (it collides with the titles)."""
    from matplotlib.ticker import FormatStrFormatter

    bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    bar.ax.tick_params(labelsize=7)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC (test split)") -> plt.Figure:
    """curves: name -> (labels, scores); the legend shows each AUROC."""
    from .metrics import auroc

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def score_histogram(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None,
                    title: str = "anomaly scores (test split)") -> plt.Figure:
    """Score densities of normal and anomalous images (shared bins) and, when given, the validation threshold.
    Each artist carries its own legend label, so the legend cannot pair a name with the wrong artist."""
    labels, scores = np.asarray(labels).reshape(-1), np.asarray(scores, dtype=np.float64).reshape(-1)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    bins = np.histogram_bin_edges(scores, bins=40)
    for colour, value in zip(sns.color_palette(n_colors=2), (0, 1)):
        chosen = scores[labels == value]
        if len(chosen):
            ax.hist(chosen, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=colour,
                    edgecolor=colour, linewidth=1.2, label=LABEL_NAMES[value])
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold (chosen on validation)")
    ax.legend(fontsize=8)
    ax.set(xlabel="anomaly score", ylabel="density", title=title)
    return fig


def score_vs_detail(scores: np.ndarray, detail: np.ndarray, labels: np.ndarray,
                    title: str = "anomaly score vs image detail (test split)") -> plt.Figure:
    """Scatter of each test image's anomaly score against its fine detail (`adlib.shift.fine_detail`), one colour
    per class: a score that rises with detail ranks smooth (pneumonia) images as normal."""
    labels = np.asarray(labels).reshape(-1)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for colour, value in zip(sns.color_palette(n_colors=2), (0, 1)):
        chosen = labels == value
        ax.scatter(np.asarray(detail)[chosen], np.asarray(scores)[chosen], s=8, alpha=0.5, color=colour,
                   label=LABEL_NAMES[value])
    ax.set(xlabel="fine detail (mean |vertical gradient|)", ylabel="anomaly score", title=title)
    ax.legend(fontsize=8, markerscale=2)
    return fig


def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D projection with scikit-learn t-SNE or umap-learn UMAP."""
    features = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, perplexity=min(30, max(5, len(features) // 4)), init="pca",
                    random_state=seed).fit_transform(features)
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(features)
    raise ValueError("method must be 'tsne' or 'umap'")


def embedding_scatter(features: np.ndarray, labels, method: str = "tsne", seed: int = 0,
                      title: str | None = None, label_names: dict | None = None, ax=None) -> plt.Figure:
    """t-SNE/UMAP scatter of embeddings coloured by label (any label type: anomaly, organ, grade)."""
    xy = embed_2d(features, method, seed)
    names = label_names or LABEL_NAMES
    hue = [names.get(v, str(v)) if isinstance(names, dict) else str(v) for v in np.asarray(labels).tolist()]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=hue, s=10, alpha=0.7, linewidth=0, ax=ax)
    ax.set(xticks=[], yticks=[], title=title or f"{method.upper()} of embeddings")
    ax.legend(fontsize=8, markerscale=2)
    return fig if fig is not None else ax.figure


def training_curves(history, title: str = "training") -> plt.Figure:
    """Loss per step of every phase (smoothed; one panel per optimizer, e.g. generator and discriminator)
    and the monitor (hold-out loss or validation AUROC) with the kept step, from a TrainHistory."""
    phases = [k for k, v in history.losses.items() if np.isfinite(np.asarray(v, dtype=float)).any()]
    n = max(1, len(phases))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.2), squeeze=False)
    steps = np.asarray(history.steps)
    for ax, name in zip(axes[0], phases or ["loss"]):
        loss = np.asarray(history.losses.get(name, []), dtype=float)
        ok = np.isfinite(loss)
        if ok.any():
            s, v = steps[ok], loss[ok]
            k = max(1, len(v) // 50)
            smooth = np.convolve(v, np.ones(k) / k, mode="valid")
            ax.plot(s[k - 1:], smooth, label=f"{name} loss (train)")
        ax.set(xlabel="step", ylabel="loss", title=f"{title}: {name}" if n > 1 else title)
    ax = axes[0, 0]
    if history.monitor_values:
        target = ax if history.monitor_name != "val AUROC" else ax.twinx()
        target.plot(history.eval_steps, history.monitor_values, "o-", ms=3, color="C1", label=history.monitor_name)
        if target is not ax:
            target.set_ylabel(history.monitor_name)
            target.legend(fontsize=8, loc="lower right")
            target.grid(False)
    if history.best_step:
        ax.axvline(history.best_step, color="grey", ls=":", lw=1, label="kept step")
    for a in axes[0]:
        a.legend(fontsize=8, loc="upper right")
    if history.status not in ("completed", "early-stopped"):
        fig.suptitle(f"status: {history.status}", color="red", fontsize=9)
    fig.tight_layout()
    return fig


def class_balance(frame, title: str = "class balance") -> plt.Figure:
    """Bar chart from a Protocol.summary()-like frame (columns part, normal, anomalous)."""
    long = frame.melt(id_vars=[c for c in frame.columns if c not in ("normal", "anomalous")],
                      value_vars=["normal", "anomalous"], var_name="class", value_name="images")
    g = sns.catplot(data=long, x="part", y="images", hue="class", col="dataset", kind="bar", height=3, aspect=1.2,
                    sharey=False)
    g.set_xticklabels(rotation=30, ha="right")
    for ax in g.axes.flat:  # sharey=False: every panel has its own scale, so every panel names it
        ax.set_ylabel("images")
    g.figure.suptitle(title, y=1.03)
    return g.figure
