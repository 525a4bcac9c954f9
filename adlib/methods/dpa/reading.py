"""What notebook 02 shows a student: its reading tables (ours beside the paper's printed numbers and the budget
study's best rows) and its conclusions, generated from the result rows by `adlib.verdicts` (chance, seed spread,
order claims, paper gaps). The notebook's cells only call these; every sentence about a result comes from here.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ... import verdicts
from ...notebook import best_budget_rows, budget_rows, reading_table
from ...paper_numbers import paper_numbers

# our method -> (the paper's method, variant) in Tables 1 and 2. The paper prints DPA with weakly-supervised
# hyperparameters only; the baselines with their default ones (as ours run).
TABLE2_PAPER = {"DPA (w/o p.g.)": ("DPA (w/o p.g.)", "weakly-supervised"),
                "DPA (with p.g.)": ("DPA (with p.g.)", "weakly-supervised"),
                "Deep IF": ("Deep IF", "default"), "Deep GEO": ("Deep GEO", "default")}
TABLE1_PAPER = {"DPA (w/o p.g.)": ("DPA (w/o p.g.)", "weakly-supervised"), "Deep IF": ("Deep IF", "default"),
                "Deep GEO": ("Deep GEO", "default")}
NIH = "NIH (a subset)"
# our method -> the budget study's method (results/budget/, notebook 08) shown beside it
BUDGET_METHODS = {"DPA (w/o p.g.)": "DPA", "L1-AE": "AE (L1)"}
NBSP = "\u00a0"


# ----------------------------------------------------------------------------------------------------------------
# the paper's numbers
# ----------------------------------------------------------------------------------------------------------------
def printed(table: str, mapping: dict | None = None, dataset_in_paper: str = NIH) -> pd.DataFrame:
    """The paper's AUROCs as reading_table's ``paper`` frame: columns method (our name) and paper; for Table 4
    (mapping None) keyed by the row name in ``variant``."""
    numbers = paper_numbers("DPA", table)
    numbers = numbers[(numbers["dataset_in_paper"] == dataset_in_paper) & (numbers["metric"] == "AUROC")]
    if mapping is None:
        return pd.DataFrame({"variant": numbers["row"].values, "paper": numbers["value"].astype(float).values})
    out = []
    for ours, (method, variant) in mapping.items():
        hit = numbers[(numbers["method"] == method) & (numbers["variant"] == variant)]
        if len(hit):
            out.append({"method": ours, "paper": float(hit["value"].iloc[0])})
    return pd.DataFrame(out, columns=["method", "paper"])


def as_printed_rows(paper: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """A ``printed`` frame in the layout `verdicts.paper_gaps` reads (method, variant, our_dataset, metric, value)."""
    return paper.rename(columns={"paper": "value"}).assign(variant="", our_dataset=dataset, metric="AUROC")


# ----------------------------------------------------------------------------------------------------------------
# reading tables
# ----------------------------------------------------------------------------------------------------------------
def reading(rows: pd.DataFrame, paper: pd.DataFrame | None = None, keys=("method", "variant"),
            extra=("AP", "F1")) -> pd.DataFrame:
    """reading_table (AUROC and the extra metrics in %, mean ± std or '(1 seed)', paper, difference, note), with a
    note on every line whose F1 comes from a degenerate validation threshold (shown as '—')."""
    keys = [k for k in keys if k in rows.columns]
    table = reading_table(rows, "AUROC", keys=keys, paper=paper, extra_metrics=tuple(extra))
    for column in ("ours AUROC", *extra):  # '73.1 ± 0.3' stays on one line however narrow the column
        if column in table.columns:
            table[column] = table[column].astype(str).str.replace(" ", NBSP)
    if "F1" not in extra or "F1" not in rows.columns:
        return table
    for i, line in table.iterrows():
        group = rows[np.logical_and.reduce([rows[k].astype(str) == str(line[k]) for k in keys])]
        values = pd.to_numeric(group["F1"], errors="coerce").dropna()
        if len(values) and verdicts.stats(group.loc[values.index], "F1").degenerate:
            mark = "F1: degenerate threshold (constant prediction), not a result"
            table.loc[i, "note"] = "; ".join(n for n in (table.loc[i, "note"], mark) if n)
    return table


def this_run_label(config, image_size: int) -> str:
    return f"this run ({config.profile.name}, {image_size} px)"


def with_budget_rows(rows: pd.DataFrame, label: str, dataset: str = "pneumonia",
                     budget: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our rows (variant = ``label``), each method followed by its best-budget row from results/budget/ (the rung
    chosen on validation AUROC; `adlib.notebook.best_budget_rows`), labelled with its budget and architecture."""
    parts = []
    for method, group in rows.assign(variant=label).groupby("method", sort=False):
        parts.append(group)
        if method in BUDGET_METHODS:
            best = best_budget_rows(BUDGET_METHODS[method], dataset, budget)
            if len(best):
                first = best.iloc[0]
                parts.append(best.assign(method=method, variant=f"{first['budget']}; {first['detector']} at "
                                                                f"{int(first['image_size'])} px (budget study)"))
    return pd.concat(parts, ignore_index=True)


def class_mean_rows(rows: pd.DataFrame, n_classes_total: int = 10) -> pd.DataFrame:
    """Table 1 prints the mean over CIFAR-10's classes: one row per method and seed, the mean over the classes this
    run has (CIs are per class and not averaged); ``variant`` says how many classes it covers."""
    group = rows.groupby(["method", "seed"], sort=False)
    out = group[["AUROC", "AP"]].mean().reset_index()
    n = rows["variant"].nunique()
    return out.assign(variant=f"mean over {n} of {n_classes_total} classes", dataset="cifar10")


# ----------------------------------------------------------------------------------------------------------------
# conclusions
# ----------------------------------------------------------------------------------------------------------------
def _of(rows: pd.DataFrame, method: str) -> pd.DataFrame:
    return rows[rows["method"] == method]


def chance_lines(rows: pd.DataFrame, methods=None) -> list[str]:
    """A chance sentence for every method that is not above chance (and one line saying when none is)."""
    methods = list(dict.fromkeys(rows["method"])) if methods is None else methods
    out = [verdicts.chance_sentence(_of(rows, m)) for m in methods
           if len(_of(rows, m)) and verdicts.chance_status(_of(rows, m)) != "above chance"]
    return out or [f"Every method here ({', '.join(methods)}) is above chance on the test split."]


def validation_line(rows: pd.DataFrame) -> str:
    """How much the validation AUROC flatters the test AUROC (same models; thresholds come from validation)."""
    s = rows.groupby("method", sort=False)[["AUROC", "val_AUROC"]].mean() * 100
    gap = s["val_AUROC"] - s["AUROC"]
    line = (f"Validation AUROC minus test AUROC, same models: mean {gap.mean():+.1f} points over {len(gap)} methods, "
            f"positive for {int((gap > 0).sum())} (largest: {gap.idxmax()}, {gap.max():+.1f}). ")
    if (gap > 0).sum() > len(gap) / 2 and gap.mean() > 0:
        return line + ("Validation flatters: it is drawn like the training images, the test split is not (notebook "
                       "00 measures that shift); the tables report test AUROC.")
    return line + "In this run validation does not flatter most methods; the tables report test AUROC."


def table2_lines(rows: pd.DataFrame, paper: pd.DataFrame, alternatives: dict[str, str]) -> list:
    """Under Table 2: chance, our rows against the paper's printed numbers, validation vs test, and the perceptual
    network (``alternatives``: default method -> the same method on the alternative weights)."""
    out = chance_lines(rows)
    gaps = verdicts.paper_gaps(rows, as_printed_rows(paper, "pneumonia"))
    if len(gaps):
        out += ["Against the paper's printed numbers, which are on its NIH subset (adult X-rays, ImageNet VGG19, hours "
                "of training): context, not targets.", *gaps["sentence"]]
    out.append(validation_line(rows))
    out += [verdicts.compare(_of(rows, a), _of(rows, b)) for a, b in alternatives.items()
            if len(_of(rows, a)) and len(_of(rows, b))]
    return out


def claims(rows: pd.DataFrame) -> list:
    """The paper's Table 2 claims, checked step by step with the seed spread and the test-image CIs."""
    orders = ["DPA (w/o p.g.) > Deep GEO", "DPA (w/o p.g.) > Deep IF", "DPA (with p.g.) > DPA (w/o p.g.)",
              "DPA (w/o p.g.) > L1-AE"]
    present = set(rows["method"])
    return [verdicts.order_claim(rows, o) for o in orders if all(m.strip() in present for m in o.split(">"))]


def detail_frame(scores: dict[str, np.ndarray], images) -> pd.DataFrame:
    """`adlib.shift.detail_diagnostic` per method (scores on ``images``, the test split): AUROCs in %."""
    import warnings

    from scipy.stats import ConstantInputWarning

    from ...shift import detail_diagnostic

    with warnings.catch_warnings():  # a constant score (an untrained smoke model) has no correlation: NaN, shown as —
        warnings.simplefilter("ignore", ConstantInputWarning)
        out = pd.DataFrame([{"method": m, **detail_diagnostic(s, images)} for m, s in scores.items()])
    out[["score_AUROC", "detail_AUROC"]] *= 100
    return out.rename(columns={"score_AUROC": "score AUROC", "detail_AUROC": "detail alone AUROC",
                               "spearman_score_detail": "Spearman(score, detail)",
                               "spearman_within_normal": "within normal", "spearman_within_anomalous":
                                   "within pneumonia"})


def detail_display(detail: pd.DataFrame) -> pd.DataFrame:
    """detail_frame for reading: AUROCs with one decimal, correlations with two and a sign."""
    out = detail.copy()
    for c in ("Spearman(score, detail)", "within normal", "within pneumonia"):
        out[c] = [f"{v:+.2f}" if np.isfinite(v) else "—" for v in out[c]]
    for c in ("score AUROC", "detail alone AUROC"):
        out[c] = [f"{v:.1f}" for v in out[c]]
    return out


def percent_display(frame: pd.DataFrame, columns, digits: int = 1) -> pd.DataFrame:
    """Fractions in ``columns`` as percent strings (the reading tables' unit); other columns unchanged."""
    out = frame.copy()
    for c in columns:
        if c in out.columns:
            out[c] = [f"{100 * v:.{digits}f}" if pd.notna(v) else "—" for v in pd.to_numeric(out[c], errors="coerce")]
    return out


def exact_caption(grid: pd.DataFrame, n_test: int | None = None) -> str:
    """What the grid's two test AUROCs are computed on (for its caption); n_test: the test split's size."""
    whole = f"test_AUROC: all {n_test} test images" if n_test else "test_AUROC: the whole test split"
    if "AUROC_medmnist_exact" not in grid.columns:
        return whole
    n = pd.to_numeric(grid["n_test_medmnist_exact"], errors="coerce").dropna()
    return (f"{whole}; AUROC_medmnist_exact: the {int(n.iloc[0]) if len(n) else '?'} of them that are in "
            "MedMNIST's own test split")


def grid_display(grid: pd.DataFrame) -> pd.DataFrame:
    """The selection grid for reading: AUROCs in %, the held-out loss with one number of decimals for the whole
    column (two significant digits of its smallest value)."""
    out = percent_display(grid, ("val_AUROC_mean", "val_AUROC_std", "test_AUROC", "AUROC_medmnist_exact"))
    loss = pd.to_numeric(grid["heldout_normal_loss"], errors="coerce")
    small = loss[loss > 0].min() if (loss > 0).any() else 1.0
    decimals = int(min(4, max(1, 1 - np.floor(np.log10(small)))))
    out["heldout_normal_loss"] = [f"{v:.{decimals}f}" if np.isfinite(v) else "—" for v in loss]
    return out.drop(columns=[c for c in ("weights", "n_test_medmnist_exact") if c in out.columns])


def detail_lines(detail: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """Why a row is below (or at) chance, from the detail measurement; one line when no row is."""
    d = detail.set_index("method")
    base = (f"Fine detail alone (mean |vertical gradient|) scores AUROC {d['detail alone AUROC'].iloc[0]:.1f} on "
            "this test split: pneumonia images are smoother")
    out = []
    for method in d.index:
        status = verdicts.chance_status(_of(rows, method)) if len(_of(rows, method)) else "above chance"
        if status == "above chance":
            continue
        rho = d.loc[method, "Spearman(score, detail)"]
        if not np.isfinite(rho):
            out.append(f"**{method}** is **{status}**: its test scores are constant, so it ranks nothing.")
            continue
        follows = (f"its score rises with detail (Spearman {rho:+.2f}; within normal "
                   f"{d.loc[method, 'within normal']:+.2f}, within pneumonia {d.loc[method, 'within pneumonia']:+.2f}),"
                   " so it ranks the smooth pneumonia images as normal: the inversion is what a detail-following "
                   "score does, not a bug") if rho > 0.3 else \
            f"its score hardly follows detail (Spearman {rho:+.2f}), so detail does not explain it"
        out.append(f"**{method}** is **{status}**; {follows}.")
    if not out:
        return [base + f"; no Table 2 row is below or at chance in this run, so none needs that explanation."]
    return [base + ".", *out, "What would change it: a score that follows content rather than detail (the "
            "perceptual loss) or more training; the best-budget rows in Table 2 show what the budget study measured."]


def _kwargs_text(row: pd.Series) -> str:
    try:
        kw = json.loads(row.get("detector_kwargs", "") or "{}")
    except (TypeError, ValueError):
        kw = {}
    keys = ("loss", "layers", "width", "widths", "latent", "steps", "batch_size")
    return ", ".join(f"{k} {'+'.join(kw[k]) if isinstance(kw[k], list) else kw[k]}" for k in keys if k in kw)


def budget_lines(rows: pd.DataFrame, dataset: str = "pneumonia", budget: pd.DataFrame | None = None) -> list:
    """Per method of BUDGET_METHODS: the budget study's best rung (chosen on validation) against this run, or a line
    saying it is not measured yet."""
    all_rows = budget_rows() if budget is None else budget
    out = []
    for ours, theirs in BUDGET_METHODS.items():
        best = best_budget_rows(theirs, dataset, all_rows)
        if best.empty:
            out.append(f"**{theirs}**: the budget study (results/budget/) has no {dataset} row yet: not measured.")
            continue
        mine = all_rows[(all_rows["method"] == theirs) & (all_rows["dataset"] == dataset)]
        rungs = sorted(int(v) for v in mine["budget_multiplier"].dropna().unique())
        first = best.iloc[0]
        line = (f"**{theirs}** in the budget study ({first['detector']}, {int(first['image_size'])} px; "
                f"{_kwargs_text(first)}): rungs x{', x'.join(map(str, rungs))} measured; the best by validation "
                f"AUROC, {first['budget']}, has test {verdicts.stats(best).text()}, "
                f"**{verdicts.chance_status(best)}**")
        if len(_of(rows, ours)):
            line += f"; this run's {ours}: {verdicts.stats(_of(rows, ours)).text()}"
        line += (". Only the first rung is measured, so whether more training helps is not known yet."
                 if len(rungs) == 1 else ".")
        out.append(line)
    return out


def selection_lines(full_rows: list[dict], names: list[str], choice: dict, fig5: pd.DataFrame) -> list:
    """Sec. III-C: the weakly-supervised pick against the unsupervised pick (test AUROC of each retrained config),
    and Fig. 5's gap to the grid's best with the most validation anomalies (paper: within 2 points with 20)."""
    frame = pd.DataFrame(full_rows)
    ws, us = choice["weakly-supervised"], choice["unsupervised"]
    aurocs = frame["AUROC"] * 100
    out = [f"The grid's configurations span test AUROC {aurocs.min():.1f}–{aurocs.max():.1f} (one seed each)."]
    if ws == us:
        out.append(f"Both criteria pick **{names[ws]}** (test AUROC {aurocs[ws]:.1f}): the grid cannot tell the "
                   "weakly-supervised criterion from the unsupervised one in this run.")
    else:
        out.append(verdicts.compare(frame.iloc[ws], frame.iloc[us],
                                    names=(f"weakly-supervised pick {names[ws]}", f"unsupervised pick {names[us]}")))
    last = fig5.iloc[-1]
    out.append(f"With {int(last['n_anomalies'])} validation anomalies the selected configuration is on average "
               f"{100 * last['gap to best config']:.1f} points below the grid's best test AUROC (mean over the "
               "sampled validation sets; the figure shows their spread). The paper: within 2 points with 20 "
               "anomalies, over a larger grid.")
    return out


def ablation_lines(rows: pd.DataFrame, paper: pd.DataFrame) -> list:
    """Table 4: rows (4)-(9) (extra L1 / adversarial terms) and (10) (progressive growing) against row (3), each
    by `verdicts.compare` (one seed each: their test-image CIs decide), and the paper's own count."""
    by_row = {v: rows[rows["variant"] == v] for v in rows["variant"]}
    base = next((v for v in by_row if v.startswith("(3)")), None)
    if base is None:
        return []
    extra = [v for v in by_row if v.split(")")[0] in {f"({i}" for i in range(4, 10)}]
    outcomes = {v: verdicts.compare(by_row[v], by_row[base], names=(v, base)) for v in extra}
    count = {k: sum(c.outcome == k for c in outcomes.values()) for k in ("worse", "tie", "better")}
    p = paper.set_index("variant")["paper"]
    paper_worse = sum(p.get(v, np.nan) < p.get(base, np.nan) for v in extra)
    out = [f"Extra L1 or adversarial terms against row (3): **{count['worse']} of {len(extra)} worse** beyond noise, "
           f"{count['tie']} tied, {count['better']} better (one seed each; the test-image CIs decide). The paper: "
           f"{paper_worse} of {len(extra)} below row (3) on the NIH subset, the adversarial rows the most."]
    out += [c for c in outcomes.values() if c.outcome != "tie"]
    for prefix in ("(10)", "(1)"):
        other = next((v for v in by_row if v.startswith(prefix)), None)
        if other is not None:
            out.append(verdicts.compare(by_row[other], by_row[base], names=(other, base)))
    return out


def conclusions(table2: pd.DataFrame, paper: pd.DataFrame, selection: list, ablation: list, budget: list) -> list:
    """The discussion: the paper's four claims as checked here, each with its numbers."""
    printed_line = ", ".join(f"{m} {v:.1f}" for m, v in zip(paper["method"], paper["paper"]))
    return ["**Claims 1 and 2 on Table 2's rows** (DPA beats the baselines; progressive growing adds a little; the "
            f"perceptual loss beats pixel L1). The paper's AUROCs on its NIH subset: {printed_line}.",
            *claims(table2),
            "**Claim 3 (a few anomalies choose the hyperparameters)**:", *selection,
            "**Claim 4 (extra L1 or adversarial terms only hurt)**, with row (10) (progressive growing) and row (1) "
            "(pixel L1):",
            *ablation, "**Budget**: what more training measured so far:", *budget]
