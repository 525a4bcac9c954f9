"""The training-budget study's runner (adlib.budget): the ladder as configured, rows appended atomically one at a time,
a resumed run that runs nothing twice, bigger budgets recorded as bigger budget values, limits and estimates."""
import json

import numpy as np
import pandas as pd
import pytest

from adlib import budget
from adlib.benchmark import ConfigRef
from adlib.config import load_run_config

# the detectors issue 20 asks for (MADDR + DPA is left out with its reason in the configuration)
ISSUE_ENTRIES = {"AE": "conv_ae", "AE (L1)": "conv_ae", "VAE": "vae", "SSIM-AE": "ssim_ae", "MemAE": "memae",
                 "f-AnoGAN": "f_anogan", "GANomaly": "ganomaly", "Skip-GANomaly": "skip_ganomaly",
                 "CCB-AAE": "ccb_aae", "EGBAD": "egbad", "AnoGAN": "anogan", "SALAD": "salad", "DPA": "dpa",
                 "CutPaste": "cutpaste", "SimpleNet": "simplenet", "WSCXR": "wscxr"}


@pytest.fixture(scope="module")
def smoke():
    cfg = load_run_config(budget.CONFIG, "smoke")
    return cfg, cfg.as_dict(), ConfigRef.of(cfg)


@pytest.fixture(scope="module")
def real_run(smoke, tmp_path_factory):
    """The smoke ladder run for real: three rungs first (an 'interrupted' run), then the rest."""
    cfg, values, ref = smoke
    rungs = budget.build_ladder(values, "smoke")
    path = tmp_path_factory.mktemp("budget") / "budget_rows.csv"
    first = budget.run_study(rungs, ref, path, max_rungs=3, progress=False, log=lambda _: None)
    after_first = budget.read_rows(path)
    second = budget.run_study(rungs, ref, path, progress=False, log=lambda _: None)
    return rungs, path, first, after_first, second


def test_smoke_ladder_is_built_as_configured(smoke):
    _, values, _ = smoke
    rungs = budget.build_ladder(values, "smoke")
    # 2 entries x 2 widths x 1 dataset x (x1 seed 0, x2 seeds 0 and 1)
    assert len(rungs) == 12 and len({r.key for r in rungs}) == 12
    for r in rungs:
        entry = values["detectors"][r.job.method]
        assert r.job.method in ("AE", "VAE") and r.job.data_key == "synthetic-32"
        assert r.kwargs["steps"] == entry["kwargs"]["steps"] * r.multiplier == r.budget_value
        assert r.kwargs["width"] == (entry["wide"]["width"] if r.width_label == "wide" else entry["kwargs"]["width"])
        assert r.job.seed in ((0, 1) if r.multiplier == 2 else (0,))
    assert {(r.width_label, r.multiplier, r.job.seed) for r in rungs if r.job.method == "AE"} == {
        (w, 1, 0) for w in ("cpu", "wide")} | {(w, 2, s) for w in ("cpu", "wide") for s in (0, 1)}
    # narrowing by entry or registered name, width and dataset
    assert {r.job.method for r in budget.build_ladder(values, "smoke", detectors=["vae"])} == {"VAE"}
    assert {r.width_label for r in budget.build_ladder(values, "smoke", widths=["cpu"])} == {"cpu"}
    with pytest.raises(ValueError, match="unknown dataset"):
        budget.build_ladder(values, "smoke", datasets=["pneumonia-128"])


def test_cpu_ladder_covers_every_trained_detector_of_the_issue():
    values = load_run_config(budget.CONFIG, "cpu").as_dict()
    assert {k: v["detector"] for k, v in values["detectors"].items()} == ISSUE_ENTRIES
    rungs = budget.build_ladder(values, "cpu")
    bench = load_run_config("07_benchmark", "cpu").as_dict()
    for name, entry in values["detectors"].items():
        mine = [r for r in rungs if r.job.method == name]
        assert {r.job.data_key for r in mine} == {"pneumonia-64", "breast-64"}
        assert {r.width_label for r in mine} == ({"cpu"} if "no_wide" in entry else {"cpu", "wide"})
        for width in {r.width_label for r in mine}:
            ladder = sorted({r.multiplier for r in mine if r.width_label == width})
            assert ladder[0] == 1 and ladder[-1] >= 16, (name, width, ladder)  # issue 20: at least 16x
            assert all(b == 2 * a for a, b in zip(ladder, ladder[1:]))  # geometric
            top = {r.job.seed for r in mine if r.width_label == width and r.multiplier == ladder[-1]}
            assert top == {0, 1, 2}
        x1 = next(r for r in mine if r.multiplier == 1 and r.width_label == "cpu")
        for key in entry["knob"]:  # the cpu budget's knob keys are today's notebook-07 cpu setting
            assert x1.kwargs[key] == bench["kwargs"][entry["detector"]][key]
    fanogan = next(r for r in rungs if r.job.method == "f-AnoGAN" and r.multiplier == 4 and r.width_label == "cpu")
    assert fanogan.budget_value == 4 * (100 + 100) and fanogan.knob == ("gan_steps", "encoder_steps")
    assert all(r.job.k == 16 for r in rungs if r.job.method == "WSCXR")


def test_rows_are_appended_and_a_second_run_resumes_without_running_anything(smoke, real_run):
    rungs, path, first, after_first, second = real_run
    assert len(first) == 3 and len(after_first) == 3
    assert len(second) == len(rungs) - 3  # the resumed run ran only the rest
    rows = budget.read_rows(path)
    assert len(rows) == len(rungs) and set(rows["job_key"]) == {r.key for r in rungs}
    assert rows["status"].notna().all() and rows["AUROC"].between(0, 1).all()
    # cheapest first: a ladder is climbed from its bottom (no x2 rung ran before the x1 rung of its ladder)
    assert after_first["budget_multiplier"].iloc[0] == 1
    for (_, _), part in after_first.groupby(["method", "width_label"]):
        assert 1 in set(part["budget_multiplier"])
    before = path.read_bytes()
    third = budget.run_study(rungs, smoke[2], path, progress=False, log=lambda _: None)
    assert third == [] and path.read_bytes() == before


def test_rows_say_everything_needed_to_recompute_them(real_run):
    rungs, path, *_ = real_run
    rows = budget.read_rows(path)
    for col in ("budget_multiplier", "budget_knob", "budget_value", "width_label", "fit_cpu_seconds",
                "job_cpu_seconds", "detector_kwargs", "data_spec", "data_sha256", "n_test", "git_commit", "threads",
                "seed", "config_sha256", "profile", "torch", "job_key", "val_AUROC", "fit_seconds"):
        assert col in rows.columns and rows[col].notna().all(), col
    by_key = {r.key: r for r in rungs}
    for _, row in rows.iterrows():
        rung = by_key[row["job_key"]]
        assert json.loads(row["detector_kwargs"]) == rung.kwargs
        assert json.loads(row["data_spec"])["name"] == "synthetic"
        assert row["threads"] == 1 and row["profile"] == "smoke" and row["source"] == budget.CONFIG
    assert (rows["fit_cpu_seconds"] >= 0).all()


def test_bigger_budgets_record_bigger_budget_values(real_run):
    rows = budget.read_rows(real_run[1])
    for (_, _), part in rows.groupby(["method", "width_label"]):
        part = part[part["seed"] == 0].sort_values("budget_multiplier")
        assert list(part["budget_multiplier"]) == [1, 2]
        assert part["budget_value"].iloc[1] == 2 * part["budget_value"].iloc[0]
        assert part["steps"].iloc[1] == part["budget_value"].iloc[1]  # the runner's own steps column agrees


def test_an_append_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "rows.csv"
    budget.append_row(path, {"job_key": "a", "AUROC": 0.5})
    budget.append_row(path, {"job_key": "b", "AUROC": 0.6, "new_column": 1})
    before = path.read_bytes()
    assert list(budget.read_rows(path)["job_key"]) == ["a", "b"]

    def torn_write(self, target, *args, **kwargs):  # the process dies half-way through writing the table
        with open(target, "w") as fh:
            fh.write("job_key,AUROC\nc,0.")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", torn_write)
    with pytest.raises(KeyboardInterrupt):
        budget.append_row(path, {"job_key": "c", "AUROC": 0.7})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]  # no temporary file left behind


def _fake_row(rung, values):
    """A row whose cost is exactly the configuration's prior estimate (so the estimates stay right)."""
    seconds = budget.estimate_seconds(rung, pd.DataFrame(), values)
    return dict(rung.job.describe(), AUROC=0.5, val_AUROC=0.5, status="completed", fit_seconds=seconds,
                job_wall_seconds=seconds, fit_cpu_seconds=seconds, job_key=rung.key, width_label=rung.width_label,
                budget_multiplier=rung.multiplier, budget_value=rung.budget_value)


def test_limits_failures_and_cheapest_first_order(smoke, tmp_path, monkeypatch):
    _, values, ref = smoke
    rungs = budget.build_ladder(values, "smoke")
    path, lines = tmp_path / "rows.csv", []
    assert budget.run_study(rungs, ref, path, max_hours=1e-6, progress=False, log=lines.append) == []
    assert not path.exists() and "stopping" in lines[-1]

    broken = rungs[0].key
    def flaky(rung, ref, threads=1):
        if rung.key == broken:
            raise RuntimeError("boom")
        return _fake_row(rung, values)

    monkeypatch.setattr(budget, "run_rung", flaky)
    ran = budget.run_study(rungs, ref, path, progress=False, log=lines.append)
    assert len(ran) == len(rungs) - 1 and broken not in set(budget.read_rows(path)["job_key"])
    assert any("FAILED" in line and "boom" in line for line in lines)
    costs = [row["job_wall_seconds"] for row in ran]
    assert (np.diff(costs) > -1e-9).all() and costs[0] < costs[-1]  # cheapest first
    monkeypatch.setattr(budget, "run_rung", lambda rung, ref, threads=1: _fake_row(rung, values))
    ran = budget.run_study(rungs, ref, path, progress=False, log=lines.append)  # the next run retries it
    assert [row["job_key"] for row in ran] == [broken]


def test_estimates_come_from_measured_rungs(smoke):
    _, values, _ = smoke
    rungs = budget.build_ladder(values, "smoke")
    ae_cpu = [r for r in rungs if r.job.method == "AE" and r.width_label == "cpu" and r.job.seed == 0]
    ae_wide = [r for r in rungs if r.job.method == "AE" and r.width_label == "wide" and r.job.seed == 0]
    est = values["detectors"]["AE"]["est_seconds"]
    wide_cost = values["detectors"]["AE"].get("wide_cost", values["wide_cost"])
    empty = pd.DataFrame()
    assert [budget.estimate_seconds(r, empty, values) for r in ae_cpu] == [est * 1, est * 2]
    assert budget.estimate_seconds(ae_wide[0], empty, values) == pytest.approx(est * wide_cost)
    # measured: 3 s fixed + 0.5 s per step at the cpu width -> the wide rungs scale it by wide_cost
    done = pd.DataFrame([dict(method="AE", width_label="cpu", data="synthetic-32", budget_value=v,
                              job_wall_seconds=3 + 0.5 * v) for v in (4, 8)])
    assert budget.estimate_seconds(ae_cpu[1], done, values) == pytest.approx(3 + 0.5 * ae_cpu[1].budget_value)
    assert budget.estimate_seconds(ae_wide[1], done, values) == pytest.approx(
        wide_cost * (3 + 0.5 * ae_wide[1].budget_value))
    plan = budget.cheapest_first(rungs, done, values)
    assert (np.diff([s for _, s in plan]) > -1e-9).all()
    assert np.isfinite([s for _, s in plan]).all()


def test_dry_run_lists_the_plan_with_hours(tmp_path, capsys):
    assert budget.main(["--profile", "smoke", "--dry-run", "--rows", str(tmp_path / "rows.csv")]) == 0
    out = capsys.readouterr().out
    assert "0 of 12 rungs done" in out and "AE [wide] x2 (steps=8) synthetic-32 seed 1" in out
    assert "hours of one core" in out and not (tmp_path / "rows.csv").exists()
