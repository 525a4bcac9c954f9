"""Notebook 04's reading tables and generated conclusions.

Every sentence here is computed from result rows by `adlib.verdicts` (chance judged on the seed spread and the
test-image CI; "better" only beyond both; a paper claim "reproduces" only when every step does); nothing here
types a result. The tables show what a student compares (method, ours, paper, difference, note); the full
provenance of every row stays in results/*.csv.
"""
from __future__ import annotations

import json

import pandas as pd

from ... import verdicts
from ...notebook import best_budget_rows, budget_rows, reading_table
from ...shift import detail_diagnostic
from .experiments import METRICS, PAPER_METRIC, paper_numbers_salad

PAPER_DATASET = "Chest X-ray"  # the paper's name of the ZhangLab test set
BUDGET_METHODS = ("AE", "AE (L1)", "VAE", "SSIM-AE", "MemAE", "f-AnoGAN", "GANomaly", "SALAD")
ABLATION_CLAIMS = (  # (table, A, B, the paper's claim "A > B"), all on OCT in the paper
    ("Table III", "L_str", "L1", "SSIM beats L1 in image space"),
    ("Table III", "L_str + L_ct", "L_str", "the centre loss helps"),
    ("Table III", "L_str + L_ct", "L_str + L_KL", "the centre loss beats the KL constraint"),
    ("Table IV", "E.", "w/o SSL", "self-supervision with a shared encoder helps"),
    ("Table IV", "E.", "E. + D.", "sharing only the encoder beats sharing encoder and decoder"),
    ("Table IV", "E.", "E. + last decoder layers", "sharing only the encoder beats sharing the last decoder layers too"),
    ("Table V", "A_F", "A_I", "the feature error beats the image error as the score"),
    ("Table V", "A_F", "A_C", "the feature error beats the centre distance as the score"),
)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


# ----- the paper's numbers ----------------------------------------------------------------------------------------
def paper_auroc(dataset: str = PAPER_DATASET) -> pd.DataFrame:
    """The printed test AUROC per method (percent) on one of the paper's datasets, with its source (SALAD's Table I,
    or, for MemAE on the chest X-rays, PPAD's collection of published numbers)."""
    p = paper_numbers_salad()
    p = p[(p["dataset"] == dataset) & (p["metric"] == "AUC") & p["table"].isin(["Table I", "collected"])]
    return pd.DataFrame({"method": p["method"], "paper": p["fraction"] * 100, "source": p["paper"]})


def paper_order(dataset: str = PAPER_DATASET) -> list[str]:
    """The order of the methods by the paper's printed AUROC (SALAD's Table I only), best first."""
    p = paper_auroc(dataset)
    return p[p["source"] == "SALAD"].sort_values("paper", ascending=False)["method"].tolist()


# ----- reading tables ---------------------------------------------------------------------------------------------
def budget_label(best: pd.DataFrame) -> str:
    """e.g. 'best budget (notebook 08): x4 = 600 steps; width 8→32, latent 16' for best_budget_rows' rows."""
    first = best.iloc[0]
    kw = json.loads(first["detector_kwargs"]) if isinstance(first.get("detector_kwargs"), str) else {}
    net = f"width {kw['width']}" + (f"→{kw['max_width']}" if "max_width" in kw else "") if "width" in kw else ""
    latent = kw.get("nz", kw.get("latent"))
    net += f", latent {latent}" if latent is not None else ""
    net += f", lr {kw['lr']:g}" if "lr" in kw else ""
    knob = str(first["budget_knob"]).replace("gan_steps+encoder_steps", "GAN + encoder steps")
    return (f"best budget (notebook 08): x{int(first['budget_multiplier'])} = {first['budget_value']:g} {knob}"
            + (f"; {net}" if net else ""))


def with_budget_rows(rows: pd.DataFrame, label: str, dataset: str = "pneumonia",
                     budget: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our rows (variant = ``label``), each method followed by its best budget-study rows (variant = the budget)."""
    budget = budget_rows() if budget is None else budget
    parts = []
    for method, mine in rows.groupby("method", sort=False):
        parts.append(mine.assign(variant=label))
        best = best_budget_rows(method, dataset, budget) if len(budget) else budget
        if len(best):
            parts.append(best.assign(variant=budget_label(best)))
    return pd.concat(parts, ignore_index=True)


def table1_reading(rows: pd.DataFrame, labels: dict[str, str], dataset: str = "pneumonia") -> pd.DataFrame:
    """Table I on PneumoniaMNIST for reading: this run's rows (variant: ``labels[method]``, e.g. from
    `experiments.run_labels`) and each method's best budget-study row, the paper's AUROC (%), difference, note."""
    parts = [with_budget_rows(g, labels.get(m, "this run"), dataset) for m, g in rows.groupby("method", sort=False)]
    paper = paper_auroc()
    table = reading_table(pd.concat(parts, ignore_index=True), "AUROC", keys=("method", "variant"),
                          paper=paper, extra_metrics=("F1",))
    collected = set(paper.loc[paper["source"] != "SALAD", "method"])
    extra = table["method"].isin(collected) & table["paper"].notna()
    table.loc[extra, "note"] = (table.loc[extra, "note"] + "; paper: PPAD's collection, not SALAD's Table I").str.lstrip("; ")
    return table


def table2_reading(rows: pd.DataFrame, method: str = "SALAD") -> pd.DataFrame:
    """Table II analogue: the std over seeds of each metric of ``method`` beside the paper's (points)."""
    mine = rows[rows["method"] == method]
    printed = paper_numbers_salad("Table II").query("dataset == @PAPER_DATASET")
    out = []
    for metric in METRICS:
        s = verdicts.stats(mine, metric, name=method)
        paper = printed.loc[printed["metric"] == f"{PAPER_METRIC[metric]}_std", "fraction"]
        degenerate = s.degenerate and verdicts.is_threshold_metric(metric)
        ours = "—" if degenerate or s.n_seeds < 2 else f"{s.std * 100:.2f}"
        out.append({"metric": metric, "ours: mean": "—" if degenerate else _pct(s.mean), "ours: std over seeds": ours,
                    "paper: std": f"{paper.iloc[0] * 100:.2f}" if len(paper) else "", "seeds": s.n_seeds,
                    "note": "degenerate threshold (not a result)" if degenerate else ""})
    return pd.DataFrame(out)


def other_datasets_reading(rows: pd.DataFrame) -> pd.DataFrame:
    """Table I on RetinaMNIST and BreastMNIST (no paper number: the paper's second set is OCT). Their test splits
    are MedMNIST's own, so the MedMNIST-exact AUROC (the same number) is left out of the note."""
    if {"n_test_medmnist_exact", "n_test"} <= set(rows.columns) and (rows["n_test_medmnist_exact"] == rows["n_test"]).all():
        rows = rows.drop(columns=["AUROC_medmnist_exact"], errors="ignore")
    return reading_table(rows, "AUROC", keys=("dataset", "method"), extra_metrics=("F1",))


def ablation_reading(ab: pd.DataFrame) -> pd.DataFrame:
    """Tables III-V: ours (PneumoniaMNIST) beside the paper's AUROC on OCT; no difference column (other data)."""
    printed = paper_numbers_salad().query("table in ['Table III', 'Table IV', 'Table V'] and metric == 'AUC'")
    paper = pd.DataFrame({"ablation": printed["table"], "variant": printed["method"], "paper": printed["fraction"] * 100})
    table = reading_table(ab, "AUROC", keys=("ablation", "variant"), paper=paper, extra_metrics=("F1",))
    return table.drop(columns=["difference"], errors="ignore").rename(columns={"paper": "paper (OCT)"})


def detail_table(diagnostics: dict[str, dict]) -> pd.DataFrame:
    """One line per score: its test AUROC and its Spearman correlation with image detail (all / per class)."""
    return pd.DataFrame([{"score": name, "test AUROC": _pct(d["score_AUROC"]),
                          "ρ with detail (all)": f"{d['spearman_score_detail']:+.2f}",
                          "ρ within normals": f"{d['spearman_within_normal']:+.2f}",
                          "ρ within pneumonia": f"{d['spearman_within_anomalous']:+.2f}"}
                         for name, d in diagnostics.items()])


def detail_diagnostics(results: dict, protocol, seed: int, methods, extra: dict | None = None) -> dict[str, dict]:
    """`adlib.shift.detail_diagnostic` of each method's test scores (one seed), plus ``extra`` {name: scores}."""
    out = {}
    for method in methods:
        r = results.get((protocol.dataset, method, seed))
        if r is not None and r.test is not None:
            out[method] = detail_diagnostic(r.test.scores, protocol.test)
    for name, scores in (extra or {}).items():
        out[name] = detail_diagnostic(scores, protocol.test)
    return out


# ----- conclusions ------------------------------------------------------------------------------------------------
def chance_summary(rows: pd.DataFrame, what: str = "") -> str:
    """Each method's chance status (AUROC), grouped: below / at / above chance, with mean ± std (points)."""
    groups: dict[str, list[str]] = {"above chance": [], "at chance": [], "below chance": []}
    for method, group in rows.groupby("method", sort=False):
        if pd.to_numeric(group["AUROC"], errors="coerce").notna().any():
            s = verdicts.stats(group, "AUROC", name=method)
            groups[verdicts.chance_status(group)].append(f"{method} {s.text().split(' (')[0]}")
    body = "; ".join(f"**{status}**: {', '.join(names)}" for status, names in groups.items() if names)
    return (f"Chance{what} (AUROC 50; judged on the seed spread and the test-image CI): {body}."
            + (" A method below chance ranks normal images above anomalous ones: it is not 'worse', it measures "
               "something else." if groups["below chance"] else ""))


def salad_vs_each(rows: pd.DataFrame, method: str = "SALAD") -> str:
    """The headline claim, SALAD beats every baseline, as one line per baseline outcome."""
    mine = rows[rows["method"] == method]
    words = {"better": f"{method} better", "worse": "baseline better", "tie": "tie (within noise)",
             "both below chance": "both below chance", "not comparable": "not comparable"}
    outcomes: dict[str, list[str]] = {}
    for other, group in rows[rows["method"] != method].groupby("method", sort=False):
        c = verdicts.compare(mine, group, names=(method, other))
        outcomes.setdefault(words[c.outcome], []).append(f"{other} ({c.difference * 100:+.1f} points)")
    body = "; ".join(f"**{label}**: {', '.join(names)}" for label, names in outcomes.items())
    return f"{method} against each baseline (AUROC, difference = {method} − baseline): {body}."


def image_loss_sentence(rows: pd.DataFrame, ssim: str = "SSIM-AE", l1: str = "AE (L1)") -> str:
    """SSIM against L1 in the plain auto-encoder: a test of the paper's image-loss claim only when one of the two
    detects (is above chance); otherwise the pair says which model is less inverted, and Table III decides."""
    a, b = rows[rows["method"] == ssim], rows[rows["method"] == l1]
    if a.empty or b.empty:
        return ""
    c = verdicts.compare(a, b, names=(ssim, l1))
    status = {m: verdicts.chance_status(r) for m, r in ((ssim, a), (l1, b))}
    if "above chance" in status.values():
        return f"SSIM against L1 in the auto-encoder: {c.text}"
    return (f"SSIM against L1 in the auto-encoder: {ssim} is {status[ssim]} and {l1} {status[l1]}: neither detects "
            f"pneumonia, so this pair cannot test the paper's claim that SSIM beats L1 (Table III below does, inside "
            f"SALAD). The numbers: {c.a.text()} vs {c.b.text()}.")


def weak_winners(claim: verdicts.OrderClaim, rows: pd.DataFrame) -> list[str]:
    """The steps of an order claim that hold, but are won by a method that is not above chance itself."""
    out = []
    for step in claim.steps:
        if step.outcome == "better":
            status = verdicts.chance_status(rows[rows["method"] == step.a.name])
            if status != "above chance":
                out.append(f"{step.a.name} > {step.b.name} ({step.a.name} {status})")
    return out


def order_sentences(rows: pd.DataFrame) -> list:
    """The paper's printed order checked step by step, and which holding steps decide nothing about detection."""
    claim = verdicts.order_claim(rows, paper_order())
    weak = weak_winners(claim, rows)
    return [claim] + ([f"Of the steps that hold, {', '.join(weak)}: won by a method that does not detect pneumonia "
                       "above chance itself, such a step says which model is less inverted, not which detects "
                       "better."] if weak else [])


def paper_gap_sentence(rows: pd.DataFrame, method: str = "SALAD") -> str:
    printed = paper_auroc().set_index("method")["paper"]
    return verdicts.paper_gap(rows[rows["method"] == method], printed[method], name=method).text


def table2_sentence(rows: pd.DataFrame, method: str = "SALAD") -> str:
    s = verdicts.stats(rows[rows["method"] == method], "AUROC", name=method)
    printed = paper_numbers_salad("Table II").query("dataset == @PAPER_DATASET and metric == 'AUC_std'")["fraction"]
    if s.n_seeds < 2 or printed.empty:
        return f"Table II: {method} has {s.n_seeds} seed(s) here: no seed spread to compare with the paper's."
    ratio = s.std / printed.iloc[0]
    return (f"Table II: {method}'s AUROC varies by {s.std * 100:.2f} points (std over {s.n_seeds} seeds) against the "
            f"paper's {printed.iloc[0] * 100:.2f}: {ratio:.1f} times the paper's spread.")


def table1_conclusions(rows: pd.DataFrame) -> list:
    """Table I on PneumoniaMNIST: chance per method, the paper's printed order, SALAD against each baseline,
    SALAD against the paper's number, the SSIM-vs-L1 auto-encoder pair, and Table II's spread."""
    return [chance_summary(rows, " on the PneumoniaMNIST test split"), *order_sentences(rows),
            salad_vs_each(rows), paper_gap_sentence(rows), image_loss_sentence(rows), table2_sentence(rows)]


def other_dataset_conclusions(rows: pd.DataFrame) -> list[str]:
    """RetinaMNIST and BreastMNIST: chance per method, and SALAD against the best other method (validation
    AUROC picks which one; the test decides nothing)."""
    out = []
    for dataset, group in rows.groupby("dataset", sort=False):
        out.append(chance_summary(group, f" on {dataset}"))
        others = group[group["method"] != "SALAD"]
        if others.empty or (group["method"] == "SALAD").sum() == 0:
            continue
        rival = others.groupby("method")["val_AUROC"].mean().idxmax()
        c = verdicts.compare(group[group["method"] == "SALAD"], group[group["method"] == rival], names=("SALAD", rival))
        out.append(f"On {dataset}, SALAD against the baseline with the best validation AUROC: {c.text}")
    return out


def ablation_verdicts(ab: pd.DataFrame) -> list[tuple[str, str, str, verdicts.Comparison]]:
    """(table, claim, 'reproduces' / 'reversed' / 'undecided', comparison) for each ablation claim we have rows for."""
    out = []
    for table, a, b, claim in ABLATION_CLAIMS:
        ra, rb = (ab[(ab["ablation"] == table) & (ab["variant"] == v)] for v in (a, b))
        if ra.empty or rb.empty or ra["AUROC"].isna().all() or rb["AUROC"].isna().all():
            continue
        c = verdicts.compare(ra, rb, names=(a, b))
        out.append((table, claim, {"better": "reproduces", "worse": "reversed"}.get(c.outcome, "undecided"), c))
    return out


def ablation_conclusions(ab: pd.DataFrame) -> list[str]:
    """Each ablation claim of Tables III-V (the paper's, on OCT) checked on our PneumoniaMNIST rows."""
    return [f"{table}, *{claim}*: **{holds}**. {c.text}" for table, claim, holds, c in ablation_verdicts(ab)]


def table6_reading(table6: pd.DataFrame) -> pd.DataFrame:
    """Table VI: A_F (mean ± std over the test images of each class) beside the paper's chest X-ray row."""
    if table6.empty:
        return pd.DataFrame(columns=["class", "ours A_F", "paper A_F", "images"])
    printed = paper_numbers_salad("Table VI").query("dataset == @PAPER_DATASET").set_index(["method", "metric"])["value"]
    return pd.DataFrame({"class": table6["class"],
                         "ours A_F": [f"{m:.4f} ± {s:.4f}" for m, s in zip(table6["A_F mean"], table6["A_F std"])],
                         "paper A_F": [f"{printed[(c, 'A_F_mean')]:.4f} ± {printed[(c, 'A_F_std')]:.4f}"
                                       for c in table6["class"]], "images": table6["images"]})


def table6_sentence(table6: pd.DataFrame) -> str:
    """Table VI: the mean feature error A_F of normal vs pneumonia test images, beside the paper's."""
    if table6.empty:
        return "Table VI: no SALAD model of the first seed (diverged?)."
    printed = paper_numbers_salad("Table VI").query("dataset == @PAPER_DATASET").set_index(["method", "metric"])["value"]
    (n_mean, p_mean), (n_std, p_std) = table6["A_F mean"].iloc[:2], table6["A_F std"].iloc[:2]
    return (f"Table VI: A_F of normal test images {n_mean:.4f} ± {n_std:.4f}, of pneumonia {p_mean:.4f} ± {p_std:.4f} "
            f"(mean ± std over images, one model): pneumonia is {'higher' if p_mean > n_mean else 'not higher'} on "
            f"average; the paper: {printed[('Normal', 'A_F_mean')]:.4f} vs {printed[('Pneumonia', 'A_F_mean')]:.4f}. "
            "How well A_F separates the classes is its AUROC (Table I), not these means.")


def compactness_sentence(compact: dict[str, float]) -> str:
    w, wo = compact["with L_ct"], compact["without L_ct"]
    return (f"Fig. 7: the scale-free spread of the normal features is {w:.3f} with the centre loss and {wo:.3f} "
            f"without: {'more' if w < wo else 'not more'} compact with it (one model each, no noise estimate).")


def _ladder(budget: pd.DataFrame, method: str, dataset: str) -> str:
    mine = budget[(budget["method"] == method) & (budget["dataset"] == dataset) & budget["val_AUROC"].notna()]
    if "status" in mine.columns:  # as best_budget_rows: failed or diverged rungs are no points of the curve
        mine = mine[mine["status"].astype(str).str.startswith(("completed", "early"))]
    if mine.empty:
        return ""
    curve = mine.groupby(["width_label", "budget_multiplier"])["val_AUROC"].mean().sort_index()
    parts = []
    for width, part in curve.groupby(level=0):
        values = part.droplevel(0)
        steps = " → ".join(f"{v * 100:.1f} (x{int(k)})" for k, v in values.items())
        if len(values) == 1:
            trend = "one rung measured: the curve is unknown"
        elif values.max() - values.min() < 0.005:
            trend = "flat"
        elif values.idxmax() == values.index.max():
            trend = "best at the largest budget measured: it may still climb"
        else:
            trend = f"peaks at x{int(values.idxmax())}, below the largest budget measured (x{int(values.index.max())})"
        parts.append(f"validation AUROC {steps} at {width} width: {trend}")
    return "; ".join(parts)


def budget_sentences(rows: pd.DataFrame, dataset: str = "pneumonia", methods=BUDGET_METHODS) -> list[str]:
    """Per method: does it leave chance at its best budget (notebook 08's rung with the best validation AUROC),
    and what its validation curve does over the budgets measured."""
    budget = budget_rows()
    if budget.empty:
        return ["No budget-study rows are committed (results/budget/budget_rows.csv)."]
    out = []
    for method in methods:
        best = best_budget_rows(method, dataset, budget)
        if best.empty:
            out.append(f"**{method}**: no budget-study row on {dataset}.")
            continue
        s = verdicts.stats(best, "AUROC", name=method)
        ours = rows[rows["method"] == method]
        now = f" (this run: {verdicts.chance_status(ours)})" if len(ours) and ours["AUROC"].notna().any() else ""
        out.append(f"**{method}** at its {budget_label(best)}: test AUROC {s.text()} is "
                   f"**{verdicts.chance_status(best)}**{now}; {_ladder(budget, method, dataset)}.")
    return out


def detail_sentences(rows: pd.DataFrame, diagnostics: dict[str, dict], ab: pd.DataFrame,
                     dataset: str = "pneumonia") -> list[str]:
    """Why the below-chance family is below chance (its score follows image detail), and what would change it,
    from the measurements: the detail-only AUROC, each below-chance score's correlation with detail, SALAD's own
    image error against its feature error (Table V), and the best budget measured."""
    status = {m: verdicts.chance_status(g) for m, g in rows.groupby("method", sort=False) if g["AUROC"].notna().any()}
    below = [m for m, s in status.items() if s == "below chance"]
    if not diagnostics:
        return ["No test scores to measure (every run diverged?)."]
    detail_auroc = next(iter(diagnostics.values()))["detail_AUROC"]
    out = [f"**Fine detail alone** (mean |vertical gradient|, no training) ranks the test images with AUROC "
           f"{_pct(detail_auroc)}: " + ("pneumonia X-rays are smoother than normal ones." if detail_auroc < 0.5
                                        else "here pneumonia X-rays are not the smoother ones.")]
    if not below:
        out.append("No method is below chance in this run.")
        return out
    follows = []
    for m in below:
        d = diagnostics.get(m)
        if d is not None:
            follows.append(f"{m} ρ = {d['spearman_score_detail']:+.2f} (within normals {d['spearman_within_normal']:+.2f}, "
                           f"within pneumonia {d['spearman_within_anomalous']:+.2f})")
    if follows:
        out.append("Below chance in this run: " + ", ".join(below) + ". Spearman correlation of their first-seed "
                   "score with detail: " + "; ".join(follows) + ". A score that rises with detail (ρ > 0) calls "
                   "the smooth pneumonia images normal, whatever the model learned about lungs.")
    t5 = {v: ab[(ab["ablation"] == "Table V") & (ab["variant"] == v)] for v in ("A_I", "A_F")}
    if all(len(t) and t["AUROC"].notna().any() for t in t5.values()):
        s_i, s_f = (verdicts.stats(t5[v], "AUROC", name=v) for v in ("A_I", "A_F"))
        out.append(f"The score, not only the model: the same SALAD models score {s_i.text()} "
                   f"(**{verdicts.chance_status(t5['A_I'])}**) with their image error A_I and {s_f.text()} "
                   f"(**{verdicts.chance_status(t5['A_F'])}**) with their feature error A_F"
                   + (f" (A_I's ρ with detail {diagnostics['SALAD A_I']['spearman_score_detail']:+.2f}, A_F's "
                      f"{diagnostics['SALAD']['spearman_score_detail']:+.2f})." if {'SALAD A_I', 'SALAD'} <= set(diagnostics)
                      else "."))
    budget = budget_rows()
    if len(budget):
        left, stayed = [], []
        for m in below:
            best = best_budget_rows(m, dataset, budget)
            if len(best):
                (stayed if verdicts.chance_status(best) == "below chance" else left).append(
                    f"{m} {_pct(verdicts.stats(best, 'AUROC').mean)} (x{int(best['budget_multiplier'].iloc[0])})")
        if left or stayed:
            out.append("Budget: at the best budget notebook 08 measured, "
                       + (f"still below chance: {', '.join(stayed)}" if stayed else "none stays below chance")
                       + (f"; no longer below chance: {', '.join(left)}" if left else "") + ".")
    return out


def discussion(rows: pd.DataFrame, ab: pd.DataFrame, other: pd.DataFrame) -> list[str]:
    """The notebook's summary: the headline claim, the ablation claims counted, the other datasets."""
    claim = verdicts.order_claim(rows, paper_order())
    held = sum(step.outcome == "better" for step in claim.steps)
    reversed_ = [f"{s.a.name} > {s.b.name}" for s in claim.steps if s.outcome == "worse"]
    open_ = [f"{s.a.name} > {s.b.name} ({s.label})" for s in claim.steps if s.outcome not in ("better", "worse")]
    weak = weak_winners(claim, rows)
    out = [f"Table I on PneumoniaMNIST: the paper's order **{claim.verdict}**: {held} of {len(claim.steps)} steps "
           f"hold beyond the noise" + (f" ({len(weak)} of them won by a method not above chance)" if weak else "")
           + (f"; reversed: {', '.join(reversed_)}" if reversed_ else "")
           + (f"; open: {', '.join(open_)}" if open_ else "") + "."]
    verdicts_ab: dict[str, list[str]] = {}
    for table, claim, holds, _ in ablation_verdicts(ab):
        verdicts_ab.setdefault(holds, []).append(f"{claim} ({table})")
    if verdicts_ab:
        out.append("Ablations (paper: OCT; ours: PneumoniaMNIST, one seed for Tables III-IV): " + "; ".join(
            f"**{word}**: {', '.join(claims)}" for word, claims in verdicts_ab.items()) + ".")
    for dataset, group in other.groupby("dataset", sort=False):
        s = group[group["method"] == "SALAD"]
        if len(s) and s["AUROC"].notna().any():
            rank = int((group.groupby("method")["AUROC"].mean() > s["AUROC"].mean()).sum()) + 1
            out.append(f"{dataset}: SALAD {_pct(s['AUROC'].mean())} is **{verdicts.chance_status(s)}**, rank {rank} of "
                       f"{group['method'].nunique()} by test AUROC (one seed: ranks inside the noise decide nothing).")
    return out

