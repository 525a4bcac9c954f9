"""Helpers of notebook 03 (CCB-AAE): the paper's printed numbers, detector settings per method, the run helper,
per-grade evaluation, the reading tables and the notebook's figures. Kept here so that the notebook's cells stay
short. The generated conclusions and the diagnostics of the below-chance rows are in `conclusions.py`."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ... import plots
from ...data.imageset import ImageSet
from ...experiment import ExperimentResult, score_and_record, scored_part
from ...gan import scaled_ccb_lengths
from ...notebook import Runs, best_budget_rows, budget_rows, reading_table
from ...paper_numbers import paper_numbers
from ...results import as_flags
from ...verdicts import is_threshold_metric
from ...data.protocol import cap_splits as cap  # noqa: F401  (the notebooks import it from here)

PAPER_CSV = Path(__file__).with_name("paper_numbers_ccb_aae.csv")
# display name -> registered detector name, in the paper's row order
METHODS = {"AnoGAN": "anogan", "EGBAD": "egbad", "GANomaly": "ganomaly", "Skip-GANomaly": "skip_ganomaly",
           "CCB-AAE": "ccb_aae"}
AE_FAMILY = ("GANomaly", "Skip-GANomaly", "CCB-AAE")
GAN_BASELINES = ("AnoGAN", "EGBAD")
CLAIM = "CCB-AAE > Skip-GANomaly > GANomaly"  # the paper's headline order among the adversarial autoencoders
BUDGET_METHODS = ("GANomaly", "Skip-GANomaly", "CCB-AAE", "EGBAD")  # this notebook's methods in results/budget/
# CIFAR-10 class index -> the column name of the paper's Table 1
PAPER_CIFAR_NAMES = ("Plane", "Car", "Bird", "Cat", "Deer", "Dog", "Frog", "Horse", "Ship", "Truck")
RETINA_GRADES = {1: "grade 1", 2: "grade 2", 3: "grade 3", 4: "grade 4"}


def paper_numbers_ccb_aae(table: str | None = None) -> pd.DataFrame:
    """The CCB-AAE paper's printed numbers (Tables 1-7, fractions as printed)."""
    frame = pd.read_csv(PAPER_CSV)
    return frame if table is None else frame[frame["table"] == table].reset_index(drop=True)


def length_label(factor: int) -> str:
    """'[2,4,6,8]' for factor 2: the row names of Tables 6/7."""
    return "[" + ",".join(str(n) for n in scaled_ccb_lengths(factor)) + "]"


def detector_kwargs(method: str, cfg, width: int, steps: int, **over) -> dict:
    """Keyword arguments of ``method`` (display name) for one notebook run, from the run configuration."""
    kw = dict(width=width, steps=steps, batch_size=cfg["batch_size"], lr=cfg["lr"], nz=cfg["nz"], progress=False)
    if method == "AnoGAN":
        kw["search_steps"] = cfg["anogan_search_steps"]
    else:
        kw["eval_every"] = cfg["eval_every"]
    if method == "EGBAD":
        kw["hidden"] = cfg["egbad_hidden"]
    kw.update(over)
    return kw



def per_class_rows(result: ExperimentResult, protocol, *, classes: dict[int, str], table, config, method: str,
                   seed: int, dataset: str, variant: str = "default", **extra) -> list[dict]:
    """One result row per anomaly class: normals + the images of one raw class, from scores computed once.

    The model (and its alpha / checkpoint, chosen on the whole validation split) is the same for every class;
    each class gets its own F1-optimal threshold on the validation images of that class and the normals."""
    rows = []
    for raw, name in classes.items():
        val = test = None  # a diverged run, or a class missing from a subset: NaN metrics
        if result.val is not None:
            val = scored_part(result.val.scores, protocol.val, (protocol.val.labels == 0) | (protocol.val.raw_labels == raw))
            test = scored_part(result.test.scores, protocol.test,
                               (protocol.test.labels == 0) | (protocol.test.raw_labels == raw))
        rows.append(score_and_record(table, val, test, config=config, protocol=protocol, method=method, seed=seed,
                                     detector=result.detector, variant=variant, dataset=f"{dataset} {name}",
                                     status=result.status, **extra)[1])
    return rows


# ----- figures -------------------------------------------------------------------------------------------
def cifar_bar_chart(ours: pd.DataFrame, paper: pd.DataFrame, title: str) -> plt.Figure:
    """Fig. 5 analogue: AUROC (%) per anomalous CIFAR-10 class and method; bars = ours (mean over seeds, with the
    seeds as black dots), black ticks = the paper's Table 1, chance dashed; the legend, outside the axes, names
    each of them."""
    classes = list(dict.fromkeys(ours["class"]))
    methods = [m for m in METHODS if m in set(ours["method"])]
    fig, ax = plt.subplots(figsize=(3.6 + 1.5 * len(classes) * max(1, len(methods)) / 5, 3.8))
    width = 0.8 / max(1, len(methods))
    palette = sns.color_palette("deep", len(METHODS))
    dots = False
    for j, m in enumerate(methods):
        color = palette[list(METHODS).index(m)]
        for i, c in enumerate(classes):
            x = i + (j - (len(methods) - 1) / 2) * width
            vals = 100 * ours[(ours["method"] == m) & (ours["class"] == c)]["AUROC"].to_numpy(dtype=float)
            ax.bar(x, np.nanmean(vals) if len(vals) else np.nan, width * 0.9, color=color,
                   label=f"{m} (ours, mean)" if i == 0 else None)
            ax.scatter(np.full(len(vals), x), vals, s=8, color="k", zorder=3, label=None if dots else "ours, one seed")
            dots = dots or bool(len(vals))
            printed = paper[(paper["method"] == m) & (paper["dataset"] == f"CIFAR-10 {c}")]["value"]
            if len(printed):
                ax.plot([x - width * 0.45, x + width * 0.45], [100 * printed.iloc[0]] * 2, color="k", lw=2, zorder=4)
    ax.axhline(50, color="grey", ls="--", lw=1, label="chance (50 %)")
    ax.set(xticks=range(len(classes)), xticklabels=[f"{c}\n(anomalous)" for c in classes], ylabel="test AUROC (%)",
           xlabel="anomalous class", ylim=(0, 102), title=title)
    ax.plot([], [], color="k", lw=2, label="paper (Table 1)")
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


# A degenerate threshold's F1/ACC/SEN/SPE describe a constant prediction: the figures never show them as results,
# only as hollow markers under this legend label (and never inside a mean or a line).
DEGENERATE_LABEL = "degenerate threshold: not a result"


def degenerate_mask(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """True for the rows whose ``metric`` depends on a degenerate validation threshold (the row's `degenerate` flag,
    `degenerate_f1max` for *_f1max metrics); all False for AUROC-like metrics, which need no threshold."""
    flag = "degenerate_f1max" if metric.endswith("_f1max") else "degenerate"
    if not is_threshold_metric(metric) or flag not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return as_flags(frame[flag].to_numpy())


def _hollow(ax, xs, ys, labelled: bool) -> bool:
    """Hollow markers for degenerate-threshold values; the legend label once per axes. Returns whether labelled."""
    if len(xs):
        ax.scatter(xs, ys, s=34, facecolors="none", edgecolors="k", linewidths=1.0, zorder=4,
                   label=None if labelled else DEGENERATE_LABEL)
        return True
    return labelled


def seed_dots(frame: pd.DataFrame, metric: str, title: str, x: str = "method",
              hue: str | None = "dataset") -> plt.Figure:
    """Per-seed dots with mean ± std bars, one group per ``x`` (and colour per ``hue``).

    Rows whose threshold is degenerate (for F1/ACC/SEN/SPE) are drawn as hollow black markers labelled
    DEGENERATE_LABEL and left out of the mean ± std bar: their value is no result."""
    groups = [m for m in METHODS if m in set(frame[x])] if x == "method" else list(dict.fromkeys(frame[x]))
    levels = list(dict.fromkeys(frame[hue])) if hue else [None]
    palette = sns.color_palette("deep", len(levels))
    bad = degenerate_mask(frame, metric)
    values = plots.percent(pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float))  # % as the tables
    rng = np.random.default_rng(0)
    width = 0.8 / len(levels)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups), 3.4))
    labelled = bars_labelled = False
    for j, level in enumerate(levels):
        color = palette[j] if hue else "C0"
        in_level = np.ones(len(frame), bool) if hue is None else (frame[hue] == level).to_numpy()
        for i, g in enumerate(groups):
            pos = i + (j - (len(levels) - 1) / 2) * width
            sel = in_level & (frame[x] == g).to_numpy() & np.isfinite(values)
            good, worse = values[sel & ~bad], values[sel & bad]
            jitter = lambda n: pos + rng.uniform(-0.3, 0.3, n) * width  # noqa: E731
            ax.scatter(jitter(len(good)), good, s=22, color=color, zorder=3,
                       label=(level if hue else "one seed") if i == 0 else None)
            labelled = _hollow(ax, jitter(len(worse)), worse, labelled)
            if len(good):
                std = good.std(ddof=1) if len(good) > 1 else 0.0
                ax.errorbar(pos, good.mean(), yerr=std, fmt="_", ms=14, color="firebrick", capsize=4, lw=1, zorder=5,
                            label=None if bars_labelled else "mean ± std over seeds")
                bars_labelled = True
    if metric == "AUROC":
        ax.axhline(50, color="grey", ls="--", lw=1, label="chance (AUROC 50 %)")
    ax.set(title=title, xlabel=x, ylabel=f"{metric} (%)", xticks=range(len(groups)), xticklabels=groups,
           xlim=(-0.6, len(groups) - 0.4))
    plots.legend_outside(ax)
    fig.tight_layout()
    return fig


def ccb_length_curve(ours: pd.DataFrame, paper: pd.DataFrame, metric: str, title: str) -> plt.Figure:
    """Figs. 6/7 analogue: metric vs CCB length factor; ours (one line per anomaly class) beside the paper's
    HAM10000 columns (Tables 6/7). A point whose threshold is degenerate is no result: it is left out of the line
    (a gap when no seed of that factor is left) and drawn as a hollow marker labelled DEGENERATE_LABEL."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), sharey=True)
    bad = degenerate_mask(ours, metric)
    labelled = False
    for name, group in ours.assign(_bad=bad).groupby("dataset", sort=False):
        factors = sorted(group["factor"].dropna().unique())
        g = group[~group["_bad"]].groupby("factor")[metric].mean().reindex(factors)
        line, = axes[0].plot(g.index, plots.percent(g.values), "o-", label=name)
        worse = group[group["_bad"]]
        if len(worse):
            axes[0].scatter(worse["factor"], plots.percent(worse[metric].to_numpy(float)), s=40, facecolors="none",
                            edgecolors=line.get_color(),
                            linewidths=1.2, zorder=4, label=None if labelled else DEGENERATE_LABEL)
            labelled = True
    axes[0].set(title=f"ours: {title}", xlabel="CCB length factor (x [1,2,3,4])", ylabel=f"{metric} (%)")
    axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    factor_of = {length_label(f): f for f in (1, 2, 4, 6, 8)}
    p = paper[paper["metric"] == metric].assign(factor=lambda d: d["method"].str.replace("CCB-AAE ", "").map(factor_of))
    for name, group in p.groupby("dataset", sort=False):
        axes[1].plot(group["factor"], plots.percent(group["value"].to_numpy(float)), "o--", label=name)
    axes[1].set(title=f"paper: HAM10000 {metric} (Table {6 if metric == 'ACC' else 7})", xlabel="CCB length factor",
                ylabel=f"{metric} (%)")
    axes[1].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    for ax in axes:
        ax.set_xticks([1, 2, 4, 6, 8])
    fig.tight_layout()
    return fig


def alpha_curve(tables: dict[str, pd.DataFrame], title: str) -> plt.Figure:
    """Validation AUROC against alpha of Eq. 2 (the choice made in fit), one line per detector."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, t in tables.items():
        if t is not None:
            ax.plot(t["alpha"], 100 * t["val_AUROC"], "o-", ms=3, label=name)
    ax.axhline(50, color="grey", ls="--", lw=1, label="chance (50 %)")
    ax.set(xlabel="alpha (weight of the image term)", ylabel="validation AUROC (%)", title=title,
           xticks=[0, 0.25, 0.5, 0.75, 1],
           xticklabels=["0\nlatent term\nonly", "0.25", "0.5", "0.75", "1\nimage term\nonly"])
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def example_rows(detector, images: ImageSet, labels: tuple[str, str] = ("normal", "anomalous")) -> tuple[dict, list]:
    """Rows (input / reconstruction / residual map) and titles for `plots.image_grid`; the map row is named for
    what the detector's map is: "residual²" for (x - x̂)², "|residual|" for |x - x̂|."""
    scores = detector.score(images)
    map_name = "|residual|" if getattr(detector, "map_error", "square") == "abs" else "residual²"
    rows = {"input": images.images, "reconstruction": detector.reconstruct(images),
            map_name: detector.anomaly_maps(images)}
    titles = [f"{labels[int(y)]} {s:.2f}" for y, s in zip(images.labels, scores)]
    return rows, titles


# ----- running -------------------------------------------------------------------------------------------
def steps_for(cfg, kind: str, n_train: int) -> int:
    """Training steps of ``kind`` ("cifar" or "med"): the profile's fixed number, or (paper profile) its epochs
    of the training normals at the profile's batch size."""
    if f"{kind}_steps" in cfg.values:
        return int(cfg[f"{kind}_steps"])
    return int(np.ceil(cfg[f"{kind}_epochs"] * n_train / cfg["batch_size"]))


def cifar_protocol(cfg, cls: int):
    """CIFAR-10 with class ``cls`` anomalous (the paper's direction), subsampled and capped as the profile says."""
    from ...data import cifar10_one_vs_rest

    protocol = cifar10_one_vs_rest(cls, "one_anomalous", size=32, max_train=cfg.get("cifar_max_train"), seed=0)
    return cap(protocol, cfg.get("cifar_val_cap"), cfg.get("cifar_test_cap"))


def medical_protocols(cfg) -> dict:
    """PneumoniaMNIST and BreastMNIST at ``med_size`` and RetinaMNIST at ``retina_size`` (grade 0 normal), each
    subsampled and capped as the profile says."""
    from ...data import make_protocol

    out = {name: cap(make_protocol(name, size=cfg["med_size"], max_train=cfg.get("med_max_train"), seed=0),
                     cfg.get("med_val_cap"), cfg.get("med_test_cap")) for name in ("pneumonia", "breast")}
    out["retina"] = cap(make_protocol("retina", size=cfg["retina_size"], channels=3, max_train=cfg.get("med_max_train"),
                                      seed=0), cfg.get("retina_val_cap"), cfg.get("retina_test_cap"))
    return out


def timing_summary(timing: pd.DataFrame) -> pd.DataFrame:
    """One line per dataset and method: runs, mean wall time and images/s of fitting and of scoring validation +
    test (mean over seeds and variants), and AnoGAN's latent search in ms per image."""
    t = timing.assign(search_ms=pd.to_numeric(timing.get("search_s_per_image"), errors="coerce") * 1000,
                      stage=timing["stage"].map(lambda s: "fit" if s == "fit" else "score"))
    wide = t.pivot_table(index=["dataset", "method"], columns="stage", values=["seconds", "images_per_s"],
                         aggfunc="mean", sort=False)
    wide.columns = [f"{stage} {'s' if what == 'seconds' else 'images/s'}" for what, stage in wide.columns]
    keys = ["dataset", "method"]
    extra = t.groupby(keys, sort=False).agg(runs=("stage", lambda s: int((s == "fit").sum())),
                                            search=("search_ms", "mean")).reset_index()
    out = extra.merge(wide.reset_index(), on=keys, how="left").rename(columns={"search": "search ms/image"})
    cols = [c for c in ("fit s", "fit images/s", "score s", "score images/s") if c in out.columns]
    return out[[*keys, "runs", *cols, "search ms/image"]].round(1)


class AAERuns(Runs):
    """`adlib.notebook.Runs` for notebook 03: ``run(method, protocol, seed, table, dataset=..., width=..., steps=...,
    **detector overrides)``; each timing row also records the alpha chosen and AnoGAN's search cost per image."""

    def run(self, method, protocol, seed, table=None, **kwargs):
        first = len(self.timing)
        result = super().run(method, protocol, seed, table, **kwargs)
        extra = {"alpha": getattr(result.detector, "alpha", np.nan),
                 "search_s_per_image": getattr(result.detector, "search_seconds_per_image", np.nan)}
        for row in self.timing[first:]:
            row.update(extra)
        return result


def make_runs(cfg) -> AAERuns:
    """The notebook's run helper: detectors by display name (METHODS), keyword arguments from ``cfg``."""
    def kwargs_for(method, protocol, width, steps, **over):
        return detector_kwargs(method, cfg, width, steps, **over)

    return AAERuns(cfg, detector_for=METHODS.__getitem__, kwargs_for=kwargs_for)


def profile_text(cfg, n_train: dict[str, int]) -> str:
    """What this profile runs, against the paper's protocol (generated from the run configuration)."""
    from ...data.cifar import CLASSES

    steps = {name: steps_for(cfg, "cifar" if name == "cifar10" else "med", n) for name, n in n_train.items()}
    epochs = {name: steps[name] * cfg["batch_size"] / max(1, n) for name, n in n_train.items()}
    classes = ", ".join(CLASSES[c] for c in cfg["cifar_classes"])
    caps = [f"{k.replace('_', ' ')} {cfg.get(k)}" for k in ("cifar_max_train", "cifar_val_cap", "cifar_test_cap",
                                                           "med_max_train", "med_val_cap", "med_test_cap") if cfg.get(k)]
    return (f"**Profile {cfg.profile.name}.** Base width {cfg['cifar_width']} on CIFAR-10 and {cfg['med_width']} on "
            f"the medical sets (the paper's DCGAN width: 64); batch {cfg['batch_size']}; "
            + "; ".join(f"{name}: {steps[name]} steps (~{epochs[name]:.1f} epochs of {n_train[name]} training "
                        "normals)" for name in n_train) + " (the paper: 50 epochs). "
            f"CIFAR-10 classes run as the anomaly: {classes} ({len(cfg['cifar_classes'])} of 10). "
            + (f"Subsets: {', '.join(caps)}. " if caps else "Full splits. ")
            + f"Seeds: {len(cfg['seeds'])} for {', '.join(AE_FAMILY)} on PneumoniaMNIST, {len(cfg['gan_seeds'])} for "
            f"the GAN baselines there and on CIFAR-10, {len(cfg['other_seeds'])} elsewhere. At a fraction of the "
            "paper's training, the numbers say how the methods compare early in training, not what they reach.")


# ----- reading tables ------------------------------------------------------------------------------------
def paper_cifar() -> pd.DataFrame:
    """Table 1 as (method, anomalous class, paper AUROC in %) for `adlib.notebook.reading_table`."""
    t = paper_numbers_ccb_aae("Table 1")
    return pd.DataFrame({"method": t["method"], "variant": t["dataset"].str.replace("CIFAR-10 ", ""),
                         "paper": t["value"] * 100})


def cifar_reading(rows: pd.DataFrame) -> pd.DataFrame:
    """Ours vs Table 1 per anomalous class and method (AUROC in %)."""
    table = reading_table(rows, "AUROC", keys=["variant", "method"], paper=paper_cifar())
    return table.rename(columns={"variant": "anomalous class"})


def paper_pneumonia() -> pd.DataFrame:
    """Published AUROCs (%) on the ZhangLab / PneumoniaMNIST test images for this notebook's methods (SALAD
    Table I; the CCB-AAE paper has no pneumonia experiment)."""
    t = paper_numbers("SALAD", "Table I")
    return t[t["method"].isin(list(METHODS))][["method", "value"]].rename(columns={"value": "paper"})


def with_budget_rows(rows: pd.DataFrame, dataset: str, this_run: str, methods=BUDGET_METHODS,
                     budget: pd.DataFrame | None = None) -> pd.DataFrame:
    """This notebook's rows of ``dataset`` (labelled ``this_run``) followed, per method, by the best-budget rows
    of results/budget/ (`adlib.notebook.best_budget_rows`: the rung with the best validation AUROC)."""
    mine = rows[rows["dataset"] == dataset].assign(variant=this_run)
    parts = []
    for method in [m for m in METHODS if m in set(mine["method"])]:
        parts.append(mine[mine["method"] == method])
        if method in methods:
            best = best_budget_rows(method, dataset, budget)
            if len(best):
                parts.append(best.assign(variant="budget study: " + best["budget"]))
    return pd.concat(parts, ignore_index=True)


def pneumonia_reading(rows: pd.DataFrame, this_run: str, budget: pd.DataFrame | None = None) -> pd.DataFrame:
    """The main table: PneumoniaMNIST AUROC (%), this run beside the best budget measured and the published
    number, with ACC/F1 at the validation threshold ('—' where it is degenerate)."""
    both = with_budget_rows(rows, "pneumonia", this_run, budget=budget)
    table = reading_table(both, "AUROC", keys=["method", "variant"], paper=paper_pneumonia(),
                          extra_metrics=("ACC", "F1"))
    return table.rename(columns={"variant": "run"})


def paper_medical_table(data: str) -> pd.DataFrame:
    """The paper's ACC and F1 (%) on its own medical data, methods as rows: ``data`` "ILD" (Tables 2/3) or
    "HAM10000" (Tables 4/5)."""
    printed = paper_numbers_ccb_aae()
    tables = ["Table 2", "Table 3"] if data == "ILD" else ["Table 4", "Table 5"]
    printed = printed[printed["table"].isin(tables)]
    printed = printed.assign(column=printed["metric"] + " " + printed["dataset"].str.replace(f"{data} ", ""))
    wide = printed.pivot_table(index="method", columns="column", values="value", sort=False) * 100
    return wide.reindex(list(METHODS)).round(1).reset_index()


# ----- the budget study's rows ---------------------------------------------------------------------------
def budget_ladder(dataset: str = "pneumonia", methods=BUDGET_METHODS, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every rung of results/budget/ for ``methods`` on ``dataset``: validation and test AUROC (%, mean over the
    rung's seeds), the kept step (validation-AUROC checkpoint) and the steps trained."""
    rows = budget_rows() if rows is None else rows
    if rows.empty:
        return pd.DataFrame(columns=["method", "width", "budget", "steps", "seeds", "val AUROC", "test AUROC",
                                     "kept step"])
    mine = rows[rows["method"].isin(methods) & (rows["dataset"] == dataset)]
    out = (mine.groupby(["method", "width_label", "budget_multiplier"], sort=True)
           .agg(steps=("budget_value", "first"), seeds=("seed", "nunique"), val=("val_AUROC", "mean"),
                test=("AUROC", "mean"), kept=("best_step", lambda v: ", ".join(f"{s:g}" for s in sorted(set(v)))))
           .reset_index())
    out["val"], out["test"] = (out["val"] * 100).round(1), (out["test"] * 100).round(1)
    out["budget"] = "x" + out["budget_multiplier"].astype(int).astype(str)
    out = out.rename(columns={"width_label": "width", "val": "val AUROC", "test": "test AUROC", "kept": "kept step"})
    order = {m: i for i, m in enumerate(METHODS)}
    out = out.sort_values(["method", "width", "budget_multiplier"], key=lambda c: c.map(order) if c.name == "method"
                          else c)
    return out[["method", "width", "budget", "steps", "seeds", "val AUROC", "test AUROC", "kept step"]]


def budget_settings(method: str, dataset: str = "pneumonia", rows: pd.DataFrame | None = None) -> dict:
    """The detector keyword arguments of the budget study's first rung of ``method`` at the cpu width (its cpu
    setting)."""
    rows = budget_rows() if rows is None else rows
    if rows.empty:
        return {}
    mine = rows[(rows["method"] == method) & (rows["dataset"] == dataset) & (rows["width_label"] == "cpu")]
    return json.loads(mine["detector_kwargs"].iloc[0]) if len(mine) else {}


# ----- figures of the diagnostics ------------------------------------------------------------------------
def reconstruction_grid(detector, images: ImageSet, labels: tuple[str, str], title: str) -> plt.Figure:
    """Input / reconstruction / anomaly-map rows of a few images; the map row (named for its error, see
    `example_rows`) is a heatmap with its colour bar."""
    rows, titles = example_rows(detector, images, labels)
    heat = tuple(name for name in rows if name not in ("input", "reconstruction"))
    fig = plots.image_grid(rows, titles=titles, heat_rows=heat)
    fig.suptitle(title, y=1.02, fontsize=9)
    return fig


def validation_over_training(detectors: dict[str, object], title: str) -> plt.Figure:
    """The checkpoint monitor of each detector: validation AUROC (at the best alpha) at every evaluated step,
    with the kept step marked."""
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for name, det in detectors.items():
        h = det.history
        if h is None or not h.eval_steps:
            continue
        line, = ax.plot(h.eval_steps, 100 * np.asarray(h.monitor_values, dtype=float), "o-", ms=3, label=name)
        if h.best_step is not None and h.best_step in h.eval_steps:
            ax.plot([h.best_step], [100 * h.monitor_values[h.eval_steps.index(h.best_step)]], "*", ms=11,
                    color=line.get_color())
    ax.axhline(50, color="grey", ls="--", lw=1, label="chance (50 %)")
    ax.plot([], [], "*", color="k", ms=9, label="kept checkpoint")
    ax.set(xlabel="training step", ylabel="validation AUROC (%, best alpha)", title=title)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig
