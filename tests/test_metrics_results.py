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
    assert select_threshold_on_validation(val, rule="f1max") == pytest.approx(0.25)
    # Youden: t=0.7 gives SEN 2/3 + SPE 1 (J = 2/3); t=0.25 gives SEN 1 + SPE 2/3 (J = 2/3): a tie, the higher wins
    assert select_threshold_on_validation(val) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="youden"):
        select_threshold_on_validation(val, rule="accuracy")


# 2 normals, 6 anomalous (75 % anomalous, like PneumoniaMNIST's validation split), by hand, predicting score >= t:
#   t     TP FP   F1      SEN  SPE   J = SEN + SPE - 1
#   0.1    6  2  12/14   1    0     0      <- F1 maximum: every image anomalous
#   0.2    5  2  10/13   5/6  0    -1/6
#   0.3    5  1  10/12   5/6  1/2   1/3
#   0.35   4  1   8/11   4/6  1/2   1/6
#   0.4    4  0   8/10   4/6  1     2/3    <- Youden maximum
#   0.5    3  0   6/9    1/2  1     1/2
#   0.7    2  0   4/8    1/3  1     1/3
#   0.8    1  0   2/7    1/6  1     1/6
COLLAPSE_SCORES = np.array([0.2, 0.35, 0.1, 0.3, 0.4, 0.5, 0.7, 0.8])
COLLAPSE_LABELS = np.array([0, 0, 1, 1, 1, 1, 1, 1])


def test_f1max_collapses_to_all_anomalous_where_youden_does_not():
    val = ScoredSplit(COLLAPSE_SCORES, COLLAPSE_LABELS, "val")
    assert select_threshold_on_validation(val, rule="f1max") == pytest.approx(0.1)
    assert select_threshold_on_validation(val, rule="youden") == pytest.approx(0.4)
    m = evaluate_scores(val, ScoredSplit(COLLAPSE_SCORES, COLLAPSE_LABELS, "test"))
    assert m["threshold_rule"] == "youden-val" and m["threshold"] == pytest.approx(0.4)
    assert (m["SEN"], m["SPE"], m["ACC"], m["F1"]) == pytest.approx((4 / 6, 1.0, 6 / 8, 0.8))
    assert m["degenerate"] is False
    assert m["threshold_f1max"] == pytest.approx(0.1)
    assert (m["SEN_f1max"], m["SPE_f1max"], m["ACC_f1max"], m["F1_f1max"]) == pytest.approx((1.0, 0.0, 6 / 8, 12 / 14))
    assert m["degenerate_f1max"] is True


def test_perfectly_separated_scores_give_a_perfect_threshold():
    val = ScoredSplit(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), np.array([0, 0, 0, 1, 1, 1]), "val")
    test = ScoredSplit(np.array([0.05, 0.25, 0.75, 0.95]), np.array([0, 0, 1, 1]), "test")
    m = evaluate_scores(val, test)
    assert m["threshold"] == pytest.approx(0.7) and m["threshold_f1max"] == pytest.approx(0.7)
    assert (m["F1"], m["ACC"], m["SEN"], m["SPE"], m["AUROC"]) == pytest.approx((1, 1, 1, 1, 1))
    assert not m["degenerate"] and not m["degenerate_f1max"]


def test_youden_ties_go_to_the_highest_threshold_and_tied_scores_to_the_same_side():
    # t=0.7: SEN 2/6 + SPE 1 and t=0.3: SEN 5/6 + SPE 1/2 both give J = 1/3 (the maximum): the higher threshold wins
    val = ScoredSplit(np.array([0.2, 0.6, 0.1, 0.3, 0.4, 0.5, 0.7, 0.8]), np.array([0, 0, 1, 1, 1, 1, 1, 1]), "val")
    assert select_threshold_on_validation(val) == pytest.approx(0.7)
    # a normal and two anomalous images share the score 0.5; t=0.5 (J = 1 + 1/2 - 1) calls all three anomalous,
    # t=0.9 gives J = 1/3 + 1 - 1 = 1/3
    tied = ScoredSplit(np.array([0.1, 0.5, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1, 1]), "val")
    assert select_threshold_on_validation(tied) == pytest.approx(0.5)
    assert metrics_at_threshold(tied, 0.5) == pytest.approx({"F1": 6 / 7, "ACC": 4 / 5, "SEN": 1.0, "SPE": 0.5})


def test_an_inverted_detector_gets_a_degenerate_youden_threshold():
    # normals score higher than anomalies: every J <= 0; the best (J = 0) is calling every image anomalous
    val = ScoredSplit(np.array([0.8, 0.9, 0.1, 0.2]), np.array([0, 0, 1, 1]), "val")
    m = evaluate_scores(val, ScoredSplit(np.array([0.7, 0.95, 0.15, 0.3]), np.array([0, 0, 1, 1]), "test"))
    assert m["threshold"] == pytest.approx(0.1) and (m["SEN"], m["SPE"]) == (1.0, 0.0)
    assert m["degenerate"] is True and m["AUROC"] == 0.0


def test_degenerate_cut_is_97_5_percent_of_test_images_in_one_class():
    from adlib.metrics import DEGENERATE_SHARE, is_degenerate

    assert DEGENERATE_SHARE == 0.975
    val = ScoredSplit(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), "val")  # Youden threshold 0.8
    labels = np.repeat([0, 1], 20)
    for n_above, expected in [(39, True), (38, False), (1, True), (2, False)]:  # 39/40 = 97.5 %, 38/40 = 95 %
        scores = np.where(np.arange(40) < n_above, 0.85, 0.5)
        test = ScoredSplit(scores, labels, "test")
        assert is_degenerate(test, 0.8) is expected
        assert evaluate_scores(val, test)["degenerate"] is expected


def test_medmnist_exact_auroc_uses_only_the_marked_test_images():
    val = ScoredSplit(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), "val")
    # images 0 and 1 are not in MedMNIST's test set; without them the ranking is perfect
    test = ScoredSplit(np.array([0.95, 0.9, 0.1, 0.2, 0.6, 0.7]), np.array([0, 0, 0, 0, 1, 1]), "test",
                       medmnist_exact=np.array([0, 0, 1, 1, 1, 1], bool))
    m = evaluate_scores(val, test)
    assert m["AUROC"] == pytest.approx(4 / 8)  # pairs (anomalous > normal): 4 of 8
    assert m["AUROC_medmnist_exact"] == pytest.approx(1.0) and m["n_test_medmnist_exact"] == 4
    plain = evaluate_scores(val, ScoredSplit(test.scores, test.labels, "test"))
    assert "AUROC_medmnist_exact" not in plain and "n_test_medmnist_exact" not in plain
    one_class = ScoredSplit(test.scores, test.labels, "test", medmnist_exact=np.array([1, 1, 1, 1, 0, 0], bool))
    assert np.isnan(evaluate_scores(val, one_class)["AUROC_medmnist_exact"])
    with pytest.raises(ValueError, match="medmnist_exact"):
        ScoredSplit(test.scores, test.labels, "test", medmnist_exact=np.ones(3, bool))


def test_scored_split_of_an_imageset_carries_its_medmnist_exact_mask():
    import torch

    from adlib.data import ImageSet

    images = ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), [0, 0, 1, 1],
                      subsets={"medmnist_exact": [True, False, True, True]}).subset([3, 1, 0])
    scored = ScoredSplit.of(np.array([0.3, 0.2, 0.1]), images)
    np.testing.assert_array_equal(scored.medmnist_exact, [True, False, True])
    unmarked = ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), [0, 0, 1, 1])
    assert ScoredSplit.of(np.zeros(4), unmarked).medmnist_exact is None


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
    assert mean_pm_std(s, ["AUROC"]).iloc[1]["AUROC"] == "50.0 (1 seed)"  # not "50.0 ± 0.0"
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


def test_publish_drops_injected_parameters_and_refuses_errors(tmp_path, monkeypatch):
    import nbformat

    import adlib.publish

    monkeypatch.setattr(adlib.publish, "git_commit", lambda: "abcdef123456")

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
    assert out.metadata["adlib"]["executed_with"] == {"profile": "cpu", "git_commit": "abcdef123456"}

    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    nbformat.write(nb, executed)
    with pytest.raises(SystemExit, match="error output"):
        publish(executed, tmp_path)

    nb.cells[2].outputs = []
    nbformat.write(nb, executed)
    monkeypatch.setattr(adlib.publish, "git_commit", lambda: "abcdef123456+dirty")
    with pytest.raises(SystemExit, match="uncommitted code"):  # outputs of uncommitted code are never published
        publish(executed, tmp_path)

    # the commit the run started on wins over HEAD at publish time (a commit made during a long run)
    out = nbformat.read(publish(executed, tmp_path, commit="0123456789ab"), as_version=4)
    assert out.metadata["adlib"]["executed_with"]["git_commit"] == "0123456789ab"
    for bad in ("0123456789ab+dirty", "unknown"):
        with pytest.raises(SystemExit, match="uncommitted code"):
            publish(executed, tmp_path, commit=bad)


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


def test_summary_keeps_threshold_provenance_and_marks_a_group_with_any_degenerate_seed():
    from adlib.results import summarize

    rows = pd.DataFrame({"dataset": "d", "method": ["a", "a", "a", "b", "b"], "variant": "default",
                         "seed": [0, 1, 2, 0, 1], "AUROC": [0.6, 0.7, 0.8, 0.9, 0.9], "F1": [0.5, 0.6, 0.7, 0.8, 0.8],
                         "threshold_rule": "youden-val", "degenerate": [False, True, False, False, False]})
    s = summarize(rows).set_index("method")
    assert "degenerate_mean" not in s.columns and "threshold_rule_mean" not in s.columns
    assert s.loc["a", "degenerate"] and not s.loc["b", "degenerate"]
    assert s.loc["a", "threshold_rule"] == "youden-val" and s.loc["a", "F1_mean"] == pytest.approx(0.6)
    shown = mean_pm_std(s.reset_index(), ["F1"]).set_index("method")
    assert bool(shown.loc["a", "degenerate"]) and shown.loc["a", "threshold_rule"] == "youden-val"

    # as read back from a CSV where older rows have no flag: blanks count as not degenerate
    mixed = rows.assign(degenerate=[np.nan, np.nan, "False", "False", "True"])
    s2 = summarize(mixed).set_index("method")
    assert not s2.loc["a", "degenerate"] and s2.loc["b", "degenerate"]


def test_score_histogram_legend_names_each_artist_correctly():
    import matplotlib.pyplot as plt

    from adlib.plots import score_histogram

    labels = np.repeat([0, 1], 50)
    scores = np.concatenate([np.linspace(0.0, 1.0, 50), np.linspace(5.0, 6.0, 50)])  # normals low, anomalies high
    fig = score_histogram(labels, scores, threshold=3.0)
    ax = fig.axes[0]
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["normal", "anomalous", "threshold (chosen on validation)"]
    handles = dict(zip(texts, legend.legend_handles))
    artists = {a.get_label(): a for a in [*ax.patches, *ax.lines] if not a.get_label().startswith("_")}
    # the dashed line at the threshold is the one called "threshold", in the legend's colour and style
    line = artists["threshold (chosen on validation)"]
    assert list(line.get_xdata()) == [3.0, 3.0] and line.get_linestyle() == "--"
    assert handles["threshold (chosen on validation)"].get_linestyle() == "--"
    # each histogram lies where its class's scores are, and the legend shows it in the histogram's colour
    for name, (low, high) in {"normal": (0.0, 1.0), "anomalous": (5.0, 6.0)}.items():
        outline = artists[name].get_path().vertices
        raised = outline[outline[:, 1] > 0, 0]  # x of the outline where the histogram has height
        assert low - 0.2 <= raised.min() and raised.max() <= high + 0.2
        assert np.allclose(handles[name].get_facecolor(), artists[name].get_facecolor())
    plt.close(fig)


# ----- figure rules: title, axis labels, legend for several series, colour bar for a colour scale -----------------
def test_figure_rules_catch_what_a_reader_would_miss():
    import matplotlib.pyplot as plt

    from adlib.plots import figure_problems

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    problems = figure_problems(fig)
    assert "no title" in problems and "axes 0: no x label" in problems and any("no legend" in p for p in problems)
    ax.set(title="t", xlabel="x", ylabel="y")
    ax.legend()
    assert figure_problems(fig) == []
    fig2, ax2 = plt.subplots()
    ax2.imshow(np.random.default_rng(0).random((8, 8)), cmap="inferno")
    ax2.set_title("map")
    assert any("colour bar" in p for p in figure_problems(fig2))
    fig2.colorbar(ax2.images[0], ax=ax2)
    assert figure_problems(fig2) == []
    plt.close("all")


def test_the_library_figures_follow_the_rules():
    import matplotlib.pyplot as plt
    import torch

    from adlib import plots
    from adlib.training import TrainHistory

    rng = np.random.default_rng(0)
    labels, scores = np.r_[np.zeros(30), np.ones(30)], np.r_[rng.normal(0, 1, 30), rng.normal(1, 1, 30)]
    images = torch.randint(0, 255, (4, 1, 16, 16), dtype=torch.uint8)
    maps = rng.random((4, 16, 16))
    grid = plots.image_grid({"input": images, "residual²": maps}, heat_rows=("residual²",))
    grid.suptitle("examples")
    history = TrainHistory(steps=list(range(1, 11)), losses={"g": list(rng.random(10)), "d": list(rng.random(10))},
                           monitor_name="val AUROC", eval_steps=[5, 10], monitor_values=[0.6, 0.7], best_step=10,
                           status="completed")
    figures = {"roc": plots.roc_curves({"a": (labels, scores), "b": (labels, -scores)}),
               "histogram": plots.score_histogram(labels, scores, threshold=0.5),
               "overlay": plots.overlay_maps(images, maps, titles=["a", "b", "c", "d"]),
               "grid": grid, "training": plots.training_curves(history),
               "embedding": plots.embedding_scatter(rng.random((40, 5)), labels[:40], method="tsne")}
    for name, fig in figures.items():
        assert plots.figure_problems(fig) == [], f"{name}: {plots.figure_problems(fig)}"
    with pytest.raises(ValueError, match="not rows of the grid"):
        plots.image_grid({"input": images, "anomaly map": maps}, heat_rows=("residual²",))
    plt.close("all")


def test_detail_diagnostic_sees_a_score_that_is_only_detail():
    import torch

    from adlib import plots
    from adlib.data.imageset import ImageSet
    from adlib.shift import detail_diagnostic, fine_detail

    rng = np.random.default_rng(0)
    smooth = rng.integers(120, 136, (20, 1, 16, 16))  # little detail: "anomalous" (hazy) images
    busy = rng.integers(0, 255, (20, 1, 16, 16))  # much detail: normal images
    images = ImageSet(torch.as_tensor(np.r_[busy, smooth], dtype=torch.uint8), np.r_[np.zeros(20), np.ones(20)])
    score = fine_detail(images)  # a "reconstruction error" that is detail and nothing else
    d = detail_diagnostic(score, images)
    assert d["detail_AUROC"] == d["score_AUROC"] == 0.0 and d["spearman_score_detail"] == pytest.approx(1.0)
    assert plots.figure_problems(plots.score_vs_detail(score, fine_detail(images), images.labels)) == []


def test_linear_pixel_error_is_a_pixel_error_fitted_on_train_only():
    """The cheap pixel-error reference of notebooks 05, 07 and 08 (a linear autoencoder): zero for an image in
    the span of the training normals, large for one far from it, and blind to the images it scores."""
    import torch

    from adlib.data.imageset import ImageSet
    from adlib.shift import detail_diagnostic, linear_pixel_error

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (2, 1, 8, 8)).astype(float)
    train = ImageSet(torch.as_tensor(np.stack([base[i % 2] for i in range(10)]), dtype=torch.uint8), np.zeros(10))
    far = rng.integers(0, 255, (3, 1, 8, 8))
    test = ImageSet(torch.as_tensor(np.r_[base, far], dtype=torch.uint8), np.r_[np.zeros(2), np.ones(3)])
    score = linear_pixel_error(train, test, components=2)
    assert score[:2] == pytest.approx([0, 0], abs=1e-9) and (score[2:] > 1e-3).all()
    again = linear_pixel_error(train, test.subset(np.array([4, 3, 2, 1, 0])), components=2)
    assert again[::-1] == pytest.approx(score)  # an image's score does not depend on the others scored
    assert detail_diagnostic(score, test)["score_AUROC"] == 1.0


def test_readme_wall_time_table_names_the_commit_each_notebook_ran_at(tmp_path):
    import nbformat

    from adlib.report import readme_wall_time_block

    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"duration": 61.0, "start_time": "2026-12-03T16:00:00"}
    nb.metadata["adlib"] = {"executed_with": {"profile": "cpu", "git_commit": "abcdef123456"}}
    nbformat.write(nb, tmp_path / "00_x.ipynb")
    del nb.metadata["adlib"]
    nbformat.write(nb, tmp_path / "01_y.ipynb")
    block = readme_wall_time_block(tmp_path)
    assert "| 00_x | cpu |" in block and "`abcdef123456`" in block
    assert "| 01_y |" in block and "not recorded" in block
