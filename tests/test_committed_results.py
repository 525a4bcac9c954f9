"""The committed result tables, read as a reviewer would: every pneumonia row carries both test AUROCs, no row
counts a degenerate threshold as a result, and the paper comparison marks degenerate and below-chance rows."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULT_TABLES = sorted(p for p in (ROOT / "results").glob("[0-9][0-9]_*.csv"))
THRESHOLD_METRICS = ("F1", "ACC", "SEN", "SPE")


def _rows_with_test_auroc(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    if not {"AUROC", "dataset"} <= set(frame.columns):
        return pd.DataFrame(columns=["AUROC", "dataset"])
    return frame[frame["AUROC"].notna()]


@pytest.mark.parametrize("path", RESULT_TABLES, ids=lambda p: p.stem)
def test_every_pneumonia_row_has_both_test_aurocs(path):
    rows = _rows_with_test_auroc(path)
    pneumonia = rows[rows["dataset"].astype(str).str.startswith("pneumonia")]
    if pneumonia.empty:
        pytest.skip("no pneumonia rows with a test AUROC")
    assert "AUROC_medmnist_exact" in pneumonia.columns, f"{path.name}: no AUROC_medmnist_exact column"
    missing = pneumonia[pneumonia["AUROC_medmnist_exact"].isna()]
    assert missing.empty, f"{path.name}: {len(missing)} pneumonia rows without the MedMNIST-exact test AUROC"


@pytest.mark.parametrize("path", RESULT_TABLES, ids=lambda p: p.stem)
def test_rows_with_threshold_metrics_record_the_rule_and_the_degenerate_flag(path):
    rows = _rows_with_test_auroc(path)
    if rows.empty or "F1" not in rows.columns:
        pytest.skip("no threshold metrics here")
    with_f1 = rows[rows["F1"].notna()]
    assert {"threshold_rule", "degenerate"} <= set(with_f1.columns), path.name
    assert with_f1["threshold_rule"].notna().all(), f"{path.name}: a row with F1 but no threshold rule"
    assert with_f1["degenerate"].notna().all(), f"{path.name}: a row with F1 but no degenerate flag"


def test_paper_comparison_never_counts_a_degenerate_threshold_and_marks_chance():
    vs = pd.read_csv(ROOT / "results" / "07_paper_vs_ours.csv")
    threshold_rows = vs[vs["metric"].isin(THRESHOLD_METRICS)]
    degenerate = threshold_rows[threshold_rows["degenerate_threshold"].astype(bool)]
    assert degenerate["ours"].isna().all() and degenerate["difference"].isna().all(), \
        "a degenerate threshold's F1/ACC/SEN/SPE is compared with a paper number"
    if len(degenerate):
        assert degenerate["ours_degenerate_threshold_value"].notna().all(), "the degenerate value is not kept"
    auroc = vs[(vs["metric"] == "AUROC") & vs["ours"].notna()]
    assert auroc["auroc_vs_chance"].notna().all(), "an AUROC of ours without its chance verdict"
    below = auroc[auroc["ours"] < 50]
    assert (below["auroc_vs_chance"] != "above chance").all(), "an AUROC under 50 % called above chance"
    assert set(auroc["auroc_vs_chance"]) <= {"above chance", "at chance", "below chance"}
