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
# PneumoniaMNIST, and we can see why anomaly detection on chest X-rays is hard: what the test split is,
# how a threshold can decide nothing, and why a pixel-error score can rank below chance.
#
# Sections: setup · parameters · the datasets · the protocol · the metrics and the threshold rule · a
# complete minimal run (train, evaluate) · the two test sets · figures · below chance · validation flatters ·
# discussion · exercises · timing and outputs.

# %% [markdown]
# ## Setup

# %%
import time

import numpy as np
import pandas as pd
from IPython.display import display

from adlib import plots, protocol_notes
from adlib.config import load_run_config
from adlib.data import (CIFAR10_CLASSES, DATASETS, TestDataError, cifar10_one_vs_rest, few_shot_anomalies,
                        make_protocol, make_synthetic_protocol)
from adlib.experiment import provenance_columns
from adlib.metrics import (ScoredSplit, auroc, evaluate_scores, is_degenerate, metrics_at_threshold,
                           select_threshold_on_validation)
from adlib.notebook import Runs, best_budget_rows, bullet_list, reading_table, say, show_config, show_table
from adlib.paper_numbers import paper_numbers
from adlib.paths import figures_dir, relative_to_project, results_dir
from adlib.results import ResultsTable, save_frame
from adlib.shift import detail_diagnostic, fine_detail, image_statistics
from adlib.training import choose_device

notebook_start = time.perf_counter()
pd.set_option("display.width", 160)

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper (None: $ADLIB_PROFILE, else paper on a GPU and cpu without)

# %%
# Run sizes per profile live in adlib/configs/00_data_and_protocols.toml (cpu: 64 px rebuilt PneumoniaMNIST
# file, 1200 steps of batch 32 with early stopping, 3 seeds; paper: 128 px, longer training).
cfg = load_run_config("00_data_and_protocols", profile)
device = choose_device()
print(f"profile={cfg.profile.name} ({cfg.profile.description}); seeds={cfg.seeds}; device={device}")
show_config(cfg)

# %% [markdown]
# ## The datasets
#
# Three MedMNIST subsets stand in for the papers' medical data (the data directory is `$ADLIB_DATA`;
# every file is verified against its checksum before use). What counts as *normal* is stated once,
# in `adlib.data.DATASETS`:

# %%
show_table(pd.DataFrame([{"dataset": k, "MedMNIST flag": v.flag, "organ": v.organ, "modality": v.modality,
                          "normal / anomalous": v.description} for k, v in DATASETS.items()]))

# %% [markdown]
# The protocol applied to each dataset. `train` holds the normal training images only; the anomalous
# training images are set aside as a pool from which weakly supervised papers (DPA, WSCXR) may draw
# a few labelled anomalies. `validation` and `test` are the whole official splits.

# %%
protocols = {name: make_protocol(name, size=28, seed=0) for name in DATASETS}
summary = pd.concat([p.summary().assign(source=p.data_source()) for p in protocols.values()], ignore_index=True)
show_table(summary)
fig = plots.class_balance(summary, "Images per part of the protocol (28 px files)")
plots.save_figure(fig, "00_class_balance")

# %% [markdown]
# What the images look like: normal (top) and anomalous (bottom) test images of each dataset.
# Pneumonia shows as diffuse opacities; malignant breast lesions as dark irregular masses; diabetic
# retinopathy as small lesions a 28 px fundus image barely resolves. The anomalies are subtle and
# *resemble* normal images, which is what makes medical anomaly detection harder than CIFAR-10.

# %%
RAW_NAMES = {"pneumonia": {0: "normal", 1: "pneumonia"}, "breast": {0: "malignant", 1: "normal/benign"}}
for name, p in protocols.items():
    rng = np.random.default_rng(0)
    normals = p.test.normals().subset(rng.choice(p.test.counts()["normal"], 8, replace=False))
    anomalies = p.test.anomalies().subset(rng.choice(p.test.counts()["anomalous"], 8, replace=False))
    names = RAW_NAMES.get(name, {})  # the dataset's own label (retina: the retinopathy grade) above each image
    titles = {row: [names.get(int(r), f"grade {int(r)}") for r in part.raw_labels]
              for row, part in (("normal", normals), ("anomalous", anomalies))}
    fig = plots.image_grid({"normal": normals.images, "anomalous": anomalies.images}, titles=titles)
    fig.suptitle(f"{name}: {DATASETS[name].description}", y=1.02, fontsize=11)
    plots.save_figure(fig, f"00_samples_{name}")

# %% [markdown]
# Larger images. Where an official PneumoniaMNIST file of the profile's size is missing, the data directory
# holds files rebuilt from the original Kermany images with MedMNIST's splits, order and labels: a *known
# substitute*, verified by SHA-256, used only when the official file is missing, and named in every result
# row. The sentence below is generated from the file this run loaded. Papers that report on "ZhangLab" use a
# test set of the same size; which copy of it they used, the papers do not say, so every pneumonia table
# shows both test AUROCs.

# %%
pneumonia = make_protocol("pneumonia", size=cfg.image_size, max_train=cfg.get("max_train"), seed=0)
say(protocol_notes.test_split_note(pneumonia))
show_table(pneumonia.summary())

# %% [markdown]
# Two more datasets serve tests and teaching. **Synthetic phantoms**: smooth body outlines with two
# lung fields; anomalous ones carry bright round lesions with pixel masks, so pixel-level AUROC can be
# measured. **CIFAR-10** one-vs-rest, in both directions the papers use.

# %%
synthetic = make_synthetic_protocol(n_train=64, n_val=16, n_test=16, size=64, seed=0)
anom = synthetic.test.anomalies().subset(np.arange(6))
fig = plots.image_grid({"normal": synthetic.test.normals().images[:6], "with lesions": anom.images,
                        "lesion mask": anom.masks.float()})
fig.suptitle("Synthetic phantoms: normal test images, images with lesions, and the lesion masks", y=1.02, fontsize=9)
plots.save_figure(fig, "00_synthetic_phantoms")

cifar_rows = []
for direction in ("one_normal", "one_anomalous"):
    c = cifar10_one_vs_rest(1, direction, seed=0)
    cifar_rows.append({"direction": direction, "class": CIFAR10_CLASSES[1], "train normals": len(c.train),
                       **{f"val {k}": v for k, v in c.val.counts().items()},
                       **{f"test {k}": v for k, v in c.test.counts().items()}})
show_table(pd.DataFrame(cifar_rows))

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
# ## The metrics, and which threshold
#
# * **AUROC**: the probability that a random anomalous image scores higher than a random normal one;
#   threshold-free, the papers' main metric. 50 % is chance; *below* 50 % means the score ranks normal images
#   above anomalous ones.
# * **AP**: area under the precision–recall curve; sensitive to class balance.
# * **F1, ACC, SEN (sensitivity, recall of anomalies), SPE (specificity, recall of normals)**: at a threshold
#   chosen on the *validation* split and applied unchanged to the test split.
#
# Which threshold? The library's default is **Youden's J** (the validation threshold that maximises
# SEN + SPE − 1); the **F1-max** threshold is kept beside it as a labelled second column (`F1_f1max`, ...).
# A threshold that puts (almost) every image in one class is flagged `degenerate`: its F1/ACC/SEN/SPE describe
# a constant prediction, and the reading tables show them as "—". The conv AE below shows why the default is
# Youden's J.
#
# A four-image example you can check by hand: scores 0.1, 0.4 (normal) and 0.35, 0.8 (anomalous).
# Three of the four (anomalous, normal) pairs are ordered correctly, so AUROC = 3/4 (75 %; tables show it in %).

# %%
toy = ScoredSplit(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), "val")
toy_metrics = evaluate_scores(toy, ScoredSplit(toy.scores, toy.labels, "test"))
show_table(pd.DataFrame([{k: toy_metrics[k] for k in ("AUROC", "F1", "SEN", "SPE", "threshold", "threshold_rule",
                                                      "F1_f1max", "threshold_f1max", "degenerate_f1max")}]),
           caption="The four-image example (AUROC, F1, SEN, SPE in %)", percent=("AUROC", "F1", "SEN", "SPE", "F1_f1max"))

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
ae_kwargs = dict(latent=cfg.latent, width=cfg.width, steps=cfg.steps, batch_size=cfg.batch_size,
                 eval_every=cfg.eval_every, patience=cfg.patience, progress=False)
runner = Runs(cfg, detector_for=lambda method: "conv_ae", kwargs_for=lambda method, protocol, **over: ae_kwargs,
              use_val_in_fit=False)
runs = {seed: runner.run("AE", pneumonia, seed, results, variant="conv AE, MSE") for seed in cfg.seeds}
rows, results_csv = results.frame(), results.save()
first, seed0 = runs[cfg.seeds[0]], cfg.seeds[0]

# %% [markdown]
# The result as a student reads it: test AUROC (mean ± std over seeds, in %), F1/SEN/SPE at the Youden
# threshold chosen on validation, the number SALAD (Table I) printed for a plain autoencoder on its
# 234/390 ZhangLab test set, and, where the budget study (`results/budget/budget_rows.csv`) trained the same AE
# longer, its best rung (chosen by validation AUROC). The note column marks results below or at chance,
# degenerate thresholds and the MedMNIST-exact test AUROC.

# %%
salad_ae = float(paper_numbers("SALAD", "Table I").query("method == 'AE' and metric == 'AUROC'")["value"].iloc[0])
budget = best_budget_rows("AE", "pneumonia")
if len(budget):
    budget = budget.assign(variant=budget["variant"] + ", " + budget["image_size"].astype(str) + " px")
ours = rows.assign(variant=f"conv AE, MSE ({cfg.profile.name} profile, {cfg.image_size} px)")
table = reading_table(pd.concat([ours, budget], ignore_index=True), "AUROC", keys=("method", "variant"),
                      paper=pd.DataFrame({"method": ["AE"], "paper": [salad_ae]}), extra_metrics=("F1", "SEN", "SPE"))
show_table(table, caption="Conv AE on the PneumoniaMNIST test split (AUROC in %; paper: SALAD Table I, AE)",
           source=results_csv);

# %% [markdown]
# ### Youden's J or F1-max? Both rules on the conv AE
#
# Both thresholds are chosen on the validation split only and applied unchanged to the test split. The table
# gives each seed's test metrics under each rule; the sentences below it are generated from those numbers.

# %%
show_table(protocol_notes.threshold_rules_table(rows), caption="Both threshold rules on the conv AE (test split, %)")
say(protocol_notes.class_ratio_note(pneumonia),
    bullet_list(protocol_notes.threshold_rules_sentences(rows, pneumonia.test.labels)))
fig = protocol_notes.threshold_rules_figure(first.val, f"conv AE (seed {seed0}): F1 and Youden's J on validation")
plots.save_figure(fig, "00_threshold_rules")

# %% [markdown]
# ## The two test sets
#
# On the rebuilt 64/128 px files, part of the test normals are Kaggle-only images, not MedMNIST's. How much do
# they matter? First for this notebook's scores (the conv AE, and two trivial image statistics used as scores),
# then for every detector whose committed pneumonia rows carry `AUROC_medmnist_exact` (notebooks 02-06 and the
# budget study). On an official file (the smoke profile's 28 px) both columns agree by construction.

# %%
test = pneumonia.test
detail, brightness = fine_detail(test), test.float_images().mean(dim=(1, 2, 3)).numpy()
scored = {"conv AE": [r.test for r in runs.values()], "fine detail (as a score)": [ScoredSplit.of(detail, test)],
          "mean brightness (as a score)": [ScoredSplit.of(brightness, test)]}
show_table(protocol_notes.two_test_sets_table(scored), caption="This notebook's scores on both test sets (AUROC, %)");

# %%
effect = protocol_notes.masking_effect()
n_masked = int((~test.medmnist_exact).sum()) if test.medmnist_exact is not None else 0
# read from the committed rows of notebooks 02-06 (each row in its own CSV), so not saved as a result of this one
show_table(protocol_notes.masking_summary(effect), caption="Masking the Kaggle-only test normals: committed "
           "pneumonia rows of results/02-06 per detector (AUROC in %, mean over its rows; change: median and range)")
say(bullet_list(protocol_notes.masking_sentences(effect, n_masked or None)));

# %% [markdown]
# ## Figures
#
# ROC curve and score histogram of the first seed. The dashed line is the Youden threshold chosen on the
# validation split.

# %%
detector, val = first.detector, first.val
fig = plots.roc_curves({f"conv AE (seed {seed0})": (first.test.labels, first.test.scores)},
                       title=f"PneumoniaMNIST test, {cfg.image_size} px")
plots.save_figure(fig, "00_roc_conv_ae")
fig = plots.score_histogram(first.test.labels, first.test.scores, threshold=select_threshold_on_validation(val))
plots.save_figure(fig, "00_score_histogram_conv_ae")
fig = plots.training_curves(detector.history, "conv AE on normal chest X-rays")
plots.save_figure(fig, "00_training_curve_conv_ae")

# %% [markdown]
# Reconstructions: inputs, reconstructions and the squared residual of normal and pneumonia test images.
# Watch where the residual is large, and whether it differs between the classes.

# %%
rng = np.random.default_rng(1)
idx = np.concatenate([rng.choice(np.flatnonzero(test.labels == 0), 5, replace=False),
                      rng.choice(np.flatnonzero(test.labels == 1), 5, replace=False)])
examples = test.subset(idx)
scores = detector.score(examples)
fig = plots.image_grid({"input": examples.images, "reconstruction": detector.reconstruct(examples),
                        "residual²": detector.anomaly_maps(examples)},
                       titles=[f"{'normal' if y == 0 else 'pneum.'} {s:.4f}" for y, s in zip(examples.labels, scores)],
                       heat_rows=("residual²",))
fig.suptitle(f"conv AE (seed {seed0}): test inputs, reconstructions and squared residuals (title: score)", y=1.02,
             fontsize=9)
plots.save_figure(fig, "00_reconstructions_conv_ae")

# %% [markdown]
# t-SNE of the latent codes of test images, coloured by label: if the autoencoder had learned what makes
# a chest X-ray normal, pneumonia images would gather apart.

# %%
sub = test.sample(cfg.max_eval, seed=0)
fig = plots.embedding_scatter(detector.embed(sub), sub.labels, method="tsne", seed=0,
                              title="t-SNE of conv-AE latent codes (test split)")
plots.save_figure(fig, "00_tsne_latent_conv_ae")

# %% [markdown]
# ## Below chance? What the reconstruction error measures
#
# A diagnostic (not a method, nothing is chosen with it): how well does *fine detail* (mean absolute
# vertical gradient, `adlib.shift.fine_detail`) alone rank the test images, and how closely does the AE
# score follow it, over all images and within each class? Smooth images are easy to reconstruct.

# %%
diag = detail_diagnostic(first.test.scores, test)
fig = plots.score_vs_detail(first.test.scores, detail, test.labels,
                            title=f"conv AE score vs image detail (seed {seed0}, test split)")
plots.save_figure(fig, "00_score_vs_detail")
say(bullet_list(protocol_notes.detail_sentences(diag, f"The conv AE score (seed {seed0})")));

# %% [markdown]
# ## Validation flatters: the train/test shift of PneumoniaMNIST
#
# The validation split of PneumoniaMNIST is cut from the same pool of images as the training split; the test
# split was collected separately. Is the test set a *different distribution*? Diagnostics on **normal images
# only** (so the disease cannot explain a difference): a logistic regression that tries to tell two groups of
# normal images apart (cross-validated AUROC: 0.5 = indistinguishable; the test normals are also split by
# provenance where the split has Kaggle-only ones), and the brightness, contrast and sharpness of each group.
# Nothing is chosen with these numbers.

# %%
groups = protocol_notes.shift_groups(pneumonia)
shift = protocol_notes.shift_table(groups, cfg.shift_max_images)
shift_csv = save_frame(shift, "00_train_test_shift", provenance_columns(cfg, pneumonia))
show_table(shift, caption="Can a classifier tell two groups of normal images apart?", source=shift_csv)
stats = pd.concat([image_statistics(g, name) for name, g in {**groups, "test pneumonia": test.anomalies()}.items()],
                  ignore_index=True)
show_table(stats.groupby("group", sort=False).agg(["mean", "std"]), caption="Image statistics per group")
fig = protocol_notes.shift_figure(stats, "Image statistics of the normal images of each part, and the test pneumonia")
plots.save_figure(fig, "00_train_test_shift")
say(bullet_list(protocol_notes.shift_sentences(shift, stats, rows)));

# %% [markdown]
# ## Discussion
#
# Generated from this run's rows (`adlib.protocol_notes.conclusions`, with the rules of `adlib.verdicts`):

# %%
say(bullet_list(protocol_notes.conclusions(rows, salad_ae, test.labels, budget)));

# %% [markdown]
# What to take from this notebook, whatever the numbers of a given run:
#
# * A threshold is part of the result. Choose it on validation with a rule that cannot collapse to "everything
#   anomalous" when the validation split is mostly anomalous, and never read F1/ACC from a degenerate one.
# * Say which test set a number is on. The rebuilt 64/128 px files share most, not all, of MedMNIST's test
#   images; the MedMNIST-exact column is the one to put beside MedMNIST papers.
# * An AUROC below 50 % is information: the score ranks the classes the wrong way round. The detail diagnostic
#   shows what such a score measures instead.
# * Validation numbers are made on a population closer to the training images than the test set is; report
#   both. This is the starting point the papers improve on: DPA (notebook 02) replaces pixels by *perceptual*
#   features; WSCXR (notebook 06) scores patch features and uses a few labelled anomalies.

# %% [markdown]
# ## Exercises
#
# Each exercise has a short solution cell below it (collapsed in Jupyter); it reuses the objects above and runs
# in seconds.
#
# **1. The class ratio and F1-max.** Predict: if the validation split were balanced (as many pneumonia images as
# normal ones), would the F1-max threshold still call every test image anomalous? Subsample the validation scores
# to a balanced set and compare both rules.

# %% tags=["solution"] jupyter={"source_hidden": true}
v = first.val
normal_idx, anomalous_idx = np.flatnonzero(v.labels == 0), np.flatnonzero(v.labels == 1)
n = min(len(normal_idx), len(anomalous_idx))
keep = np.concatenate([np.random.default_rng(0).choice(normal_idx, n, replace=False),
                       np.random.default_rng(0).choice(anomalous_idx, n, replace=False)])
balanced = ScoredSplit(v.scores[keep], v.labels[keep], "val")
for rule in ("youden", "f1max"):
    t = select_threshold_on_validation(balanced, rule)
    m = {k: round(x, 3) for k, x in metrics_at_threshold(first.test, t).items()}
    print(f"{rule}: {m}, degenerate: {is_degenerate(first.test, t)}")

# %% [markdown]
# **2. Flip the score?** The conv AE may rank pneumonia *below* normal images on test. Its negated score then has
# test AUROC 1 − AUROC. May we report the negated score as our detector? Which split is allowed to decide the
# sign, and what does it say here?

# %% tags=["solution"] jupyter={"source_hidden": true}
for sign in (+1, -1):
    print(f"sign {sign:+d}: validation AUROC {auroc(first.val.labels, sign * first.val.scores):.3f}, "
          f"test AUROC {auroc(first.test.labels, sign * first.test.scores):.3f}")
# Only validation may choose the sign; the test AUROC of the flipped score is not a result if test chose it.

# %% [markdown]
# **3. The Kaggle-only normals.** At the Youden threshold, what share of the Kaggle-only test normals does the AE
# call anomalous, and what share of the MedMNIST-exact test normals? (On an official file there are none.)

# %% tags=["solution"] jupyter={"source_hidden": true}
called = first.test.scores >= select_threshold_on_validation(first.val)
exact = first.test.medmnist_exact if first.test.medmnist_exact is not None else np.ones(len(called), bool)
for name, chosen in (("MedMNIST-exact normals", (first.test.labels == 0) & exact),
                     ("Kaggle-only normals", (first.test.labels == 0) & ~exact)):
    print(name, int(chosen.sum()), f"{called[chosen].mean():.0%} called anomalous" if chosen.any() else "(none here)")

# %% [markdown]
# **4. A detector with no training.** Use *smoothness* (fine detail, with the sign chosen on validation) as an
# anomaly score and evaluate it like any detector. Predict its validation and test AUROC first. Is it a pneumonia
# detector, or something a shift in image sharpness would break?

# %% tags=["solution"] jupyter={"source_hidden": true}
sign = -1 if auroc(pneumonia.val.labels, fine_detail(pneumonia.val)) < 0.5 else 1  # chosen on validation
m = evaluate_scores(ScoredSplit.of(sign * fine_detail(pneumonia.val), pneumonia.val),
                    ScoredSplit.of(sign * detail, test))
print(f"sign {sign:+d}:", {k: round(float(m[k]), 3) for k in ("val_AUROC", "AUROC", "AUROC_medmnist_exact", "F1",
                                                               "SEN", "SPE") if k in m}, "degenerate:", m["degenerate"])

# %% [markdown]
# ## Timing, and where the outputs went
#
# This machine; images/s of training counts every image passed through a training step.

# %%
timing = runner.timing_frame()
timing_csv = save_frame(timing, "00_timing", provenance_columns(cfg, pneumonia))
show_table(timing[["stage", "method", "seed", "seconds", "images", "images_per_s", "peak_memory_MB"]],
           caption="Conv AE: training and scoring time", source=timing_csv)
print(f"Figures: {relative_to_project(figures_dir())}/00_*.png; results: {relative_to_project(results_dir())}/00_*.csv")
print(f"Notebook wall time: {time.perf_counter() - notebook_start:.0f} s")
