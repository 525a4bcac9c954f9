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
# # 03 · CCB-AAE: an adversarial autoencoder with chains of convolution blocks
#
# Zhang, Guo, Zhang, Lu, Zhao, *Unsupervised Deep Anomaly Detection for Medical Images Using an Improved
# Adversarial Autoencoder*, J Digit Imaging 35, 2022.
#
# **The paper's claims.** (1) Replacing the plain skip connections of an adversarially trained autoencoder
# (Skip-GANomaly) by *chains of convolution blocks* (CCB) - a few conv 3x3 + ReLU blocks on each
# encoder-decoder connection - beats AnoGAN, EGBAD, GANomaly and Skip-GANomaly on every CIFAR-10 class
# (Table 1 / Fig. 5: e.g. bird 0.758 vs 0.581 AUROC) and on every medical task (ILD CT patches, HAM10000 skin
# lesions; ACC and F1, Tables 2-5). Among the baselines its tables mostly, not always, put Skip-GANomaly above
# GANomaly above EGBAD and AnoGAN (GANomaly leads Skip-GANomaly on dog, horse and ILD fibrosis); the claim we
# test is the headline one: CCB-AAE is the best method on each task.
# (2) Short chains are best: lengths [1, 2, 3, 4] (bottom to top) beat x2 ... x8 (Tables 6/7).
#
# ILD and HAM10000 are not available here. We rebuild the comparison on CIFAR-10 (the paper's direction: one
# class anomalous, nine normal) and on three MedMNIST sets, with the same rules as every notebook of this
# project: training on normal images only, every choice (checkpoint, score weight alpha, threshold) on the
# validation split, the test split scored once.
#
# Sections: setup · parameters · the method (Fig. 1-3, Eqs. 2, 4-7) · Task 1: CIFAR-10 (Table 1, Fig. 5) ·
# Task 2: medical images (Tables 2-5) · figures · Task 3: CCB length (Tables 6/7, Figs. 6/7) · timing ·
# discussion.

# %% [markdown]
# ## Setup

# %%
import time

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from adlib import plots
from adlib.config import load_run_config
from adlib.data import cifar10_one_vs_rest, make_protocol
from adlib.experiment import provenance_columns, run_experiment
from adlib.methods.adversarial_ae import AdversarialAutoencoder, scaled_ccb_lengths
from adlib.methods.adversarial_ae.experiments import (AE_FAMILY, METHODS, PAPER_CIFAR_NAMES, RETINA_GRADES,
                                                      alpha_curve, cap, ccb_length_curve, cifar_bar_chart,
                                                      detector_kwargs, example_rows, length_label,
                                                      paper_numbers_ccb_aae, per_class_rows, seed_dots)
from adlib.gan import count_parameters
from adlib.metrics import all_anomalous_baseline
from adlib.paper_numbers import paper_numbers
from adlib.results import ResultsTable, mean_pm_std, save_frame
from adlib.training import choose_device

notebook_start = time.perf_counter()
pd.set_option("display.width", 180, "display.max_columns", 30)

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper (None: $ADLIB_PROFILE, else paper on a GPU and cpu without)

# %%
# Run sizes per profile: adlib/configs/03_ccb_aae_adversarial_autoencoder.toml
cfg = load_run_config("03_ccb_aae_adversarial_autoencoder", profile)
PROFILE = cfg.profile.name
device = choose_device()
print(cfg.summary())
print(f"device: {device}; torch threads: {torch.get_num_threads()}")


def steps_for(kind: str, n_train: int) -> int:
    """Training steps: the profile's fixed number, or (paper profile) 50 epochs of the training normals."""
    if f"{kind}_steps" in cfg.values:
        return int(cfg[f"{kind}_steps"])
    return int(np.ceil(cfg[f"{kind}_epochs"] * n_train / cfg["batch_size"]))


# %% [markdown]
# **What the cpu profile cuts** (the paper profile runs the paper's protocol on a GPU). Networks are narrower
# (base width 16 on CIFAR-10 and 8 on the medical sets instead of DCGAN's 64) and train for 150 steps of
# batch 64 instead of 50 epochs; CIFAR-10 runs two of the ten classes (plane, the paper's easiest, and bird,
# its hardest) with 2,000 of the 45,000 normal training images, a seeded 300-image validation subset and a
# seeded 1,000-image test subset; GANomaly, Skip-GANomaly and CCB-AAE get 3 seeds on PneumoniaMNIST,
# everything else one seed. This budget is a small fraction of the paper's training, so the numbers say how the
# methods compare *early in training*, not what they reach.

# %% [markdown]
# ## The method
#
# **Generator** (Fig. 1, 3). An encoder $G_E$ of 5 down-sampling blocks (conv 4x4 stride 2, BatchNorm,
# LeakyReLU) maps the image $x$ to a latent vector $z$; a symmetric decoder $G_D$ of 5 up-sampling blocks
# reconstructs $\hat x$. The connections between each encoder level and the decoder level of the same
# resolution make the three variants:
#
# | variant | connection | $z$, $\hat z$ |
# |---|---|---|
# | GANomaly | none | $G_E(x)$ and a second encoder $E(\hat x)$ |
# | Skip-GANomaly | the encoder features, concatenated (U-Net) | discriminator features $f(x)$, $f(\hat x)$ |
# | CCB-AAE | a chain of conv 3x3 + ReLU blocks, then concatenated (Fig. 2) | $f(x)$, $f(\hat x)$ |
#
# The chains are longest at the shallow levels: lengths [1, 2, 3, 4] from bottom to top. The discriminator
# $D$ is a DCGAN classifier (real $x$ vs reconstructed $\hat x$) whose last feature map $f$ also serves as
# feature extractor.
#
# **Losses.** $D$ maximises Eq. 4, $L_{adv} = E\log D(x) + E\log(1-D(\hat x))$. The generator minimises
# Eq. 7, $\lambda_s L_s + \lambda_{adv} L_{adv} + \lambda_{lat} L_{lat}$ with $\lambda_s = 50$,
# $\lambda_{adv} = \lambda_{lat} = 1$: image similarity $L_s = \lVert x-\hat x\rVert_2$ (Eq. 5), latent
# loss $L_{lat} = \lVert z-\hat z\rVert_2$ (Eq. 6) and, as its adversarial term, feature matching on $D$'s
# features, $\lVert E f(x) - E f(\hat x)\rVert_2$ (GANomaly's form; a loss on $D$'s *outputs* here is a
# known trap of public GAN anomaly-detection code). Adam, lr 2e-4, batch 64, dropout 0.5 (paper).
#
# **Score** (Eq. 2): $A(x) = \alpha D_1(x,\hat x) + (1-\alpha) D_2(z,\hat z)$ with the per-image mean squared
# errors, each divided by its mean on held-out normal training images. $\alpha$ and the kept checkpoint are
# chosen on the validation AUROC; BatchNorm is in eval mode whenever anything is scored, so a score does not
# depend on the other images in its batch (a unit test checks it).
#
# **Choices where the paper is silent** (also in `adlib.methods.adversarial_ae`): at 32 px the 5 blocks reach
# 1 x 1 and a 1 x 1 conv gives $z$; at 64 px they end at 2 x 2 and a 2 x 2 conv gives $z$ (nz = 100). Dropout
# sits after the two innermost decoder blocks (as in pix2pix's U-Net). L2 similarity and the same loss weights
# are used for all three variants, so only the connections differ. No model selection is described in the
# paper; we keep the best validation checkpoint. AnoGAN and EGBAD use standard DCGAN networks (down to 4 x 4):
# AnoGAN searches a latent code per test image (`anogan_search_steps` Adam steps, 50 in the cpu and paper
# profiles; score $0.9\,$residual $+ 0.1\,$discrimination loss); EGBAD (a BiGAN) scores $0.9\,\lVert x-G(E(x))\rVert_1 + 0.1\,\lVert f(x,E(x)) - f(G(E(x)),E(x))\rVert_1$.

# %%
arch_rows = []
for size, channels in ((32, 3), (64, 1)):
    for variant, skip in (("GANomaly", "none"), ("Skip-GANomaly", "plain"), ("CCB-AAE", "ccb")):
        g = AdversarialAutoencoder(channels, size, nz=cfg["nz"], width=64, skip=skip, second_encoder=skip == "none")
        arch_rows.append({"input": f"{channels} x {size} x {size}", "variant": variant, "blocks": g.depth,
                          "conv blocks per connection (bottom -> top)": g.decoder.conv_blocks_per_level(),
                          "generator parameters (M, width 64)": round(count_parameters(g) / 1e6, 2)})
display(pd.DataFrame(arch_rows))
print("Tables 6/7 lengths:", {f"x{f}": list(scaled_ccb_lengths(f)) for f in (1, 2, 4, 6, 8)})

# %% [markdown]
# One helper runs a method on a protocol through the project's experiment runner: fit on the training
# normals (with the validation split for the checkpoint and alpha), score validation and test, threshold
# on validation (F1-optimal), one result row with provenance.

# %%
timing = []


def run(method, protocol, seed, table, *, width, steps, dataset, variant="default", **over):
    kw = detector_kwargs(method, cfg, width, steps, **over)
    result = run_experiment(METHODS[method], protocol, config=cfg, seed=seed, method=method, table=table,
                            variant=variant, use_val_in_fit=True, detector_kwargs=kw, dataset=dataset,
                            width=width, steps=steps)
    det = result.detector
    extra = {"alpha": getattr(det, "alpha", np.nan),
             "search_s_per_image": getattr(det, "search_seconds_per_image", np.nan)}
    timing.extend(dict(t, dataset=dataset, **extra) for t in result.timing)
    return result


# %% [markdown]
# ## Task 1 · CIFAR-10, one class anomalous (Table 1, Fig. 5)
#
# As in the paper, one class is anomalous and the other nine are normal; training uses the normal images of
# the CIFAR-10 train split minus a seeded 10 % validation split (normal and anomalous); AUROC on the test
# split.

# %%
table1 = ResultsTable("03_table1_cifar10")
cifar_runs = {}
for cls in cfg["cifar_classes"]:
    cifar = cifar10_one_vs_rest(cls, "one_anomalous", size=32, max_train=cfg.get("cifar_max_train"), seed=0)
    cap(cifar, cfg.get("cifar_val_cap"), cfg.get("cifar_test_cap"))
    print(f"{cifar.dataset}: {cifar.data_source()}, train normals {len(cifar.train)}, test {cifar.test.counts()}")
    steps = steps_for("cifar", len(cifar.train))
    for method in METHODS:
        for seed in cfg["gan_seeds"]:
            cifar_runs[(cls, method, seed)] = run(method, cifar, seed, table1, width=cfg["cifar_width"],
                                                  steps=steps, dataset="cifar10", variant=PAPER_CIFAR_NAMES[cls])
table1.save()
t1 = table1.frame().rename(columns={"variant": "class"})
paper1 = paper_numbers_ccb_aae("Table 1")
ours1 = t1.pivot_table(index="method", columns="class", values="AUROC", sort=False).reindex(list(METHODS))
printed1 = (paper1.assign(**{"class": paper1["dataset"].str.replace("CIFAR-10 ", "")})
            .pivot_table(index="method", columns="class", values="value", sort=False)[list(ours1.columns)])
display(pd.concat({"ours (AUROC)": ours1.round(3), "paper Table 1": printed1.reindex(list(METHODS))}, axis=1))

# %%
fig = cifar_bar_chart(t1, paper1, f"CIFAR-10, one class anomalous ({PROFILE} profile)")
plots.save_figure(fig, "03_fig5_cifar10_auroc_per_class")

# %% [markdown]
# ## Task 2 · Medical images (Tables 2-5)
#
# The paper's medical sets (ILD CT patches, HAM10000 dermatoscopy) are not available; three MedMNIST sets
# stand in, with ACC and F1 at the threshold chosen on the validation split, plus AUROC:
#
# * **PneumoniaMNIST**, 64 px (rebuilt file, see notebook 00): normal vs pneumonia, grayscale - for ILD
#   (Tables 2/3: grayscale CT, healthy tissue vs one pathology).
# * **BreastMNIST**, 64 px: normal-or-benign vs malignant ultrasound, grayscale - also for Tables 2/3.
# * **RetinaMNIST**, 32 px (upsampled from the only 28 px file), grade 0 normal and each grade 1-4 in turn
#   anomalous - for HAM10000 (Tables 4/5: colour images, healthy vs each of four lesion classes). One model is
#   trained per seed on grade-0 images; its checkpoint and alpha are chosen on the whole validation split, and
#   each grade gets its own validation threshold (validation normals + that grade).

# %%
pneumonia = cap(make_protocol("pneumonia", size=cfg["med_size"], max_train=cfg.get("med_max_train"), seed=0),
                cfg.get("med_val_cap"), cfg.get("med_test_cap"))
breast = cap(make_protocol("breast", size=cfg["med_size"], max_train=cfg.get("med_max_train"), seed=0),
             cfg.get("med_val_cap"), cfg.get("med_test_cap"))
retina = make_protocol("retina", size=cfg["retina_size"], channels=3, max_train=cfg.get("med_max_train"), seed=0)
for p in (pneumonia, breast, retina):
    print(f"{p.dataset}: {p.data_source()}, train normals {len(p.train)}, val {p.val.counts()}, "
          f"test {p.test.counts()}, {p.train.size} px")

# %%
table_med = ResultsTable("03_tables2to5_medical")
med_runs = {}
for name, prot in (("pneumonia", pneumonia), ("breast", breast)):
    steps = steps_for("med", len(prot.train))
    for method in METHODS:
        seeds = cfg["seeds"] if (name == "pneumonia" and method in AE_FAMILY) else (
            cfg["gan_seeds"] if name == "pneumonia" else cfg["other_seeds"])
        for seed in seeds:
            med_runs[(name, method, seed)] = run(method, prot, seed, table_med, width=cfg["med_width"],
                                                 steps=steps, dataset=name)

# %%
table_retina = ResultsTable("03_tables4and5_retina_per_grade")
steps = steps_for("med", len(retina.train))
for method in METHODS:
    for seed in cfg["other_seeds"]:
        r = run(method, retina, seed, table_med, width=cfg["med_width"], steps=steps, dataset="retina")
        med_runs[("retina", method, seed)] = r
        per_class_rows(r, retina, classes=RETINA_GRADES, table=table_retina, config=cfg, method=method, seed=seed,
                       dataset="retina", variant=length_label(1) if method == "CCB-AAE" else "default",
                       width=cfg["med_width"], steps=steps)
saved = [table_med.save(), table_retina.save()]

# %%
METRICS = ["AUROC", "ACC", "F1"]
med_summary = table_med.summary()
display(mean_pm_std(med_summary, [*METRICS, "SEN", "SPE"])[["dataset", "method", "n_seeds", *METRICS, "SEN", "SPE",
                                                            "profile", "weights"]])
for prot in (pneumonia, breast):  # ACC / F1 at this level with SPE 0: the validation threshold flags every image
    floor = all_anomalous_baseline(prot.test.labels)
    print(f"{prot.dataset}: calling every test image anomalous gives ACC {floor['ACC']:.3f}, F1 {floor['F1']:.3f}")
grades = table_retina.frame().pivot_table(index="method", columns="dataset", values=["ACC", "F1"], sort=False)
display(grades.reindex(list(METHODS)).round(3))

# %% [markdown]
# The paper's numbers on its own data, for context (ILD: Tables 2/3; HAM10000: Tables 4/5). The datasets
# differ, so these are not targets; what can be compared is the *ranking* of the methods.

# %%
printed_med = paper_numbers_ccb_aae()
printed_med = printed_med[printed_med["table"].isin(["Table 2", "Table 3", "Table 4", "Table 5"])]
display(printed_med.pivot_table(index="method", columns=["metric", "dataset"], values="value", sort=False)
        .reindex(list(METHODS)))
salad = paper_numbers("SALAD", "Table I").set_index("method")["value"]
print(f"Published elsewhere on the same PneumoniaMNIST test images (SALAD Table I): GANomaly {salad['GANomaly']:.1f} "
      f"AUROC, f-AnoGAN {salad['f-AnoGAN']:.1f}.")

# %% [markdown]
# Three seeds on PneumoniaMNIST for the three autoencoders: each dot is one seed, the bars mean ± std.

# %%
pn = table_med.frame().query("dataset == 'pneumonia'")
fig = seed_dots(pn, "AUROC", f"PneumoniaMNIST test AUROC per seed ({PROFILE})", hue=None)
plots.save_figure(fig, "03_seeds_pneumonia_auroc")
fig = seed_dots(table_med.frame(), "F1", "test F1 at the validation threshold, per seed")
plots.save_figure(fig, "03_seeds_medical_f1")

# %% [markdown]
# ## Figures
#
# Inputs, reconstructions and squared residuals of normal and pneumonia test images (seed 0), one grid per
# autoencoder; the residual rows share one colour scale within a grid. The titles give the anomaly score.

# %%
rng = np.random.default_rng(1)
idx = np.concatenate([rng.choice(np.flatnonzero(pneumonia.test.labels == k), 5, replace=False) for k in (0, 1)])
examples = pneumonia.test.subset(idx)
seed0 = cfg["seeds"][0]
for method in AE_FAMILY:
    rows, titles = example_rows(med_runs[("pneumonia", method, seed0)].detector, examples, ("normal", "pneum."))
    fig = plots.image_grid(rows, titles=titles, heat_rows=("residual²",))
    fig.suptitle(f"{method} on PneumoniaMNIST", y=1.02, fontsize=9)
    plots.save_figure(fig, f"03_reconstructions_{METHODS[method]}_pneumonia")

# %% [markdown]
# Generator and discriminator losses of CCB-AAE on PneumoniaMNIST (seed 0), with the validation AUROC that
# chose the kept checkpoint; and the validation AUROC as a function of alpha (Eq. 2) for the three
# autoencoders.

# %%
ccb0 = med_runs[("pneumonia", "CCB-AAE", seed0)].detector
plots.save_figure(plots.training_curves(ccb0.history, "CCB-AAE, PneumoniaMNIST"), "03_loss_curves_ccb_aae")
fig = alpha_curve({m: med_runs[("pneumonia", m, seed0)].detector.alpha_table for m in AE_FAMILY},
                  "PneumoniaMNIST: choosing alpha on validation")
plots.save_figure(fig, "03_alpha_validation")

# %% [markdown]
# t-SNE of the latent codes z of test images (CCB-AAE: the discriminator features of Eq. 2; GANomaly: the
# encoder bottleneck), coloured by label.

# %%
sub = pneumonia.test.sample(cfg["tsne_points"], seed=0)
for method in ("GANomaly", "CCB-AAE"):
    det = med_runs[("pneumonia", method, seed0)].detector
    fig = plots.embedding_scatter(det.embed(sub), sub.labels, method="tsne", seed=0,
                                  title=f"t-SNE of {method} latent codes (PneumoniaMNIST test)")
    plots.save_figure(fig, f"03_tsne_{METHODS[method]}")

# %% [markdown]
# ## Task 3 · The length of the chains (Tables 6/7, Figs. 6/7)
#
# CCB-AAE with lengths [1, 2, 3, 4] x factor on RetinaMNIST (the colour set with four anomaly classes, as
# HAM10000 in the paper's tables); ACC and F1 per grade. (The paper's text speaks of doubling, tripling and
# quadrupling, its tables of x2, x4, x6 and x8; we run the tables' rows.)

# %%
table6 = ResultsTable("03_tables6and7_ccb_length")
for row in table_retina.frame().query("method == 'CCB-AAE'").to_dict("records"):
    table6.add_row(row)  # factor 1 = the main retina run
for factor in cfg["ccb_factors"]:
    if factor == 1:
        continue
    for seed in cfg["other_seeds"]:
        r = run("CCB-AAE", retina, seed, None, width=cfg["med_width"], steps=steps, dataset="retina",
                variant=length_label(factor), ccb_lengths=scaled_ccb_lengths(factor))
        per_class_rows(r, retina, classes=RETINA_GRADES, table=table6, config=cfg, method="CCB-AAE", seed=seed,
                       dataset="retina", variant=length_label(factor), width=cfg["med_width"], steps=steps)
table6.save()
t6 = table6.frame().assign(factor=lambda d: d["variant"].map({length_label(f): f for f in (1, 2, 4, 6, 8)}))
display(t6.pivot_table(index="variant", columns="dataset", values=["ACC", "F1"], sort=False).round(3))
paper67 = paper_numbers_ccb_aae()
paper67 = paper67[paper67["table"].isin(["Table 6", "Table 7"]) & paper67["dataset"].str.startswith("HAM10000")]
for metric in ("ACC", "F1"):
    plots.save_figure(ccb_length_curve(t6, paper67, metric, f"RetinaMNIST {metric}"), f"03_fig67_ccb_length_{metric}")

# %% [markdown]
# ## Timing
#
# Wall time of every fit and of scoring validation + test (this machine, threads as printed above). AnoGAN's
# score needs a latent search per image; its cost per image is the `search_s_per_image` column.

# %%
timing_frame = pd.DataFrame(timing)
display(timing_frame.groupby(["dataset", "method", "stage"])[["seconds", "images_per_s", "search_s_per_image"]]
        .mean().round(3))
saved.append(save_frame(timing_frame, "03_timing", provenance_columns(cfg)))

# %% [markdown]
# ## Discussion
#
# The sentences below are computed from this run's numbers.

# %%
lines = [f"Profile {PROFILE}: {len(cfg['cifar_classes'])} CIFAR-10 class(es), medical sets at "
         f"{cfg['med_size']}/{cfg['retina_size']} px, width {cfg['med_width']}, "
         f"{steps_for('med', len(pneumonia.train))} steps on PneumoniaMNIST."]


def best_method(values: pd.Series) -> tuple[str, float]:
    """The method with the highest value and its lead over the runner-up."""
    ordered = values.sort_values(ascending=False)
    return ordered.index[0], float(ordered.iloc[0] - ordered.iloc[1])


cifar_mean = t1.groupby("method")["AUROC"].mean()
per_class = t1.pivot_table(index="class", columns="method", values="AUROC")
lines.append("CIFAR-10 mean test AUROC over the classes run: " + ", ".join(
    f"{m} {cifar_mean[m]:.3f}" for m in METHODS if m in cifar_mean) + ". Best per class (lead over the runner-up; "
    f"{len(cfg['gan_seeds'])} seed(s), so a lead of a few thousandths is not a difference): " + "; ".join(
        f"{c} {best_method(per_class.loc[c])[0]} ({best_method(per_class.loc[c])[1]:+.3f})" for c in per_class.index)
    + ". The paper: CCB-AAE on every class.")
checks, degenerate = [], []
for name in ("pneumonia", "breast", "retina"):
    s = med_summary.query("dataset == @name").set_index("method")
    degenerate += [f"{name} {m}" for m in s.index if s.loc[m, "SPE_mean"] == 0]
    for metric in METRICS:
        checks.append((name, metric, *best_method(s[f"{metric}_mean"])))
ccb_best = [f"{n} {m} (by {lead:.3f})" for n, m, who, lead in checks if who == "CCB-AAE"]
lines.append(f"Medical sets: CCB-AAE is the best method in {len(ccb_best)} of {len(checks)} (dataset, metric) pairs"
             + (f": {', '.join(ccb_best)}." if ccb_best else ".") + " The paper: in all of its (dataset, metric) pairs.")
if degenerate:
    lines.append(f"In {len(degenerate)} medical rows ({', '.join(degenerate)}) the validation threshold flags every "
                 "test image (SPE 0): their ACC and F1 are the all-anomalous floor printed under the table and say "
                 "nothing about the method; compare AUROC there.")
pns = med_summary.query("dataset == 'pneumonia'").set_index("method")
best = pns["AUROC_mean"].idxmax()
gap = pns.loc["CCB-AAE", "AUROC_mean"] - pns.loc["Skip-GANomaly", "AUROC_mean"]
spread = pns.loc[["CCB-AAE", "Skip-GANomaly"], "AUROC_std"].fillna(0).max()
n_seeds = int(pns.loc["CCB-AAE", "n_seeds"])
lines.append(f"PneumoniaMNIST ({n_seeds} seed(s)): best AUROC {best} {pns.loc[best, 'AUROC_mean']:.3f}; CCB-AAE minus "
             f"Skip-GANomaly {gap:+.3f} AUROC, " + ("one seed only, so no spread to judge it by." if n_seeds < 2 else
                                                   "within one seed standard deviation." if abs(gap) <= spread
                                                   else "larger than the seed standard deviation."))
below = [m for m in METHODS if pns.loc[m, "AUROC_mean"] < 0.5]
if below:
    lines.append(f"Below chance on PneumoniaMNIST (pneumonia images score as *more* normal): {', '.join(below)}; "
                 "notebook 00 looks into why a plain autoencoder's reconstruction error does this.")
gan_best = max(pns.loc[m, "AUROC_mean"] for m in ("AnoGAN", "EGBAD"))
ae_best = max(pns.loc[m, "AUROC_mean"] for m in AE_FAMILY)
lines.append(f"The GAN baselines (best {gan_best:.3f}) are {'below' if gan_best < ae_best else 'not below'} "
             f"the best autoencoder ({ae_best:.3f}) on PneumoniaMNIST"
             + (", as in the paper's tables." if gan_best < ae_best else "; in the paper's tables they are below."))
length = t6.groupby("factor")[["ACC", "F1"]].mean()
rho = {m: length[m].corr(pd.Series(length.index, index=length.index), method="spearman") for m in ("ACC", "F1")}
acc_by_length = ", ".join(f"x{f} {v:.3f}" for f, v in length["ACC"].items())
lines.append(f"CCB length on RetinaMNIST (mean over grades): ACC {acc_by_length}; Spearman correlation of length "
             f"with ACC {rho['ACC']:+.2f}, with F1 {rho['F1']:+.2f} (the paper: negative, [1,2,3,4] best). "
             f"Best ACC here at x{length['ACC'].idxmax()}, best F1 at x{length['F1'].idxmax()}.")
anogan_cost = timing_frame["search_s_per_image"].dropna()
if len(anogan_cost):
    lines.append(f"AnoGAN's latent search ({cfg['anogan_search_steps']} steps) costs "
                 f"{anogan_cost.mean() * 1000:.1f} ms per image on this machine; the autoencoders score an image in "
                 "one forward pass.")
print("\n".join("- " + line for line in lines))
print(f"\nnotebook wall time: {(time.perf_counter() - notebook_start) / 60:.1f} min")

# %% [markdown]
# **Where we differ from the paper, and why.** The data differ (MedMNIST instead of ILD and HAM10000; CIFAR-10
# from the JPEG re-encoding that is the only copy here, printed with the data source above, and subsets of it in
# the cpu profile), the networks are narrower and trained for minutes instead of 50 epochs, so the
# printed numbers are context, not targets. The paper does not say how its checkpoint, its score weight alpha
# or its ACC/F1 threshold were chosen; we choose all three on the validation split only (choosing them on the
# test split, as some public GANomaly-family code does, inflates the numbers). The paper does not say whether
# its baseline rows were rerun or taken from earlier papers; we rerun every baseline with the same budget and
# the same data. Implementation choices the paper leaves open are listed in the method section and in
# `adlib.methods.adversarial_ae`.
