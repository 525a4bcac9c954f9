"""The figure rules (`adlib.plots.figure_problems`) and the library's figures that a student reads: scores in % as
the tables show them, legends that name every series and cover no data, text no smaller than MIN_FONT_PT, and
series that a legend can tell apart."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from adlib import plots  # noqa: E402
from adlib.plots import figure_problems  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _named(ax, title="t", xlabel="x", ylabel="y"):
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)


def test_rules_catch_small_text():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    _named(ax)
    ax.legend(fontsize=7)
    assert any("under 8 pt" in p for p in figure_problems(fig))
    ax.legend(fontsize=9)
    ax.tick_params(labelsize=6)
    assert any("under 8 pt" in p for p in figure_problems(fig))
    ax.tick_params(labelsize=10)
    assert figure_problems(fig) == []


def test_rules_catch_scores_without_percent_and_fractions_on_a_percent_axis():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [0.6, 0.7, 0.8])
    _named(ax, ylabel="test AUROC")
    assert any("without its unit" in p for p in figure_problems(fig))
    ax.set_ylabel("test AUROC (%)")
    assert any("spans fractions" in p for p in figure_problems(fig))
    ax.lines[0].set_ydata([60, 70, 80])
    ax.relim()
    ax.autoscale_view()
    assert figure_problems(fig) == []
    ax.set_title("a curve (AUROC 0.370)")
    assert any("fractions in the text" in p for p in figure_problems(fig))


def test_rules_catch_a_legend_on_the_data_and_series_it_does_not_name():
    fig, ax = plt.subplots()
    x = np.linspace(0, 1, 200)
    ax.plot(x, 1 - x, label="falling")  # runs through the lower left ...
    ax.plot(x, 0.05 + 0 * x, label="flat low")  # ... and along the bottom
    _named(ax)
    ax.legend(loc="lower left")
    assert any("legend covers" in p for p in figure_problems(fig))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    assert figure_problems(fig) == []
    ax.scatter([0.5, 0.6], [0.5, 0.6], color="k")  # seed dots without a legend entry
    ax.axhline(0.5, color="grey", ls="--")  # a chance line without one
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    assert any("2 unlabelled" in p for p in figure_problems(fig))


def test_rules_catch_legend_entries_that_look_the_same():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [1, 2], "o-", color="C0", label="AE")
    ax.plot([1, 2], [2, 3], "o--", color="C0", label="EGBAD")  # the old cost figure: C0 again, only dashed
    _named(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    assert any("look the same" in p for p in figure_problems(fig))


def test_series_styles_are_distinct_for_many_detectors():
    names = [f"m{i}" for i in range(20)]
    styles = plots.series_styles(names)
    looks = {(s["color"], s["marker"]) for s in styles.values()}
    assert len(looks) == 20  # colour and marker together: no two alike even without the dashes
    assert {s["ls"] for s in styles.values()} == {"-", "--"}


def test_roc_curves_show_auroc_in_percent_and_keep_the_legend_off_the_curves():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(50), np.ones(50)]
    scores = np.r_[rng.normal(0, 1, 50), rng.normal(1, 1, 50)]
    fig = plots.roc_curves({"good": (labels, scores), "inverted": (labels, -scores), "noise": (labels, rng.random(100))})
    assert figure_problems(fig) == []
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("%" in t and "AUROC" in t for t in texts) and not any("AUROC 0." in t for t in texts)
    assert "%" in fig.axes[0].get_ylabel() and fig.axes[0].get_ylim()[1] > 50


def test_image_grid_titles_every_row_when_given_per_row():
    import torch

    images = torch.randint(0, 255, (3, 1, 8, 8), dtype=torch.uint8)
    fig = plots.image_grid({"normal": images, "anomalous": images},
                           titles={"normal": ["grade 0"] * 3, "anomalous": ["grade 2", "grade 3", "grade 4"]})
    fig.suptitle("samples")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["grade 0"] * 3 and titles[3:] == ["grade 2", "grade 3", "grade 4"]
    assert figure_problems(fig) == []


def test_training_curves_put_a_validation_auroc_in_percent():
    from adlib.training import TrainHistory

    history = TrainHistory(steps=list(range(1, 11)), losses={"ae": list(np.linspace(1, 0.5, 10))},
                           monitor_name="val AUROC", eval_steps=[5, 10], monitor_values=[0.6, 0.7], best_step=10,
                           status="completed")
    fig = plots.training_curves(history)
    twin = [ax for ax in fig.axes if "AUROC" in ax.get_ylabel()][0]
    assert "%" in twin.get_ylabel() and max(twin.lines[0].get_ydata()) == pytest.approx(70)
    assert figure_problems(fig) == []


def test_the_study_figures_follow_the_rules():
    """Each paper notebook's own figures, on made-up numbers: % axes, a legend that names every series."""
    from adlib.methods.adversarial_ae.experiments import cifar_bar_chart
    from adlib.methods.dpa.experiments import selection_figure
    from adlib.methods.maddr.experiments import auroc_bars
    from adlib.methods.salad.experiments import ablation_bars, bezier_figure

    rng = np.random.default_rng(0)
    ablation = pd.DataFrame([dict(variant=v, seed=s, AUROC=0.6 + 0.1 * i + rng.normal(0, 0.02))
                             for i, v in enumerate(["a", "b", "c"]) for s in range(3)])
    paper = pd.DataFrame([dict(method=v, metric="AUC", fraction=0.8) for v in ["a", "b", "c"]])
    fig = ablation_bars(ablation, paper, "Table V", ["a", "b", "c"])
    assert any(type(c).__name__ == "ErrorbarContainer" for c in fig.axes[0].containers)  # 3 seeds: their spread
    cifar = pd.DataFrame([dict(method=m, **{"class": c}, seed=s, AUROC=rng.uniform(0.3, 0.8))
                          for m in ("GANomaly", "CCB-AAE") for c in ("cat", "dog") for s in range(2)])
    maddr = pd.DataFrame([dict(method=m, dataset=d, seed=s, AUROC=rng.uniform(0.4, 0.9))
                          for m in ("AE", "MADDR + AE") for d in ("breast", "retina") for s in range(2)])
    curves = pd.DataFrame([dict(n_anomalies=n, repeat=r, test_AUROC=rng.uniform(0.6, 0.7))
                           for n in (1, 4, 16) for r in range(3)])
    figures = {"ablation": fig, "bezier": bezier_figure(),
               "cifar": cifar_bar_chart(cifar, pd.DataFrame(columns=["method", "dataset", "value"]), "CIFAR-10"),
               "maddr": auroc_bars(maddr, ["AE", "MADDR + AE"], "AUROC"),
               "selection": selection_figure(curves, [0.6, 0.75], "Fig. 5")}
    for name, f in figures.items():
        assert figure_problems(f) == [], f"{name}: {figure_problems(f)}"


def test_budget_figures_tell_every_detector_apart():
    from adlib import budget_plots as bp

    methods = [m for members in bp.FAMILIES.values() for m in members]
    rows = pd.DataFrame([dict(method=m, dataset="pneumonia", width_label="cpu", budget_multiplier=k, seed=0,
                              status="completed", val_AUROC=0.5 + 0.01 * i, AUROC=0.5 + 0.01 * i,
                              AUROC_ci_low=0.45, AUROC_ci_high=0.6, job_cpu_seconds=10.0 * k * (i + 1), seeds=1)
                         for i, m in enumerate(methods) for k in (1, 2)])
    curves = rows
    paper = pd.DataFrame([dict(method=m, paper=80.0 + i) for i, m in enumerate(("SALAD", "CutPaste", "WSCXR"))])
    original = bp.curve_frame, bp.usable
    try:  # the figures read curve_frame(usable(rows)); feed them the rows as that frame
        bp.usable = lambda r, dataset, width=None: r
        bp.curve_frame = lambda r: r
        cost, curves_fig = bp.cost_figure(curves), bp.curves_figure(curves, paper)
    finally:
        bp.curve_frame, bp.usable = original
    for f in (cost, curves_fig):
        assert figure_problems(f) == [], figure_problems(f)
    legend = cost.axes[0].get_legend()
    assert len(legend.get_texts()) == len(methods)
    stars = [line for line in curves_fig.axes[5].lines if line.get_marker() == "*" and len(line.get_xdata())]
    assert len({float(line.get_xdata()[0]) for line in stars}) == len(stars) == 3  # no star hides another
