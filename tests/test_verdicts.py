"""Verdicts on hand-made result tables (the layout of results/*.csv): chance, ties, one seed, degenerate
thresholds, and claimed orders that reproduce, fail or stay undecided."""
import numpy as np
import pandas as pd
import pytest

from adlib import verdicts
from adlib.verdicts import chance_status, compare, order_claim, paper_gap, paper_gaps, stats


def rows(method: str, aurocs, half_width: float | None = 0.04, dataset: str = "pneumonia", **columns) -> pd.DataFrame:
    """One row per seed; each with a test-image CI of mean ± half_width (no CI columns when None)."""
    aurocs = np.asarray(aurocs, dtype=float)
    frame = pd.DataFrame({"dataset": dataset, "method": method, "variant": "default", "seed": range(len(aurocs)),
                          "AUROC": aurocs, **columns})
    if half_width is not None:
        frame["AUROC_ci_low"], frame["AUROC_ci_high"] = aurocs - half_width, aurocs + half_width
    return frame


def test_stats_of_seed_rows_and_of_a_summary_row_agree():
    from adlib.results import summarize

    seeds = rows("A", [0.70, 0.72, 0.74])
    s = stats(seeds)
    assert (s.name, s.n_seeds) == ("A", 3)
    assert s.mean == pytest.approx(0.72) and s.std == pytest.approx(0.02)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.68, 0.76))
    assert s.text() == "72.0 ± 2.0 (3 seeds; CI 68.0–76.0)"
    from_summary = stats(summarize(seeds))
    assert (from_summary.mean, from_summary.std, from_summary.n_seeds) == pytest.approx((s.mean, s.std, 3))
    assert (from_summary.ci_low, from_summary.ci_high) == pytest.approx((s.ci_low, s.ci_high))
    with pytest.raises(ValueError, match="select one method"):
        stats(pd.concat([seeds, rows("B", [0.6])]))
    with pytest.raises(ValueError, match="no result rows"):
        stats(seeds[seeds.method == "C"])


def test_chance_status_uses_the_ci_and_without_it_the_stated_margin():
    assert chance_status(rows("inverted", [0.28, 0.27, 0.30])) == "below chance"
    assert chance_status(rows("coin", [0.49, 0.52, 0.50])) == "at chance"  # CI covers 0.5
    assert chance_status(rows("good", [0.80, 0.82, 0.81])) == "above chance"
    assert chance_status(rows("one seed", [0.45]).iloc[0]) == "below chance"  # CI 0.41-0.49, a single row (Series)
    # no CI: within CHANCE_MARGIN (0.02) of 0.5 is at chance, beyond it is not
    assert verdicts.CHANCE_MARGIN == 0.02
    assert chance_status(rows("x", [0.515], half_width=None)) == "at chance"
    assert chance_status(rows("x", [0.53], half_width=None)) == "above chance"
    # a wide seed spread keeps a result at chance even when each seed's CI is narrow
    assert chance_status(rows("spread", [0.40, 0.70], half_width=0.01)) == "at chance"
    assert "**below chance**" in verdicts.chance_sentence(rows("AE", [0.28, 0.27, 0.30]))


def test_better_needs_the_difference_beyond_seed_spread_and_ci_apart():
    strong, weak = rows("A", [0.80, 0.81, 0.82]), rows("B", [0.60, 0.61, 0.62])
    c = compare(strong, weak)
    assert c.outcome == "better" and c.label == "A better" and c.difference == pytest.approx(0.2)
    reverse = compare(weak, strong)  # outcome is from the first argument's side; the label names the winner
    assert reverse.outcome == "worse" and reverse.label == "A better"
    assert "+20.0 points" in c.text and "do not overlap" in c.text


def test_tie_when_the_difference_is_within_seed_spread():
    noisy_a, noisy_b = rows("A", [0.70, 0.80, 0.90], half_width=0.01), rows("B", [0.65, 0.75, 0.85], half_width=0.01)
    c = compare(noisy_a, noisy_b)  # difference 0.05 < spread 0.1 + 0.1
    assert c.outcome == "tie" and c.label == "tie (within noise)" and "within the seeds' spread" in c.reason


def test_tie_when_the_cis_overlap_even_if_seeds_agree():
    a, b = rows("A", [0.75, 0.75, 0.75], half_width=0.05), rows("B", [0.70, 0.70, 0.70], half_width=0.05)
    c = compare(a, b)  # spread 0, difference 0.05, but CIs 0.70-0.80 and 0.65-0.75 overlap
    assert c.outcome == "tie" and "overlap" in c.reason


def test_one_seed_is_better_only_when_the_cis_do_not_overlap():
    a, b = rows("A", [0.80]), rows("B", [0.70])  # CIs 0.76-0.84 vs 0.66-0.74
    assert compare(a, b).outcome == "better"
    assert compare(rows("A", [0.74]), b).outcome == "tie"  # CIs 0.70-0.78 vs 0.66-0.74 overlap
    # one seed and no CI: the noise is unknown, whatever the difference
    c = compare(rows("A", [0.90], half_width=None), rows("B", [0.60], half_width=None))
    assert c.outcome == "tie" and "one seed" in c.reason
    # several seeds and no CI: the seed spread alone decides
    two_seeds = compare(rows("A", [0.80, 0.82], half_width=None), rows("B", [0.60, 0.62], half_width=None))
    assert two_seeds.outcome == "better"


def test_inverted_models_are_both_below_chance_not_ranked():
    c = compare(rows("AE", [0.28, 0.27, 0.30]), rows("MemAE", [0.20, 0.21, 0.19]))
    assert c.outcome == "both below chance" and c.label == "both below chance"
    # one below chance, one above: an ordinary comparison
    assert compare(rows("SALAD", [0.74, 0.75, 0.73]), rows("AE", [0.28, 0.27, 0.30])).outcome == "better"
    # one at chance, one below: neither detects, so neither is "better" (a below-chance model is not "worse")
    c = compare(rows("SSIM-AE", [0.46, 0.48, 0.50]), rows("AE", [0.28, 0.27, 0.30]))
    assert c.outcome == "not comparable" and c.label == "not comparable (neither above chance)"
    assert order_claim({"SSIM-AE": rows("SSIM-AE", [0.46, 0.48, 0.50]), "AE": rows("AE", [0.28, 0.27, 0.30])},
                       "SSIM-AE > AE").verdict == "undecided"


def test_degenerate_rows_are_never_ranked_on_threshold_metrics():
    a = rows("A", [0.80, 0.81], F1=[0.85, 0.86], SEN=[1.0, 1.0], SPE=[0.0, 0.0], degenerate=[True, False])
    b = rows("B", [0.60, 0.61], F1=[0.50, 0.51], SEN=[0.6, 0.6], SPE=[0.7, 0.7], degenerate=[False, False])
    c = compare(a, b, "F1")
    assert c.outcome == "not comparable" and "A" in c.reason and "degenerate" in c.label
    assert compare(a, b, "AUROC").outcome == "better"  # AUROC needs no threshold
    # rows written before the flag existed: SEN 1 / SPE 0 is recognised as degenerate
    old = rows("old", [0.3, 0.3], F1=[0.77, 0.77], SEN=[1.0, 1.0], SPE=[0.0, 0.0])
    assert stats(old, "F1").degenerate and compare(old, b.drop(columns="degenerate"), "F1").outcome == "not comparable"
    assert not stats(b.drop(columns="degenerate"), "F1").degenerate


def test_an_order_claim_that_reproduces_lists_every_step():
    table = pd.concat([rows("SALAD", [0.80, 0.81, 0.82]), rows("f-AnoGAN", [0.70, 0.71, 0.72]),
                       rows("AE", [0.60, 0.61, 0.62])])
    claim = order_claim(table, "SALAD > f-AnoGAN > AE")
    assert claim.verdict == "reproduces" and [s.outcome for s in claim.steps] == ["better", "better"]
    lines = claim.text.splitlines()
    assert lines[0] == "Claim **SALAD > f-AnoGAN > AE** (AUROC): **reproduces**."
    assert lines[1].startswith("- SALAD > f-AnoGAN: holds") and "81.0 ± 1.0" in lines[1] and "71.0 ± 1.0" in lines[1]
    assert lines[2].startswith("- f-AnoGAN > AE: holds")


def test_an_order_claim_fails_when_a_step_is_reversed_beyond_noise():
    by_method = {"SALAD": rows("SALAD", [0.74, 0.75, 0.73]), "f-AnoGAN": rows("f-AnoGAN", [0.46, 0.45, 0.47]),
                 "AE": rows("AE", [0.60, 0.61, 0.62])}
    claim = order_claim(by_method, ["SALAD", "f-AnoGAN", "AE"])
    assert claim.verdict == "fails"
    assert [s.outcome for s in claim.steps] == ["better", "worse"]
    assert "- f-AnoGAN > AE: reversed (AE better)" in claim.text


def test_an_order_claim_with_a_tie_and_no_reversal_is_undecided():
    table = pd.concat([rows("A", [0.80, 0.81, 0.82]), rows("B", [0.70, 0.71, 0.72]), rows("C", [0.70, 0.69, 0.71])])
    claim = order_claim(table, "A > B > C")
    assert claim.verdict == "undecided" and [s.outcome for s in claim.steps] == ["better", "tie"]
    assert "- B > C: open (tie (within noise))" in claim.text
    # both below chance is no evidence either way
    inverted = pd.concat([rows("D", [0.3, 0.31]), rows("E", [0.2, 0.21])])
    assert order_claim(inverted, "D > E").verdict == "undecided"
    with pytest.raises(KeyError, match="no rows for"):
        order_claim(table, "A > Z")


def test_paper_gap_in_points_with_marks():
    g = paper_gap(rows("SALAD", [0.73, 0.74, 0.75]), 82.65)
    assert g.gap_points == pytest.approx(74.0 - 82.65) and g.status == "below paper" and g.marks == ()
    assert "-8.7 points" in g.text
    within = paper_gap(rows("SALAD", [0.80, 0.82, 0.84]), 80.0)  # CI 76-86 holds 80
    assert within.status == "matches (within noise)" and within.counted
    above = paper_gap(rows("X", [0.90, 0.91]), 80.0)
    assert above.status == "above paper" and above.gap_points == pytest.approx(10.5)
    below_chance = paper_gap(rows("AE", [0.28, 0.27, 0.30]), 59.87)
    assert below_chance.marks == ("ours is below chance",) and "⚠ ours is below chance" in below_chance.text


def test_a_degenerate_row_never_beats_or_matches_a_paper_number():
    degenerate = rows("AE", [0.3, 0.3], F1=[0.77, 0.77], SEN=[1.0, 1.0], SPE=[0.0, 0.0], degenerate=[True, True])
    for printed in (50.0, 77.0, 90.0):  # below, equal to and above our F1
        g = paper_gap(degenerate, printed, "F1")
        assert g.status == "not counted (degenerate threshold)" and not g.counted
        assert any("degenerate threshold" in m for m in g.marks)
    assert paper_gap(degenerate, 25.0, "AUROC").counted  # its AUROC is still a result


def test_paper_gaps_matches_printed_rows_by_method_and_dataset():
    printed = pd.DataFrame({"paper": "P", "table": "T", "method": ["A", "B", "missing"], "variant": ["", "", ""],
                            "our_dataset": "pneumonia", "metric": "AUROC", "value": [80.0, 60.0, 50.0]})
    ours = pd.concat([rows("A", [0.80, 0.81]), rows("B", [0.40, 0.41]), rows("A", [0.1, 0.1], dataset="breast")])
    gaps = paper_gaps(ours, printed).set_index("method")
    assert list(gaps.index) == ["A", "B"]  # nothing of ours for "missing"; A's breast rows are not pneumonia
    assert gaps.loc["A", "status"] == "matches (within noise)" and gaps.loc["A", "ours"] == pytest.approx(80.5)
    assert gaps.loc["B", "gap"] == pytest.approx(-19.5) and gaps.loc["B", "marks"] == "ours is below chance"


def test_show_returns_markdown_and_prints_outside_a_notebook(capsys):
    c = compare(rows("A", [0.80, 0.81, 0.82]), rows("B", [0.60, 0.61, 0.62]))
    text = verdicts.show(c, "A plain Markdown line.")
    assert text == f"{c.text}\n\nA plain Markdown line." and c._repr_markdown_() == c.text
    assert capsys.readouterr().out.strip() == text


def test_chance_groups_and_the_below_chance_sentence():
    table = pd.concat([rows("AE", [0.28, 0.30]), rows("PatchCore", [0.80, 0.82]), rows("VAE", [0.49, 0.52]),
                       rows("AE", [0.70, 0.72], dataset="breast"), rows("broken", [np.nan])])
    groups = verdicts.chance_groups(table, by=["method", "dataset"])
    assert len(groups) == 4  # the diverged run is left out
    status = groups.set_index(["method", "dataset"])["chance"]
    assert status[("AE", "pneumonia")] == "below chance" and status[("AE", "breast")] == "above chance"
    assert status[("VAE", "pneumonia")] == "at chance"
    text = verdicts.below_chance_sentence(groups, "detector/dataset results")
    assert text.startswith("**1 of 4 detector/dataset results are below chance**") and "AE / pneumonia 29.0" in text
    none = verdicts.below_chance_sentence(groups[groups["chance"] != "below chance"], "results")
    assert none == "None of the 3 results is below chance."
