"""Metrics against hand-computed values, validation-only thresholds, tidy result tables."""
import numpy as np
import pandas as pd
import pytest

from adlib.metrics import (ScoredSplit, auroc, average_precision, evaluate_scores, metrics_at_threshold, pixel_auroc,
                           select_threshold_on_validation)
from adlib.paper_numbers import paper_numbers, side_by_side
from adlib.results import ResultsTable, mean_pm_std

LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def test_auroc_and_ap_match_hand_computation():
    # pairs (anomalous > normal): (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert auroc(LABELS, SCORES) == pytest.approx(0.75)
    # ranked 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = 0.5*1 + 0.5*(2/3)
    assert average_precision(LABELS, SCORES) == pytest.approx(0.5 + 1 / 3)


def test_metrics_at_threshold_match_hand_computation():
    split = ScoredSplit(np.array([0.1, 0.5, 0.6, 0.2, 0.9]), np.array([0, 0, 1, 1, 1]), "test")
    m = metrics_at_threshold(split, 0.5)  # predicted anomalous: 0.5, 0.6, 0.9 -> TP 2, FP 1, FN 1, TN 1
    assert m["ACC"] == pytest.approx(3 / 5)
    assert m["SEN"] == pytest.approx(2 / 3)
    assert m["SPE"] == pytest.approx(1 / 2)
    assert m["F1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_threshold_maximises_validation_f1():
    val = ScoredSplit(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.25]), np.array([0, 0, 0, 1, 1, 1]), "val")
    # candidates: t=0.7 gives F1 = 2*1*(2/3)/(1+2/3) = 0.8; t=0.25 gives P=3/4,R=1 -> 6/7 = 0.857 (best)
    assert select_threshold_on_validation(val) == pytest.approx(0.25)


def test_threshold_cannot_use_test_data():
    test = ScoredSplit(SCORES, LABELS, "test")
    with pytest.raises(ValueError, match="validation"):
        select_threshold_on_validation(test)
    with pytest.raises(TypeError):
        select_threshold_on_validation((SCORES, LABELS))


def test_test_split_cannot_influence_the_threshold():
    rng = np.random.default_rng(0)
    val = ScoredSplit(rng.normal(size=50) + np.repeat([0, 1.5], 25), np.repeat([0, 1], 25), "val")
    thresholds = set()
    for seed in range(5):  # wildly different test splits
        r = np.random.default_rng(seed + 10)
        test = ScoredSplit(r.normal(size=80) * (seed + 1) + seed, r.integers(0, 2, 80), "test")
        thresholds.add(evaluate_scores(val, test)["threshold"])
    assert thresholds == {select_threshold_on_validation(val)}


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        ScoredSplit(np.array([0.1, np.nan]), np.array([0, 1]), "val")


def test_pixel_auroc():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 1, 1] = True
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 1] = 1.0
    assert pixel_auroc(masks, maps) == pytest.approx(1.0)
    assert pixel_auroc(masks, -maps) == pytest.approx(0.0)


def test_results_summary_mean_and_std(scratch_outputs):
    table = ResultsTable("unit")
    for seed, value in enumerate([0.6, 0.7, 0.8]):
        table.add(dataset="d", method="m", seed=seed, profile="smoke", image_size=28, weights="random", AUROC=value)
    table.add(dataset="d", method="other", seed=0, profile="smoke", image_size=28, weights="random", AUROC=0.5)
    s = table.summary()
    row = s[s.method == "m"].iloc[0]
    assert row["AUROC_mean"] == pytest.approx(0.7)
    assert row["AUROC_std"] == pytest.approx(np.std([0.6, 0.7, 0.8], ddof=1))
    assert row["n_seeds"] == 3
    assert mean_pm_std(s, ["AUROC"]).iloc[0]["AUROC"] == "70.0 ± 10.0"
    path = table.save()
    from adlib.paths import PROJECT_ROOT
    saved = pd.read_csv(PROJECT_ROOT / path)
    assert len(saved) == 4 and {"profile", "image_size", "weights", "data_source", "seed"} <= set(saved.columns)


def test_paper_numbers_side_by_side():
    printed = paper_numbers("WSCXR", "Table I")
    assert {"PatchCore", "WSCXR"} <= set(printed["method"])
    ours = pd.DataFrame({"method": ["PatchCore"], "variant": ["unsupervised"], "AUROC_mean": [0.8], "AUROC_std": [0.01]})
    joined = side_by_side(ours, "WSCXR", "Table I")
    row = joined[joined.method == "PatchCore"].iloc[0]
    assert row["paper AUROC"] == pytest.approx(90.4) and row["ours AUROC"] == pytest.approx(80.0)
    assert row["ours - paper"] == pytest.approx(-10.4)


def test_publish_drops_injected_parameters_and_refuses_errors(tmp_path):
    import nbformat

    from adlib.publish import publish

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('profile = "cpu"', metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(profile)")]
    nb.metadata["papermill"] = {"parameters": {"profile": "cpu"}}
    executed = tmp_path / "executed" / "00_x.ipynb"
    executed.parent.mkdir()
    nbformat.write(nb, executed)
    out = nbformat.read(publish(executed, tmp_path), as_version=4)
    assert [c.source for c in out.cells] == ["profile = None", "print(profile)"]
    assert out.metadata["adlib"]["executed_with"] == {"profile": "cpu"}

    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    nbformat.write(nb, executed)
    with pytest.raises(SystemExit, match="error output"):
        publish(executed, tmp_path)


def test_atomic_path_leaves_nothing_half_written(tmp_path):
    import os
    import stat

    from adlib.io import atomic_path, atomic_write_text

    target = tmp_path / "table.csv"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_torch_checkpoints_hash_the_same_for_the_same_tensors(tmp_path):
    import torch

    from adlib.io import atomic_torch_save, file_digest

    state = {"w": torch.arange(12.0).view(3, 4), "step": 7}
    atomic_torch_save(state, tmp_path / "a.pt")
    atomic_torch_save(state, tmp_path / "b.pt")  # another name, another temporary file
    assert file_digest(tmp_path / "a.pt") == file_digest(tmp_path / "b.pt")
    loaded = torch.load(tmp_path / "b.pt", weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]


def test_auroc_bootstrap_ci_over_test_images():
    from sklearn.metrics import roc_auc_score

    from adlib.metrics import _auroc_of_two_samples, auroc_bootstrap_ci

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(size=400) + 0.8 * y, 1)  # rounded: ties get average ranks, as in sklearn
    assert _auroc_of_two_samples(s[y == 1], s[y == 0]) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    lo, hi = auroc_bootstrap_ci(y, s)
    assert lo < roc_auc_score(y, s) < hi and 0.05 < hi - lo < 0.2
    assert auroc_bootstrap_ci(y, s) == (lo, hi)  # seeded
    assert auroc_bootstrap_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 1.0)  # separated in every resample
    assert all(np.isnan(auroc_bootstrap_ci([1, 1, 1], [0.1, 0.2, 0.3])))  # one class: no AUROC


def test_all_anomalous_baseline_is_the_metrics_of_flagging_everything():
    from adlib.metrics import all_anomalous_baseline

    labels = np.array([0, 1, 1, 1])
    split = ScoredSplit(np.ones(4), labels, "hand-made")
    flagged = metrics_at_threshold(split, 0.5)  # every score >= threshold: all anomalous
    assert all_anomalous_baseline(labels) == pytest.approx({"ACC": flagged["ACC"], "F1": flagged["F1"]})
    assert all_anomalous_baseline(labels) == pytest.approx({"ACC": 0.75, "F1": 6 / 7})
