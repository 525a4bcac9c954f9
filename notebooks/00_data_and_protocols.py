# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Data and protocols
#
# **Claim of this notebook.** Every method in this project is trained and judged by the same rules:
# it learns from *normal* training images only, it makes every choice (threshold, checkpoint,
# hyperparameter) on the *validation* split, and the *test* split is touched once, for the final numbers.
# With those rules fixed, a plain convolutional autoencoder gives a first, honest baseline on
# PneumoniaMNIST, and we can see why anomaly detection on chest X-rays is hard.
#
# Sections: setup · parameters · the datasets · the protocol · the metrics · a complete minimal run
# (train, evaluate, figures) · discussion.

# %% [markdown]
# ## Setup

# %%
import time

import numpy as np
import pandas as pd
from IPython.display import display

from adlib import plots
from adlib.config import load_run_config
from adlib.data import (CIFAR10_CLASSES, DATASETS, TestDataError, cifar10_one_vs_rest, few_shot_anomalies,
                        make_protocol, make_synthetic_protocol)
from adlib.experiment import provenance_columns, run_experiment
from adlib.metrics import ScoredSplit, auroc, evaluate_scores, select_threshold_on_validation
from adlib.paper_numbers import paper_numbers
from adlib.results import ResultsTable, mean_pm_std, save_frame
from adlib.shift import domain_classifier_auroc, image_statistics
from adlib.training import choose_device

notebook_start = time.perf_counter()
pd.set_option("display.width", 160)

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper (None: $ADLIB_PROFILE, else paper on a GPU and cpu without)

# %%
# Run sizes per profile live in adlib/configs/00_data_and_protocols.toml (cpu: 64 px rebuilt PneumoniaMNIST
# file, 1200 steps of batch 64 with early stopping, 3 seeds; paper: 128 px, longer training).
cfg = load_run_config("00_data_and_protocols", profile)
device = choose_device()
print(f"profile={cfg.profile.name} ({cfg.profile.description}); seeds={cfg.seeds}; device={device}")
print(cfg.summary())

# %% [markdown]
# ## The datasets
#
# Three MedMNIST subsets stand in for the papers' medical data (the data directory is `$ADLIB_DATA`;
# every file is verified against its checksum before use). What counts as *normal* is stated once,
# in `adlib.data.DATASETS`:

# %%
display(pd.DataFrame([{"dataset": k, "MedMNIST flag": v.flag, "organ": v.organ, "modality": v.modality,
                       "normal / anomalous": v.description} for k, v in DATASETS.items()]))

# %% [markdown]
# The protocol applied to each dataset. `train` holds the normal training images only; the anomalous
# training images are set aside as a pool from which weakly supervised papers (DPA, WSCXR) may draw
# a few labelled anomalies. `validation` and `test` are the whole official splits.

# %%
protocols = {name: make_protocol(name, size=28, seed=0) for name in DATASETS}
summary = pd.concat([p.summary().assign(source=p.data_source()) for p in protocols.values()], ignore_index=True)
display(summary)
fig = plots.class_balance(summary, "Images per part of the protocol (28 px files)")
plots.save_figure(fig, "00_class_balance")

# %% [markdown]
# What the images look like: normal (top) and anomalous (bottom) test images of each dataset.
# Pneumonia shows as diffuse opacities; malignant breast lesions as dark irregular masses; diabetic
# retinopathy as small lesions a 28 px fundus image barely resolves. The anomalies are subtle and
# *resemble* normal images, which is what makes medical anomaly detection harder than CIFAR-10.

# %%
for name, p in protocols.items():
    rng = np.random.default_rng(0)
    normals = p.test.normals().subset(rng.choice(p.test.counts()["normal"], 8, replace=False))
    anomalies = p.test.anomalies().subset(rng.choice(p.test.counts()["anomalous"], 8, replace=False))
    fig = plots.image_grid({"normal": normals.images, "anomalous": anomalies.images},
                           titles=[f"raw {r}" for r in normals.raw_labels])
    fig.suptitle(f"{name}: {DATASETS[name].description}", y=1.02, fontsize=9)
    plots.save_figure(fig, f"00_samples_{name}")

# %% [markdown]
# Larger images. Official PneumoniaMNIST files at 64/128 px are not on this machine; the data directory
# holds files rebuilt from the original Kermany images with the same splits and labels. They are a
# *known substitute*: verified by SHA-256 and used only when the official file is missing, and every
# result says which source it used. Its test split is exactly the ZhangLab test set (234 normal,
# 390 pneumonia), so papers that report on ZhangLab are directly comparable.

# %%
pneumonia = make_protocol("pneumonia", size=cfg.image_size, max_train=cfg.get("max_train"), seed=0)
print("PneumoniaMNIST source:", pneumonia.data_source())
display(pneumonia.summary())

# %% [markdown]
# Two more datasets serve tests and teaching. **Synthetic phantoms**: smooth body outlines with two
# lung fields; anomalous ones carry bright round lesions with pixel masks, so pixel-level AUROC can be
# measured. **CIFAR-10** one-vs-rest, in both directions the papers use.

# %%
synthetic = make_synthetic_protocol(n_train=64, n_val=16, n_test=16, size=64, seed=0)
anom = synthetic.test.anomalies().subset(np.arange(6))
fig = plots.image_grid({"normal": synthetic.test.normals().images[:6], "with lesions": anom.images,
                        "lesion mask": anom.masks.float()})
plots.save_figure(fig, "00_synthetic_phantoms")

cifar_rows = []
for direction in ("one_normal", "one_anomalous"):
    c = cifar10_one_vs_rest(1, direction, seed=0)
    cifar_rows.append({"direction": direction, "class": CIFAR10_CLASSES[1], "train normals": len(c.train),
                       **{f"val {k}": v for k, v in c.val.counts().items()},
                       **{f"test {k}": v for k, v in c.test.counts().items()}})
display(pd.DataFrame(cifar_rows))

# %% [markdown]
# ## The protocol, and why the test split never makes a choice
#
# An anomaly detector outputs a score. To call an image "anomalous" we need a threshold, and to train
# we need to decide when to stop and which hyperparameters to use. If any of those were picked by
# looking at the test labels, the test numbers would be optimistic: we would have fitted to the test
# set. So `adlib.metrics.select_threshold_on_validation` accepts only a validation `ScoredSplit` and
# refuses the test split; early stopping watches a held-out part of the *normal* training images.
#
# Weakly supervised methods get a few labelled anomalies, always drawn (seeded) from the **train**
# split's anomaly pool:

# %%
retina = protocols["retina"]
shots = few_shot_anomalies(retina, k=2, seed=0, per_class=True)
print("K=2 per grade from the retina train pool -> grades", sorted(shots.raw_labels.tolist()), "split:", shots.split)
# The protocol marks every test image once; the mark survives renaming, subsetting and concatenation, and
# every function that makes a choice refuses marked images:
disguised = retina.test.subset(np.arange(40))
disguised.meta["split"] = "val"  # renamed: still test images
try:
    select_threshold_on_validation(ScoredSplit.of(np.linspace(0, 1, 40), disguised))
except TestDataError as err:
    print("refused:", err)

# %% [markdown]
# ## The metrics
#
# * **AUROC** — the probability that a random anomalous image scores higher than a random normal one;
#   threshold-free, the papers' main metric.
# * **AP** — area under the precision–recall curve; sensitive to class balance.
# * **F1, ACC, SEN (sensitivity, recall of anomalies), SPE (specificity, recall of normals)** — at the
#   threshold that maximises F1 on the *validation* split, applied unchanged to the test split.
#
# A four-image example you can check by hand: scores 0.1, 0.4 (normal) and 0.35, 0.8 (anomalous).
# Three of the four (anomalous, normal) pairs are ordered correctly, so AUROC = 0.75.

# %%
toy = ScoredSplit(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), "val")
print(evaluate_scores(toy, ScoredSplit(toy.scores, toy.labels, "test")))

# %% [markdown]
# ## A complete minimal run: a convolutional autoencoder on PneumoniaMNIST
#
# **Model.** An autoencoder compresses each image to a small latent code and decodes it back. Trained on
# normal chest X-rays only, it should reconstruct normal anatomy well and anomalies badly, so the
# per-image mean squared reconstruction error is the anomaly score.
#
# **Training.** Adam, MSE loss; 10 % of the normal training images are held out and training keeps the
# weights with the lowest hold-out loss (early stopping without any anomaly). One run per seed.

# %%
results = ResultsTable("00_conv_ae_pneumonia")
timing, runs = [], {}
for seed in cfg.seeds:
    run = run_experiment("conv_ae", pneumonia, config=cfg, seed=seed, method="AE", variant="conv AE, MSE",
                         table=results, detector_kwargs=dict(latent=cfg.latent, width=cfg.width, steps=cfg.steps,
                                                             batch_size=cfg.batch_size, eval_every=cfg.eval_every,
                                                             patience=cfg.patience, progress=False))
    timing += run.timing
    runs[seed] = run
    print(f"seed {seed}: test AUROC {run.metrics['AUROC']:.3f}, validation AUROC {run.metrics['val_AUROC']:.3f} "
          f"(kept hold-out step {run.detector.history.best_step}, {run.status})")
print("saved", results.save())
display(results.frame()[["seed", "AUROC", "AP", "F1", "ACC", "SEN", "SPE", "threshold", "val_AUROC", "status",
                         "fit_seconds", "data_source", "git_commit"]].round(4))

# %% [markdown]
# Mean ± std over seeds (in %), next to the number SALAD (Table I) printed for a plain autoencoder on
# the same ZhangLab test set:

# %%
ours = results.summary()
display(mean_pm_std(ours, ["AUROC", "AP", "F1", "ACC", "SEN", "SPE"]))
display(paper_numbers("SALAD", "Table I"))
ae_auroc = ours["AUROC_mean"].iloc[0] * 100
salad_ae = float(paper_numbers("SALAD", "Table I").query("method == 'AE'")["value"].iloc[0])
print(f"ours: AE AUROC {ae_auroc:.1f} % at {cfg.image_size} px ({cfg.profile.name} profile); SALAD's AE: {salad_ae:.1f} %")

# %% [markdown]
# Timing (this machine; images/s of training counts every image passed through a training step):

# %%
timing_frame = pd.DataFrame(timing)
display(timing_frame)
print("saved", save_frame(timing_frame, "00_timing", provenance_columns(cfg, pneumonia)))

# %% [markdown]
# ## Figures
#
# ROC curve and score histogram of the first seed. The dashed line is the threshold chosen on the
# validation split.

# %%
first = runs[cfg.seeds[0]]
detector, val, test = first.detector, first.val, first.test
fig = plots.roc_curves({f"conv AE (seed {cfg.seeds[0]})": (test.labels, test.scores)},
                       title=f"PneumoniaMNIST test, {cfg.image_size} px")
plots.save_figure(fig, "00_roc_conv_ae")
fig = plots.score_histogram(test.labels, test.scores, threshold=select_threshold_on_validation(val))
plots.save_figure(fig, "00_score_histogram_conv_ae")
fig = plots.training_curves(detector.history, "conv AE on normal chest X-rays")
plots.save_figure(fig, "00_training_curve_conv_ae")

# %% [markdown]
# Reconstructions: inputs, reconstructions and the squared residual of normal and pneumonia test images.
# Watch where the residual is large: mostly at edges and ribs, for both classes.

# %%
rng = np.random.default_rng(1)
idx = np.concatenate([rng.choice(np.flatnonzero(pneumonia.test.labels == 0), 5, replace=False),
                      rng.choice(np.flatnonzero(pneumonia.test.labels == 1), 5, replace=False)])
examples = pneumonia.test.subset(idx)
scores = detector.score(examples)
fig = plots.image_grid({"input": examples.images, "reconstruction": detector.reconstruct(examples),
                        "residual²": detector.anomaly_maps(examples)},
                       titles=[f"{'normal' if y == 0 else 'pneum.'} {s:.4f}" for y, s in zip(examples.labels, scores)],
                       heat_rows=("residual²",))
plots.save_figure(fig, "00_reconstructions_conv_ae")

# %% [markdown]
# t-SNE of the latent codes of test images, coloured by label: if the autoencoder had learned what makes
# a chest X-ray normal, pneumonia images would gather apart.

# %%
sub = pneumonia.test.sample(cfg.max_eval, seed=0)
fig = plots.embedding_scatter(detector.embed(sub), sub.labels, method="tsne", seed=0,
                              title="t-SNE of conv-AE latent codes (test split)")
plots.save_figure(fig, "00_tsne_latent_conv_ae")

# %% [markdown]
# Why would an autoencoder score pneumonia as *more* normal than normal? A diagnostic (not a method,
# nothing is chosen with it): how well do two trivial image statistics rank the test images, and how
# strongly does the AE score follow them? Pneumonia X-rays are on average hazier (less fine detail) and
# smooth images are easy to reconstruct.

# %%
test_images = pneumonia.test.float_images()
brightness = test_images.mean(dim=(1, 2, 3)).numpy()
detail = (test_images[..., 1:, :] - test_images[..., :-1, :]).abs().mean(dim=(1, 2, 3)).numpy()

display(pd.DataFrame([
    {"score": f"conv AE reconstruction error (seed {cfg.seeds[0]})", "test AUROC": auroc(test.labels, test.scores),
     "Spearman with AE score": 1.0},
    {"score": "mean brightness", "test AUROC": auroc(test.labels, brightness),
     "Spearman with AE score": pd.Series(brightness).corr(pd.Series(test.scores), method="spearman")},
    {"score": "fine detail (mean |vertical gradient|)", "test AUROC": auroc(test.labels, detail),
     "Spearman with AE score": pd.Series(detail).corr(pd.Series(test.scores), method="spearman")},
]).round(3))

# %% [markdown]
# ## Validation flatters: the train/test shift of PneumoniaMNIST
#
# The validation split of PneumoniaMNIST is cut from the same pool of images as the training split; the test
# split is the ZhangLab test set, collected separately. Every method in this project scores far higher on
# validation than on test. Is the test set a *different distribution*? Three diagnostics on **normal images
# only** (so the disease cannot explain a difference): a logistic regression that tries to tell two groups of
# normal images apart (cross-validated AUROC: 0.5 = indistinguishable), and the brightness, contrast and
# sharpness of each group. Nothing is chosen with these numbers.

# %%
groups = {"train normals": pneumonia.train, "val normals": pneumonia.val.normals(),
          "test normals": pneumonia.test.normals()}
shift_rows = []
for a_name, b_name in [("train normals", "val normals"), ("train normals", "test normals"),
                       ("val normals", "test normals")]:
    mean, std = domain_classifier_auroc(groups[a_name], groups[b_name], max_images=cfg.shift_max_images, seed=0)
    shift_rows.append({"group A": a_name, "group B": b_name, "classifier AUROC (A vs B)": round(mean, 3),
                       "± (5 folds)": round(std, 3)})
shift = pd.DataFrame(shift_rows)
display(shift)
stats = pd.concat([image_statistics(g, name) for name, g in
                   {**groups, "test pneumonia": pneumonia.test.anomalies()}.items()], ignore_index=True)
stats_summary = stats.groupby("group", sort=False).agg(["mean", "std"]).round(4)
display(stats_summary)
print("saved", save_frame(shift, "00_train_test_shift", provenance_columns(cfg, pneumonia)))
fig, axes = plots.plt.subplots(1, 3, figsize=(12, 3.2))
for ax, column in zip(axes, ["brightness", "contrast", "sharpness"]):
    plots.sns.kdeplot(data=stats, x=column, hue="group", common_norm=False, ax=ax, fill=True, alpha=0.15)
fig.suptitle("Normal images of train, val and test, and the test pneumonia images")
fig.tight_layout()
plots.save_figure(fig, "00_train_test_shift")

# %%
aurocs = results.frame()
val_mean, test_mean = aurocs["val_AUROC"].mean() * 100, aurocs["AUROC"].mean() * 100
tv, tt, vt = (shift["classifier AUROC (A vs B)"].iloc[i] for i in range(3))
sharp = stats.groupby("group")["sharpness"].mean()
print(f"A classifier tells train normals from val normals with AUROC {tv:.2f}, and train normals from test normals "
      f"with AUROC {tt:.2f} (val vs test: {vt:.2f}). "
      + ("The test normals are a visibly different population: " if tt > tv + 0.1 else
         "The two comparisons are similar: the shift is not obvious at the pixel level; ")
      + f"mean sharpness {sharp['train normals']:.4f} (train), {sharp['val normals']:.4f} (val), "
      f"{sharp['test normals']:.4f} (test), {sharp['test pneumonia']:.4f} (test pneumonia). "
      f"For the conv AE this means validation AUROC {val_mean:.1f} % vs test AUROC {test_mean:.1f} %.")

# %% [markdown]
# ## Discussion

# %%
s0 = results.frame()
mean_auc, std_auc = s0["AUROC"].mean() * 100, s0["AUROC"].std(ddof=1) * 100 if len(s0) > 1 else 0.0
sen, spe = s0["SEN"].mean(), s0["SPE"].mean()
if mean_auc < 47:
    verdict = "below chance: pneumonia images are reconstructed *better* than normal ones"
elif mean_auc <= 53:
    verdict = "at chance level"
else:
    verdict = "above chance, but far from useful" if mean_auc < 70 else "clearly above chance"
print(f"- The conv AE reached {mean_auc:.1f} ± {std_auc:.1f} % test AUROC ({cfg.profile.name} profile, "
      f"{cfg.image_size} px, {len(cfg.seeds)} seed(s)): {verdict}. SALAD printed {salad_ae:.1f} % for its AE on the "
      f"same test images; the difference is {mean_auc - salad_ae:+.1f} points (another architecture, image size "
      "and training length; we stop early on normals only).")
print(f"- At the threshold chosen on validation (max F1 there), the test split gets SEN {sen:.2f} and SPE {spe:.2f} "
      "on average" + (": the threshold calls almost every test image anomalous. The validation split has 135 "
                      "normal and 389 pneumonia images, so on it, calling everything anomalous already gives "
                      f"F1 = {2 * 389 / (2 * 389 + 135):.2f}; a score that barely separates the classes makes the "
                      "F1-optimal threshold drop below every score." if spe < 0.1 else "."))
print(f"- Validation AUROC {val_mean:.1f} % vs test AUROC {test_mean:.1f} %: choices made on validation "
      "(threshold, early stopping) are made on a population closer to the training images than the test set is.")
print(f"Notebook wall time: {time.perf_counter() - notebook_start:.0f} s")

# %% [markdown]
# What to take from this run:
#
# * Pixel reconstruction error is a weak anomaly score for chest X-rays: pneumonia shows up as diffuse,
#   low-contrast opacity, while the MSE of an autoencoder is dominated by edges, ribs and overall brightness,
#   which vary more between patients than between normal and pneumonia (the table above shows how closely the
#   AE score follows image detail).
# * This is the starting point the papers improve on: DPA (notebook 02) replaces pixels by *perceptual*
#   features; WSCXR (notebook 06) scores patch features and uses a few labelled anomalies.
# * Thresholded metrics depend on the split the threshold was chosen on; AUROC does not. Where validation and
#   test differ in class balance and in image statistics (above), report both and read SEN/SPE with care.
