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
# # 08 · What training budget buys
#
# **Claim of this notebook.** The cpu profile of notebooks 00-07 trains each detector for a small fraction of
# what its paper trained (fewer steps, narrower networks, 64 px images), so a detector that lands below chance
# there may be *under-trained* rather than wrong. The training-budget study (`python -m adlib.budget`, issue 20)
# trains every detector on PneumoniaMNIST-64 at a geometric ladder of budgets: x1 is today's cpu budget, x2, x4,
# ... multiply its steps (or epochs). This notebook reads the committed rows of that study and, per detector,
# says from the numbers whether its AUROC still climbs where the ladder stops or has flattened, whether it leaves
# chance at its best budget (chosen on *validation* AUROC, never on test), how far it then is from the paper's
# number, and what the ladder cost.
#
# **What runs here.** The long rungs are hours of CPU: they run in the background, one process, resumable, and
# their rows are committed under `results/budget/`. The wide networks' ladder (about 25 core-hours per dataset) ran
# on a GPU in the paper profile, one runner per detector (`scripts/budget_parallel.sh`); those rows are under
# `results/paper/budget/` and every table and label below names the device of a GPU row. This notebook trains only the cheapest rungs itself, with the
# study's own functions (`adlib.budget.build_ladder`, `run_rung`), to show the code path and to check that they
# reproduce the committed rows; it never writes into `results/budget/`.
#
# Sections: setup · parameters · data (the committed rows) · the ladder · training (the cheap rungs, re-run) ·
# evaluation · figures · what each curve says · paper claims at the best budget · what is missing and how to
# recompute it · discussion · exercises · timing.

# %% [markdown]
# ## Setup

# %%
import dataclasses
import time

import pandas as pd
from IPython.display import display

from adlib import budget, plots
from adlib import budget_plots as bp
from adlib.benchmark import ConfigRef
from adlib.config import load_run_config
from adlib.experiment import provenance_columns
from adlib.notebook import (BUDGET_ROWS, PAPER_BUDGET_ROWS, best_budget_rows, budget_rows, bullet_list, say,
                             show_table)
from adlib.paths import figures_dir, relative_to_project, results_dir
from adlib.results import save_frame

notebook_start = time.perf_counter()
pd.set_option("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 70)

# %% tags=["parameters"]
profile = None  # smoke, cpu or paper (None: $ADLIB_PROFILE, else paper on a GPU and cpu without)

# %%
# Run sizes per profile: adlib/configs/08_training_budget.toml ([reading] and [rerun] are this notebook's)
cfg = load_run_config("08_training_budget", profile)
PROFILE = cfg.profile.name
values = cfg.as_dict()
study = budget.study_values("cpu")  # the committed ladder is the cpu profile's, whatever profile runs here
reading, rerun_cfg = values["reading"], values["rerun"]
DATASET, DATA_KEY = reading["dataset"], reading["data"]
print(f"profile {PROFILE}: reads the {DATASET} rows of {relative_to_project(BUDGET_ROWS)} and "
      f"{relative_to_project(PAPER_BUDGET_ROWS)}; re-trains "
      f"{', '.join(rerun_cfg['detectors'])} at {', '.join(f'x{m}' for m in rerun_cfg['multipliers'])} on "
      f"{rerun_cfg['data']} ({rerun_cfg['width']} width, seed {values['seed']}, {values['threads']} thread)")

# %% [markdown]
# ## Data: the committed rows
#
# One row per rung: a detector at one width, one budget multiplier and one seed, trained on the normal training
# images of PneumoniaMNIST-64, its checkpoint chosen on normals or on the validation split, scored once on the
# test split (the rebuilt 64 px test split; `AUROC_medmnist_exact` is the AUROC on its 557 MedMNIST-exact images).
# Every row carries its provenance: git commit, configuration hash, data file hash, threads, torch version, and
# the wall and CPU seconds of the rung. The table below groups the rows by that provenance.

# %%
rows = budget_rows()
ok = bp.usable(rows, DATASET)
provenance = rows.groupby(["data", "data_source", "data_sha256", "n_val", "n_test", "profile", "device", "threads",
                           "git_commit", "torch"], dropna=False).size().rename("rows").reset_index()
print(f"{len(rows)} rows, {len(ok)} finished on {DATASET}; {rows['method'].nunique()} detectors; widths "
      f"{sorted(rows['width_label'].unique())}; datasets {sorted(rows['data'].unique())}")
show_table(provenance, caption="Where the committed rows come from")

# %% [markdown]
# ## The ladder: what x1 means for each detector
#
# x1 is each detector's cpu budget (its setting in notebook 07's cpu profile, copied into the study's
# configuration); a rung xN multiplies the budget knob (training steps; both stages of f-AnoGAN; epochs of the
# SimpleNet and WSCXR heads) by N and keeps everything else. The *planned* ladder goes to x16 at both widths (the
# configuration's comments compare the rungs with each paper's epochs), one seed per rung
# and three at the top; *measured* is what the committed rows hold on PneumoniaMNIST-64.

# %%
show_table(bp.ladder_frame(study, rows, DATA_KEY))

# %% [markdown]
# ## Training: the cheapest rungs, re-run here
#
# `build_ladder` gives the rungs of this profile's configuration and `run_rung` trains and scores one, exactly
# as the background study does (`adlib.benchmark.run_job`: the same protocol, checkpoint rule and row columns).
# The rows go to this profile's results folder. In the smoke profile the rungs are tiny runs on the synthetic
# set: they show the code path only.

# %%
rungs = [r for r in budget.build_ladder(values, PROFILE, datasets=[rerun_cfg["data"]],
                                        detectors=rerun_cfg["detectors"], widths=[rerun_cfg["width"]])
         if r.multiplier in rerun_cfg["multipliers"] and r.job.seed == values["seed"]]
ref = ConfigRef.of(cfg)
rerun_rows = []
for rung in rungs:
    row = budget.run_rung(rung, ref, threads=int(values["threads"]))
    rerun_rows.append(row)
    print(f"{rung.label()}: test AUROC {100 * row['AUROC']:.1f} %, validation AUROC {100 * row['val_AUROC']:.1f} % "
          f"({row['status']}, kept step {row['best_step']:g}); {row['job_wall_seconds']:.0f} s")
rerun = bp.with_budget_labels(pd.DataFrame(rerun_rows))  # variant = the rung's label, e.g. "budget x2 (...)"
print("saved", save_frame(rerun, "08_rerun_rows", provenance_columns(cfg)))

# %% [markdown]
# Do the re-trained rungs reproduce the committed rows? (Same seed, one thread: the numbers should agree to the
# tolerance of the configuration.)

# %%
check, check_sentence = bp.rerun_check(rerun, rows, float(rerun_cfg["tolerance"]))
show_table(check, caption="Re-trained rungs beside the committed rows (AUROC in %; difference in points)",
           percent=("rerun_test", "rerun_val", "committed_test", "committed_val", "difference"),
           digits={"difference": 2})
say(check_sentence);

# %% [markdown]
# ## Evaluation: the cpu budget against the best budget measured
#
# Per detector: test AUROC (%) at x1 (today's cpu budget, cpu width) and at its best rung, the rung with the
# highest *validation* AUROC (`adlib.notebook.best_budget_rows`); the paper's number where the paper tested on
# the same ZhangLab test images (SALAD's and WSCXR's Table I; blank otherwise); the rows, CPU hours and wall
# hours the detector's rungs cost so far on a CPU, and the GPU wall hours of its wide rungs. One seed per rung, so "(1 seed)": the noise is the test-image CI.

# %%
paper = bp.paper_marks(study, DATASET)
table = bp.budget_table(rows, paper, DATASET)
print("saved", save_frame(table, "08_budget_table", provenance_columns(cfg)))
show_table(table, caption=f"Test AUROC (%) on {DATA_KEY} at the cpu budget and at the best budget measured "
                          "(chosen on validation)", source=BUDGET_ROWS);

# %% [markdown]
# ## Figures
#
# Validation (top) and test AUROC (bottom) against the budget, one column per family. The band is the test
# split's bootstrap 95 % CI of each rung, the dotted line is chance, the stars at the right edge are the papers'
# numbers on the same test images. A curve that ends in a plateau has stopped gaining from steps at this width; a
# curve that still climbs at its last rung has not been trained to its limit yet.

# %%
fig = bp.curves_figure(rows, paper, DATASET)
plots.save_figure(fig, "08_budget_curves")

# %% [markdown]
# What a rung costs: CPU seconds (one thread) against the budget, for the rows trained on a CPU. A slope of one on this log-log plot is a cost
# proportional to the steps; a flatter start is the fixed cost of loading data, backbones and scoring.

# %%
fig = bp.cost_figure(rows, DATASET)
plots.save_figure(fig, "08_budget_cost")

# %% [markdown]
# ## What each curve says
#
# Per detector, generated from its rows: the last doubling measured (its change of test and validation AUROC,
# judged against the noise: a change counts only when it exceeds the seeds' spread and the test-image CIs do not
# overlap), the change from the cpu budget to the best budget, chance at the best budget (and, when it does not
# leave chance, what its curve says about why), and the paper's number.

# %%
summary = bp.curve_summary(rows, study, paper, DATASET)
curve_csv = save_frame(summary[[c for c in summary.columns if not c.startswith("_")]], "08_curve_summary",
                       provenance_columns(cfg))
show_table(bp.curve_reading(summary), source=curve_csv, caption=f"Test AUROC (%) on {DATA_KEY}: the cpu budget (x1) "
           "against the best budget chosen on validation (x1 → best: the change beyond noise, or a tie)")
say(bullet_list(bp.curve_sentences(summary)));

# %% [markdown]
# ## Paper claims at the best budget
#
# The orders a paper claims (configuration `[reading] claims`), judged on test AUROC with every detector at its
# own best budget: a step holds only when it is beyond noise; two detectors below chance are not ranked.

# %%
say(*bp.order_claims(rows, reading["claims"], DATASET));

# %% [markdown]
# ## What is missing, and how to recompute the long rungs
#
# Detectors of issue 20 without rows yet, with the hours the runner estimates for their ladder (from the wall
# seconds of the rungs measured so far, i.e. at the CPU share they got on a shared machine, and from their CPU
# seconds, i.e. on an idle core), and the detectors the study leaves out, with the configuration's reason.

# %%
plan = bp.remaining_plan(rows, study)
say(bullet_list(bp.missing_sentences(rows, study, plan, DATA_KEY)));
say(bp.recompute_markdown(rows, plan, relative_to_project(BUDGET_ROWS)));

# %% [markdown]
# ## Below chance: what a pixel-error score measures
#
# A detector below chance ranks the classes the wrong way round; more training is one thing that could change it
# (the curves above). The hypothesis (notebook 00 measures it): if pneumonia images are
# smoother than normal ones, a score that grows with fine detail ranks them as normal. The measurement: fine detail alone as a score
# (`adlib.shift.fine_detail`), and a pixel error that needs no training (`adlib.shift.linear_pixel_error`: the
# reconstruction error of a 16-component PCA of the training normals, a linear autoencoder), each image's score
# against its detail, per class. The sentences are generated from the measurement and from the study's rows at x1
# and at each detector's best budget (`adlib.verdicts`).

# %%
from adlib import verdicts  # noqa: E402
from adlib.data import make_protocol  # noqa: E402
from adlib.protocol_notes import detail_sentences  # noqa: E402
from adlib.shift import detail_diagnostic, fine_detail, linear_pixel_error  # noqa: E402

best = pd.concat([best_budget_rows(m, DATASET, ok) for m in ok["method"].unique()]).assign(budget_rung="best budget")
at_x1 = ok[ok["budget_multiplier"] == 1].assign(budget_rung="x1")
data_spec = values.get("data", {}).get(DATA_KEY, {"name": "pneumonia", "size": 64})
pn = make_protocol(data_spec["name"], size=data_spec["size"])
pixel = linear_pixel_error(pn.train, pn.test)
plots.save_figure(plots.score_vs_detail(pixel, fine_detail(pn.test), pn.test.labels,
                                        title=f"PCA pixel error vs fine detail ({DATA_KEY} test)"),
                  "08_score_vs_detail")
say(bullet_list([*(verdicts.below_chance_sentence(verdicts.chance_groups(r, ["method", "width_label"]),
                                                  f"detector / width results at {r['budget_rung'].iloc[0]}")
                   for r in (at_x1, best) if len(r)),
                 *detail_sentences(detail_diagnostic(pixel, pn.test), "A pixel error with no training (PCA)")]));

# %% [markdown]
# ## Discussion

# %%
say(bullet_list([*bp.discussion(summary, rows, reading["claims"], DATASET), bp.coverage_sentence(rows, study)]));

# %% [markdown]
# How to read these numbers:
#
# * One seed per rung: the noise is the test-image bootstrap CI, and all rungs share the same test images, so
#   "CIs do not overlap" is a conservative test. The top rung of each ladder gets three seeds when it is run.
# * The best budget is chosen on validation, whose images come from the same pool as the training images; the
#   test images were collected separately (notebook 00 measures the shift). A validation gain need not carry
#   over to test.
# * A flat curve whose rungs kept the same checkpoint says that, under this protocol, the extra steps never
#   produced a better checkpoint on validation: more steps alone did not help at that width.

# %% [markdown]
# ## Exercises
#
# Each exercise has its own solution cell below it (collapsed in Jupyter), reusing the tables above.
#
# **1.** The best budget is chosen on validation. What would choosing it on the *test* AUROC have reported for
# each detector, and by how many points would that flatter the table?

# %% tags=["solution"] jupyter={"source_hidden": true}
by_test = ok.loc[ok.groupby("method")["AUROC"].idxmax(), ["method", "budget_multiplier", "AUROC"]]
by_val = pd.concat([best_budget_rows(m, DATASET, ok) for m in ok["method"].unique()])
flattery = by_test.merge(by_val.groupby("method")["AUROC"].mean().rename("AUROC (val choice)"), on="method")
flattery["flattery (points)"] = (flattery["AUROC"] - flattery["AUROC (val choice)"]) * 100
show_table(flattery.sort_values("flattery (points)", ascending=False), caption="Best budget chosen on test vs on "
           "validation (AUROC in %)", percent=("AUROC", "AUROC (val choice)"), digits={"flattery (points)": 1})

# %% [markdown]
# **2.** Is a doubling of the budget worth more than another seed? Re-train the first re-run rung with seed 1
# and compare the seed's change with the x1 → x2 change of the re-run rows.

# %% tags=["solution"] jupyter={"source_hidden": true}
first = rungs[0]
job = dataclasses.replace(first.job, seed=1)
spec = dict(values["data"][job.data_key])
other = dataclasses.replace(first, job=job, key=budget.rung_key(job, first.width_label, first.multiplier, spec, PROFILE))
seed1 = budget.run_rung(other, ref, threads=int(values["threads"]))
mine = rerun[rerun["method"] == first.job.method].set_index("budget_multiplier")["AUROC"]
print(f"{first.job.method} x{first.multiplier} test AUROC: seed 0 {100 * mine.iloc[0]:.1f} %, seed 1 "
      f"{100 * seed1['AUROC']:.1f} % (seed change {100 * (seed1['AUROC'] - mine.iloc[0]):+.1f} points); "
      f"x{mine.index[0]} -> x{mine.index[-1]} with seed 0: {100 * (mine.iloc[-1] - mine.iloc[0]):+.1f} points")

# %% [markdown]
# **3.** At the cpu width, which detector bought the most test AUROC per CPU hour spent above its cpu budget?

# %% tags=["solution"] jupyter={"source_hidden": true}
spent = bp.on_cpu(ok)[lambda r: r["budget_multiplier"] > 1].groupby("method")["job_cpu_seconds"].sum() / 3600
cpu_lines = summary[summary["width"] == "cpu"].set_index("method")
gain = cpu_lines["best_test"] - cpu_lines["x1_test"]
value = pd.DataFrame({"gain (points)": gain, "CPU h above x1": spent}).dropna()
value["points per CPU h"] = value["gain (points)"] / value["CPU h above x1"]
show_table(value.rename_axis("method").reset_index().sort_values("points per CPU h", ascending=False),
           digits={"CPU h above x1": 3})

# %% [markdown]
# ## Timing, and where the outputs went
#
# The rungs this notebook trained (images/s of training count every image passed through a training step):

# %%
timing = rerun[["method", "width_label", "budget_multiplier", "budget_value", "fit_seconds", "fit_images_per_s",
                "score_seconds", "score_images_per_s", "job_wall_seconds", "job_cpu_seconds"]]
show_table(timing, caption="Rungs trained by this notebook (seconds and images/s)")
print("saved", save_frame(timing, "08_timing", provenance_columns(cfg)))
print(f"figures -> {relative_to_project(figures_dir())}; tables -> {relative_to_project(results_dir())}; "
      f"the study's rows were only read: {relative_to_project(BUDGET_ROWS)}")
print(f"Notebook wall time: {time.perf_counter() - notebook_start:.0f} s")
