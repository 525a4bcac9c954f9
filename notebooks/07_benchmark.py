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
# # 07 · Benchmark: every detector, every dataset, one protocol
#
# Notebooks 02-06 each reproduce one paper, on that paper's datasets and with that paper's baselines. This
# notebook puts every registered detector under the same protocol (training on normal images only; checkpoint,
# score weights and threshold chosen on the validation split; the test split scored once) on every dataset we
# have: PneumoniaMNIST at 64 and 128 px, BreastMNIST at 64 px, RetinaMNIST (grade 0 normal, grades 1-4
# anomalous), the synthetic lesion set (with pixel-level AUROC for every detector that gives anomaly maps) and a
# CIFAR-10 one-vs-rest subset. The weakly supervised detector (WSCXR) gets its own block per K.
#
# **The question.** Does the ranking that each paper claims for its own method survive when all methods meet on
# the same data? We answer with a leaderboard (mean ± std over seeds, bootstrap confidence intervals), a
# Friedman test with Nemenyi critical differences across datasets (`autorank`), the cost of each method, and one
# "paper vs ours" table for all five papers.
#
# **Reuse.** The grid (detectors x datasets x seeds) first reads the rows that notebooks 00-06 wrote under
# results/: a row with the same dataset, image size, method, seed, weights source (and K) *is* that cell, and
# only the missing cells run (through `adlib.experiment.run_experiment`, scheduled by `joblib`; set
# `$ADLIB_RAY_ADDRESS` to run them on a Ray cluster). The match does not include the training budget: a reused
# row keeps the budget (network width, steps, image subset) of the notebook that wrote it, and a cell takes all
# its seeds from the one results file that ran the most of them (the lower-numbered notebook on a tie), so a
# cell never mixes two notebooks' budgets; the grid table names each row's file. The leaderboard therefore compares each method at
# the budget its own paper notebook gave it; the cells that run here use this notebook's config.
#
# Sections: setup · parameters · data · grid · evaluation (leaderboard, ranking) · figures · paper vs ours ·
# discussion · timing.

# %% [markdown]
# ## Setup

# %%
import contextlib
import io
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from adlib import benchmark as bench
from adlib import plots
from adlib.config import load_run_config
from adlib.experiment import provenance_columns
from adlib.paths import cache_dir, relative_to_project
from adlib.results import save_frame

notebook_start = time.perf_counter()
pd.set_option("display.width", 200, "display.max_columns", 40, "display.max_colwidth", 80)

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper (None: $ADLIB_PROFILE, else paper on a GPU and cpu without)

# %%
# Run sizes per profile: adlib/configs/07_benchmark.toml
cfg = load_run_config("07_benchmark", profile)
PROFILE = cfg.profile.name
values = cfg.as_dict()
print(f"profile {PROFILE}; datasets {values['datasets']}; seeds {values['seeds']}; "
      f"new runs on {values.get('run_on', 'every dataset')} with seeds {values.get('run_seeds', values['seeds'])}")

# %% [markdown]
# **What the cpu and smoke profiles cut** (the paper profile runs every cell at each method's default,
# paper-scale settings, on a GPU or a Ray cluster). The cpu profile trains nothing on the real medical datasets:
# it reads the rows notebooks 00-06 wrote there, at *their* cpu-profile sizes (smaller images and networks,
# fewer steps, fewer seeds than the papers), and a detector that no notebook ran on a dataset at the benchmark's
# image size has a blank cell. New runs happen only on the datasets and seeds printed below, with the small
# networks of the configuration; the timing table at the end gives their measured cost.

# %%
run_seeds = values.get("run_seeds")
for key in values["datasets"]:
    spec = values["data"][key]
    runs_here = values.get("run_on") is None or key in values["run_on"]
    seeds = (run_seeds.get(key, values["seeds"]) if isinstance(run_seeds, dict) else run_seeds) or values["seeds"]
    sizes = ", ".join(f"{k} {spec[k]}" for k in ("n_train", "max_train", "n_val", "val_cap", "n_test", "test_cap")
                      if k in spec)
    print(f"{key:18s} {spec['size']:>3d} px  " + (f"missing cells run with seeds {list(seeds)}"
                                                   + (f" ({sizes})" if sizes else "") if runs_here
                                                   else "reused rows only"))
print(f"{values.get('n_jobs', 1)} joblib worker(s) x {values.get('threads_per_job', 1)} torch thread(s)")
size_keys = ("steps", "gan_steps", "epochs", "width", "input_size")
print("network sizes of the new runs:", "; ".join(
    f"{d} " + ", ".join(f"{k} {v}" for k, v in kw.items() if k in size_keys)
    for d, kw in values["kwargs"].items()
    if d in (values.get("methods") or values["kwargs"]) and any(k in kw for k in size_keys)))

# %% [markdown]
# ## Data
#
# The datasets of the grid, as the run configuration defines them; the rows' `dataset` column uses the name in
# the second column (the notebooks' names).

# %%
data_specs = pd.DataFrame([{"key": key, "dataset column": bench.dataset_column(values["data"][key]),
                            **{k: v for k, v in values["data"][key].items() if k != "name"}}
                           for key in values["datasets"]])
display(data_specs)

# %% [markdown]
# ## The grid
#
# Every (detector, dataset, seed), and K for the weakly supervised detector; then which cells earlier notebooks
# already ran (reused, with the file they come from), which run now, and which the profile leaves out.

# %%
jobs = bench.build_grid(values)
results_folder = bench.results_folder_for(PROFILE)
earlier = bench.existing_rows(results_folder)
ref = bench.ConfigRef.of(cfg)
fingerprints = {key: bench.data_fingerprint(ref, key) for key in values["datasets"]}  # data file hash, test size
planned, todo = bench.plan_grid(jobs, earlier, run_on=values.get("run_on"), run_seeds=values.get("run_seeds"),
                                reuse=values.get("reuse", True), reuse_variants=values["reuse_variants"],
                                fingerprints=fingerprints)
plan = pd.DataFrame(planned)
hows = plan["how"].value_counts() if len(plan) else pd.Series(dtype=int)
print(f"{len(jobs)} grid entries (method x dataset x seed [x K]): {hows.get('reused', 0)} reused from "
      f"{relative_to_project(results_folder)}/, {len(todo)} to run, {hows.get('not run (budget)', 0)} not run "
      f"in this profile, {hows.get('not run (cell reused)', 0)} seeds left out because their cell's file lacks "
      "them (a cell takes all its seeds from one notebook)")
if len(plan) and (plan["how"] == "reused").any():
    display(plan[plan["how"] == "reused"].groupby(["data", "source"]).size().rename("rows reused").reset_index())

# %%
# Each finished job is appended to a checkpoint file: an interrupted run resumes where it stopped.
grid_checkpoint = cache_dir() / "benchmark" / f"07_grid_{PROFILE}.jsonl"
run_start = time.perf_counter()
ran = bench.run_jobs(todo, ref, n_jobs=int(values.get("n_jobs", 1)),
                     threads=values.get("threads_per_job", 1), checkpoint=grid_checkpoint)
run_seconds = time.perf_counter() - run_start
grid = bench.grid_frame(planned + ran, jobs)
print(f"ran {len(ran)} jobs in {run_seconds:.0f} s with {values.get('n_jobs', 1)} joblib worker(s)")
saved = [save_frame(grid, "07_grid", provenance_columns(cfg))]
grid_checkpoint.unlink(missing_ok=True)  # the grid is saved: a later run starts afresh
display(grid[~grid["how"].str.startswith("not run")][["method", "block", "data", "seed", "weights", "profile", "how",
                                                       "source", "AUROC", "pixel_AUROC", "fit_seconds",
                                                       "score_seconds", "added_memory_MB"]].round(3))

# %% [markdown]
# ## Evaluation
#
# Per method and dataset: mean ± std of test AUROC over seeds and two 95 % bootstrap confidence intervals
# (`scipy.stats.bootstrap`, percentile method). `image_ci_*` resamples the **test images** of each run (every
# run records it since this notebook was added; averaged over seeds): how much the number depends on which test
# images were drawn. `ci_*` resamples the **seeds**: how much it depends on training randomness; with one seed
# there is none, and with three it is coarse. Rows the paper notebooks wrote before runs recorded the image
# interval have only the seed interval.

# %%
cells = bench.cell_stats(grid)
display(cells.round(3))

# %% [markdown]
# **Ranking.** Within each block, the methods are ranked on each dataset by mean test AUROC and compared with
# the Friedman test and the Nemenyi post-hoc test (`autorank`, non-parametric mode), on the largest table of
# datasets x methods without a missing cell (autorank needs at least five datasets in the cpu and paper
# profiles; the smoke profile, with two tiny datasets, skips the test: `tests/test_benchmark.py` runs it and
# draws the diagram on a made-up table).

# %%
ranks, rank_tables, rank_notes = {}, {}, {}
for block in cells["block"].unique():
    res, table, note = bench.rank_methods(cells, block, min_datasets=int(values["min_rank_datasets"])) \
        if int(values["min_rank_datasets"]) >= 5 else (None, pd.DataFrame(), "smoke profile: no ranking test")
    ranks[block], rank_tables[block], rank_notes[block] = res, table, note
    print(f"{block}: {note}")
board = bench.leaderboard(cells, ranks)
saved.append(save_frame(board, "07_leaderboard", provenance_columns(cfg)))
display(board.round(3))

# %% [markdown]
# Pixel-level AUROC on the synthetic lesion set, for every detector that gives anomaly maps.

# %%
pixel = cells[cells["pixel_AUROC"].notna()][["block", "method", "data", "AUROC_mean", "pixel_AUROC"]]
display(pixel.sort_values("pixel_AUROC", ascending=False).round(3))

# %% [markdown]
# ## Figures

# %%
bar_data = list(values.get("bar_datasets") or cells["data"].unique())
fig, axes = plt.subplots(len(bar_data), 1, figsize=(11, 2.6 * len(bar_data)), squeeze=False)
for ax, data in zip(axes[:, 0], bar_data):
    c = cells[cells["data"] == data].sort_values("AUROC_mean", ascending=False)
    labels = [m if b == bench.UNSUPERVISED else f"{m} ({b.split('(')[-1].rstrip(')')})"
              for m, b in zip(c["method"], c["block"])]
    # whiskers: the seed interval where there are seeds, else the test-image interval, else none
    low = c["ci_low"].fillna(c["image_ci_low"]).fillna(c["AUROC_mean"])
    high = c["ci_high"].fillna(c["image_ci_high"]).fillna(c["AUROC_mean"])
    lo, hi = (c["AUROC_mean"] - low).clip(lower=0), (high - c["AUROC_mean"]).clip(lower=0)
    colours = ["tab:blue" if b == bench.UNSUPERVISED else "tab:orange" for b in c["block"]]
    ax.bar(labels, c["AUROC_mean"], yerr=[lo, hi], color=colours, capsize=3)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.grid(axis="x", visible=False)  # vertical grid lines would read as whiskers
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test AUROC")
    ax.set_title(f"{data} (bars: mean over seeds; whiskers: bootstrap 95 % CI over seeds where n > 1, else over "
                 "test images where recorded)", fontsize=9)
    ax.tick_params(axis="x", rotation=60, labelsize=8)
fig.tight_layout()
plots.save_figure(fig, "07_leaderboard_auroc")

# %%
res = ranks.get(bench.UNSUPERVISED)
if res is not None:
    from autorank import plot_stats

    with contextlib.redirect_stdout(io.StringIO()):  # autorank prints its rank table; the leaderboard has it
        ax = plot_stats(res, allow_insignificant=True)
    fig = ax.get_figure()
    fig.suptitle(f"Critical-difference diagram, unsupervised block ({rank_tables[bench.UNSUPERVISED].shape[0]} "
                 f"datasets, {res.omnibus} p = {res.pvalue:.3g})", fontsize=9, y=1.12)
    plots.save_figure(fig, "07_critical_difference")
else:
    print("no critical-difference diagram:", rank_notes.get(bench.UNSUPERVISED))

# %%
cost = bench.resources(cells)
fig, axes = plt.subplots(1, 3, figsize=(14, 0.28 * len(cost) + 1.5), sharey=True)
labels = [m if b == bench.UNSUPERVISED else f"{m} ({b.split('(')[-1].rstrip(')')})"
          for m, b in zip(cost["method"], cost["block"])]
for ax, col, title in zip(axes, ["fit_seconds", "score_seconds", "added_memory_MB"],
                          ["training time (s, mean over datasets)", "scoring time val+test (s)",
                           "memory a run added at its peak (MB, largest;\nruns of this notebook only)"]):
    ax.barh(labels, cost[col])  # no bar where no run measured it (reused rows of older notebooks)
    ax.set_title(title, fontsize=9)
    ax.set_xscale("symlog", linthresh=1)
fig.tight_layout()
plots.save_figure(fig, "07_time_memory")
display(cost.round(2))

# %% [markdown]
# ## Paper vs ours
#
# Every number the five papers printed (their units: percent), beside ours from the paper notebooks' rows (mean
# over seeds) and the difference. The reason column is generated from our rows' provenance columns: a
# different dataset (data substitute) or the paper's images in a rebuilt file, a smaller image size, other
# pretrained weights, or a reduced training budget (a profile other than paper). Printed numbers without a run of ours are in the saved
# table (results/07_paper_vs_ours.csv) and left out below.

# %%
printed = bench.printed_numbers(values["paper_vs_ours"])
vs = bench.paper_vs_ours(printed, earlier)
saved.append(save_frame(vs, "07_paper_vs_ours", provenance_columns(cfg)))
matched = vs[vs["ours"].notna()]
display(matched.drop(columns=["source"]))
print("saved:", *saved, sep="\n  ")

# %% [markdown]
# ## Discussion
#
# The sentences below are generated from the tables above.

# %%
unsup = board[board["block"] == bench.UNSUPERVISED]
lines = []
if len(unsup):
    top = unsup.iloc[0]
    n_ranked = int(unsup["mean_rank"].notna().sum())
    lines.append(f"In the unsupervised block, {len(unsup)} methods have results on at least one dataset and "
                 f"{n_ranked} on all {int(top['n_datasets'])} ranked datasets; among those {n_ranked}, "
                 f"{top['method']} has the best mean rank ({top['mean_rank']:.2f}; mean AUROC {top['mean_auroc']:.3f}). "
                 f"The {len(unsup) - n_ranked} others are not ranked, and their mean AUROC is over other, fewer "
                 "datasets, so it does not compare with the ranked methods'."
                 if np.isfinite(top["mean_rank"]) else
                 f"In the unsupervised block, {len(unsup)} methods have results; none could be ranked "
                 f"({rank_notes.get(bench.UNSUPERVISED)}); the highest mean AUROC is {top['method']}'s "
                 f"({unsup['mean_auroc'].max():.3f}).")
if res is not None:
    table = rank_tables[bench.UNSUPERVISED]
    significant = res.pvalue < 0.05
    lines.append(f"The {res.omnibus} test over {table.shape[0]} datasets and {table.shape[1]} methods gives "
                 f"p = {res.pvalue:.3g}: the methods' ranks {'differ' if significant else 'do not differ'} "
                 f"significantly at the 5 % level" + (f"; two methods whose mean ranks differ by less than "
                                                      f"{res.cd:.2f} are not distinguishable (Nemenyi)."
                                                      if res.cd is not None else "."))
weak = board[board["block"] != bench.UNSUPERVISED]
for _, w in weak.iterrows():
    lines.append(f"{w['method']} ({w['block']}): mean AUROC {w['mean_auroc']:.3f} over {int(w['n_datasets'])} "
                 "dataset(s).")
if len(pixel):
    by_pixel = pixel.sort_values("pixel_AUROC", ascending=False)
    lines.append(f"On the synthetic lesions, {pixel['method'].nunique()} detectors give anomaly maps; the best pixel "
                 "AUROCs: " + ", ".join(f"{r['method']} ({r['data']}) {r['pixel_AUROC']:.3f}"
                                        for _, r in by_pixel.head(3).iterrows())
                 + " (image AUROC of the first: " + f"{by_pixel['AUROC_mean'].iloc[0]:.3f}).")
if len(matched):
    auroc_vs = matched[matched["metric"] == "AUROC"]
    below = int((auroc_vs["difference"] < 0).sum())
    lines.append(f"Of {len(auroc_vs)} printed AUROCs that we have a counterpart for, ours are lower for {below} "
                 f"(median difference {auroc_vs['difference'].median():+.1f} points); "
                 f"{int(auroc_vs['reason'].str.contains('data substitute').sum())} of them compare on a "
                 f"substitute dataset, {int(auroc_vs['reason'].str.contains('same images').sum())} on the paper's "
                 f"own images in a rebuilt file, and {int(auroc_vs['reason'].str.contains('budget').sum())} at a reduced "
                 "budget: a gap mixes those differences with the method's own, so on its own it neither confirms "
                 "nor refutes the paper's number (the per-notebook discussions test the papers' claims).")
if len(cost) and cost["fit_seconds"].notna().any():
    slow = cost.loc[cost["fit_seconds"].idxmax()]
    fast = cost.loc[cost["fit_seconds"].idxmin()]
    lines.append(f"Training cost spans {fast['fit_seconds']:.1f} s ({fast['method']}) to "
                 f"{slow['fit_seconds']:.1f} s ({slow['method']}) per run on average at these sizes.")
for line in lines:
    print("-", line)

# %% [markdown]
# ## Timing
#
# The runs of this notebook (the reused rows cost nothing here): seconds and throughput per run, and the
# notebook's wall time.

# %%
new = grid[grid["how"].str.startswith("ran")]  # 'ran (resumed)': finished by an interrupted earlier run
timing = new[["method", "block", "data", "seed", "fit_seconds", "score_seconds", "fit_images_per_s",
              "score_images_per_s", "added_memory_MB", "threads"]].copy()
display(timing.round(2))
total = time.perf_counter() - notebook_start
ran_now = int((grid["how"] == "ran").sum())
summary = pd.DataFrame([{"stage": f"new runs (joblib, {values.get('n_jobs', 1)} worker(s))", "runs": ran_now,
                         "seconds": round(run_seconds, 1),
                         "runs per minute": round(60 * ran_now / run_seconds, 2) if run_seconds > 0 and ran_now
                         else np.nan},
                        {"stage": "notebook total", "runs": len(grid), "seconds": round(total, 1),
                         "runs per minute": np.nan}])
save_frame(timing, "07_timing", provenance_columns(cfg))
display(summary)
