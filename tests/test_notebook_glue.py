"""adlib.notebook: the reading tables a student sees and the budget row each paper notebook shows."""
from __future__ import annotations

import pandas as pd
import pytest

from adlib import notebook


def _rows():
    rows = []
    for seed, (a, b, f1) in enumerate([(0.30, 0.80, 0.77), (0.32, 0.84, 0.77), (0.31, 0.82, 0.77)]):
        rows.append(dict(method="AE", variant="default", dataset="pneumonia", seed=seed, AUROC=a, AUROC_ci_low=a - 0.04,
                         AUROC_ci_high=a + 0.04, F1=f1, SEN=1.0, SPE=0.0, degenerate=True, status="completed"))
        rows.append(dict(method="SALAD", variant="default", dataset="pneumonia", seed=seed, AUROC=b, AUROC_ci_low=b - 0.04,
                         AUROC_ci_high=b + 0.04, F1=0.8, SEN=0.8, SPE=0.7, degenerate=False, status="completed"))
    rows.append(dict(method="MemAE", variant="default", dataset="pneumonia", seed=0, AUROC=0.51, F1=0.6, SEN=0.6,
                     SPE=0.5, degenerate=False, status="completed"))
    return pd.DataFrame(rows)


def test_reading_table_marks_chance_degenerate_thresholds_and_single_seeds():
    paper = pd.DataFrame({"method": ["AE", "SALAD"], "paper": [59.9, 82.7]})
    table = notebook.reading_table(_rows(), paper=paper, extra_metrics=("F1",)).set_index("method")
    assert list(table.columns) == ["ours AUROC", "F1", "paper", "difference", "note"]
    assert table.loc["AE", "ours AUROC"] == "31.0 ± 1.0"
    assert table.loc["AE", "F1"] == "—"  # a constant prediction's F1 is not a result
    assert "below chance" in table.loc["AE", "note"]
    assert table.loc["SALAD", "note"] == ""
    assert table.loc["SALAD", "difference"] == pytest.approx(82.0 - 82.7)
    assert table.loc["MemAE", "ours AUROC"] == "51.0 (1 seed)"  # no "± 0.0" for one seed
    assert "at chance" in table.loc["MemAE", "note"]
    assert pd.isna(table.loc["MemAE", "paper"])


def test_reading_table_shows_the_medmnist_exact_auroc_and_failed_runs():
    rows = _rows().assign(AUROC_medmnist_exact=0.9)
    rows.loc[rows["method"] == "MemAE", ["AUROC", "status"]] = [float("nan"), "diverged (NaN loss)"]
    table = notebook.reading_table(rows).set_index("method")
    assert "MedMNIST-exact test 90.0" in table.loc["SALAD", "note"]
    assert table.loc["MemAE", "ours AUROC"] == "—" and "diverged" in table.loc["MemAE", "note"]


def test_best_budget_rows_choose_the_rung_on_validation_not_test():
    common = dict(method="AE", dataset="pneumonia", status="completed", width_label="cpu", budget_knob="steps")
    rows = pd.DataFrame([
        dict(common, budget_multiplier=1, budget_value=150, val_AUROC=0.50, AUROC=0.90),  # best on test
        dict(common, budget_multiplier=8, budget_value=1200, val_AUROC=0.60, AUROC=0.40),  # best on validation
        dict(common, budget_multiplier=16, budget_value=2400, val_AUROC=0.70, AUROC=0.99, status="diverged"),
        dict(common, method="VAE", budget_multiplier=1, budget_value=150, val_AUROC=0.9, AUROC=0.9),
    ])
    best = notebook.best_budget_rows("AE", "pneumonia", rows)
    assert best["budget_multiplier"].tolist() == [8]
    assert best["budget"].iloc[0] == "budget x8 (cpu width, steps 1200)"
    assert notebook.best_budget_rows("SALAD", "pneumonia", rows).empty


def test_show_table_names_the_csv_relative_to_the_repository_from_the_notebooks_folder(monkeypatch, capsys):
    """ResultsTable.save returns 'results/NN.csv'; notebooks run in notebooks/, where that path must not become
    'notebooks/results/NN.csv'. Both calls return nothing, so a call ending a cell is not displayed twice."""
    from adlib.paths import PROJECT_ROOT

    committed = sorted((PROJECT_ROOT / "results").glob("0*_*.csv"))[0]
    monkeypatch.chdir(PROJECT_ROOT / "notebooks")
    assert notebook.show_table(pd.DataFrame({"method": ["AE"]}), source=f"results/{committed.name}") is None
    out = capsys.readouterr().out
    assert f"`results/{committed.name}`" in out and "notebooks/results" not in out
    assert notebook.say("**plain** text") is None
    assert "**plain** text" in capsys.readouterr().out


def test_reading_table_says_why_a_threshold_metric_is_a_dash():
    """A '—' in the F1/ACC column is explained in the note (the Markdown above the table promises it)."""
    table = notebook.reading_table(_rows(), extra_metrics=("F1",)).set_index("method")
    assert table.loc["AE", "F1"] == "—" and "degenerate threshold" in table.loc["AE", "note"]
    assert "degenerate" not in table.loc["SALAD", "note"]


def test_show_table_reads_without_index_in_percent_without_minus_zero_and_keeps_values_on_one_line():
    frame = pd.DataFrame({"method": ["AE", "SALAD"], "val_AUROC": [0.632, 0.7701], "difference": [-0.4, -0.0],
                          "runs": [1920.0, 3.0], "ours AUROC": ["57.6 (1 seed)", "18.3 ± 13.1"],
                          "note": ["below chance: it ranks normal images above anomalous ones, " * 2, ""]},
                         index=[10, 20])
    view = notebook.reading_view(frame, percent=("val_AUROC",))
    html = view._repr_html_()
    assert ">10<" not in html and ">20<" not in html  # no index column
    assert "validation AUROC" in html and "val_AUROC" not in html  # headers read as words
    assert ">63.2<" in html and ">77.0<" in html  # fractions shown in %
    assert ">1920<" in html and "1920.0" not in html  # whole numbers without '.0'
    assert "-0.0" not in html and ">0.0<" in html and ">-0.4<" in html  # one precision per column
    cells = dict(zip(frame.columns, html.split("<tbody>")[1].split("</tr>")[0].split("<td ")[1:]))
    for column in ("method", "val_AUROC", "ours AUROC", "runs"):
        assert "nowrap" in cells[column], column  # values never wrap inside a cell
    assert "nowrap" not in cells["note"] and "white-space: normal" in cells["note"]  # running text wraps
    assert "nowrap" not in html.split("</thead>")[0]  # headers wrap between words, so wide tables fit the page
    text = repr(view)
    assert "57.6 (1 seed)" in text and "-0.0" not in text and "validation AUROC" in text


def test_show_table_prints_the_readable_table_outside_a_notebook(capsys):
    notebook.show_table(pd.DataFrame({"change": [-0.0, 1.25], "status": ["-0.0 (tie)", "ok"]}), caption="c")
    out = capsys.readouterr().out
    assert "**c**" in out and "-0.0" not in out and "0.0 (tie)" in out


def test_show_table_of_an_empty_frame_shows_its_headers():
    # notebook 07's smoke grid has no below-chance cell: its exercise showed an empty frame and crashed
    empty = pd.DataFrame({"method": pd.Series([], dtype=float), "AUROC": pd.Series([], dtype=float)})
    view = notebook.reading_view(empty, percent=("AUROC",))
    assert "<th" in view._repr_html_() and "(no rows)" in repr(view)


def test_percent_sentence_turns_a_metrics_dict_into_percent():
    assert notebook.percent_sentence({"AUROC": 0.632, "val_AUROC": 0.77}) == "AUROC 63.2 %, validation AUROC 77.0 %"


def test_one_precision_per_column_and_the_run_configuration_as_settings():
    view = notebook.reading_view(pd.DataFrame({"± (5 folds)": [3.9, 7.0], "loss": [0.0675, 0.927], "n": [3.0, 4.0]}))
    assert list(view.texts["± (5 folds)"]) == ["3.9", "7.0"]  # rounded upstream to 1 decimal: not 3.90
    assert list(view.texts["loss"]) == ["0.068", "0.927"] and list(view.texts["n"]) == ["3", "4"]

    class Cfg:
        notebook, profile = "06_x", type("P", (), {"name": "cpu"})()

        def as_dict(self):
            return {"ks": [2, 16], "backbones": [{"name": "Lite0", "arch": "lite0"}], "cutpaste": {"steps": 100},
                    "coreset": 0.25, "umap": True}

    table = notebook.config_table(Cfg()).set_index("setting")["value"]
    assert table["ks"] == "2, 16" and table["backbones"] == "Lite0: arch lite0" and table["cutpaste"] == "steps 100"
    assert table["coreset"] == "0.25" and table["umap"] == "yes"
