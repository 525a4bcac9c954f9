"""Helpers of notebook 04 (SALAD): the paper's printed numbers, the settings of every method and ablation
variant, the runs of the ablations and of Table V, and the notebook's figures. Kept here so that the notebook's
cells stay short. The reading tables and the generated conclusions are in `conclusions`.

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

from ...experiment import score_and_record, scored_part
from ...notebook import Runs
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
# the cheap auto-encoders whose budget curves still climb at 150 steps (notebook 08): config key ae_family_steps
AE_FAMILY = ("AE", "AE (L1)", "VAE", "SSIM-AE", "MemAE")

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
    if method in AE_FAMILY and "ae_family_steps" in cfg.values:
        steps = int(cfg["ae_family_steps"])
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



def make_runs(cfg) -> Runs:
    """The notebook's run helper (`adlib.notebook.Runs`): each method by its registered name, with the keyword
    arguments of `detector_kwargs` for the protocol's training set."""
    return Runs(cfg, detector_for=lambda method: METHODS[method][0],
                kwargs_for=lambda method, protocol, **over: detector_kwargs(method, cfg, len(protocol.train), **over))


def run_ablations(runs: Runs, protocol, cfg, table1_results: dict, table) -> dict:
    """Tables III and IV on ``protocol`` (seeds ``other_seeds``): one SALAD run per variant, its row (with an
    ``ablation`` column) added to ``table``. Table IV's "w/o SSL" is Table III's L_str + L_ct run, and "E." (the
    paper's SALAD) the Table I run of the same seed when there is one: their rows are copied, not re-run."""
    ablation = {}
    for table_name, variants in (("Table III", TABLE3), ("Table IV", TABLE4)):
        for variant, options in variants.items():
            for seed in cfg["other_seeds"]:
                if table_name == "Table IV" and variant == "w/o SSL":
                    result = ablation[("Table III", "L_str + L_ct", seed)]
                elif table_name == "Table IV" and variant == "E." and ("pneumonia", "SALAD", seed) in table1_results:
                    result = table1_results[("pneumonia", "SALAD", seed)]
                else:
                    result = runs.run("SALAD", protocol, seed, None, dataset=protocol.dataset, variant=variant,
                                      **options)
                ablation[(table_name, variant, seed)] = result
                table.add_row({**result.row, "variant": variant, "ablation": table_name})
    return ablation


def record_table5(table, table1_results: dict, protocol, cfg, seeds) -> dict[int, dict[str, np.ndarray]]:
    """Table V: the scores A_I, A_C and A_F of the Table I SALAD models (``seeds``), each thresholded on
    validation and recorded through `adlib.experiment.score_and_record` (the one path from scores to metrics).
    Returns the test components per seed."""
    components = {}
    every_val, every_test = np.ones(len(protocol.val), bool), np.ones(len(protocol.test), bool)
    for seed in seeds:
        result = table1_results.get((protocol.dataset, "SALAD", seed))
        if result is None or not result.ok:
            continue
        val_c, test_c = (result.detector.score_components(s) for s in (protocol.val, protocol.test))
        components[seed] = test_c
        for variant, key in TABLE5.items():
            score_and_record(table, scored_part(val_c[key], protocol.val, every_val),
                             scored_part(test_c[key], protocol.test, every_test), config=cfg, protocol=protocol,
                             method="SALAD", seed=seed, detector=result.detector, variant=variant,
                             dataset=protocol.dataset, status=result.status, ablation="Table V")
    return components


def run_labels(cfg, protocol, profile: str) -> dict[str, str]:
    """{method: 'this run (cpu, 300 steps)'}: how each method of Table I trained in this profile."""
    labels = {}
    for method in METHODS:
        kw = detector_kwargs(method, cfg, len(protocol.train))
        steps = (f"{kw['gan_steps']} + {kw['encoder_steps']} steps" if "gan_steps" in kw else f"{kw['steps']} steps")
        labels[method] = f"this run ({profile}, {steps})"
    return labels


def profile_text(cfg, protocol, profile: str) -> str:
    """What this profile runs, from the configuration (Markdown): image size, steps, widths and seeds."""
    n = len(protocol.train)
    kw = {m: detector_kwargs(m, cfg, n) for m in METHODS}
    salad, fano = kw["SALAD"], kw["f-AnoGAN"]
    epochs = salad["steps"] * salad["batch_size"] / n
    steps = {m: kw[m].get("steps") for m in METHODS if m not in ("SALAD", "f-AnoGAN")}
    by_steps = {}
    for m, v in steps.items():
        by_steps.setdefault(v, []).append(m)
    others = "; ".join(f"{', '.join(ms)}: {v} steps" for v, ms in by_steps.items())
    return (f"**Profile {profile}**: PneumoniaMNIST at {protocol.train.size} px ({n:,} training normals). SALAD "
            f"trains {salad['steps']} steps of batch {salad['batch_size']} (≈ {epochs:.1f} epochs) at width "
            f"{salad['width']} → {salad['max_width']} channels, latent {salad['nz']}; {others}; f-AnoGAN "
            f"{fano['gan_steps']} WGAN-GP + {fano['encoder_steps']} encoder steps. Seeds: "
            f"{len(cfg['table_seeds'])} for Table I on PneumoniaMNIST, {len(cfg['other_seeds'])} elsewhere. "
            f"The paper: 200 epochs of batch 64 at 256 px, widths not given (pix2pix's 64 → 512 in our paper profile).")


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
        ax.plot(xs[i], ys[i], lw=1.2, label=f"random curve {i + 1}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="identity (no change)")
    ax.set(xlabel="input intensity", ylabel="output intensity", title="random Bézier intensity curves")
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
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
    axes[0].legend(fontsize=9, markerscale=2)
    for ax, name in zip(axes[1:], names):
        xy = embed_2d(features[name], "tsne", seed)
        for label, colour, text in ((0, "tab:green", "normal"), (1, "tab:orange", "pneumonia")):
            m = labels == label
            ax.scatter(*xy[m].T, s=6, alpha=0.6, color=colour, label=text)
        ax.set(xticks=[], yticks=[], title=name)
        ax.legend(fontsize=9, markerscale=2)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def ablation_bars(frame: pd.DataFrame, paper: pd.DataFrame, title: str, order: list[str]) -> plt.Figure:
    """AUROC (%) per variant: ours (one colour; bar = mean over seeds, whisker = std, dots = the seeds) beside
    the paper's OCT numbers (red ticks) and chance; the legend sits outside the axes."""
    fig, ax = plt.subplots(figsize=(3.8 + 1.3 * len(order), 3.4))
    auroc = 100 * frame.assign(AUROC=pd.to_numeric(frame["AUROC"], errors="coerce"))[["variant", "AUROC"]]
    stats = auroc.groupby("variant")["AUROC"].agg(["mean", "std", "count"]).reindex(order)
    seeds = int(stats["count"].max()) if stats["count"].notna().any() else 0
    ax.bar(range(len(order)), stats["mean"].values, yerr=stats["std"].fillna(0).values, capsize=4, color="C0",
           alpha=0.85, label=f"ours (PneumoniaMNIST), mean ± std over {seeds} seed{'s' * (seeds != 1)}" if seeds
           else "ours: not run in this profile")
    dots = False
    for i, v in enumerate(order):
        values = auroc.loc[auroc["variant"] == v, "AUROC"].dropna().to_numpy()
        ax.scatter(np.full(len(values), i), values, s=12, color="k", zorder=4,
                   label="ours, one seed" if len(values) and not dots else None)
        dots = dots or bool(len(values))
        printed = paper[(paper["method"] == v) & (paper["metric"] == "AUC")]["fraction"]
        if len(printed):
            ax.plot([i - 0.4, i + 0.4], [100 * printed.iloc[0]] * 2, color="C3", lw=2.5, zorder=5,
                    label="paper (OCT)" if i == 0 else None)
    ax.axhline(50, color="grey", ls="--", lw=1, label="chance (50 %)")
    ax.set(xticks=range(len(order)), xticklabels=order, xlabel="variant", ylabel="test AUROC (%)", ylim=(0, 102),
           title=title)
    ax.tick_params(axis="x", labelsize=9)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def loss_terms_figure(history, title: str = "SALAD: the terms of Eq. 9") -> plt.Figure:
    """The individual (unweighted) terms of Eq. 9 over training, smoothed over ~1/30 of the run."""
    frame = history.frame()
    terms = [c for c in frame.columns if c.startswith("encoder+decoder/")]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for c in terms:
        ax.plot(frame["step"], frame[c].rolling(max(1, len(frame) // 30), min_periods=1).mean(), label=c.split("/")[1])
    ax.set(xlabel="step", ylabel="loss term (unweighted)", yscale="log", title=title)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def timing_reading(timing: pd.DataFrame) -> pd.DataFrame:
    """One line per run (dataset, method, variant; mean over seeds): fit seconds and images/s, scoring seconds."""
    keys = ["dataset", "method", "variant"]
    fit = timing[timing["stage"] == "fit"].groupby(keys, sort=False)[["seconds", "images_per_s"]].mean()
    score = timing[timing["stage"] != "fit"].groupby(keys, sort=False)["seconds"].mean()
    out = fit.rename(columns={"seconds": "fit s", "images_per_s": "fit images/s"}).join(score.rename("score val+test s"))
    out["runs"] = timing[timing["stage"] == "fit"].groupby(keys, sort=False).size()
    return out.round(1).reset_index()
