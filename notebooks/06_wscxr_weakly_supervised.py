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
# # 06 · WSCXR: weakly supervised anomaly detection with patch features
#
# **The paper's claim** (Ni et al., *Weakly Supervised Anomaly Detection for Chest X-Ray Image*): when a
# *few* anomalous chest X-rays with image-level labels are available (K = 2 to 16), a detector that
# (i) mines the patch features of those images that are far from every normal patch (anomaly feature
# mining, Eq. 4-5), (ii) augments them by mixing them linearly with normal patches (Eq. 6) and (iii) trains
# a patch discriminator with a hinge loss (Eq. 7) beats the unsupervised patch-feature methods PatchCore and
# SimpleNet by a wide margin: on ZhangLab (the PneumoniaMNIST test split) 94.7-97.2 AUROC against 90.4
# (PatchCore) and 90.1 (SimpleNet). Table II credits most of the gain to mining.
#
# We rebuild Table I (PneumoniaMNIST, plus BreastMNIST and RetinaMNIST), the Table II ablation and a Fig. 2
# analogue, and go beyond the paper: AUROC vs the retention rate r and vs K, a 2-D map of normal, mined and
# mixed features, the discriminator depth (the paper says MLP, the authors' code uses one linear layer),
# which backbone layers and which pretrained weights matter, and what the authors' *test-set* model selection
# would have reported.
#
# Sections: setup · parameters · data · model (patch features, coreset, kNN) · training and evaluation
# (Table I, Table II) · figures and analyses · other datasets · timing · discussion.

# %% [markdown]
# ## Setup

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from adlib import plots
from adlib.config import load_run_config
from adlib.data import Protocol, make_protocol
from adlib.detectors import create
from adlib.experiment import evaluate_feature_detector, provenance_columns, run_experiment
from adlib.methods.wscxr import authors_protocol_diagnostic
from adlib.paper_numbers import paper_numbers
from adlib.patch_features import (DatasetFeatures, PatchFeaturizer, evaluate_on_features, flatten_patches,
                                  greedy_coreset, time_knn)
from adlib.results import ResultsTable, mean_pm_std, save_frame
from adlib.training import ResourceMeter

notebook_start = time.perf_counter()
pd.set_option("display.width", 180)
pd.set_option("display.max_columns", 30)

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper (None: $ADLIB_PROFILE, else paper on a GPU and cpu without)

# %%
# Run sizes per profile: adlib/configs/06_wscxr_weakly_supervised.toml (what the cpu profile cuts is listed
# there and in the discussion).
cfg = load_run_config("06_wscxr_weakly_supervised", profile)
RUN, SEEDS = cfg, cfg.seeds
BACKBONES = [dict(b) for b in cfg.backbones]
MAIN = BACKBONES[0]  # figures, ablations and other datasets use the first (default) backbone
print(cfg.summary())

# %% [markdown]
# **Pretrained weights.** The authors use an ImageNet DenseNet121, whose file cannot be downloaded on this
# offline machine. Two backbones stand in, and Table I is run with both, side by side:
#
# * **EfficientNet-Lite0 with ImageNet weights** (the default): installed offline as a pinned pip package, the
#   same hash-checked file on every machine, so a reviewer's re-run gets the same features.
# * **DenseNet121 with this project's CIFAR-10 weights** (notebook 01): the paper's architecture, but trained
#   here on 32 px CIFAR-10 for about one epoch; retrained on another machine it gives slightly different
#   weights, and the numbers that stand on it move with them.
#
# Every row records the weights source, file and SHA-256.

# %% [markdown]
# ## Data
#
# PneumoniaMNIST is the ZhangLab (Kermany) pediatric chest X-ray set; its test split is exactly the test set
# the paper reports on (234 normal / 390 pneumonia), so the paper's ZhangLab numbers are directly comparable
# up to image size. The official file is 28 px; we read the 128 px file *rebuilt* from the original images
# (same splits and labels; reported as `rebuilt-substitute`). Protocol (adlib.data): train = normal training
# images (at most 500 in the authors' code; one seeded subset shared by the three seeds - seeds vary the
# few-shot anomalies, the discriminator initialisation and batch order); validation = the whole val split,
# used for thresholds and the checkpoint epoch; test = the whole test split. The K anomalous images come from
# the *train* split (`few_shot_anomalies`), K = 2, 4, 8, 16.

# %%
def load(dataset: str) -> Protocol:
    full = make_protocol(dataset, size=cfg.image_size, channels=None)
    return Protocol(dataset, full.train.sample(cfg.n_normal, seed=0), full.val.sample(cfg.get("max_val"), seed=0),
                    full.test.sample(cfg.get("max_test"), seed=0), full.train_anomaly_pool, source=full.source)


protocol = load("pneumonia")
train_normals, val_set, test_set = protocol.train, protocol.val, protocol.test
DATA_SOURCE = protocol.data_source()
display(protocol.summary())
print(f"data source: {DATA_SOURCE}; training normals used: {len(train_normals)}; val {val_set.counts()}; "
      f"test {test_set.counts()}")

# %% [markdown]
# ## Model: patch features, coreset and nearest neighbours
#
# **Patch features (Eq. 1-3).** A frozen CNN gives feature maps; the chosen layers are upsampled to one grid,
# pooled to 1024 channels each and combined (channel alignment), then every position is averaged over its
# p x p neighbourhood (p = 5, `f_agg` = average pooling). Each image becomes an h x w grid of patch features.
# We run the CNN **once** per dataset and backbone and cache the raw maps; PatchCore, SimpleNet, WSCXR, all
# seeds, all K and the layer comparison reuse them. With EfficientNet-Lite0 at 128 px we take the last stride-16
# stage and the last stride-32 stage (an 8 x 8 grid), the counterpart of DenseNet121's denseblock3 + denseblock4.
#
# **Greedy coreset.** The normal feature set M_n is subsampled by the k-centre greedy rule (PatchCore; the
# authors keep 50 %): start from a random patch and repeatedly add the patch farthest from all chosen ones.
#
# **Nearest-neighbour distances** (PatchCore's score and WSCXR's mining) are exact L2 distances computed in
# blocks (`torch.cdist`, at most 256 MB per block); faiss-cpu's exact index is timed beside it when installed.

# %%
def draws_for(ks, seeds):
    return [(k, s) for k in ks for s in seeds]


def coreset_bank(feats: torch.Tensor, fraction: float, seed: int = 0):
    patches = flatten_patches(feats)
    with ResourceMeter(images=len(patches)) as meter:
        keep = greedy_coreset(patches, fraction=fraction, projection_dim=128, seed=seed)
    return patches[keep].contiguous(), meter


def build_features(backbone: dict, prot: Protocol, ks, layers_to_extract=None, per_class: bool = False):
    fz = PatchFeaturizer(arch=backbone["arch"], layers=tuple(layers_to_extract or backbone["layers"]),
                         weights=backbone["weights"], input_size=cfg.input_size, patch_size=5, dim=1024)
    fs = DatasetFeatures(fz, prot, prot.train, draws_for(ks, SEEDS), per_class=per_class, val=prot.val,
                         test=prot.test, progress=False)
    return fz, fs


timing = []
extra_layers = sorted({layer for ls in cfg.layer_alternatives for layer in ls} | set(MAIN["layers"]))
featurizer, features = build_features(MAIN, protocol, cfg.ks, layers_to_extract=extra_layers)
FEATURE_LAYERS = tuple(MAIN["layers"])
normal_feats = features.features("train", layers=FEATURE_LAYERS)
print(f"{MAIN['name']}: {features.n_images} images in {features.seconds:.1f} s ({features.images_per_second:.1f} "
      f"images/s); patch grid {tuple(normal_feats.shape[1:3])}, dim {normal_feats.shape[-1]}")
timing.append({"step": f"feature extraction ({MAIN['name']}, all splits)", "seconds": round(features.seconds, 1),
               "items": features.n_images, "unit": "images", "per_s": round(features.images_per_second, 1)})
bank, meter = coreset_bank(normal_feats, cfg.coreset)
timing.append({"step": f"greedy coreset ({cfg.coreset:.0%} of {meter.images} patches)",
               "seconds": round(meter.seconds, 1), "items": meter.images, "unit": "patches",
               "per_s": round(meter.images_per_second, 1)})
test_patches = flatten_patches(features.features("test", layers=FEATURE_LAYERS))
knn_timing = time_knn(test_patches, bank, k=1)
display(pd.DataFrame([{**knn_timing, "queries": len(test_patches), "bank": len(bank)}]))
timing.append({"step": "kNN, torch.cdist chunked (test patches vs bank)",
               "seconds": round(knn_timing["torch_cdist_chunked_s"], 2), "items": len(test_patches),
               "unit": "patches", "per_s": round(len(test_patches) / knn_timing["torch_cdist_chunked_s"], 1)})

# %% [markdown]
# ## Training and evaluation: Table I on PneumoniaMNIST, for each backbone
#
# Every method sees the same patch features. Thresholds for ACC/F1 maximise F1 on the validation split, and
# the discriminators' checkpoint epoch is the one with the best validation AUROC. **The authors' code did
# both on the test set** (evaluating every epoch, keeping the best test epoch and the best test threshold);
# we record what that protocol would report as a labelled diagnostic further below, never as our numbers.
#
# * **CutPaste**: a CNN fine-tuned to tell normals from cut-and-pasted copies, Gaussian density on its
#   features (`adlib.methods.cutpaste`; ResNet18 as the original with CIFAR-10 weights, or EfficientNet-Lite0
#   with ImageNet weights; short fine-tuning in the cpu profile).
# * **PatchCore**: distance of each test patch to the nearest memory-bank feature; image score = max.
#   Deterministic given the features and the bank: one run, no seed spread.
# * **SimpleNet**: feature adaptor + discriminator against Gaussian-noised normal features. Its noise scale
#   (relative to the features' spread) is chosen on the validation split, as every hyperparameter here.
# * **WSCXR** with K anomalous training images: mining (k = 5 nearest normals, r = 0.2), mixing
#   (w ~ U[0.1, 1]), discriminator with the paper's loss (Eq. 7; an MLP of depth 2 as the paper says).
# * **SQUID and DDAD**: *paper numbers only* - not implemented within this notebook's time budget.

# %%
table1 = ResultsTable("06_table1_pneumonia")
diagnostics = []
disc_kw = dict(depth=2, hidden=cfg.hidden, epochs=cfg.epochs, eval_every=cfg.eval_every, batch_size=cfg.batch_size)


def record(table, det, val, test, method, variant, seed, prot=None, backbone=MAIN, **extra):
    return evaluate_feature_detector(det, val, test, table=table, config=cfg, protocol=prot or protocol,
                                     method=method, seed=seed, variant=variant, backbone=backbone["name"],
                                     input_size=cfg.input_size, **extra)


def run_wscxr(feats, fz, k, seed, bank, val, test, diagnostic=False, layers=None, **kw):
    anomalies, grades = feats.few_shot(k, seed, layers=layers or FEATURE_LAYERS)
    det = create("wscxr", featurizer=fz, seed=seed, progress=False, **{**disc_kw, **kw})
    det.fit_features(None, val, anomalies, grades, bank=bank, diagnostic=test if diagnostic else None)
    return det, evaluate_on_features(det, val, test)


def fit_simplenet(fz, normal, val, seed, noise_scale):
    sn = create("simplenet", featurizer=fz, seed=seed, progress=False, depth=2, hidden=cfg.hidden,
                epochs=cfg.simplenet_epochs, eval_every=cfg.eval_every, batch_size=cfg.batch_size,
                noise_scale=noise_scale)
    return sn.fit_features(normal, val)


def choose_noise_scale(fz, normal, val):
    """SimpleNet's noise scale is tied to the feature scale: chosen on validation (first seed)."""
    models = {ns: fit_simplenet(fz, normal, val, SEEDS[0], ns) for ns in cfg.noise_grid}
    val_aurocs = {ns: m.history.best_value for ns, m in models.items()}
    best_scale = max(val_aurocs, key=val_aurocs.get)
    return best_scale, val_aurocs, models[best_scale]


def table1_for(backbone: dict, fz, feats, bank_b) -> dict:
    """PatchCore, SimpleNet, WSCXR (every K and seed) and CutPaste on one backbone's features -> table1 rows."""
    vp, tp = feats.pair("val", layers=backbone["layers"]), feats.pair("test", layers=backbone["layers"])
    out = {"val": vp, "test": tp, "wscxr": {}, "simplenet": {}}
    pc = create("patchcore", featurizer=fz, progress=False).fit_features(None, bank=bank_b)
    with ResourceMeter(images=len(tp)) as out["pc_meter"]:
        record(table1, pc, vp, tp, "PatchCore", "unsupervised", SEEDS[0], backbone=backbone)
    sn_train = bank_b[None, None] if cfg.simplenet_on_bank else feats.features("train", layers=backbone["layers"])
    out["noise"], noise_val, sn0 = choose_noise_scale(fz, sn_train, vp)
    print(f"{backbone['name']}: SimpleNet noise scale chosen on validation: {out['noise']} ("
          + ", ".join(f"{k}: {v:.3f}" for k, v in noise_val.items()) + ")")
    for seed in SEEDS:
        sn = sn0 if seed == SEEDS[0] else fit_simplenet(fz, sn_train, vp, seed, out["noise"])
        out["simplenet"][seed] = sn
        record(table1, sn, vp, tp, "SimpleNet", "unsupervised", seed, backbone=backbone)
    for k in cfg.ks:
        for seed in SEEDS:
            det, _ = run_wscxr(feats, fz, k, seed, bank_b, vp, tp, diagnostic=True, layers=backbone["layers"])
            out["wscxr"][(k, seed)] = det
            row = record(table1, det, vp, tp, "WSCXR", f"K={k}", seed, backbone=backbone)
            diagnostics.append({"backbone": backbone["name"], "K": k, "seed": seed, "ours AUROC": row["AUROC"],
                                "ours ACC": row["ACC"], "ours F1": row["F1"],
                                **{f"authors' protocol {m}": v for m, v in
                                   authors_protocol_diagnostic(det.history, tp.labels).items()}})
    for seed in SEEDS:  # CutPaste trains its own network on images, not on the cached patch features
        run = run_experiment("cutpaste", protocol, config=cfg, seed=seed, method="CutPaste", variant="unsupervised",
                             table=table1, backbone=backbone["name"], input_size=cfg.cutpaste["input_size"],
                             detector_kwargs=dict(arch=backbone["cutpaste_arch"], weights=backbone["weights"],
                                                  freeze_until=backbone["cutpaste_freeze"], progress=False,
                                                  **cfg.cutpaste))
        out["cutpaste_fit"] = run.timing[0]
    print(f"{backbone['name']}: Table I done at {time.perf_counter() - notebook_start:.0f} s")
    return out


main = table1_for(MAIN, featurizer, features, bank)
val_pair, test_pair, wscxr_models, simplenets = main["val"], main["test"], main["wscxr"], main["simplenet"]
m_pc = main["pc_meter"]
cp_fit = main["cutpaste_fit"]
timing.append({"step": f"CutPaste fine-tuning ({cfg.cutpaste['steps']} steps, {MAIN['name']})",
               "seconds": cp_fit["seconds"], "items": cp_fit["images"], "unit": "images (normals)",
               "per_s": cp_fit["images_per_s"]})
for backbone in BACKBONES[1:]:  # the alternative backbone(s), side by side
    fz_b, fs_b = build_features(backbone, protocol, cfg.ks)
    timing.append({"step": f"feature extraction ({backbone['name']}, all splits)", "seconds": round(fs_b.seconds, 1),
                   "items": fs_b.n_images, "unit": "images", "per_s": round(fs_b.images_per_second, 1)})
    bank_b, _ = coreset_bank(fs_b.features("train", layers=backbone["layers"]), cfg.coreset)
    table1_for(backbone, fz_b, fs_b, bank_b)
    del fs_b
print("saved", table1.save())

# %%
METRICS = ["AUROC", "ACC", "F1"]
summary1 = table1.summary()
ours = mean_pm_std(summary1, METRICS)
printed = paper_numbers("WSCXR", "Table I")
printed = printed[printed["our_dataset"] == "pneumonia"]
paper_wide = printed.pivot_table(index=["method", "variant"], columns="metric", values="value", aggfunc="first")
paper_wide.columns = [f"paper {c}" for c in paper_wide.columns]
table1_view = paper_wide.reset_index()
for w in ours["weights"].unique():  # one block of columns per weights source, side by side
    block = ours[ours["weights"] == w][["method", "variant", "n_seeds"] + METRICS]
    block.columns = ["method", "variant"] + [f"{c} [{w}]" for c in ["n_seeds"] + METRICS]
    table1_view = table1_view.merge(block, on=["method", "variant"], how="outer")
order = {"CutPaste": 0, "PatchCore": 1, "SimpleNet": 2, "SQUID": 3, "DDAD": 4, "WSCXR": 5}
table1_view = table1_view.sort_values(["method", "variant"], key=lambda s: s.map(order) if s.name == "method"
                                      else s.str.extract(r"(\d+)", expand=False).astype(float).fillna(0))
table1_view["note"] = np.where(table1_view["method"].isin(["SQUID", "DDAD"]), "paper numbers only (not run)", "")
display(table1_view.reset_index(drop=True))
WEIGHTS_ORDER = list(ours["weights"].unique())
FEATURE_WEIGHTS = WEIGHTS_ORDER[0]

# %% [markdown]
# **How much the authors' test-set model selection inflates the numbers.** For every WSCXR run we also
# recorded the test AUROC at each evaluated epoch. "Authors' protocol" = the epoch with the best *test* AUROC
# and the ACC/F1 threshold that maximises F1 *on the test set* (what their code reports). This is a
# diagnostic only; every number in our tables uses the validation split.

# %%
diag = pd.DataFrame(diagnostics)
diag_summary = diag.groupby(["backbone", "K"], sort=False)[
    [c for c in diag.columns if c not in ("backbone", "K", "seed", "authors' protocol epoch")]].mean()
diag_summary = (diag_summary * 100).round(1)
for m in METRICS:
    diag_summary[f"inflation {m}"] = (diag_summary[f"authors' protocol {m}"] - diag_summary[f"ours {m}"]).round(1)
display(diag_summary)
print("saved", save_frame(diag, "06_authors_protocol_diagnostic", provenance_columns(cfg, protocol)))

# %% [markdown]
# ## Table II: ablation of mining and mixing (K = 16 or the largest K of this profile)

# %%
K_ABL = max(cfg.ks)
table2 = ResultsTable("06_table2_ablation")
for mining in (False, True):
    for mixing in (False, True):
        for seed in SEEDS:
            if mining and mixing:
                det = wscxr_models[(K_ABL, seed)]
            else:
                det, _ = run_wscxr(features, featurizer, K_ABL, seed, bank, val_pair, test_pair, mining=mining,
                                   mixing=mixing)
            record(table2, det, val_pair, test_pair, "WSCXR",
                   f"mining={'on' if mining else 'off'}, mixing={'on' if mixing else 'off'}", seed, K=K_ABL)
print("saved", table2.save())
ours2 = mean_pm_std(table2.summary(), METRICS)
printed2 = paper_numbers("WSCXR", "Table II").pivot_table(index="variant", columns="metric", values="value",
                                                          aggfunc="first")
printed2.columns = [f"paper {c}" for c in printed2.columns]
table2_view = ours2.merge(printed2.reset_index(), on="variant", how="left")
display(table2_view[["variant", "n_seeds"] + METRICS + list(printed2.columns)])

# %% [markdown]
# ## Figures and analyses
#
# ### Fig. 2 analogue: anomaly maps of test images
# The discriminator's score of every patch (Eq. 8), upsampled and smoothed; normal test images on the left,
# pneumonia on the right (WSCXR at the largest K, first seed, default backbone). One colour scale for all eight
# maps (the colour bar), so a hotter map means a higher patch score.

# %%
best = wscxr_models[(K_ABL, SEEDS[0])]
rng = np.random.default_rng(0)
pick = np.concatenate([rng.choice(np.flatnonzero(test_set.labels == c), 4, replace=False) for c in (0, 1)])
maps = best.maps_from_features(test_pair.features[torch.as_tensor(pick)], test_set.size)
scores_pick = best.score_features(test_pair.features[torch.as_tensor(pick)])
fig = plots.overlay_maps(test_set.images[pick], maps,
                         titles=[f"{'normal' if test_set.labels[i] == 0 else 'pneumonia'}\nscore {s:.3g}"
                                 for i, s in zip(pick, scores_pick)])
plots.save_figure(fig, "06_anomaly_maps_pneumonia")

# %% [markdown]
# ### AUROC vs K and vs the retention rate r
# K comes from Table I. For r we retrain WSCXR at the largest K (seed 0 in the cpu profile: one run per r).

# %%
r_table = ResultsTable("06_retention_rate")
for r in cfg.r_grid:
    if r == 0.2:
        det = wscxr_models[(K_ABL, SEEDS[0])]
    else:
        det, _ = run_wscxr(features, featurizer, K_ABL, SEEDS[0], bank, val_pair, test_pair, retention=r)
    record(r_table, det, val_pair, test_pair, "WSCXR", f"r={r}", SEEDS[0], retention=r, K=K_ABL)
print("saved", r_table.save())
rdf = r_table.frame()
k_sum = summary1[(summary1["method"] == "WSCXR") & (summary1["weights"] == FEATURE_WEIGHTS)].copy()
k_sum["K"] = k_sum["variant"].str.extract(r"(\d+)", expand=False).astype(int)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
axes[0].errorbar(k_sum["K"], 100 * k_sum["AUROC_mean"], yerr=100 * k_sum["AUROC_std"].fillna(0), marker="o",
                 label=f"WSCXR (ours, {FEATURE_WEIGHTS})")
pk = printed[(printed["method"] == "WSCXR") & (printed["metric"] == "AUROC")]
axes[0].plot(pk["variant"].str.extract(r"(\d+)", expand=False).astype(int), pk["value"], "s--", label="WSCXR (paper)")
for name, colour in (("PatchCore", "C2"), ("SimpleNet", "C3")):
    v = summary1.loc[(summary1["method"] == name) & (summary1["weights"] == FEATURE_WEIGHTS), "AUROC_mean"]
    if len(v):
        axes[0].axhline(100 * float(v.iloc[0]), color=colour, ls=":", label=f"{name} (ours)")
axes[0].set_xscale("log", base=2)
axes[0].xaxis.set_minor_formatter(plt.NullFormatter())
axes[0].set(xticks=list(cfg.ks), xticklabels=list(cfg.ks), xlabel="K anomalous images",
            ylabel="test AUROC (%)", title="AUROC vs K")
axes[0].legend(fontsize=7)
axes[1].plot(rdf["retention"], 100 * rdf["AUROC"], "o-")
axes[1].axvline(0.2, color="grey", ls=":", lw=1)
axes[1].set_xscale("log")
axes[1].xaxis.set_minor_formatter(plt.NullFormatter())
axes[1].set(xticks=list(cfg.r_grid), xticklabels=[str(r) for r in cfg.r_grid], xlabel="retention rate r",
            ylabel="test AUROC (%)", title=f"AUROC vs r (K={K_ABL})")
fig.tight_layout()
plots.save_figure(fig, "06_auroc_vs_k_and_r")

# %% [markdown]
# ### Normal patches, mined anomalous patches and mixed features in 2-D
# t-SNE (UMAP in the paper profile) of a sample of normal bank features, all mined anomaly features (M'_a), the *unmined* patches of the
# same anomalous images, and mixed features (Eq. 6). Mining should keep the patches that sit away from the
# normal cloud; mixed features fill the space between the two.

# %%
n_pts = cfg.embed_points
g = torch.Generator().manual_seed(0)
mined = best.anomaly_set
all_anom = flatten_patches(features.few_shot(K_ABL, SEEDS[0], layers=FEATURE_LAYERS)[0])
unmined_mask = torch.ones(len(all_anom), dtype=torch.bool)
unmined_mask[best.mined_index] = False
groups = {"normal (bank)": bank[torch.randperm(len(bank), generator=g)[:n_pts]],
          "anomalous image, not mined": all_anom[unmined_mask][:n_pts // 2],
          "mined (M'_a)": mined[:n_pts // 2], "mixed (M*_a)": best.mixed_examples(n_pts // 2)}
X = torch.cat(list(groups.values())).numpy()
labels = np.concatenate([[name] * len(v) for name, v in groups.items()])
EMBED = "umap" if cfg.profile.name == "paper" else "tsne"  # UMAP's JIT compilation alone costs ~1 min here
fig = plots.embedding_scatter(X, labels, method=EMBED, label_names={n: n for n in groups},
                              title=f"patch features ({EMBED.upper()})")
plots.save_figure(fig, "06_embedding_patch_features")

# %% [markdown]
# ### Discriminator depth: one linear layer (authors' code) vs MLP (paper)

# %%
depth_table = ResultsTable("06_discriminator_depth")
for seed in SEEDS:
    for depth in (1, 2):
        if depth == 2:
            det = wscxr_models[(K_ABL, seed)]
        else:
            det, _ = run_wscxr(features, featurizer, K_ABL, seed, bank, val_pair, test_pair, depth=1)
        record(depth_table, det, val_pair, test_pair, "WSCXR", f"depth={depth}", seed, K=K_ABL)
print("saved", depth_table.save())
display(mean_pm_std(depth_table.summary(), METRICS))

# %% [markdown]
# ### Which backbone layers matter
# Same cached CNN pass, different layer choices (first seed, largest K, default backbone). At 128 px input a
# stride-32 stage is a 4 x 4 grid, a stride-16 stage 8 x 8 and a stride-8 stage 16 x 16.

# %%
layer_table = ResultsTable("06_layers")
for layers in [tuple(FEATURE_LAYERS)] + [tuple(ls) for ls in cfg.layer_alternatives if tuple(ls) != FEATURE_LAYERS]:
    if layers == FEATURE_LAYERS:
        val_l, test_l, bank_l = val_pair, test_pair, bank
        w = wscxr_models[(K_ABL, SEEDS[0])]
    else:
        val_l, test_l = features.pair("val", layers=layers), features.pair("test", layers=layers)
        bank_l, _ = coreset_bank(features.features("train", layers=layers), cfg.coreset)
        w, _ = run_wscxr(features, featurizer, K_ABL, SEEDS[0], bank_l, val_l, test_l, layers=layers)
    pc = create("patchcore", featurizer=featurizer, progress=False).fit_features(None, bank=bank_l)
    grid = int(test_l.features.shape[1])
    record(layer_table, pc, val_l, test_l, "PatchCore", "+".join(layers), SEEDS[0], grid=grid)
    record(layer_table, w, val_l, test_l, f"WSCXR K={K_ABL}", "+".join(layers), SEEDS[0], grid=grid)
print("saved", layer_table.save())
display(layer_table.frame()[["method", "variant", "grid", "AUROC", "ACC", "F1"]].round(3))

# %% [markdown]
# ### Pretrained vs random weights
# Table I compares two pretrained backbones. How much does pretraining matter at all? PatchCore and WSCXR with a
# *randomly initialised* copy of the default backbone, on a smaller seeded subset of the normals, validation
# and test images (sizes in the config's `weight_subset`), beside the pretrained features of the same images.

# %%
weights_table = ResultsTable("06_weights")


def weight_study_rows(feats_by_split, anomalies, grades, fz, sub_protocol):
    b, _ = coreset_bank(feats_by_split["train"].features, cfg.coreset)
    pc = create("patchcore", featurizer=fz, progress=False).fit_features(None, bank=b)
    record(weights_table, pc, feats_by_split["val"], feats_by_split["test"], "PatchCore", "subset", SEEDS[0],
           prot=sub_protocol)
    w = create("wscxr", featurizer=fz, seed=SEEDS[0], progress=False, **disc_kw)
    w.fit_features(None, feats_by_split["val"], anomalies, grades, bank=b)
    record(weights_table, w, feats_by_split["val"], feats_by_split["test"], f"WSCXR K={K_ABL}", "subset", SEEDS[0],
           prot=sub_protocol)


if cfg.random_weights_study:
    sizes = dict(zip(("train", "val", "test"), cfg.weight_subset))
    sub = {split: np.sort(np.random.default_rng(1).choice(len(features.images[split]),
                                                          min(n, len(features.images[split])), replace=False))
           for split, n in sizes.items()}
    sub_protocol = Protocol("pneumonia", features.images["train"].subset(sub["train"]),
                            features.images["val"].subset(sub["val"]), features.images["test"].subset(sub["test"]),
                            protocol.train_anomaly_pool, source=protocol.source)
    for weights in (MAIN["weights"], "random"):
        fz = PatchFeaturizer(arch=MAIN["arch"], layers=FEATURE_LAYERS, weights=weights, input_size=cfg.input_size,
                             patch_size=5, dim=1024)
        fs = DatasetFeatures(fz, sub_protocol, sub_protocol.train, [(K_ABL, SEEDS[0])], val=sub_protocol.val,
                             test=sub_protocol.test, progress=False)
        an, gr = fs.few_shot(K_ABL, SEEDS[0])
        weight_study_rows({split: fs.pair(split) for split in sizes}, an, gr, fz, sub_protocol)
        del fs
    print("saved", weights_table.save())
    display(weights_table.frame()[["method", "weights", "AUROC", "ACC", "F1"]].round(3))

# %% [markdown]
# ## Other datasets: BreastMNIST and RetinaMNIST
# Same pipeline and sizes. BreastMNIST: malignant is anomalous (64 px official file, upsampled);
# RetinaMNIST: grades 1-4 are anomalous (28 px official file, upsampled) and K anomalous images are drawn
# *per grade* (as the paper does per anomaly type), so K = 16 means 64 images. CutPaste is not rerun here
# and SimpleNet runs with the config's `other_sn_seeds` seed(s) only (time budget; SimpleNet's noise scale is the
# one chosen on PneumoniaMNIST's validation split). The paper has no numbers for these datasets.

# %%
table_other = ResultsTable("06_other_datasets")
for dataset in cfg.other_datasets:
    prot = load(dataset)
    per_class = dataset == "retina"
    fz, fs = build_features(MAIN, prot, cfg.other_ks, per_class=per_class)
    timing.append({"step": f"feature extraction ({dataset})", "seconds": round(fs.seconds, 1), "items": fs.n_images,
                   "unit": "images", "per_s": round(fs.images_per_second, 1)})
    b, _ = coreset_bank(fs.features("train"), cfg.coreset)
    vp, tp = fs.pair("val"), fs.pair("test")
    pc = create("patchcore", featurizer=fz, progress=False).fit_features(None, bank=b)
    record(table_other, pc, vp, tp, "PatchCore", "unsupervised", SEEDS[0], prot=prot)
    for seed in SEEDS:
        if seed in SEEDS[:cfg.other_sn_seeds]:
            sn = fit_simplenet(fz, b[None, None] if cfg.simplenet_on_bank else fs.features("train"), vp, seed,
                               main["noise"])
            record(table_other, sn, vp, tp, "SimpleNet", "unsupervised", seed, prot=prot)
        for k in cfg.other_ks:
            an, gr = fs.few_shot(k, seed)
            w = create("wscxr", featurizer=fz, seed=seed, progress=False, **disc_kw)
            w.fit_features(None, vp, an, gr, bank=b)
            record(table_other, w, vp, tp, "WSCXR", f"K={k}" + (" per grade" if per_class else ""), seed, prot=prot)
    del fs
if cfg.other_datasets:
    print("saved", table_other.save())
    display(mean_pm_std(table_other.summary(), METRICS)[["dataset", "method", "variant", "weights", "n_seeds"] + METRICS])

# %% [markdown]
# ## Timing
# Wall time of each stage (images/s or patches/s; `threads` torch threads on a shared 2-core CPU).
# Discriminator training is given in patch features per second (one image = h x w patches).

# %%
h = wscxr_models[(K_ABL, SEEDS[0])].history
sn_h = simplenets[SEEDS[0]].history
for name, hist in ((f"WSCXR discriminator training (K={K_ABL}, {cfg.epochs} epochs)", h),
                   (f"SimpleNet training ({cfg.simplenet_epochs} epochs)", sn_h)):
    timing.append({"step": name, "seconds": round(hist.seconds, 1), "items": hist.images_seen, "unit": "patches",
                   "per_s": round(hist.images_per_second, 1)})
timing.append({"step": "PatchCore scoring (test split, incl. kNN)", "seconds": round(m_pc.seconds, 1),
               "items": m_pc.images, "unit": "images", "per_s": round(m_pc.images_per_second, 1)})
timing_df = pd.DataFrame(timing).assign(weights=FEATURE_WEIGHTS)
print("saved", save_frame(timing_df, "06_timing", provenance_columns(cfg, protocol)))
display(timing_df)

# %% [markdown]
# ## Discussion
#
# **What the cpu profile cut, and why** (sizes in `adlib/configs/06_wscxr_weakly_supervised.toml`; the paper
# profile restores the authors' setting): 128 px input instead of 256 px (4x fewer CNN operations; the
# PneumoniaMNIST file itself is 128 px), with a stride-16 and a stride-32 stage for an 8 x 8 patch grid; the
# authors' 500 training normals but a 25 % instead of 50 % coreset; 12 instead of 100 discriminator epochs with
# a 256-wide hidden layer; SimpleNet trained on the coreset bank; CutPaste fine-tuned for 100 steps at 64 px
# with frozen early stages; one shared normal subset and coreset for the three seeds; BreastMNIST and
# RetinaMNIST with K = 2 and 16 only and SimpleNet with fewer seeds there; the random-weights comparison on a
# subset. SQUID and DDAD are paper numbers only. The papers' ImageNet DenseNet121 cannot be downloaded here:
# EfficientNet-Lite0 (ImageNet) and our CIFAR-10 DenseNet121 stand in for it, side by side.
#
# The sentences below are computed from this run's tables.

# %%
def mean_of(summary, method, variant, weights, metric="AUROC"):
    row = summary[(summary["method"] == method) & (summary["variant"] == variant) & (summary["weights"] == weights)]
    return float(row[f"{metric}_mean"].iloc[0]) * 100 if len(row) else float("nan")


paper_auc = {k: float(printed[(printed["method"] == "WSCXR") & (printed["variant"] == f"K={k}")
                              & (printed["metric"] == "AUROC")]["value"].iloc[0]) for k in cfg.ks}
lines = [f"- Profile **{cfg.profile.name}**, input {cfg.input_size} px, data {DATA_SOURCE}; the paper used an "
         "ImageNet DenseNet121 at 256 px."]
headline = {}
for backbone in BACKBONES:
    w = [x for x in WEIGHTS_ORDER if table1.frame().query("backbone == @backbone['name']")["weights"].eq(x).any()][0]
    pc, sn, cp = (mean_of(summary1, m, "unsupervised", w) for m in ("PatchCore", "SimpleNet", "CutPaste"))
    w_auc = {k: mean_of(summary1, "WSCXR", f"K={k}", w) for k in cfg.ks}
    best_unsup = np.nanmax([pc, sn, cp])
    headline[backbone["name"]] = (pc, max(w_auc.values()))
    lines += [
        f"- **{backbone['name']}** ({w}): PatchCore {pc:.1f}, SimpleNet {sn:.1f}, CutPaste {cp:.1f} AUROC "
        "(paper: 90.4, 90.1, 73.6); WSCXR " + ", ".join(f"K={k}: {w_auc[k]:.1f} (paper {paper_auc[k]:.1f})"
                                                         for k in cfg.ks) + ".",
        f"  Weak supervision {'helps' if min(w_auc.values()) > best_unsup else 'does not consistently beat the unsupervised methods'}"
        f" with these features: best unsupervised {best_unsup:.1f}, WSCXR {min(w_auc.values()):.1f}-{max(w_auc.values()):.1f};"
        f" AUROC {'rises' if w_auc[max(cfg.ks)] > w_auc[min(cfg.ks)] else 'does not rise'} from K={min(cfg.ks)} to "
        f"K={max(cfg.ks)}.",
    ]
if len(headline) > 1:
    (n1, (pc1, w1)), (n2, (pc2, w2)) = list(headline.items())[:2]
    lines.append(f"- Backbone effect: PatchCore {pc1:.1f} ({n1}) vs {pc2:.1f} ({n2}); best WSCXR {w1:.1f} vs {w2:.1f}. "
                 + ("ImageNet features from EfficientNet-Lite0 are better for both." if pc1 > pc2 and w1 > w2 else
                    "The ImageNet features do not win on both methods."))
s2 = table2.summary()
abl = {v: float(s2.loc[s2["variant"] == v, "AUROC_mean"].iloc[0]) * 100 for v in s2["variant"]}
lines.append("- Table II (ours, default backbone, AUROC): " + ", ".join(f"{v}: {a:.1f}" for v, a in abl.items())
             + f". Mining {'helps' if abl.get('mining=on, mixing=on', 0) > abl.get('mining=off, mixing=on', 0) else 'does not help'} "
             f"with mixing on; mixing {'helps' if abl.get('mining=on, mixing=on', 0) > abl.get('mining=on, mixing=off', 0) else 'does not help'} with mining on.")
if len(diag):
    infl = diag_summary[[f"inflation {m}" for m in METRICS]].mean()
    lines.append(f"- Choosing the epoch and threshold on the test set (authors' code) would add on average "
                 f"{infl['inflation AUROC']:+.1f} AUROC, {infl['inflation ACC']:+.1f} ACC and {infl['inflation F1']:+.1f} F1 "
                 "points to WSCXR's numbers in this run.")
vals = table1.frame()
lines.append(f"- Validation vs test: mean validation AUROC {100 * vals['val_AUROC'].mean():.1f} vs test "
             f"{100 * vals['AUROC'].mean():.1f} over all Table I rows (notebook 00 measures the train/test shift).")
if len(weights_table.rows):
    wt = weights_table.frame()
    lines.append("- Pretrained vs random weights on the subset (AUROC): " + "; ".join(
        f"{r.method} {r.weights} {100 * r.AUROC:.1f}" for r in wt.itertuples()) + ".")
lines.append(f"- Notebook wall time: {time.perf_counter() - notebook_start:.0f} s with {cfg.profile.name} profile, "
             f"{vals['threads'].iloc[0]} thread(s).")
print("\n".join(lines))
