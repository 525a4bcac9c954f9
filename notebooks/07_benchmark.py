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
# score weights and threshold chosen on the validation split; the test split scored once) on every dataset of its
# grid: PneumoniaMNIST (64 px; 128 px in the paper profile), BreastMNIST at 64 px, RetinaMNIST (grade 0 normal,
# grades 1-4 anomalous), the synthetic lesion set (with pixel-level AUROC for every detector that gives anomaly
# maps) and a CIFAR-10 one-vs-rest subset. Each detector runs at **one declared setting** on every dataset. The
# weakly supervised detector (WSCXR) gets its own block per K.
#
# **The question.** Does the ranking that each paper claims for its own method survive when all methods meet on
# the same data? We answer with a leaderboard (mean, 95 % CI, chance and degenerate-threshold marks, cost), a
# Friedman test with Nemenyi critical differences across datasets (`autorank`) over every unsupervised detector,
# and one "paper vs ours" table per paper. A last section shows adlib on a folder of your own images.
#
# **Reuse.** A grid cell is read from a row that notebooks 00-06 wrote under results/ only when that row's
# configuration hash (`run_sha256`: detector settings such as steps and width, weights, image size and channels,
# data file and split sizes, few-shot anomalies, threshold rule) equals the cell's; every other cell runs here
# (`adlib.experiment.run_experiment`, scheduled by `joblib`; `$ADLIB_RAY_ADDRESS` runs them on a Ray cluster). So
# every number of the leaderboard comes from the same protocol and the same setting per detector.
#
# Sections: setup · parameters · data · grid · evaluation (leaderboard, ranking) · figures · paper vs ours ·
# your own images · discussion · exercises · timing.

# %% [markdown]
# ## Setup

# %%
import contextlib
import dataclasses
import io
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from IPython.display import display

from adlib import benchmark as bench
from adlib import plots
from adlib.__main__ import main as adlib_command
from adlib.config import load_run_config
from adlib.data import make_protocol
from adlib.experiment import provenance_columns
from adlib.notebook import bullet_list, say, show_table
from adlib.own_images import write_png_folder
from adlib.paths import cache_dir, figures_dir, relative_to_project
from adlib.progress import headless
from adlib.results import save_frame

notebook_start = time.perf_counter()

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper (None: $ADLIB_PROFILE, else paper on a GPU and cpu without)

# %%
# Run sizes per profile: adlib/configs/07_benchmark.toml
cfg = load_run_config("07_benchmark", profile)
PROFILE = cfg.profile.name
values = cfg.as_dict()
size_keys = ("steps", "gan_steps", "epochs", "width", "input_size", "coreset_fraction", "n_transforms")
settings = pd.DataFrame([{"detector": det, **{k: v for k, v in kw.items() if k in size_keys}}
                         for det, kw in values["kwargs"].items() if det in (values.get("methods") or values["kwargs"])],
                        dtype=object)
print(f"profile {PROFILE}: datasets {values['datasets']}; seeds {values['seeds']}; K {values.get('ks', {})}; "
      f"{values.get('n_jobs', 1)} joblib worker(s) x {values.get('threads_per_job', 1)} torch thread(s)")
show_table(settings.fillna(""), caption="The one setting of each detector in this profile (size-related options; "
                                        "all options are in the configuration file)")

# %% [markdown]
# **What the cpu and smoke profiles cut** (the paper profile runs every detector at its default, paper-scale
# settings on all six datasets with three seeds and K = 2, 4, 8, 16, on a GPU or a Ray cluster). The cpu
# profile's cuts, chosen so that the notebook runs in about 20 minutes on two cores (estimated from the measured
# fit and score seconds of earlier runs, scaled by image size and split sizes; the timing table at the end gives
# the real cost): **one seed** (so each cell's CI is over test images, not seeds), **five datasets** (PneumoniaMNIST
# at 128 px only in the paper profile), **small networks** (width 8, 150 steps; the table above), **K = 16 only**
# for WSCXR, a 10 % memory bank and 8 epochs for the patch-feature detectors. The smoke profile runs five
# detectors on two tiny synthetic sets in seconds, to check the code.

# %% [markdown]
# ## Data
#
# The datasets of the grid, as the run configuration defines them; the rows' `dataset` column uses the name in
# the second column (the notebooks' names).

# %%
data_specs = pd.DataFrame([{"key": key, "dataset column": bench.dataset_column(values["data"][key]),
                            **{k: v for k, v in values["data"][key].items() if k != "name"}}
                           for key in values["datasets"]], dtype=object)
show_table(data_specs.fillna(""), caption="Datasets of the grid")

# %% [markdown]
# ## The grid
#
# Every (detector, dataset, seed), and K for the weakly supervised detector. Each cell's configuration hash is
# compared with the `run_sha256` of the rows the paper notebooks wrote: the table says, per results file, how many
# of its rows are a cell of this grid by method, dataset, size and seed, and how many also ran the cell's exact
# configuration (only those are reused).

# %%
jobs = bench.build_grid(values)
ref = bench.ConfigRef.of(cfg)
hashes = [bench.cell_sha256(job, ref) for job in jobs]
results_folder = bench.results_folder_for(PROFILE)
earlier = bench.existing_rows(results_folder)
planned, todo = bench.plan_grid(jobs, earlier, run_on=values.get("run_on"), run_seeds=values.get("run_seeds"),
                                reuse=values.get("reuse", True), reuse_variants=values["reuse_variants"],
                                hashes=hashes)
print(f"{len(jobs)} grid entries: {sum(p['how'] == 'reused' for p in planned)} reused from "
      f"{relative_to_project(results_folder)}/, {len(todo)} to run here, "
      f"{sum(p['how'].startswith('not run') for p in planned)} left out by the profile")
reuse_table = bench.reuse_summary(jobs, earlier, hashes, values["reuse_variants"])
if len(reuse_table):
    show_table(reuse_table, caption="Earlier rows that describe a cell of this grid")

# %%
# The longest detectors start first; each finished job is appended to a checkpoint file, so an interrupted run
# resumes where it stopped. Progress bars are off in headless runs (adlib.progress).
grid_checkpoint = cache_dir() / "benchmark" / f"07_grid_{PROFILE}.jsonl"
run_start = time.perf_counter()
ran = bench.run_jobs(bench.schedule(todo, values.get("run_first", ())), ref, n_jobs=int(values.get("n_jobs", 1)),
                     threads=values.get("threads_per_job", 1), checkpoint=grid_checkpoint, progress=not headless())
run_seconds = time.perf_counter() - run_start
grid = bench.grid_frame(planned + ran, jobs)
saved = [save_frame(grid, "07_grid", provenance_columns(cfg))]
grid_checkpoint.unlink(missing_ok=True)  # the grid is saved: a later run starts afresh
print(f"ran {len(ran)} jobs in {run_seconds:.0f} s with {values.get('n_jobs', 1)} joblib worker(s)")
show_table(grid["how"].value_counts().rename("grid rows").rename_axis("how").reset_index())
failed = grid[grid["status"].astype(str).str.startswith("cannot run")]
if len(failed):
    show_table(failed[["method", "block", "data", "status"]], caption="Cells that could not run, and why")

# %% [markdown]
# ## Evaluation
#
# Per detector and dataset: the mean test AUROC over seeds and a 95 % bootstrap CI (`scipy.stats.bootstrap`,
# percentile) over the **seeds** where there are two or more, else over the **test images** of the run (every run
# records it). Each cell is marked when the verdict module (`adlib.verdicts`) finds it below or at chance, and when
# its validation threshold (Youden's J) is degenerate, i.e. calls almost every image one class. PneumoniaMNIST's
# 64 px test split is rebuilt from the Kaggle test set: most of its images are MedMNIST's own test images, but some
# normals are Kaggle-only; the column "(MedMNIST-exact)" gives each detector's AUROC on the exact images alone.
#
# **Ranking.** Within each block, the detectors are ranked on each dataset by mean test AUROC and compared with
# the Friedman test and the Nemenyi post-hoc test (`autorank`, non-parametric mode), on the largest table of
# datasets x detectors without a missing cell (at least five datasets in the cpu and paper profiles; the smoke
# profile's two tiny datasets get no test: `tests/test_benchmark.py` runs it on a made-up table).

# %%
cells = bench.cell_stats(grid)
cost = bench.resources(grid)
ranks, rank_tables, rank_notes = {}, {}, {}
min_datasets = int(values["min_rank_datasets"])
for block in cells["block"].unique():
    res, table, note = bench.rank_methods(cells, block, min_datasets=min_datasets) if min_datasets >= 5 \
        else (None, pd.DataFrame(), "smoke profile: no ranking test")
    ranks[block], rank_tables[block], rank_notes[block] = res, table, note
    print(f"{block}: {note}")
board = bench.leaderboard(cells, ranks, cost)
saved.append(save_frame(board, "07_leaderboard", provenance_columns(cfg)))
show_table(bench.reading_leaderboard(board), caption="Leaderboard: " + bench.CELL_LEGEND, source=saved[-1])

# %% [markdown]
# Pixel-level AUROC on the synthetic lesion set, for every detector that gives anomaly maps.

# %%
pixel = cells[cells["pixel_AUROC"].notna()].sort_values("pixel_AUROC", ascending=False)
show_table(pixel[["block", "method", "data", "AUROC_mean", "pixel_AUROC"]].assign(
    AUROC_mean=lambda f: (100 * f["AUROC_mean"]).round(1), pixel_AUROC=lambda f: (100 * f["pixel_AUROC"]).round(1)),
    caption="Image and pixel AUROC (%) on the synthetic lesions")

# %% [markdown]
# ## Figures

# %%
plots.save_figure(bench.auroc_bars(cells, values.get("bar_datasets") or None), "07_leaderboard_auroc")

# %%
fig = bench.critical_difference(ranks.get(bench.UNSUPERVISED), rank_tables.get(bench.UNSUPERVISED,
                                                                               pd.DataFrame()).shape[0])
if fig is not None:
    plots.save_figure(fig, "07_critical_difference")
else:
    print("no critical-difference diagram:", rank_notes.get(bench.UNSUPERVISED))

# %% [markdown]
# The cost of each detector, from the runs of this notebook only (a reused row was measured in another process):
# seconds per run on one torch thread, and the memory the run added at its peak (the process's own peak includes
# what the worker held before; it is in the leaderboard CSV as `peak_memory_MB`).

# %%
if len(cost):
    plots.save_figure(bench.cost_panels(cost), "07_time_memory")
else:
    print("no runs in this notebook: every cell was reused")

# %% [markdown]
# ## Paper vs ours
#
# Every number the five papers printed (their units: percent), beside ours from the paper notebooks' rows (mean
# over seeds) and the difference, shown whole, one table per paper. The note marks what a reader must know first:
# our AUROC below or at chance, a degenerate validation threshold (ours and the difference then show '—': a
# constant prediction is no result), a paper whose own threshold was chosen on the test split (an oracle), and
# the reasons the numbers differ (substitute data, image size, weights, budget), generated from our rows'
# provenance. Printed numbers without a counterpart of ours are counted below the tables.

# %%
printed = bench.printed_numbers(values["paper_vs_ours"])
vs = bench.paper_vs_ours(printed, earlier)
saved.append(save_frame(vs, "07_paper_vs_ours", provenance_columns(cfg)))
for paper, table in bench.reading_tables(vs).items():
    show_table(table, caption=f"{paper}: {len(table)} printed numbers with a counterpart of ours", source=saved[-1])
show_table(bench.unmatched_summary(vs), caption="Printed numbers per paper, and why some have no counterpart")

# %% [markdown]
# ## adlib on your own images
#
# What users of anomaly-detection libraries ask first: how to run a detector on *their* folder of images. The
# command `python -m adlib` (README, "Your own images") fits on a folder of normal images, chooses the threshold
# on a validation folder (`normal/` and `anomalous/`), saves the model directory, and scores a folder. Here we
# write PNG files from one of our datasets (BreastMNIST at 64 px: malignant = anomalous) into a temporary
# folder and run the two documented commands on it (`python -m adlib ARGS` calls `adlib.__main__.main(ARGS)`, which
# we call here directly: the same code, without starting a second Python).

# %%
own = values["own_images"]
demo = make_protocol(own["dataset"], size=int(own["size"]))
folder = Path(tempfile.mkdtemp(prefix="adlib_own_images_"))
n = int(own["n_per_class"])
written = {"normal": len(write_png_folder(demo.train.sample(int(own["n_normal"]), seed=0), folder / "normal"))}
for split, part in (("val", demo.val), ("test", demo.test)):
    for kind, images in (("normal", part.normals()), ("anomalous", part.anomalies())):
        written[f"{split}/{kind}"] = len(write_png_folder(images.sample(n, seed=0), folder / split / kind))
print("PNG files written:", ", ".join(f"{k}/ {v}" for k, v in written.items()))

# %%
sets = [arg for s in own.get("settings", []) for arg in ("--set", s)]
commands = [["fit", "--normal", "normal", "--val", "val", "--method", own["method"], "--size", str(own["size"]),
             "--out", "model", *sets, "--quiet"],
            ["score", "--model", "model", "--test", "test", "--out", "scores.csv", "--metrics", "metrics.json",
             "--quiet"]]
own_seconds = {}
for args in commands:  # `python -m adlib ARGS` is adlib.__main__.main(ARGS): run here, in this process
    t0, log = time.perf_counter(), io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = adlib_command(args)
    own_seconds[args[0]] = time.perf_counter() - t0
    print(f"$ python -m adlib {' '.join(args)}   ({own_seconds[args[0]]:.1f} s)")
    print("\n".join("  " + line for line in log.getvalue().splitlines() if line.strip()))
    if code:
        raise RuntimeError(f"python -m adlib {args[0]} failed (exit {code})")
show_table(pd.read_csv(folder / "scores.csv").head(8), caption="scores.csv (first rows)")

# %%
metrics = pd.read_json(folder / "metrics.json", typ="series")
show_table(metrics[["AUROC", "AUROC_ci_low", "AUROC_ci_high", "AP", "F1", "SEN", "SPE", "degenerate"]]
           .to_frame("test folder").T, caption="metrics.json: the test folder at the validation threshold (in %)",
           percent=("AUROC", "AUROC_ci_low", "AUROC_ci_high", "AP", "F1", "SEN", "SPE"))
say(f"On {written['normal']} training normals, {own['method']}'s test AUROC on the "
    f"{written['test/normal'] + written['test/anomalous']} test images is {100 * metrics['AUROC']:.1f} % "
    f"(95 % CI {100 * metrics['AUROC_ci_low']:.1f}-{100 * metrics['AUROC_ci_high']:.1f}); fitting took "
    f"{own_seconds['fit']:.1f} s and scoring {own_seconds['score']:.1f} s.")
shutil.rmtree(folder)  # the temporary folder (images, model directory, scores) is not kept

# %% [markdown]
# ## Below chance: what a pixel-error score measures
#
# A cell of the grid below chance ranks the classes the wrong way round. The hypothesis (notebook 00
# measures it): if pneumonia images are smoother than normal ones, a score that grows with fine detail ranks them as
# normal. The measurement:
# fine detail alone as a score (`adlib.shift.fine_detail`), and a pixel error that needs no training
# (`adlib.shift.linear_pixel_error`: the reconstruction error of a 16-component PCA of the training normals, a
# linear autoencoder), each image's score against its detail, per class. The sentences are generated from the
# measurement and from the grid's cells (`adlib.verdicts`).

# %%
from adlib import verdicts  # noqa: E402
from adlib.protocol_notes import detail_sentences  # noqa: E402
from adlib.shift import detail_diagnostic, fine_detail, linear_pixel_error  # noqa: E402

pn = make_protocol("pneumonia", size=64)
pixel = linear_pixel_error(pn.train, pn.test)
plots.save_figure(plots.score_vs_detail(pixel, fine_detail(pn.test), pn.test.labels,
                                        title="PCA pixel error vs fine detail (pneumonia-64 test)"),
                  "07_score_vs_detail")
below = cells.rename(columns={"AUROC_mean": "AUROC"})[["method", "data", "AUROC", "chance"]].dropna(subset=["AUROC"])
say(bullet_list([verdicts.below_chance_sentence(below, "grid cells (method / data)"),
                 *detail_sentences(detail_diagnostic(pixel, pn.test), "A pixel error with no training (PCA)")]));

# %% [markdown]
# ## Discussion
#
# Generated from the tables above (`adlib.benchmark.conclusions`, with the rules of `adlib.verdicts`).

# %%
say(*bench.conclusions(grid, cells, board, ranks, rank_tables, rank_notes, vs, cost));

# %% [markdown]
# ## Exercises
#
# Each exercise has its own solution cell below it (collapsed in Jupyter), reusing the tables above.
#
# **1.** Before you look: which detectors do you expect below chance on PneumoniaMNIST, and why (notebook 00
# measured that pneumonia images are smoother)? Then list the cells marked below chance.

# %% tags=["solution"] jupyter={"source_hidden": true}
show_table(cells[cells["chance"] == "below chance"][["method", "data", "AUROC_mean", "image_ci_high"]]
           .rename(columns={"AUROC_mean": "test AUROC", "image_ci_high": "95 % CI upper end (test images)"}),
           caption="Below chance (in %)", percent=("test AUROC", "95 % CI upper end (test images)"))

# %% [markdown]
# **2.** The synthetic lesions are easy for the patch-feature detectors. Recompute the mean rank of every
# unsupervised detector without the synthetic dataset. Which detectors move most?

# %% tags=["solution"] jupyter={"source_hidden": true}
auroc = cells[cells["block"] == bench.UNSUPERVISED].pivot_table(index="data", columns="method", values="AUROC_mean")
without = auroc.drop(index=[d for d in auroc.index if d.startswith("synthetic")]).dropna(axis=1)
mean_ranks = pd.DataFrame({"all datasets": auroc.dropna(axis=1).rank(axis=1, ascending=False).mean(),
                           "without synthetic": without.rank(axis=1, ascending=False).mean()})
show_table(mean_ranks.rename_axis("method").reset_index().sort_values("all datasets"), caption="Mean rank (1 = best)",
           digits={"all datasets": 2, "without synthetic": 2})

# %% [markdown]
# **3.** Reuse is strict. Change one setting of the first job (its step count, or the seed of the data) and
# compare its configuration hash with the original: would a row of the old setting be reused?

# %% tags=["solution"] jupyter={"source_hidden": true}
job = next(j for j in jobs if "steps" in dict(j.kwargs))
changed = dataclasses.replace(job, kwargs=tuple((k, v + 1 if k == "steps" else v) for k, v in job.kwargs))
print(job.method, job.data_key, "hash", hashes[jobs.index(job)], "-> one more step:", bench.cell_sha256(changed, ref))

# %% [markdown]
# **4.** Youden's J (the default threshold rule) against the F1-maximising one: in how many runs is each rule's
# threshold degenerate? (Each row records both: `degenerate` and `degenerate_f1max`.)

# %% tags=["solution"] jupyter={"source_hidden": true}
done_rows = grid[pd.to_numeric(grid["AUROC"], errors="coerce").notna()]
print("; ".join(f"{rule}: degenerate in {int(done_rows[col].astype(str).str.lower().eq('true').sum())} of "
                f"{len(done_rows)} runs" for rule, col in (("Youden's J", "degenerate"), ("F1-max", "degenerate_f1max"))
                if col in done_rows))

# %% [markdown]
# ## Timing
#
# The runs of this notebook (the reused rows cost nothing here): seconds and throughput per run, and the
# notebook's wall time.

# %%
new = grid[grid["how"].str.startswith("ran")]  # 'ran (resumed)': finished by an interrupted earlier run
timing = new[["method", "block", "data", "seed", "fit_seconds", "score_seconds", "fit_images_per_s",
              "score_images_per_s", "added_memory_MB", "threads"]].copy()
saved.append(save_frame(timing, "07_timing", provenance_columns(cfg)))
show_table(timing.groupby(["block", "method"], sort=False).agg(
    runs=("seed", "size"), **{"fit s": ("fit_seconds", "mean"), "score s": ("score_seconds", "mean"),
                              "fit images/s": ("fit_images_per_s", "mean"),
                              "score images/s": ("score_images_per_s", "mean"),
                              "added memory (MB), max": ("added_memory_MB", "max")}).reset_index(),
           caption="Runs of this notebook per detector (mean over its runs; each run in the CSV)", source=saved[-1])
total = time.perf_counter() - notebook_start
summary = pd.DataFrame([
    {"stage": f"grid runs (joblib, {values.get('n_jobs', 1)} worker(s))", "runs": len(new),
     "seconds": round(run_seconds, 1), "runs per minute": round(60 * len(new) / max(run_seconds, 1e-9), 2)},
    {"stage": "own images (fit + score commands)", "runs": 2, "seconds": round(sum(own_seconds.values()), 1),
     "runs per minute": None},
    {"stage": "notebook total", "runs": len(grid), "seconds": round(total, 1), "runs per minute": None}])
show_table(summary, caption="Wall time")

# %% [markdown]
# ## Where the outputs went

# %%
print("tables:", *saved, sep="\n  ")
print("figures: 07_leaderboard_auroc, 07_critical_difference, 07_time_memory under", relative_to_project(figures_dir()))
print("README leaderboard: python -m adlib.report --readme (reads 07_leaderboard.csv of the cpu profile)")
