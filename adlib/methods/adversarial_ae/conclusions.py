"""Notebook 03's generated text: the diagnostics of its below-chance rows and the conclusions, as Markdown built
from the result rows through `adlib.verdicts` (chance status, comparisons beyond the seed spread, the paper's
order). Nothing here types a number: every sentence states what the rows hold.

Diagnostics (issue 19's "CCB-AAE and Skip-GANomaly have validation AUROC <= 0.31 at every alpha"): Eq. 2 mixes
an image term D1 and a latent term D2; alpha = 1 is the image term alone, alpha = 0 the latent term alone, so if
both are below chance no alpha can help. `component_table` measures each term's validation AUROC and its rank
correlation with fine image detail (`adlib.shift.fine_detail`: pneumonia images are smoother, and detail alone
ranks them far below chance).
"""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ... import verdicts
from ...data.imageset import ImageSet
from ...metrics import auroc
from ...shift import fine_detail
from .detector import AdversarialAEDetector
from .experiments import AE_FAMILY, BUDGET_METHODS, CLAIM, GAN_BASELINES, METHODS, budget_settings

DETAIL_RHO = 0.1  # |Spearman| below this: the term does not follow image detail


# ----- diagnostics of the score's two terms ------------------------------------------------------------------
def component_table(detectors: dict[tuple[str, int], object], val: ImageSet) -> pd.DataFrame:
    """Per (method, seed): the validation AUROC (%) of Eq. 2's image term alone (alpha = 1), of its latent term
    alone (alpha = 0) and at the chosen alpha, and each term's Spearman correlation with fine image detail."""
    detail = fine_detail(val)
    rows = []
    for (method, seed), det in detectors.items():
        comps = det.score_components(val)
        row = {"method": method, "seed": seed, "alpha": det.alpha, "kept step": det.history.best_step}
        for term in ("image", "latent"):
            row[f"{term} term AUROC"] = round(100 * auroc(val.labels, comps[term]), 1)
        row["chosen-alpha AUROC"] = round(100 * auroc(val.labels, det.score(val)), 1)
        for term in ("image", "latent"):
            row[f"{term} term ρ(detail)"] = round(float(spearmanr(comps[term], detail).statistic), 2)
        rows.append(row)
    return pd.DataFrame(rows)


def _term_status(values: pd.Series, method: str) -> str:
    return verdicts.chance_status(pd.DataFrame({"method": method, "AUROC": values / 100}))


def component_sentences(table: pd.DataFrame, val: ImageSet) -> list[str]:
    """What the component table shows, one sentence per method, and what detail alone does on validation."""
    detail_auroc = 100 * auroc(val.labels, fine_detail(val))
    out = [f"Fine detail alone (mean |vertical gradient|, higher = more anomalous) has validation AUROC "
           f"{detail_auroc:.1f}: the pneumonia images of this split are "
           f"{'smoother' if detail_auroc < 50 else 'not smoother'}"
           " than the normal ones, so a score that grows with detail ranks pneumonia as normal."]
    for method, group in table.groupby("method", sort=False):
        parts = []
        for term in ("image", "latent"):
            values, rho = group[f"{term} term AUROC"], group[f"{term} term ρ(detail)"].mean()
            follows = ("rises with" if rho > DETAIL_RHO else "falls with" if rho < -DETAIL_RHO else "hardly follows")
            parts.append(f"its {term} term alone {_mean_text(values)} ({_term_status(values, method)}; it {follows} "
                         f"detail, ρ {rho:+.2f})")
        image_status = _term_status(group["image term AUROC"], method)
        latent_status = _term_status(group["latent term AUROC"], method)
        if image_status == latent_status == "below chance":
            verdict = "both terms are below chance, so no alpha of Eq. 2 can lift the score above chance"
        elif "above chance" in (image_status, latent_status):
            verdict = "one term is above chance, and the alpha chosen on validation can use it"
        else:
            verdict = "neither term is above chance"
        out.append(f"**{method}** ({len(group)} seed{'s' if len(group) > 1 else ''}, validation): "
                   f"{'; '.join(parts)}: {verdict} (chosen alpha {_alpha_text(group['alpha'])}, "
                   f"{_mean_text(group['chosen-alpha AUROC'])}).")
    return out


def _mean_text(values: pd.Series) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if len(values) > 1:
        return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"
    return f"{values.mean():.1f}" if len(values) else "—"


def _alpha_text(alphas: pd.Series) -> str:
    return ", ".join(f"{a:g}" for a in alphas)


def training_sentences(detectors: dict[str, object]) -> list[str]:
    """Per detector: the validation AUROC at the first and last evaluated step, and which step was kept."""
    out = []
    for name, det in detectors.items():
        h = det.history
        if h is None or len(h.eval_steps) < 2:
            continue
        first, last = 100 * h.monitor_values[0], 100 * h.monitor_values[-1]
        trend = "falls" if last < first - 1 else "rises" if last > first + 1 else "changes little"
        earliest = " (the earliest evaluated step)" if h.best_step == h.eval_steps[0] else ""
        out.append(f"**{name}**: validation AUROC {trend}, {first:.1f} at step {h.eval_steps[0]} and {last:.1f} at "
                   f"step {h.eval_steps[-1]}; the checkpoint kept is step {h.best_step}{earliest}.")
    return out


# ----- chance, order, baselines ----------------------------------------------------------------------------------
def _scored(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with a test AUROC (a diverged run has none and is listed by the reading tables' note)."""
    return rows[pd.to_numeric(rows["AUROC"], errors="coerce").notna()]


def chance_overview(rows: pd.DataFrame, dataset: str) -> str:
    """Every method of one dataset sorted into above / at / below chance (test AUROC, seed spread and CI)."""
    groups: dict[str, list[str]] = {"above chance": [], "at chance": [], "below chance": []}
    rows = _scored(rows)
    for method in [m for m in METHODS if m in set(rows["method"])]:
        s = verdicts.stats(rows[rows["method"] == method], "AUROC")
        groups[verdicts.chance_status(rows[rows["method"] == method])].append(f"{method} {s.mean * 100:.1f}")
    text = "; ".join(f"{status}: {', '.join(names)}" for status, names in groups.items() if names)
    return f"**{dataset}** test AUROC: {text}."


def order_sentence(rows: pd.DataFrame, dataset: str, order: str = CLAIM) -> str:
    """The paper's order on one dataset: the verdict and each step's label (`verdicts.order_claim`)."""
    rows, names = _scored(rows), [n.strip() for n in order.split(">")]
    missing = [n for n in names if n not in set(rows["method"])]
    if missing:
        return f"**{dataset}**: claim {order} not checked (no scored rows of {', '.join(missing)})."
    claim = verdicts.order_claim(rows, order)
    steps = "; ".join(f"{s.a.name} vs {s.b.name}: {s.label}" for s in claim.steps)
    return f"**{dataset}**: claim {' > '.join(claim.order)} **{claim.verdict}** ({steps})."


def best_other_sentence(rows: pd.DataFrame, dataset: str, method: str = "CCB-AAE") -> str:
    """The paper's headline (CCB-AAE is the best method on every task) on one dataset: CCB-AAE against the other
    method with the highest mean test AUROC."""
    rows = _scored(rows)
    means = rows.groupby("method")["AUROC"].mean().drop(method, errors="ignore").dropna()
    if means.empty or method not in set(rows["method"]):
        return ""
    rival = means.idxmax()
    c = verdicts.compare(rows[rows["method"] == method], rows[rows["method"] == rival], "AUROC")
    return f"**{dataset}**: {method} vs the strongest other method, {rival}: **{c.label}** ({c.reason})."


def baselines_sentence(rows: pd.DataFrame, dataset: str) -> str:
    """The paper's tables put AnoGAN and EGBAD below the adversarial autoencoders; here, chance-aware: the best
    GAN baseline against the best adversarial autoencoder (by mean test AUROC)."""
    rows = _scored(rows)
    means = rows.groupby("method")["AUROC"].mean()
    gans, aes = means.reindex(GAN_BASELINES).dropna(), means.reindex(AE_FAMILY).dropna()
    if gans.empty or aes.empty:
        return ""
    ae, gan = aes.idxmax(), gans.idxmax()
    a, b = rows[rows["method"] == ae], rows[rows["method"] == gan]
    status = {m: verdicts.chance_status(r) for m, r in ((ae, a), (gan, b))}
    c = verdicts.compare(a, b, "AUROC")
    head = (f"**{dataset}**, GAN baselines vs adversarial autoencoders (the paper: baselines below): best autoencoder "
            f"{ae} {c.a.text()} is {status[ae]}, best GAN baseline {gan} {c.b.text()} is {status[gan]}")
    below = [m for m in (ae, gan) if status[m] == "below chance"]
    if len(below) == 2:
        return head + ": both below chance, so the order is not tested here."
    if below == [ae]:
        return head + ": the best autoencoder ranks anomalies below normals, so the paper's order is not seen here."
    if below == [gan]:
        return head + (": the baselines rank anomalies below normals, so the order looks like the paper's, but only "
                       "against a below-chance reference, not a test of it.")
    holds = {"better": "reproduces", "worse": "is reversed"}.get(c.outcome, "is not resolved")
    return head + f": **{c.label}** ({c.reason}); the paper's order {holds} here."


def degenerate_sentence(frames: dict[str, pd.DataFrame]) -> str:
    """How many rows have a degenerate validation threshold (their ACC/F1 show as '—' and count for nothing)."""
    from ...results import as_flags

    parts, total, bad = [], 0, 0
    for name, rows in frames.items():
        if "degenerate" not in rows.columns or rows.empty:
            continue
        flags = as_flags(rows["degenerate"])
        total, bad = total + len(flags), bad + int(flags.sum())
        if flags.any():
            parts.append(f"{name}: {', '.join(sorted(set(rows.loc[flags, 'method'])))}")
    if not total:
        return ""
    rule = ", ".join(sorted({str(r) for f in frames.values() if "threshold_rule" in f for r in f["threshold_rule"]}))
    return (f"Threshold rule {rule or 'of the rows'}: {bad} of {total} rows have a degenerate threshold (one class for "
            "almost every image); their ACC/F1 show as '—' and are never compared" + (f" ({'; '.join(parts)})."
                                                                                      if parts else "."))


def exact_sentence(rows: pd.DataFrame, dataset: str = "pneumonia") -> str:
    """The AUROC on the MedMNIST-exact test images beside the full rebuilt test split, per method."""
    if "AUROC_medmnist_exact" not in rows.columns or rows["AUROC_medmnist_exact"].isna().all():
        return ""
    g = rows.groupby("method", sort=False)[["AUROC", "AUROC_medmnist_exact"]].mean().dropna()
    n = int(pd.to_numeric(rows["n_test_medmnist_exact"], errors="coerce").max())
    diffs = ", ".join(f"{m} {100 * (r.AUROC_medmnist_exact - r.AUROC):+.1f}" for m, r in g.iterrows())
    return (f"**{dataset}**: on the {n} test images that are exactly MedMNIST's (the rebuilt split adds Kaggle-only "
            f"normals), AUROC minus the full-split AUROC, in points: {diffs}.")


# ----- the budget study ----------------------------------------------------------------------------------------
def budget_sentences(ladder: pd.DataFrame, best: pd.DataFrame, cfg) -> list[str]:
    """Whether the claim holds at the best budget measured, and what the ladder shows per method."""
    if ladder.empty:
        return ["No budget-study rows for this notebook's methods on PneumoniaMNIST (results/budget/)."]
    out = []
    if not best.empty and set(AE_FAMILY) <= set(best["method"]):
        claim = verdicts.order_claim({m: best[best["method"] == m] for m in AE_FAMILY}, CLAIM)
        steps = "; ".join(f"{s.a.name} vs {s.b.name}: {s.label}" for s in claim.steps)
        out.append(f"At the best budget measured (each method's rung with the best validation AUROC), claim "
                   f"{' > '.join(claim.order)} **{claim.verdict}** ({steps}).")
    for method in [m for m in BUDGET_METHODS if m in set(ladder["method"])]:
        rungs = ladder[ladder["method"] == method]
        labels = ", ".join(f"{b} ({w})" for b, w in zip(rungs["budget"], rungs["width"]))
        if rungs["test AUROC"].nunique() == 1 and rungs["kept step"].nunique() == 1:
            out.append(f"**{method}**: the same test AUROC {rungs['test AUROC'].iloc[0]:.1f} at every rung measured "
                       f"({labels}): the validation-AUROC checkpoint keeps step {rungs['kept step'].iloc[0]} in each, "
                       "so a longer run returns the same weights.")
        else:
            lo, hi = rungs.loc[rungs["test AUROC"].idxmin()], rungs.loc[rungs["test AUROC"].idxmax()]
            out.append(f"**{method}**: test AUROC from {lo['test AUROC']:.1f} ({lo['budget']}, {lo['width']}) to "
                       f"{hi['test AUROC']:.1f} ({hi['budget']}, {hi['width']}) over the rungs measured ({labels}); kept steps "
                       f"{', '.join(rungs['kept step'])}.")
    theirs = budget_settings(AE_FAMILY[-1])
    ours = {"batch_size": cfg["batch_size"], "lr": cfg["lr"], "nz": cfg["nz"], "eval_every": cfg["eval_every"],
            "max_width": inspect.signature(AdversarialAEDetector).parameters["max_width"].default}
    differ = [f"{k} {theirs[k]:g} (here {v:g})" for k, v in ours.items() if k in theirs and theirs[k] != v]
    if differ:
        out.append("The budget study trains with the benchmark's cpu settings, not this notebook's: "
                   + ", ".join(differ) + "; its rows are a second measurement, not this run trained longer.")
    return out


# ----- the ablation of the chain length -------------------------------------------------------------------------
def length_sentence(rows: pd.DataFrame) -> str:
    """CCB length (Tables 6/7) on RetinaMNIST: AUROC per factor (mean over grades), ACC/F1 without the degenerate
    rows, the rank correlation with length, and how large a difference one seed can resolve."""
    from ...results import as_flags

    if rows.empty:
        return ""
    ok = rows[~as_flags(rows["degenerate"])] if "degenerate" in rows.columns else rows
    by = rows.groupby("factor")["AUROC"].mean() * 100
    rho = {"AUROC": spearmanr(by.index, by.values).statistic if len(by) > 2 else np.nan}
    thr = ok.groupby("factor")[["ACC", "F1"]].mean() * 100
    for m in ("ACC", "F1"):
        rho[m] = spearmanr(thr.index, thr[m].values).statistic if len(thr) > 2 else np.nan
    half = ((rows["AUROC_ci_high"] - rows["AUROC_ci_low"]) / 2).mean() * 100 if "AUROC_ci_high" in rows else np.nan
    corr = ", ".join(f"{m} {v:+.2f}" for m, v in rho.items() if np.isfinite(v))
    corr = f"Spearman correlation of length with {corr}" if corr else "No rank correlation (fewer than 3 lengths)"
    return (f"CCB length on RetinaMNIST (mean over grades; {rows['seed'].nunique()} seed(s)): AUROC "
            + ", ".join(f"x{f} {v:.1f}" for f, v in by.items()) + f"; best AUROC at x{by.idxmax()}"
            + (f", best F1 at x{thr['F1'].idxmax()} ({len(rows) - len(ok)} degenerate rows left out)"
               if len(thr) else "")
            + f". {corr} (the paper: shorter is better, [1,2,3,4] best). A test-image CI half-width of {half:.1f} "
            "points per grade means differences smaller than that are not resolved.")


# ----- all of it -------------------------------------------------------------------------------------------------
def conclusions(cifar: pd.DataFrame, medical: pd.DataFrame, retina_grades: pd.DataFrame, length: pd.DataFrame,
                timing: pd.DataFrame, cfg) -> list[str]:
    """The discussion of notebook 03 as Markdown paragraphs, generated from this run's rows."""
    out = ["**The paper's order among the adversarial autoencoders** (test AUROC; a step holds only beyond the seed "
           "spread and the test-image CI, and two below-chance models are not ranked):"]
    for dataset, rows in [*((f"CIFAR-10 {c} anomalous", g) for c, g in cifar.groupby("variant", sort=False)),
                          *((d, g) for d, g in medical.groupby("dataset", sort=False))]:
        out.append("- " + order_sentence(rows, dataset))
    out.append("**CCB-AAE against the best other method** (the paper: CCB-AAE best on every task):")
    for dataset, rows in [*((f"CIFAR-10 {c}", g) for c, g in cifar.groupby("variant", sort=False)),
                          *((d, g) for d, g in medical.groupby("dataset", sort=False))]:
        out.append("- " + best_other_sentence(rows, dataset))
    out.append("**Chance** (every method, test AUROC):")
    out += ["- " + chance_overview(g, d) for d, g in medical.groupby("dataset", sort=False)]
    out += ["- " + baselines_sentence(g, d) for d, g in medical.groupby("dataset", sort=False)]
    out += [s for s in (exact_sentence(medical[medical["dataset"] == "pneumonia"]),
                        degenerate_sentence({"medical": medical, "retina per grade": retina_grades}),
                        length_sentence(length)) if s]
    cost = pd.to_numeric(timing.get("search_s_per_image", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(cost):
        out.append(f"AnoGAN's latent search ({cfg['anogan_search_steps']} steps) costs {cost.mean() * 1000:.1f} ms per "
                   "image on this machine; the autoencoders score an image in one forward pass.")
    return out
