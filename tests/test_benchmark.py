"""The benchmark grid (adlib.benchmark): reuse of existing rows, joblib scheduling, statistics, paper vs ours."""
from __future__ import annotations

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


def test_grid_reuses_a_matching_row_and_runs_only_the_missing_one(tmp_path):
    # two generated datasets with the same name and size, told apart by their data fingerprint
    values = {**VALUES, "seeds": [0], "datasets": ["syn", "syn7"],
              "data": {"syn": VALUES["data"]["syn"], "syn7": {**VALUES["data"]["syn"], "data_seed": 7}}}
    jobs, ref = bench.build_grid(values), _ref(values)
    assert [(j.method, j.data_key, j.seed) for j in jobs] == [("AE", "syn", 0), ("AE", "syn7", 0)]
    fps = {key: bench.data_fingerprint(ref, key) for key in values["datasets"]}
    earlier = bench.run_job(jobs[0], ref)  # what a paper notebook would have written for syn
    assert str(earlier["data_sha256"]) == fps["syn"]["data_sha256"] and earlier["n_test"] == fps["syn"]["n_test"]
    row = {"dataset": earlier["dataset"], "method": "AE", "variant": "default", "seed": 0, "image_size": 32,
           "weights": "none", "AUROC": 0.777, "fit_seconds": 1.0, **fps["syn"]}
    other = {**row, **fps["syn7"]}
    pd.DataFrame([row, {**other, "weights": "imagenet-lite"},  # other weights: not the same config
                  {**other, "image_size": 64}]).to_csv(tmp_path / "04_table.csv", index=False)
    pd.DataFrame([other]).to_csv(tmp_path / "07_grid.csv", index=False)  # the benchmark's own rows: not reused
    rows = bench.existing_rows(tmp_path)
    assert set(rows["source"]) == {"04_table.csv"}
    assert bench.plan_grid(jobs, rows)[1] == []  # without fingerprints syn's row would stand in for syn7
    planned, todo = bench.plan_grid(jobs, rows, fingerprints=fps)
    assert [p["how"] for p in planned] == ["reused"] and planned[0]["AUROC"] == 0.777
    assert planned[0]["source"] == "04_table.csv"
    assert [j.data_key for j in todo] == ["syn7"]
    ran = bench.run_jobs(todo, ref, n_jobs=1, progress=False)
    grid = bench.grid_frame(planned + ran, jobs)
    assert list(grid["how"]) == ["reused", "ran"] and list(grid["data"]) == ["syn", "syn7"]
    assert np.isfinite(grid["AUROC"]).all() and np.isfinite(grid.loc[1, "pixel_AUROC"])
    assert grid.loc[1, "AUROC_ci_low"] <= grid.loc[1, "AUROC"] <= grid.loc[1, "AUROC_ci_high"]
    # a budget-limited plan lists the missing job without running it
    planned, none = bench.plan_grid(jobs, rows, run_on=["syn"], fingerprints=fps)
    assert none == [] and planned[-1]["how"] == "not run (budget)"


def test_a_cell_takes_all_its_seeds_from_one_file_and_the_same_data():
    jobs = bench.build_grid({**VALUES, "seeds": [0, 1, 2]})
    row = {"dataset": "synthetic", "method": "AE", "variant": "default", "image_size": 32, "weights": "none",
           "data_sha256": "aaaa", "n_test": 48}
    rows = pd.DataFrame([{**row, "seed": 0, "AUROC": 0.6, "source": "03_x.csv"},
                         {**row, "seed": 0, "AUROC": 0.7, "source": "05_y.csv"},
                         {**row, "seed": 1, "AUROC": 0.71, "source": "05_y.csv"}])
    planned, todo = bench.plan_grid(jobs, rows)
    assert todo == []
    assert [(p["seed"], p["how"], p["source"]) for p in planned] == [
        (0, "reused", "05_y.csv"), (1, "reused", "05_y.csv"), (2, "not run (cell reused)", "")]
    # another data file or another test-split size is another dataset: nothing is reused
    for fp in ({"data_sha256": "bbbb", "n_test": 48}, {"data_sha256": "aaaa", "n_test": 600}):
        _, todo = bench.plan_grid(jobs, rows, fingerprints={"syn": fp})
        assert len(todo) == 3
    # rows written before the columns existed are not checked on them
    planned, todo = bench.plan_grid(jobs, rows.drop(columns=["data_sha256", "n_test"]),
                                    fingerprints={"syn": {"data_sha256": "bbbb", "n_test": 1}})
    assert todo == [] and [p["how"] for p in planned].count("reused") == 2


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
    board = bench.leaderboard(cells, {"unsupervised": res})
    assert list(board["method"][:3]) == ["good", "mid", "bad"] and np.isnan(board.set_index("method").loc[
        "partial", "mean_rank"])
    assert {"method", "block", "n_datasets", "mean_rank", "mean_auroc", "AUROC d0"} <= set(board.columns)


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
    healthy = ours.assign(AUROC=0.8, AUROC_ci_low=0.75, AUROC_ci_high=0.85, SEN=0.7, SPE=0.8, degenerate=False)
    out = bench.paper_vs_ours(printed, healthy).set_index("metric")
    assert not out["degenerate_threshold"].any() and (out["auroc_vs_chance"] == "above chance").all()


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
    assert "2 of 10 CIFAR-10 classes" in deep_geo.loc[("default", "CIFAR10"), "reason"]
    assert np.isfinite(auroc.loc[("DPA", "Table 2", "DPA (w/o p.g.)", "weakly-supervised", "NIH (a subset)"),
                                 "ours"])
