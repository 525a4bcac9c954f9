"""Figures used across notebooks: shown inline in the notebook *and* saved under figures/ with stable names.

`save_figure` renders a figure to PNG once, writes that file atomically and, inside a Jupyter kernel, displays
the same PNG as the cell's output, so an executed notebook shows every figure it saved (on GitHub too), whatever
matplotlib backend is active. Heatmap rows share one colour scale across normal and anomalous examples, with a
colour bar, so a reader can tell which map is hotter.
"""
from __future__ import annotations

import io
import os
import re

import matplotlib.pyplot as plt
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .io import atomic_path  # noqa: E402
from .paths import figures_dir  # noqa: E402
from .runtime import in_notebook_kernel, keep_torch_threads  # noqa: E402

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


MIN_FONT_PT = 8  # the smallest text a reader can read in a notebook at 120 dpi
SCORE_WORDS = re.compile(r"\b(AUROC|AUC|AUPRC|ACC|accuracy|F1|precision|recall|sensitivity|specificity|SEN|SPE)\b",
                         re.IGNORECASE)
FRACTION_IN_TEXT = re.compile(r"\b(AUROC|AUC|ACC|F1)\b[ =:]*0?\.\d", re.IGNORECASE)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # a period (7) prime to the colours' (10): no pair repeats under 70


def series_styles(names) -> dict[str, dict]:
    """A distinct look per name that a legend shows: colour (tab10), marker and line style together never repeat
    (the first ten solid, the next ten dashed, markers on their own period), so two series never share a swatch."""
    colours = plt.get_cmap("tab10").colors
    return {name: dict(color=colours[i % 10], marker=MARKERS[i % len(MARKERS)],
                       ls=("-", "--", ":", "-.")[(i // 10) % 4]) for i, name in enumerate(dict.fromkeys(names))}


def percent(values):
    """Fractions (AUROC, ACC, F1 in [0, 1]) as the percent every table shows."""
    return 100 * np.asarray(values, dtype=float) if not hasattr(values, "mul") else values * 100


def legend_outside(ax_or_fig, handles=None, labels=None, **kw):
    """A legend to the right of the axes (or figure), where it covers no data; font at least MIN_FONT_PT."""
    kw = {"loc": "center left", "bbox_to_anchor": (1.01, 0.5), "fontsize": 9, "frameon": False, **kw}
    if handles is None:
        return ax_or_fig.legend(**kw)
    return ax_or_fig.legend(handles, labels, **kw)


def _spans_axes(line, ax) -> bool:
    t = line.get_transform()
    return t is ax.get_yaxis_transform(which="grid") or t is ax.get_xaxis_transform(which="grid")


def _labelled(artist) -> bool:
    label = artist.get_label()
    return bool(label) and not label.startswith("_")


def _colour_of(artist) -> tuple:
    """An artist's colour (RGB, rounded) for matching it with the legend's entries."""
    from matplotlib.colors import to_rgb

    if hasattr(artist, "get_color") and not hasattr(artist, "get_offsets"):
        colour = artist.get_color()
    else:
        faces = artist.get_facecolor()
        colour = faces[0] if len(faces) and faces[0][3] > 0 else (artist.get_edgecolor()[0]
                                                                  if len(artist.get_edgecolor()) else (0, 0, 0, 0))
    return tuple(np.round(to_rgb(colour), 2))


def _data_points(ax) -> np.ndarray:
    """Display coordinates of what an axes draws as data: line vertices (not the axis-spanning reference lines),
    scatter points and the corners and centres of bars."""
    points = []
    for line in ax.lines:
        if line.get_visible() and not _spans_axes(line, ax) and len(line.get_xydata()) >= 2:
            xy = np.asarray(line.get_xydata(), dtype=float)
            xy = xy[np.isfinite(xy).all(1)]
            if len(xy):
                points.append(line.get_transform().transform(xy))
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets(), dtype=float)
        if type(coll).__name__ == "PathCollection" and coll.get_visible() and len(offsets):
            points.append(coll.get_offset_transform().transform(offsets[np.isfinite(offsets).all(1)]))
    for patch in ax.patches:
        if type(patch).__name__ == "Rectangle" and patch.get_visible() and patch.get_height() and patch.get_width():
            box = patch.get_window_extent()
            xs, ys = np.linspace(box.x0, box.x1, 5), np.linspace(box.y0, box.y1, 5)
            points.append(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2))
    return np.concatenate(points) if points else np.zeros((0, 2))


def _legend_problems(i: int, ax, legend) -> list[str]:
    problems = []
    box = legend.get_window_extent()
    inside = ax.bbox.contains(box.x0 + 1, box.y0 + 1) and ax.bbox.contains(box.x1 - 1, box.y1 - 1)
    if inside:
        pts = _data_points(ax)
        covered = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)).sum()
        if covered > max(2, 0.02 * len(pts)):
            problems.append(f"axes {i}: the legend covers {covered} drawn data points (move it outside)")
    seen = {}
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        if handle is None:
            continue
        if hasattr(handle, "get_marker") and hasattr(handle, "get_linestyle"):
            marker = handle.get_marker() if handle.get_marker() not in (None, "None", "", " ") else None
            colour = tuple(np.round(plt.matplotlib.colors.to_rgba(handle.get_color()), 3))
            key = ("line", colour, marker) if marker else ("line", colour, handle.get_linestyle())
        elif hasattr(handle, "get_facecolor"):
            face = handle.get_facecolor()
            face = face[0] if np.ndim(face) == 2 and len(face) else face
            face = np.asarray(face, dtype=float).reshape(-1)[:4]
            if (len(face) < 4 or face[3] == 0) and hasattr(handle, "get_edgecolor"):  # hollow: its edge is its look
                edge = handle.get_edgecolor()
                edge = edge[0] if np.ndim(edge) == 2 and len(edge) else edge
                key = ("hollow", tuple(np.round(np.asarray(edge, dtype=float).reshape(-1)[:4], 3)))
            else:
                key = ("patch", tuple(np.round(face, 3)))
        else:
            continue
        if key in seen and seen[key] != text.get_text():
            problems.append(f"axes {i}: legend entries {seen[key]!r} and {text.get_text()!r} look the same")
        seen.setdefault(key, text.get_text())
    return problems


def figure_problems(fig: plt.Figure) -> list[str]:
    """What a reader would miss or misread in ``fig``: a title (of an axes or the figure), axis labels on plotting
    axes, a legend where an axes draws several labelled series, a colour bar where a colour scale carries values;
    text under MIN_FONT_PT; an axis that names a score (AUROC, ACC, F1, ...) without '%' or that says '%' over
    fractions, and a fraction such as 'AUROC 0.370' in the text; a legend that covers data or shows two entries
    alike; unlabelled scatter points, curves or reference lines beside a legend (a reader cannot tell what they are)."""
    problems = []
    fig.draw_without_rendering()  # tick labels, legend and layout as they will be saved
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
                if label and SCORE_WORDS.search(label) and getattr(ax, f"get_{axis}scale")() == "linear":
                    low, high = sorted(getattr(ax, f"get_{axis}lim")())
                    if "%" not in label:
                        problems.append(f"axes {i}: {axis} axis {label!r} shows a score without its unit (%)")
                    elif high <= 1.5 and low >= -0.5:
                        problems.append(f"axes {i}: {axis} axis {label!r} says % but spans fractions "
                                        f"({low:.2g} to {high:.2g})")
        labelled = {a.get_label() for a in [*ax.lines, *ax.patches, *ax.collections, *ax.containers] if _labelled(a)}
        if len(labelled) > 1 and ax.get_legend() is None and not fig.legends:
            problems.append(f"axes {i}: {len(labelled)} labelled series but no legend")
        if ax.get_legend() is not None:
            problems += _legend_problems(i, ax, ax.get_legend())
            in_containers = {id(a) for c in ax.containers for a in c.get_children()}
            silent = [a for a in ax.lines if not _labelled(a) and id(a) not in in_containers and a.get_visible()
                      and (_spans_axes(a, ax) or len(a.get_xydata()) >= 3)]
            silent += [c for c in ax.collections if type(c).__name__ == "PathCollection" and not _labelled(c)
                       and len(c.get_offsets()) and c.get_visible()
                       and len(np.unique(np.round(c.get_facecolor(), 3), axis=0)) <= 1]  # one colour: not a hue map
            named = {_colour_of(a) for a in [*ax.lines, *ax.collections] if _labelled(a)}
            silent = [a for a in silent if _colour_of(a) not in named]  # a repeat of a named series' look is named
            if silent:
                problems.append(f"axes {i}: {len(silent)} unlabelled series or reference lines beside a legend")
        scaled = [im for im in ax.images if im.get_array() is not None and im.get_array().ndim == 2
                  and im.get_cmap().name not in ("gray", "Greys", "binary", "Greys_r", "gray_r")]
        if scaled and not has_colorbar:
            problems.append(f"axes {i}: a colour-scaled image but no colour bar")
    small = sorted({(round(t.get_fontsize(), 1), t.get_text()[:30]) for t in fig.findobj(plt.matplotlib.text.Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT - 0.05})
    if small:
        problems.append(f"{len(small)} texts under {MIN_FONT_PT} pt, e.g. "
                        + ", ".join(f"{text!r} ({size} pt)" for size, text in small[:3]))
    fractions = sorted({t.get_text() for t in fig.findobj(plt.matplotlib.text.Text)
                        if t.get_visible() and FRACTION_IN_TEXT.search(t.get_text())})
    if fractions:
        problems.append(f"scores as fractions in the text (tables use %): {fractions[:3]}")
    return problems


def _to_hwc(img) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    return a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else np.clip(a, 0, 1)


def image_grid(rows: dict[str, "torch.Tensor | np.ndarray"], titles: "list[str] | dict[str, list[str]] | None" = None,
               cmap: str = "gray", heat_rows: tuple[str, ...] = (), figsize_per: float = 1.4) -> plt.Figure:
    """A grid with one row per entry of ``rows`` (images (N,C,H,W) or maps (N,H,W)); rows named in
    ``heat_rows`` are drawn as heatmaps (e.g. residuals) with one colour bar per row. ``titles``: one list for the
    top row (the columns show the same images), or a dict row -> list where each row shows other images."""
    unknown = [name for name in heat_rows if name not in rows]
    if unknown:  # a misspelt name would draw the map in grey on [0, 1], near-black and without a colour bar
        raise ValueError(f"heat_rows {unknown} are not rows of the grid; its rows are {list(rows)}")
    n = max(len(v) for v in rows.values())
    extra = 0.35 if heat_rows else 0.0
    per_row = isinstance(titles, dict)
    fig, axes = plt.subplots(len(rows), n, figsize=(figsize_per * n + extra * 3,
                                                    (figsize_per + (0.3 if per_row else 0)) * len(rows) + 0.3),
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
            row_titles = titles.get(name) if per_row else (titles if r == 0 else None)
            if row_titles is not None and c < len(row_titles):
                ax.set_title(row_titles[c], fontsize=9)
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
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.8, 2.9), squeeze=False)
    mappable = None
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(_to_hwc(images[i]), cmap="gray", vmin=0, vmax=1)
        mappable = ax.imshow(maps[i], cmap="jet", alpha=alpha, vmin=vmin, vmax=vmax)
        if masks is not None and np.asarray(masks[i]).any():
            ax.contour(np.asarray(masks[i]).astype(float), levels=[0.5], colors="white", linewidths=0.8)
        ax.axis("off")
        if titles:
            ax.set_title(titles[i], fontsize=10)
    bar = fig.colorbar(mappable, ax=list(axes[0, :]), fraction=0.02, pad=0.01)
    _plain_ticks(bar)
    bar.set_label("anomaly score", fontsize=10)
    return fig


def _plain_ticks(bar) -> None:
    """Colour-bar ticks without a detached offset/exponent label (it collides with the titles)."""
    from matplotlib.ticker import FormatStrFormatter

    bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    bar.ax.tick_params(labelsize=9)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC (test split)") -> plt.Figure:
    """curves: name -> (labels, scores); the legend, outside the axes (a curve below the diagonal would run under
    it), shows each AUROC in % as the tables do; each curve has its own colour, marker-free line style."""
    from .metrics import auroc

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    styles = series_styles(curves)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        style = styles[name]
        ax.plot(100 * fpr, 100 * tpr, color=style["color"], ls=style["ls"], lw=1.6,
                label=f"{name} (AUROC {100 * auroc(labels, scores):.1f} %)")
    ax.plot([0, 100], [0, 100], ls="--", c="grey", lw=1, label="chance (AUROC 50 %)")
    ax.set(xlabel="false positive rate (%)", ylabel="true positive rate (%)", title=title, xlim=(0, 100),
           ylim=(0, 100.5), aspect="equal")
    legend_outside(ax)
    return fig


def score_histogram(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None,
                    title: str = "anomaly scores (test split)") -> plt.Figure:
    """Score densities of normal and anomalous images (shared bins) and, when given, the validation threshold.
    Each artist carries its own legend label, so the legend cannot pair a name with the wrong artist."""
    labels, scores = np.asarray(labels).reshape(-1), np.asarray(scores, dtype=np.float64).reshape(-1)
    fig, ax = plt.subplots(figsize=(7.2, 3.4))  # wide enough that the legend beside it leaves the axes their width
    bins = np.histogram_bin_edges(scores, bins=40)
    for colour, value in zip(sns.color_palette(n_colors=2), (0, 1)):
        chosen = scores[labels == value]
        if len(chosen):
            ax.hist(chosen, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=colour,
                    edgecolor=colour, linewidth=1.2, label=LABEL_NAMES[value])
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold (chosen on validation)")
    legend_outside(ax)
    ax.set(xlabel="anomaly score", ylabel="density", title=title)
    fig.tight_layout()
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
    legend_outside(ax, markerscale=2)  # a scatter fills its axes: a legend inside would cover points
    fig.tight_layout()
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

        with keep_torch_threads():  # numba (inside UMAP) would leave torch computing on every core
            return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(features)
    raise ValueError("method must be 'tsne' or 'umap'")


def projection_name(method: str) -> str:
    """How a projection is written in a title: t-SNE, UMAP."""
    return {"tsne": "t-SNE", "umap": "UMAP"}.get(method, method)


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
    ax.set(xticks=[], yticks=[], title=title or f"{projection_name(method)} of embeddings")
    if fig is not None:  # a figure of its own: the legend beside the scatter (in a caller's panel: inside, best place)
        legend_outside(ax, markerscale=2)
        fig.tight_layout()
    else:
        ax.legend(fontsize=9, markerscale=2)
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
        score = bool(SCORE_WORDS.search(history.monitor_name))  # a score (val AUROC) in %, on its own axis
        target = ax if not score else ax.twinx()
        values = percent(history.monitor_values) if score else history.monitor_values
        target.plot(history.eval_steps, values, "o-", ms=3, color="C1", label=history.monitor_name)
        if target is not ax:
            target.set_ylabel(f"{history.monitor_name} (%)")
            target.legend(fontsize=9, loc="lower right")
            target.grid(False)
    if history.best_step:
        ax.axvline(history.best_step, color="grey", ls=":", lw=1, label="kept step")
    for a in axes[0]:
        a.legend(fontsize=9, loc="upper right")
    if history.status not in ("completed", "early-stopped"):
        fig.suptitle(f"status: {history.status}", color="red", fontsize=10)
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
