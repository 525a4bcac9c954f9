"""The benchmark grid (adlib.benchmark): reuse of existing rows, joblib scheduling, statistics, paper vs ours."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pandas as pd
import pytest

from adlib import benchmark as bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a tiny grid: one cheap detector on a tiny synthetic set (smoke sizes, see tests/test_contract.py)
VALUES = {
    "seeds": [0, 1],
    "datasets": ["syn"],
    "methods": ["conv_ae"],
    "names": {"conv_ae": ["AE"]},
    "data": {"syn": {"name": "synthetic", "size": 32, "n_train": 48, "n_val": 32, "n_test": 48}},
    "kwargs": {"conv_ae": {"latent": 8, "width": 8, "steps": 10, "batch_size": 16, "eval_every": 5,
                           "device": "cpu"}},
}


def _ref(values=VALUES) -> bench.ConfigRef:
    return bench.ConfigRef("07_benchmark", "smoke", bench.grid._frozen(values), "test")


def test_a_row_is_reused_only_when_its_configuration_hash_matches(tmp_path):
    # two generated datasets with the same name and size, told apart by their data file hash
    values = {**VALUES, "seeds": [0], "datasets": ["syn", "syn7"],
              "data": {"syn": VALUES["data"]["syn"], "syn7": {**VALUES["data"]["syn"], "data_seed": 7}}}
    jobs, ref = bench.build_grid(values), _ref(values)
    assert [(j.method, j.data_key, j.seed) for j in jobs] == [("AE", "syn", 0), ("AE", "syn7", 0)]
    hashes = [bench.cell_sha256(j, ref) for j in jobs]
    assert hashes[0] != hashes[1]  # another data file: another configuration
    earlier = bench.run_job(jobs[0], ref)  # what a paper notebook running the same setting would have written
    assert earlier["run_sha256"] == hashes[0]  # the runner records the hash the grid predicts
    row = {k: earlier[k] for k in ("method", "variant", "seed", "image_size", "weights", "AUROC", "fit_seconds",
                                   "run_sha256")}
    row = {**row, "dataset": earlier["dataset"], "AUROC": 0.777}
    # the same cell by method, dataset, size and seed, but another setting (steps), or no hash at all
    other_steps = bench.build_grid({**values, "kwargs": {"conv_ae": {**VALUES["kwargs"]["conv_ae"], "steps": 11}}})
    pd.DataFrame([row]).to_csv(tmp_path / "04_table.csv", index=False)
    pd.DataFrame([{**row, "run_sha256": bench.cell_sha256(other_steps[0], ref), "AUROC": 0.5},
                  {**row, "run_sha256": np.nan, "AUROC": 0.4}]).to_csv(tmp_path / "03_table.csv", index=False)
    pd.DataFrame([{**row, "dataset": "x"}]).to_csv(tmp_path / "07_grid.csv", index=False)  # the benchmark's own
    rows = bench.existing_rows(tmp_path)
    assert set(rows["source"]) == {"03_table.csv", "04_table.csv"}
    assert bench.plan_grid(jobs, rows)[1] == jobs  # without hashes nothing is reused
    planned, todo = bench.plan_grid(jobs, rows, hashes=hashes)
    assert [(p["how"], p["source"], p["AUROC"]) for p in planned] == [("reused", "04_table.csv", 0.777)]
    assert [j.data_key for j in todo] == ["syn7"]
    # a setting that differs from the committed row's (steps 11 vs 10): the row is not reused, the cell runs
    other_hashes = [bench.cell_sha256(j, ref) for j in other_steps]
    planned, todo = bench.plan_grid(other_steps, rows[rows["source"] == "04_table.csv"], hashes=other_hashes)
    assert planned == [] and todo == other_steps
    # 03's row with the other setting is reused for that setting only; its row without a hash never is
    planned, todo = bench.plan_grid(other_steps, rows, hashes=other_hashes)
    assert [(p["source"], p["AUROC"]) for p in planned] == [("03_table.csv", 0.5)] and todo == other_steps[1:]
    assert bench.plan_grid(jobs[:1], rows[rows["run_sha256"].isna()], hashes=hashes[:1])[1] == jobs[:1]
    summary = bench.reuse_summary(jobs, rows, hashes).set_index("results file")
    assert summary.iloc[:, 0].to_dict() == {"03_table.csv": 2, "04_table.csv": 1}
    assert summary.iloc[:, 1].to_dict() == {"03_table.csv": 0, "04_table.csv": 1}
    ran = bench.run_jobs([jobs[1]], ref, n_jobs=1, progress=False)
    grid = bench.grid_frame(bench.plan_grid(jobs, rows, hashes=hashes)[0] + ran, jobs)
    assert list(grid["how"]) == ["reused", "ran"] and list(grid["data"]) == ["syn", "syn7"]
    assert grid.loc[1, "run_sha256"] == hashes[1]
    assert np.isfinite(grid["AUROC"]).all() and np.isfinite(grid.loc[1, "pixel_AUROC"])
    assert grid.loc[1, "AUROC_ci_low"] <= grid.loc[1, "AUROC"] <= grid.loc[1, "AUROC_ci_high"]
    # a budget-limited plan lists the missing job without running it
    planned, none = bench.plan_grid(jobs, rows, run_on=["syn"], hashes=hashes)
    assert none == [] and planned[-1]["how"] == "not run (budget)"


def test_the_hash_covers_every_setting_of_a_cell():
    jobs, ref = bench.build_grid(VALUES), _ref()
    base = bench.cell_sha256(jobs[0], ref)
    assert base == bench.cell_sha256(jobs[0], ref)
    assert bench.cell_sha256(jobs[1], ref) == base  # the seed is matched on its own, not hashed
    progress = {**VALUES["kwargs"]["conv_ae"], "progress": False, "device": "cuda"}  # how it runs, not what
    assert bench.cell_sha256(bench.build_grid({**VALUES, "kwargs": {"conv_ae": progress}})[0], ref) == base
    for change in ({"width": 16}, {"steps": 11}, {"loss": "l1"}):
        kw = {"conv_ae": {**VALUES["kwargs"]["conv_ae"], **change}}
        assert bench.cell_sha256(bench.build_grid({**VALUES, "kwargs": kw})[0], ref) != base, change
    for spec in ({"size": 28}, {"n_train": 40}, {"n_val": 24}, {"channels": 3}):
        values = {**VALUES, "data": {"syn": {**VALUES["data"]["syn"], **spec}}}
        assert bench.cell_sha256(bench.build_grid(values)[0], _ref(values)) != base, spec
    weights = bench.build_grid({**VALUES, "weights": {"conv_ae": "imagenet-lite"}})[0]
    assert bench.cell_sha256(weights, ref) == base  # the weights a detector takes come from its settings
    few_shot = dataclasses.replace(jobs[0], k=2)
    assert bench.cell_sha256(few_shot, ref) != base


def test_a_job_that_cannot_run_says_why():
    bad = bench.build_grid({**VALUES, "kwargs": {"conv_ae": {**VALUES["kwargs"]["conv_ae"], "no_such_option": 1}}})
    with pytest.raises(TypeError):
        bench.run_job(bad[0], _ref())  # alone (e.g. the budget study), a job's error propagates
    row = bench.run_job(bad[0], _ref(), errors="record")  # in the grid, its row says why
    assert row["how"] == "ran" and row["status"].startswith("cannot run: TypeError") and np.isnan(row["AUROC"])
    cells = bench.cell_stats(bench.grid_frame([row], bad[:1]))
    assert cells.loc[0, "n_seeds"] == 0 and bench.cell_text(cells.iloc[0]).startswith("cannot run")


def test_schedule_starts_the_named_detectors_first():
    jobs = bench.build_grid({**VALUES, "methods": ["conv_ae", "deep_if", "patchcore"], "seeds": [0]})
    assert [j.detector for j in bench.schedule(jobs, ["patchcore"])] == ["patchcore", "conv_ae", "deep_if"]


def test_generated_datasets_with_other_seeds_have_other_fingerprints():
    a = {"name": "synthetic", "size": 32, "n_train": 16, "n_val": 8, "n_test": 12}
    values = {**VALUES, "datasets": ["a", "b", "a2"], "data": {"a": a, "b": {**a, "data_seed": 7}, "a2": dict(a)}}
    ref = _ref(values)
    fps = {k: bench.data_fingerprint(ref, k) for k in values["datasets"]}
    assert fps["a"] == fps["a2"] and fps["a"]["data_sha256"] != fps["b"]["data_sha256"]
    assert fps["a"]["n_test"] == 12


def test_joblib_local_backend_matches_a_sequential_run():
    jobs = bench.build_grid(VALUES)
    sequential = [bench.run_job(j, _ref()) for j in jobs]
    parallel = bench.run_jobs(jobs, _ref(), n_jobs=2, backend="loky")
    assert [r["seed"] for r in parallel] == [0, 1]
    for a, b in zip(sequential, parallel):
        assert a["AUROC"] == b["AUROC"] and a["pixel_AUROC"] == b["pixel_AUROC"]


def test_interrupted_grid_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    jobs, ref = bench.build_grid(VALUES), _ref()
    checkpoint = tmp_path / "grid.jsonl"
    first = bench.run_jobs(jobs[:1], ref, checkpoint=checkpoint, progress=False)  # then the run "dies"
    with open(checkpoint, "a") as fh:
        fh.write('{"key": "torn')  # a half-written last line
    calls = []
    real = bench.run_job
    monkeypatch.setattr(bench.execution, "run_job",  # patched where run_jobs looks it up
                        lambda job, *a: calls.append(job.seed) or real(job, *a))
    rows = bench.run_jobs(jobs, ref, checkpoint=checkpoint, progress=False)
    assert calls == [1]  # only the job the first run did not finish
    assert rows[0]["how"] == "ran (resumed)"
    pd.testing.assert_frame_equal(pd.DataFrame(rows[:1]).drop(columns="how"),  # NaN-aware comparison
                                  pd.DataFrame(first).drop(columns="how"))
    assert rows[1]["seed"] == 1 and np.isfinite(rows[1]["AUROC"])
    # another configuration (other detector options) does not take the checkpoint's rows
    other = bench.build_grid({**VALUES, "kwargs": {"conv_ae": {**VALUES["kwargs"]["conv_ae"], "steps": 11}}})
    assert bench.job_key(other[0], ref) != bench.job_key(jobs[0], ref)
    assert set(bench.read_finished(checkpoint)) == {bench.job_key(j, ref) for j in jobs}


def test_plan_grid_takes_seeds_per_dataset():
    values = {**VALUES, "datasets": ["syn", "syn2"], "data": {**VALUES["data"], "syn2": VALUES["data"]["syn"]}}
    jobs = bench.build_grid(values)
    planned, todo = bench.plan_grid(jobs, pd.DataFrame(), run_seeds={"syn": [0, 1], "syn2": [0]})
    assert [(j.data_key, j.seed) for j in todo] == [("syn", 0), ("syn", 1), ("syn2", 0)]
    assert [(p["data"], p["seed"], p["how"]) for p in planned] == [("syn2", 1, "not run (budget)")]


def test_ray_address_without_ray_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed: `import ray` fails
    monkeypatch.setitem(sys.modules, "ray.util.joblib", None)
    monkeypatch.setenv(bench.RAY_ENV, "ray://nowhere:10001")
    with pytest.raises(RuntimeError, match="pip install ray"):
        bench.run_jobs(bench.build_grid(VALUES)[:1], _ref())


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_backend_runs_two_tiny_jobs():
    import ray

    jobs = bench.build_grid(VALUES)
    sequential = [bench.run_job(j, _ref()) for j in jobs]
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True)  # a local Ray, started here
    try:
        rows = bench.run_jobs(jobs, _ref(), n_jobs=1, backend="ray")
    finally:
        ray.shutdown()
    assert [r["seed"] for r in rows] == [0, 1]
    assert [r["AUROC"] for r in rows] == [r["AUROC"] for r in sequential]


def test_bootstrap_ci_contains_the_mean():
    values = np.array([0.71, 0.74, 0.69, 0.80, 0.77])
    lo, hi = bench.bootstrap_ci(values)
    assert lo <= values.mean() <= hi and lo < hi
    assert all(np.isnan(bench.bootstrap_ci([0.7])))


def test_cell_stats_leaderboard_and_ranking():
    rng = np.random.default_rng(0)
    rows = []
    for d in range(5):
        for m, base in (("good", 0.9), ("mid", 0.75), ("bad", 0.6)):
            for seed in range(3):
                rows.append(dict(method=m, block="unsupervised", data=f"d{d}", seed=seed, how="ran",
                                 AUROC=base + rng.normal(0, 0.01), fit_seconds=1.0, score_seconds=0.1,
                                 added_memory_MB=100.0))
    rows.append(dict(method="partial", block="unsupervised", data="d0", seed=0, how="reused", AUROC=0.95))
    cells = bench.cell_stats(pd.DataFrame(rows))
    assert ((cells["ci_low"] <= cells["AUROC_mean"]) & (cells["AUROC_mean"] <= cells["ci_high"]))[
        cells["n_seeds"] > 1].all()
    res, table, _ = bench.rank_methods(cells)
    assert res is not None and set(table.columns) == {"good", "mid", "bad"} and table.shape[0] == 5
    assert res.pvalue < 0.05 and res.rankdf.loc["good", "meanrank"] == 1 and res.rankdf.loc["bad", "meanrank"] == 3
    import matplotlib.pyplot as plt
    from autorank import plot_stats

    ax = plot_stats(res, allow_insignificant=True)  # the notebook's critical-difference diagram
    assert {t.get_text() for t in ax.texts} >= {"good", "mid", "bad"}
    plt.close(ax.get_figure())
    board = bench.leaderboard(cells, {"unsupervised": res}, bench.resources(pd.DataFrame(rows)))
    assert list(board["method"][:3]) == ["good", "mid", "bad"] and np.isnan(board.set_index("method").loc[
        "partial", "mean_rank"])
    assert {"method", "block", "n_datasets", "mean_rank", "mean_auroc", "AUROC d0", "below_chance",
            "degenerate_threshold", "fit_seconds", "added_memory_MB"} <= set(board.columns)
    # cost comes from the runs of the grid only: the reused row of 'partial' has none
    assert np.isnan(board.set_index("method").loc["partial", "fit_seconds"])
    reading = bench.reading_leaderboard(board)
    assert reading.loc[0, "d0"].startswith("90.") and "[" in reading.loc[0, "d0"]  # mean ± std [seed CI]


def test_cells_mark_below_chance_and_degenerate_thresholds():
    def run(method, data, auroc, degenerate=False, **extra):
        return dict(method=method, block="unsupervised", data=data, seed=0, how="ran", AUROC=auroc,
                    AUROC_ci_low=auroc - 0.04, AUROC_ci_high=auroc + 0.04, F1=0.77, degenerate=degenerate,
                    fit_seconds=1.0, score_seconds=0.1, added_memory_MB=10.0, status="completed", **extra)
    grid = pd.DataFrame([run("inverted", "d0", 0.28, degenerate=True), run("coin", "d0", 0.51),
                         run("good", "d0", 0.90),
                         {**run("broken", "d0", np.nan), "status": "cannot run: ValueError: too small"}])
    cells = bench.cell_stats(grid).set_index("method")
    assert cells.loc["inverted", "chance"] == "below chance" and cells.loc["inverted", "degenerate"]
    assert np.isnan(cells.loc["inverted", "F1_mean"])  # a constant prediction's F1 is no result
    assert cells.loc["coin", "chance"] == "at chance" and cells.loc["good", "chance"] == "above chance"
    texts = {m: bench.cell_text(c) for m, c in cells.iterrows()}
    assert texts["inverted"] == "28.0 [24.0, 32.0] ↓ †" and texts["coin"].endswith("≈")
    assert texts["good"] == "90.0 [86.0, 94.0]" and texts["broken"] == "cannot run: ValueError: too small"
    board = bench.leaderboard(bench.cell_stats(grid)).set_index("method")
    assert board.loc["inverted", "below_chance"] == 1 and board.loc["inverted", "degenerate_threshold"] == 1
    assert board.loc["broken", "not_run"] == 1 and board.loc["broken", "n_datasets"] == 0


def test_paper_vs_ours_difference_on_a_hand_made_frame():
    printed = pd.DataFrame([dict(paper="P", table="T1", dataset_paper="Chest", method_paper="AE", variant="",
                                 metric="AUROC", printed=80.0, our_dataset="pneumonia", our_variant=None,
                                 method="AE", _results=("04_",), _same_data=(), _size=256.0, _weights="",
                                 _our_weights="", _variants=()),
                            dict(paper="P", table="T1", dataset_paper="OCT", method_paper="AE", variant="",
                                 metric="AUROC", printed=70.0, our_dataset=None, our_variant=None, method="AE",
                                 _results=("04_",), _same_data=(), _size=np.nan, _weights="", _our_weights="",
                                 _variants=())])
    ours = pd.DataFrame([dict(dataset="pneumonia", method="AE", variant="default", seed=s, AUROC=a,
                              image_size=64, weights="none", profile="cpu", data_source="rebuilt-substitute (x)",
                              steps=150, source="04_t.csv") for s, a in ((0, 0.70), (1, 0.74))])
    out = bench.paper_vs_ours(printed, ours)
    first = out.iloc[0]
    assert first["ours"] == pytest.approx(72.0) and first["difference"] == pytest.approx(-8.0)
    assert first["n_seeds"] == 2
    for reason in ("data substitute", "image size (256 px -> ours 64 px)", "budget (cpu profile, 150 steps)"):
        assert reason in first["reason"]
    assert np.isnan(out.iloc[1]["ours"]) and out.iloc[1]["reason"] == "dataset not available here"


def test_paper_vs_ours_marks_degenerate_thresholds_and_below_chance_models():
    printed = pd.DataFrame([dict(paper="P", table="T1", dataset_paper="Chest", method_paper="AE", variant="",
                                 metric=m, printed=60.0, our_dataset="pneumonia", our_variant=None, method="AE",
                                 _results=("04_",), _same_data=(), _size=64.0, _weights="", _our_weights="",
                                 _variants=()) for m in ("F1", "AUROC")])
    # an inverted model (test-image CIs wholly below 0.5) whose validation threshold calls every image anomalous
    ours = pd.DataFrame([dict(dataset="pneumonia", method="AE", variant="default", seed=s, AUROC=a,
                              AUROC_ci_low=a - 0.05, AUROC_ci_high=a + 0.05, F1=0.769, SEN=1.0, SPE=0.0,
                              degenerate=True, image_size=64, weights="none", profile="cpu", data_source="x",
                              steps=150, source="04_t.csv") for s, a in ((0, 0.28), (1, 0.30))])
    out = bench.paper_vs_ours(printed, ours).set_index("metric")
    assert out.loc["F1", "degenerate_threshold"] and not out.loc["AUROC", "degenerate_threshold"]
    assert (out["auroc_vs_chance"] == "below chance").all()
    # the CSV itself never carries a degenerate threshold's number as ours (AnoGAN's F1 76.9 "beat" the paper's 57.8)
    assert np.isnan(out.loc["F1", "ours"]) and np.isnan(out.loc["F1", "difference"])
    assert out.loc["F1", "ours_degenerate_threshold_value"] == pytest.approx(76.9)
    assert out.loc["AUROC", "ours"] == pytest.approx(29.0)
    assert np.isnan(out.loc["AUROC", "ours_degenerate_threshold_value"])
    assert bench.unmatched_summary(out.reset_index()).loc[0, "with ours"] == 2  # a run of ours exists for both
    from adlib.benchmark.discussion import paper_sentence

    assert "1 of ours come from a degenerate threshold" in paper_sentence(out.reset_index())
    table = bench.reading_tables(bench.paper_vs_ours(printed, ours))["P"].set_index("metric")
    assert table.loc["F1", "ours"] == "—" and np.isnan(table.loc["F1", "difference"])  # not a result
    assert "degenerate threshold" in table.loc["F1", "note"] and "below chance" in table.loc["AUROC", "note"]
    assert table.loc["AUROC", "ours"] == pytest.approx(29.0)
    healthy = ours.assign(AUROC=0.8, AUROC_ci_low=0.75, AUROC_ci_high=0.85, SEN=0.7, SPE=0.8, degenerate=False)
    out = bench.paper_vs_ours(printed, healthy).set_index("metric")
    assert not out["degenerate_threshold"].any() and (out["auroc_vs_chance"] == "above chance").all()
    assert "chance" not in bench.reading_tables(out.reset_index())["P"].set_index("metric").loc["AUROC", "note"]


def test_config_reads_every_papers_numbers_and_matches_wscxr_and_dpa_settings():
    from adlib.config import load_run_config
    from adlib.profiles import activate, active_profile_name

    before = active_profile_name()
    try:
        values = load_run_config("07_benchmark", "cpu").as_dict()
    finally:
        activate(before)  # loading a config activates its profile; the other tests expect theirs
    printed = bench.printed_numbers(values["paper_vs_ours"])
    assert set(printed["paper"]) == {"DPA", "CCB-AAE", "SALAD", "MADDR", "WSCXR"}
    assert printed["printed"].between(0, 100).all()
    # against the committed cpu rows of notebooks 02 and 06 (not $ADLIB_RESULTS: the test suite points it at a
    # scratch folder)
    vs = bench.paper_vs_ours(printed, bench.existing_rows(bench.PROJECT_ROOT / "results"))
    auroc = vs[vs["metric"] == "AUROC"].set_index(["paper", "table", "method", "variant", "dataset_paper"]).sort_index()
    assert np.isfinite(auroc.loc[("WSCXR", "Table I", "WSCXR", "K=16", "ZhangLab chest X-ray"), "ours"])
    assert np.isfinite(auroc.loc[("WSCXR", "Table II", "WSCXR", "mining=off, mixing=off",
                                  "ZhangLab chest X-ray"), "ours"])
    deep_geo = auroc.loc[("DPA", "Table 1", "Deep GEO")]
    assert np.isfinite(deep_geo.loc[("default", "CIFAR10"), "ours"])
    assert np.isnan(deep_geo.loc[("weakly-supervised", "CIFAR10"), "ours"])  # no weakly-supervised run of ours
    ours_cifar = pd.read_csv(bench.PROJECT_ROOT / "results" / "02_table1_cifar10.csv")
    n_classes = ours_cifar.loc[ours_cifar["method"] == "Deep GEO", "dataset"].nunique()  # the profile's classes
    assert f"{n_classes} of 10 CIFAR-10 classes" in deep_geo.loc[("default", "CIFAR10"), "reason"]
    assert np.isfinite(auroc.loc[("DPA", "Table 2", "DPA (w/o p.g.)", "weakly-supervised", "NIH (a subset)"),
                                 "ours"])


def test_conclusions_and_figures_of_a_ranked_grid():
    """The paths only the cpu and paper profiles take (a rank test over five datasets, a weak block, pixel AUROC,
    paper vs ours), on a made-up grid: every sentence is generated, every figure has its legend."""
    import matplotlib.pyplot as plt

    from adlib.plots import figure_problems

    rng = np.random.default_rng(1)
    rows = []
    for d in range(5):
        for m, block, base in (("good", "unsupervised", 0.9), ("mid", "unsupervised", 0.75),
                               ("inverted", "unsupervised", 0.3), ("weak", "weakly supervised (K=16)", 0.95)):
            a = base + rng.normal(0, 0.01)
            rows.append(dict(method=m, block=block, data=f"d{d}", dataset=f"d{d}", seed=0, how="ran", AUROC=a,
                             AUROC_ci_low=a - 0.03, AUROC_ci_high=a + 0.03, F1=0.7, degenerate=m == "inverted",
                             variant="default" if block == "unsupervised" else "K=16", status="completed",
                             pixel_AUROC=0.8 if d == 0 else np.nan, fit_seconds=1.0 + (m == "good"),
                             score_seconds=0.1, added_memory_MB=10.0))
    grid = pd.DataFrame(rows)
    cells, cost = bench.cell_stats(grid), bench.resources(grid)
    ranks, tables, notes = {}, {}, {}
    for block in cells["block"].unique():
        ranks[block], tables[block], notes[block] = bench.rank_methods(cells, block)
    assert ranks["weakly supervised (K=16)"] is None and "nothing to rank" in notes["weakly supervised (K=16)"]
    board = bench.leaderboard(cells, ranks, cost)
    vs = pd.DataFrame([dict(paper="P", metric="AUROC", ours=80.0, printed=85.0, difference=-5.0,
                            auroc_vs_chance="above chance", degenerate_threshold=False)])
    text = "\n".join(bench.conclusions(grid, cells, board, ranks, tables, notes, vs, cost))
    for part in ("covers 3 of the 3 unsupervised detectors on 5 datasets", "**good** (1.00", "Friedman",
                 "5 are **below chance**", "inverted on d0", "good against mid", "good better on 5",
                 "weak, weakly supervised (K=16)", "pixel AUROC", "Paper vs ours: 1 printed AUROCs",
                 "from 1.0 s (mid) to 2.0 s (good)"):
        assert part in text, part
    for fig in (bench.auroc_bars(cells), bench.cost_panels(cost)):
        assert figure_problems(fig) == [], figure_problems(fig)
        plt.close(fig)
    fig = bench.critical_difference(ranks["unsupervised"], 5)
    assert "Critical-difference" in fig._suptitle.get_text()
    plt.close(fig)
