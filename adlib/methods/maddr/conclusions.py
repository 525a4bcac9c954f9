"""Notebook 05 (MADDR): the tables a student reads and the sentences the notebook shows, all generated from the
result rows through `adlib.verdicts` (seed spread, test-image CIs, chance) and `adlib.notebook.reading_table`.

Nothing here types a result: every number and every verdict word comes from the rows passed in.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import verdicts
from ...notebook import best_budget_rows, budget_rows, reading_table
from .experiments import (ABLATION, NEAREST, PAPER_DATASETS, PAPER_ROWS, ROW_LATENT16, TABLE1_ROWS, TABLE2_ORDER,
                          paper_beside, paper_numbers_maddr)

NAMES = {"pneumonia": "PneumoniaMNIST", "breast": "BreastMNIST", "retina": "RetinaMNIST"}


def _join(items) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "none"


def paper_label(dataset: str) -> str:
    """Which of the paper's numbers stands beside ours for ``dataset`` (Markdown)."""
    near = NEAREST.get(dataset)
    if near:
        return f"the paper's Table 1 on {near} (the same organ and modality)"
    return (f"the mean of the paper's Table 1 numbers on {_join(PAPER_DATASETS)} (the paper has no "
            f"{dataset} dataset; the column gives the scale only, not a target)")


# ----- Table 1 -------------------------------------------------------------------------------------------------
def _budget_label(rows: pd.DataFrame) -> str:
    size = int(rows["image_size"].iloc[0]) if "image_size" in rows.columns else None
    return f"{rows['method'].iloc[0]}, budget study: {rows['budget'].iloc[0]}" + (f", {size} px" if size else "")


def table1_rows(t1: pd.DataFrame, dataset: str, methods, budget: pd.DataFrame | None = None):
    """The rows of one dataset in reading order (each baseline, its best-budget row where the budget study has
    one, then MADDR around it) and the paper's AUROC beside each (percent)."""
    pieces, paper = [], []
    for m in methods:
        for name in (m, "budget", f"MADDR + {m}"):
            if name == "budget":
                rows = best_budget_rows(m, dataset, budget) if budget is not None and len(budget) else pd.DataFrame()
                if rows.empty:
                    continue
                label, printed = _budget_label(rows), m
                rows = rows.assign(method=label)
            else:
                rows = t1[(t1["dataset"] == dataset) & (t1["method"] == name)]
                label, printed = name, name
            pieces.append(rows)
            paper.append({"method": label, "paper": paper_beside(dataset, printed, "AUROC")[1]})
    return (pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()), pd.DataFrame(paper)


def table1_reading(t1: pd.DataFrame, dataset: str, methods, budget: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 1 on one dataset as a reading table: method, test AUROC (%), F1 (%), the paper's AUROC, difference,
    note (chance, degenerate threshold, MedMNIST-exact test AUROC)."""
    rows, paper = table1_rows(t1, dataset, methods, budget)
    table = reading_table(rows, metric="AUROC", keys=["method"], paper=paper, extra_metrics=("F1",))
    return _mark_degenerate(table)


def _mark_degenerate(table: pd.DataFrame) -> pd.DataFrame:
    if "F1" in table.columns:
        flag = "degenerate threshold: F1 not a result"
        # reading_table already flags the rows whose own threshold was degenerate; add it only where missing
        table["note"] = [n if f != "—" or "degenerate threshold" in str(n) else (f"{n}; {flag}" if n else flag)
                         for n, f in zip(table["note"], table["F1"])]
    return table


def table1_caption(t1: pd.DataFrame, dataset: str, budget_shown: bool) -> str:
    """The generated caption of one dataset's Table 1 (what ours and the paper column are)."""
    mine = t1[t1["dataset"] == dataset]
    seeds = int(mine["seed"].nunique()) if len(mine) else 0
    rules = mine["threshold_rule"].dropna() if "threshold_rule" in mine else pd.Series([], dtype=str)
    rule = f" ({rules.iloc[0]})" if len(rules) else ""
    n_test = int(mine["n_test"].iloc[0]) if "n_test" in mine and len(mine) else None
    text = (f"Table 1 · {NAMES.get(dataset, dataset)}" + (f" ({n_test} test images)" if n_test else "") +
            f": test AUROC and F1 in %, ours mean ± std over {seeds} seed(s); F1 at the threshold chosen on "
            f"validation{rule}. Paper column: {paper_label(dataset)}.")
    if budget_shown:
        text += (" Budget-study rows (results/budget): PneumoniaMNIST at 64 px, one seed, the rung with the best "
                 "validation AUROC; the paper column beside them is the baseline's.")
    return text


# ----- the claim "MADDR improves its base detector" -----------------------------------------------------------
def _stats_or_none(rows: pd.DataFrame, metric: str = "AUROC"):
    try:
        return verdicts.stats(rows, metric)
    except (ValueError, KeyError):
        return None


def maddr_claims(t1: pd.DataFrame, methods, datasets) -> list[dict]:
    """One entry per (baseline, dataset): the `verdicts.compare` of MADDR + baseline against the baseline (test
    AUROC; seed spread and test-image CIs), each side's chance status, and the paper's gain beside it."""
    out = []
    for m in methods:
        for d in datasets:
            base = t1[(t1["dataset"] == d) & (t1["method"] == m)]
            wrapped = t1[(t1["dataset"] == d) & (t1["method"] == f"MADDR + {m}")]
            if _stats_or_none(base) is None or _stats_or_none(wrapped) is None:
                out.append({"method": m, "dataset": d, "comparison": None})
                continue
            comparison = verdicts.compare(wrapped, base, "AUROC", names=(f"MADDR + {m}", m))
            gain = paper_beside(d, f"MADDR + {m}", "AUROC")[1] - paper_beside(d, m, "AUROC")[1]
            out.append({"method": m, "dataset": d, "comparison": comparison, "paper_gain": gain,
                        "chance": (verdicts.chance_status(base), verdicts.chance_status(wrapped))})
    return out


def claims_table(claims: list[dict]) -> pd.DataFrame:
    """The claims as a reading table: baseline, dataset, both AUROCs (%), difference, verdict, chance status of
    each side, the paper's gain (Lung-X-rays for pneumonia; the mean over its datasets otherwise)."""
    rows = []
    for c in claims:
        comp = c["comparison"]
        if comp is None:
            rows.append({"baseline": c["method"], "dataset": c["dataset"], "verdict": "no result"})
            continue
        rows.append({"baseline": c["method"], "dataset": c["dataset"], "baseline AUROC": comp.b.text().split(" (")[0],
                     "MADDR AUROC": comp.a.text().split(" (")[0], "difference": round(comp.difference * 100, 1),
                     "verdict": comp.label, "chance (baseline / MADDR)": " / ".join(c["chance"]),
                     "paper's gain": round(c["paper_gain"], 1)})
    return pd.DataFrame(rows)


def claim_summary(claims: list[dict], n_seeds: int) -> str:
    """The claim's verdict over all (baseline, dataset) pairs, with the paper's count beside it (Markdown)."""
    judged = [c for c in claims if c["comparison"] is not None]
    counts = pd.Series([c["comparison"].outcome for c in judged]).value_counts()
    better, worse = int(counts.get("better", 0)), int(counts.get("worse", 0))
    ties, below = int(counts.get("tie", 0)), int(counts.get("both below chance", 0))
    printed = paper_numbers_maddr("Table 1").query("metric == 'AUROC'").set_index(["dataset", "method"])["mean"]
    pairs = [(d, m) for d, m in printed.index if not m.startswith("MADDR")]
    paper_wins = sum(printed[(d, f"MADDR + {m}")] > printed[(d, m)] for d, m in pairs)
    verdict = ("holds" if better == len(judged) and judged else "fails" if worse > better else
               "holds only in part" if better else "is not shown")
    one_seed = " With one seed, only non-overlapping test-image CIs decide." if n_seeds < 2 else ""
    return (f"**Claim: MADDR improves its base detector** (test AUROC, {len(judged)} baseline × dataset pairs): "
            f"MADDR **better in {better}**, **worse in {worse}**, tie within noise in {ties}, both below chance in "
            f"{below}. Here the claim **{verdict}**. The paper's Table 1 has MADDR higher in {paper_wins} of "
            f"{len(pairs)} pairs (its means; it gives no test of noise).{one_seed}")


def claim_by_method(claims: list[dict]) -> list[str]:
    """One sentence per baseline: on which datasets MADDR is better, worse or tied, and chance marks."""
    lines = []
    for m in dict.fromkeys(c["method"] for c in claims):
        mine = [c for c in claims if c["method"] == m and c["comparison"] is not None]
        parts = []
        for c in mine:
            comp = c["comparison"]
            marks = [f"{name} {status}" for name, status in zip((m, f"MADDR + {m}"), c["chance"])
                     if status != "above chance"]
            parts.append(f"{c['dataset']}: {comp.label} (MADDR {comp.difference * 100:+.1f} points"
                         + (f"; {', '.join(marks)}" if marks else "") + ")")
        lines.append(f"**{m}**: " + ("; ".join(parts) if parts else "no result") + ".")
    return lines


# ----- Table 2 -------------------------------------------------------------------------------------------------
def table2_pivot(t2: pd.DataFrame, datasets) -> pd.DataFrame:
    """Ablation rows × our datasets (test AUROC %, chance marked), the paper's rows beside (mean ± std)."""
    p2 = paper_numbers_maddr("Table 2")
    printed = p2.assign(v=p2["mean"].map("{:.1f}".format) + " ± " + p2["std"].map("{:.1f}".format))
    printed = printed.pivot_table(index="row", columns="dataset", values="v", aggfunc="first")
    printed.index = printed.index.astype(int).astype(str)
    out = []
    for variant in TABLE2_ORDER:
        line = {"row": variant}
        for d in datasets:
            rows = t2[(t2["variant"] == variant) & (t2["dataset"] == d)]
            s = _stats_or_none(rows)
            status = verdicts._chance_of(s) if s is not None else ""
            mark = "" if status == "above chance" else f" ({status})"
            line[d] = "—" if s is None else f"{s.mean * 100:.1f}{mark}"
        for d in PAPER_DATASETS:
            line[f"paper {d}"] = ", ".join(printed.loc[r, d] for r in PAPER_ROWS[variant].split("/")
                                           if r in printed.index and isinstance(printed.loc[r, d], str))
        out.append(line)
    return pd.DataFrame(out)


# (from, to, what it changes) - the steps of the ablation that the paper's Table 2 argues with, and ours
ABLATION_STEPS = [
    (ROW_LATENT16[0], TABLE1_ROWS["DPA"][0], "latent 16 → 128, per dataset"),
    (TABLE1_ROWS["DPA"][0], "3 all datasets, no constraints", "pooling the datasets, no constraints"),
    ("3 all datasets, no constraints", "4/7 organ head on z", "one head on z"),
    ("4/7 organ head on z", "5/8 organ head + centre on z", "centre on z, one head"),
    ("4/7 organ head on z", "10 two heads on z", "a second head on the same partition"),
    ("10 two heads on z", "11 two heads + centre on z", "centre on z, two heads"),
    ("11 two heads + centre on z", TABLE1_ROWS["MADDR + DPA"][0], "disentanglement + mixup"),
    ("6/9 MADDR, one head", TABLE1_ROWS["MADDR + DPA"][0], "two heads instead of one, full MADDR"),
    ("ours: MADDR, centre on z", TABLE1_ROWS["MADDR + DPA"][0], "centre on z_c instead of z"),
    ("ours: MADDR without mixup", TABLE1_ROWS["MADDR + DPA"][0], "mixup on"),
]
assert all(a in TABLE2_ORDER and b in TABLE2_ORDER for a, b, _ in ABLATION_STEPS) and set(ABLATION) <= set(TABLE2_ORDER)


def _paper_step_gain(a: str, b: str) -> float:
    """The paper's mean gain of step a -> b over its datasets that print both rows (NaN when none does)."""
    p2 = paper_numbers_maddr("Table 2")
    p2 = p2.assign(row=p2["row"].astype(int).astype(str))
    gains = []
    for d in PAPER_DATASETS:
        vals = [p2[(p2["dataset"] == d) & p2["row"].isin(PAPER_ROWS[v].split("/"))]["mean"] for v in (a, b)]
        if all(len(v) for v in vals):
            gains.append(vals[1].mean() - vals[0].mean())
    return float(np.mean(gains)) if gains else float("nan")


def ablation_steps(t2: pd.DataFrame, datasets) -> pd.DataFrame:
    """Each ablation step judged per dataset by `verdicts.compare` (test AUROC; with one seed, only
    non-overlapping test-image CIs decide), the paper's mean gain beside it."""
    out = []
    for a, b, what in ABLATION_STEPS:
        line = {"step": f"{a.split(' ')[0] if a[0].isdigit() else a} → {b.split(' ')[0]}", "what changes": what}
        for d in datasets:
            ra, rb = (t2[(t2["variant"] == v) & (t2["dataset"] == d)] for v in (a, b))
            if _stats_or_none(ra) is None or _stats_or_none(rb) is None:
                line[d] = "—"
                continue
            c = verdicts.compare(rb, ra, "AUROC", names=(b, a))
            word = {"better": "helps", "worse": "hurts"}.get(c.outcome, c.outcome)
            line[d] = f"{c.difference * 100:+.1f} ({word})"
        gain = _paper_step_gain(a, b)
        line["paper (mean gain)"] = "" if np.isnan(gain) else f"{gain:+.1f}"
        out.append(line)
    return pd.DataFrame(out)


def ablation_summary(steps: pd.DataFrame, t2: pd.DataFrame, datasets) -> str:
    """How many ablation steps help, hurt or tie here, and how that meets the paper's direction; the highest mean
    row (Markdown)."""
    cells = {i: [str(steps.loc[i, d]) for d in datasets if steps.loc[i, d] != "—"] for i in steps.index}
    flat = [c for v in cells.values() for c in v]
    count = {w: sum(f"({w})" in c for c in flat) for w in ("helps", "hurts", "tie", "both below chance")}
    paper_up = [i for i in steps.index if str(steps.loc[i, "paper (mean gain)"]).startswith("+")]
    up_helps = sum(any("(helps)" in c for c in cells[i]) for i in paper_up)
    up_hurts = sum(any("(hurts)" in c for c in cells[i]) for i in paper_up)
    means = t2[t2["dataset"].isin(datasets)].groupby("variant")["AUROC"].mean().dropna()
    best = (f" The highest mean test AUROC over the datasets is row '{means.idxmax()}' ({means.max() * 100:.1f}; "
            "a mean, not a verdict); the paper's best is row 12 (full MADDR).") if len(means) else ""
    seeds = int(t2["seed"].nunique()) if len(t2) else 0
    return (f"**Table 2** ({seeds} seed(s); {len(flat)} step × dataset comparisons): a step **helps** in "
            f"{count['helps']}, **hurts** in {count['hurts']}, ties within noise in {count['tie']}, both below chance "
            f"in {count['both below chance']}. Of the {len(paper_up)} steps that gain in the paper, {up_helps} help "
            f"here on at least one dataset and {up_hurts} hurt on at least one.{best}")


# ----- the heads -----------------------------------------------------------------------------------------------
ACCURACY_COLUMNS = ("accuracy (kept weights)", "accuracy (batch statistics)", "always the most frequent",
                    "training accuracy at the kept step", "training accuracy (last 20 steps)")


def head_table(report: pd.DataFrame) -> pd.DataFrame:
    """`experiments.head_report` for reading: accuracies in %, steps as integers."""
    out = report.copy()
    for c in ACCURACY_COLUMNS:
        out[c] = (out[c] * 100).round(1)
    for c in ("kept step", "steps"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
    return out.rename(columns={c: f"{c} %" for c in ACCURACY_COLUMNS})


def _head_causes(r: pd.Series, margin: float) -> dict[str, str]:
    """The measured reasons a head scores at or below the most frequent class ({kind: sentence}; empty: none)."""
    acc, major, batch = r["accuracy (kept weights)"], r["always the most frequent"], r["accuracy (batch statistics)"]
    at_kept, end = r["training accuracy at the kept step"], r["training accuracy (last 20 steps)"]
    causes = {}
    if pd.notna(r["kept step"]) and r["kept step"] < r["steps"] and at_kept < end - margin:
        causes["early checkpoint"] = (f"The checkpoint criterion ({r['checkpoint criterion']}) kept step "
                                      f"{r['kept step']:.0f} of {r['steps']}; the head's logged training accuracy "
                                      f"was {at_kept:.1%} there, {end:.1%} at the end.")
    elif at_kept <= major + margin:
        causes["not learned"] = (f"It had not learned by the kept step ({r['kept step']:.0f} of {r['steps']}): its "
                                 f"logged training accuracy there was {at_kept:.1%}.")
    if batch - acc > margin:
        causes["normalisation statistics"] = (
            f"With each batch's own normalisation statistics the same weights score {batch:.1%}: the BatchNorm "
            "running averages, after few updates, shift the code the head reads.")
    return causes


def head_sentences(report: pd.DataFrame, margin: float = 0.05) -> list[str]:
    """Per model, what its heads do on the images of ``report`` and why (from `experiments.head_report`)."""
    lines = []
    for method, rows in report.groupby("method", sort=False):
        parts, explained = [], []
        for _, r in rows.iterrows():
            acc, major = r["accuracy (kept weights)"], r["always the most frequent"]
            if acc > major + margin:
                parts.append(f"The {r['head']} head names the dataset of {acc:.1%} of the images (always the most "
                             f"frequent class: {major:.1%}).")
                continue
            where = "below" if acc < major - margin else "at"
            causes = _head_causes(r, margin)
            explained.append(bool(causes))
            parts.append(f"The {r['head']} head scores {acc:.1%}, {where} always-the-most-frequent ({major:.1%}). "
                         + (" ".join(causes.values()) if causes else "Neither an early step nor the normalisation "
                            "statistics explain it: check the label mapping."))
        if explained and all(explained):
            parts.append("These are measured causes, not a label mapping.")
        lines.append(f"**MADDR + {method}**: " + " ".join(parts))
    return lines


def label_mapping_sentence(check: pd.DataFrame, report: pd.DataFrame, margin: float = 0.05) -> str:
    """What `experiments.label_mapping_check` measured, as one paragraph: whether a label-order error can explain
    a head that scores below always-the-most-frequent (``report``: `experiments.head_report` of the same models)."""
    heads = check.merge(report[["method", "head", "always the most frequent"]], on=["method", "head"])
    n, trips = len(heads), int(heads["training labels round-trip"].astype(bool).sum())
    good = heads[heads["accuracy"] > heads["always the most frequent"] + margin]
    low = heads[heads["accuracy"] <= heads["always the most frequent"] + margin]
    name = lambda r: f"MADDR + {r['method']} {r['head']}"  # noqa: E731
    text = (f"**Label order, measured.** Each head's training targets and its named predictions use one class order "
            f"(the training labels encode and decode back to themselves for {trips} of {n} heads). ")
    if trips < n:
        return text + "A head whose labels do not round-trip has a label-mapping error: fix it before reading on."
    if len(good):
        text += (f"All heads share this code, so a wrong order would misname the datasets for every model; "
                 f"{len(good)} of {n} name them right ("
                 + ", ".join(f"{name(r)} {r['accuracy']:.1%}" for _, r in good.iterrows()) + "). ")
    for _, r in low.iterrows():
        if r["confusion is a permutation"]:
            text += (f"{name(r)} ({r['accuracy']:.1%}) sends each dataset to its own wrong class, as a label-order "
                     f"error would (best relabelling: {r['accuracy, best relabelling']:.1%}): check the mapping. ")
        else:
            text += (f"{name(r)} ({r['accuracy']:.1%}) predicts {r['classes predicted (test)']} classes and sends "
                     "several datasets to one class, which no relabelling undoes (best one-to-one relabelling: "
                     f"{r['accuracy, best relabelling']:.1%}): not a label permutation. ")
    return text.strip()


def head_summary(report: pd.DataFrame, margin: float = 0.05) -> str:
    """One sentence over all heads: how many name the dataset, and the measured causes of the others."""
    ok = report["accuracy (kept weights)"] > report["always the most frequent"] + margin
    causes: dict[str, list[str]] = {}
    for _, r in report[~ok].iterrows():
        found = _head_causes(r, margin) or {"unexplained": ""}
        for kind in found:
            causes.setdefault(kind, []).append(f"MADDR + {r['method']} {r['head']}")
    text = (f"{int(ok.sum())} of {len(report)} heads name the dataset of a test image better than always guessing "
            "the most frequent class")
    if causes:
        text += "; the others: " + "; ".join(f"{kind} ({_join(who)})" for kind, who in causes.items())
    return text + "."


# ----- the training budget -------------------------------------------------------------------------------------
def budget_sentence(methods, dataset: str = "pneumonia", rows: pd.DataFrame | None = None) -> str:
    """Whether the claim holds at the best budget measured: MADDR's best-budget rows against the baseline's, or
    a sentence saying that the budget study did not measure it (with the baselines it did measure)."""
    rows = budget_rows() if rows is None else rows
    measured, claims, missing = [], [], []
    for m in methods:
        base = best_budget_rows(m, dataset, rows) if len(rows) else pd.DataFrame()
        wrapped = best_budget_rows(f"MADDR + {m}", dataset, rows) if len(rows) else pd.DataFrame()
        if len(base):
            status = verdicts.chance_status(base.assign(method=m, variant="best budget"))
            measured.append(f"{m} {base['AUROC'].mean() * 100:.1f} ({base['budget'].iloc[0]}; {status})")
        if len(base) and len(wrapped):
            c = verdicts.compare(wrapped.assign(method=f"MADDR + {m}", variant="best"),
                                 base.assign(method=m, variant="best"), "AUROC", names=(f"MADDR + {m}", m))
            claims.append(c.text)
        else:
            missing.append(m)
    text = ""
    if claims:
        text += "**At the best budget measured** (results/budget): " + " ".join(claims) + " "
    if missing:
        text += (f"**The claim at the best budget was not measured** for {_join(missing)}: the budget study "
                 f"(results/budget/budget_rows.csv) has no MADDR rows on {dataset}" +
                 (f"; its best-budget rows of the baselines (test AUROC %) are {_join(measured)}." if measured else
                  " and none of these baselines either.") +
                 " So whether MADDR's gain appears once the baselines are trained longer is open.")
    return text.strip()


# ----- the conclusions -----------------------------------------------------------------------------------------
def conclusions(claims: list[dict], n_seeds: int, steps: pd.DataFrame | None, t2: pd.DataFrame | None, datasets,
                head_text: str, budget_text: str) -> list[str]:
    """The notebook's conclusions (Markdown paragraphs), generated from its tables."""
    out = [claim_summary(claims, n_seeds), "\n".join(f"- {line}" for line in claim_by_method(claims))]
    if steps is not None and t2 is not None and len(t2):
        out.append(ablation_summary(steps, t2, datasets))
    out.append(f"**The heads** (test images): {head_text}")
    out.append(budget_text)
    return out
