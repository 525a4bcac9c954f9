"""Notebook 00's glue: the protocol's numbers said in words, the two threshold rules side by side, the two test sets
of PneumoniaMNIST at 64/128 px, the train/test shift, and the conclusions. Every sentence is built from numbers
passed in (or read from committed results/*.csv); nothing here is typed as a result.

Also used by notebook 01: `validation_vs_test` (how much validation AUROCs flatter, from committed rows).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import verdicts
from .metrics import ScoredSplit, all_anomalous_baseline, auroc, select_threshold_on_validation
from .paths import PROJECT_ROOT
from .results import as_flags

COMMITTED_RESULTS = PROJECT_ROOT / "results"  # read-only here: the rows of the last cpu execution
RULE_NAMES = {"youden": "Youden's J (default)", "f1max": "F1-max"}


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


def _mean_std(values) -> str:
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna() * 100
    if len(values) > 1:
        return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"
    return f"{values.mean():.1f} (1 seed)" if len(values) else "—"


# ----------------------------------------------------------------------------------------------------------------
# the splits
# ----------------------------------------------------------------------------------------------------------------
def test_split_note(protocol) -> str:
    """What the test split of ``protocol`` is, in Markdown: its counts, its source, and (for the rebuilt
    PneumoniaMNIST files) how many of its images are exactly MedMNIST's."""
    test, source = protocol.test, protocol.source
    counts, n = test.counts(), len(test)
    where = f"`{protocol.data_source()}`"
    exact = test.medmnist_exact
    if source is None or exact is None:
        return f"The test split ({where}) has {counts['normal']} normal and {counts['anomalous']} anomalous images."
    if source.kind == "official" or exact.all():
        return (f"The {test.size} px test split is MedMNIST's own ({where}): {counts['normal']} normal and "
                f"{counts['anomalous']} pneumonia images.")
    others = test.subset(~exact).counts()
    return (f"The {test.size} px file ({where}) is a **known substitute** rebuilt from the Kermany / Kaggle "
            f"`chest_xray` images. Its test split is the Kaggle test set: {counts['normal']} normal and "
            f"{counts['anomalous']} pneumonia images. **It is not exactly MedMNIST's test split**: {int(exact.sum())} "
            f"of its {n} images are MedMNIST's own test images, the other {n - int(exact.sum())} ({others['normal']} "
            f"normal, {others['anomalous']} pneumonia) are Kaggle-only images standing in for MedMNIST test images "
            "that no public copy holds (`matched_to_official = 0` in the provenance CSV beside the file). Every "
            f"pneumonia row therefore carries two test AUROCs: `AUROC` on all {n} images and `AUROC_medmnist_exact` "
            f"on the {int(exact.sum())} MedMNIST-exact ones.")


def class_ratio_note(protocol) -> str:
    """The validation and test class counts, and what calling every image anomalous scores on each (Markdown)."""
    parts = []
    for name, split in (("validation", protocol.val), ("test", protocol.test)):
        c, base = split.counts(), all_anomalous_baseline(split.labels)
        parts.append(f"the {name} split has {c['normal']} normal and {c['anomalous']} anomalous images "
                     f"({c['anomalous'] / len(split):.0%} anomalous): calling every image anomalous scores "
                     f"F1 {_pct(base['F1'])} and ACC {_pct(base['ACC'])} on it")
    return "In this run, " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------------------------------------------
# the threshold rule
# ----------------------------------------------------------------------------------------------------------------
def threshold_rules_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per seed and rule: the test F1, ACC, SEN, SPE (in %) at the threshold each rule chose on validation, and
    whether that threshold is degenerate (one class for almost every image)."""
    out = []
    for _, row in rows.iterrows():
        for rule, suffix in (("youden", ""), ("f1max", "_f1max")):
            flag = bool(as_flags(pd.Series([row.get(f"degenerate{suffix}", False)]))[0])
            out.append({"seed": row.get("seed"), "rule (chosen on validation)": RULE_NAMES[rule],
                        **{m: round(float(row[f"{m}{suffix}"]) * 100, 1) for m in ("F1", "ACC", "SEN", "SPE")},
                        "degenerate": "yes: constant prediction" if flag else "no"})
    return pd.DataFrame(out)


def _rule_summary(rows: pd.DataFrame, suffix: str) -> dict:
    flags = as_flags(rows[f"degenerate{suffix}"]) if f"degenerate{suffix}" in rows else np.zeros(len(rows), bool)
    mean = {m: float(pd.to_numeric(rows[f"{m}{suffix}"], errors="coerce").mean()) for m in ("F1", "ACC", "SEN", "SPE")}
    return {"n_degenerate": int(flags.sum()), "n": len(rows), **mean}


def threshold_rules_sentences(rows: pd.DataFrame, test_labels) -> list[str]:
    """Which rule's threshold is degenerate on these rows, and what that means, as Markdown bullets."""
    base = all_anomalous_baseline(test_labels)
    lines, summaries = [], {}
    for rule, suffix in (("youden", ""), ("f1max", "_f1max")):
        s = summaries[rule] = _rule_summary(rows, suffix)
        text = (f"**{RULE_NAMES[rule]}**: degenerate for {s['n_degenerate']} of {s['n']} seed(s); mean test SEN "
                f"{_pct(s['SEN'])}, SPE {_pct(s['SPE'])}, F1 {_pct(s['F1'])}, ACC {_pct(s['ACC'])}")
        if s["n_degenerate"] and s["SEN"] >= s["SPE"]:
            text += (f". A threshold that calls (almost) every image anomalous: its F1 and ACC are those of the "
                     f"constant prediction (F1 {_pct(base['F1'])}, ACC {_pct(base['ACC'])} on this test split) "
                     "and say nothing about the detector")
        elif s["n_degenerate"]:
            text += ". A threshold that calls (almost) every image normal: its F1/ACC/SEN/SPE are not a result"
        lines.append(text + ".")
    y, f = summaries["youden"]["n_degenerate"], summaries["f1max"]["n_degenerate"]
    if f > y:
        lines.append(f"F1-max collapses to a constant prediction in {f} seed(s), Youden's J in {y}: F1 rewards "
                     "recall of the majority class, so on a mostly-anomalous validation split a weak score's F1 "
                     "maximum sits at the lowest scores, where almost everything is called anomalous. Youden's J "
                     "(SEN + SPE) does not depend on the class ratio: "
                     "it is the library's default, and F1-max stays a labelled secondary column.")
    elif f and y:
        lines.append("Both rules are degenerate on some seeds: the score separates the validation classes too "
                     "weakly for any threshold to mean something. Read AUROC only.")
    else:
        lines.append("Neither rule is degenerate more often than the other on this run. Youden's J stays the "
                     "default because it does not depend on the class ratio (exercise 1 shows F1-max does).")
    return lines


def threshold_rules_figure(val: ScoredSplit, title: str = "choosing the threshold on validation"):
    """Validation F1 and Youden's J against the threshold, with both rules' choices marked."""
    import matplotlib.pyplot as plt

    order = np.unique(val.scores)
    pred = val.scores[None, :] >= order[:, None]
    y = val.labels.astype(bool)
    tp, fp = (pred & y).sum(1), (pred & ~y).sum(1)
    sen, spe = tp / max(y.sum(), 1), 1 - fp / max((~y).sum(), 1)
    f1 = 2 * tp / np.clip(pred.sum(1) + y.sum(), 1, None)
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    ax.plot(order, f1, label="F1 (validation)")
    ax.plot(order, sen + spe - 1, label="Youden's J = SEN + SPE − 1 (validation)")
    ax.plot(order, pred.mean(1), color="grey", lw=1, ls=":", label="share called anomalous")
    for rule, style in (("youden", "--"), ("f1max", "-.")):
        ax.axvline(select_threshold_on_validation(val, rule), color="k", ls=style, lw=1,
                   label=f"{RULE_NAMES[rule]} threshold")
    ax.set(xlabel="threshold on the anomaly score", ylabel="value on the validation split", title=title)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


# ----------------------------------------------------------------------------------------------------------------
# the two test sets
# ----------------------------------------------------------------------------------------------------------------
def two_test_sets_table(scored: dict[str, list[ScoredSplit]]) -> pd.DataFrame:
    """Per detector (its seeds' scored test splits): the AUROC on the full test split and on the MedMNIST-exact
    images (in %), and the change from masking the others."""
    out = []
    for name, splits in scored.items():
        full, exact = [], []
        for s in splits:
            mask = s.medmnist_exact if s.medmnist_exact is not None else np.ones(len(s.labels), bool)
            full.append(auroc(s.labels, s.scores))
            exact.append(auroc(s.labels[mask], s.scores[mask]))
        n, n_exact = len(splits[0].labels), int(mask.sum())
        out.append({"detector": name, f"full test AUROC ({n} images)": _mean_std(full),
                    f"MedMNIST-exact AUROC ({n_exact} images)": _mean_std(exact),
                    "change (points)": round((np.mean(exact) - np.mean(full)) * 100, 1)})
    return pd.DataFrame(out)


def _committed_rows(pattern: str, results_dir: Path) -> list[tuple[str, pd.DataFrame]]:
    frames = []
    for path in sorted(Path(results_dir).glob(pattern)):
        if path.stem.endswith("_summary") or "timing" in path.stem:
            continue
        frame = pd.read_csv(path, low_memory=False)
        if "dataset" in frame.columns and "AUROC" in frame.columns:
            frames.append((path.stem, frame[frame["dataset"] == "pneumonia"]))
    return frames


def masking_effect(results_dir: Path | None = None, budget: pd.DataFrame | None = None) -> pd.DataFrame:
    """How much masking the Kaggle-only test normals changes each detector's pneumonia test AUROC, from the
    committed rows that carry `AUROC_medmnist_exact`: notebooks 02-06 (one line per table, method and variant)
    and the budget study (each method's rung chosen by validation AUROC). Columns in % and points."""
    from .notebook import best_budget_rows, budget_rows

    groups = []
    for stem, frame in _committed_rows("0[2-6]_*.csv", results_dir or COMMITTED_RESULTS):
        if "AUROC_medmnist_exact" not in frame.columns:
            continue
        frame = frame.dropna(subset=["AUROC", "AUROC_medmnist_exact"])
        for (method, variant), g in frame.groupby(["method", "variant"], sort=False):
            groups.append((f"{stem}.csv", method, variant, g))
    budget = budget_rows() if budget is None else budget
    if not budget.empty and "AUROC_medmnist_exact" in budget.columns:
        for method in budget["method"].dropna().unique():
            best = best_budget_rows(method, "pneumonia", budget).dropna(subset=["AUROC", "AUROC_medmnist_exact"])
            if not best.empty:
                groups.append(("budget study", method, best["budget"].iloc[0], best))
    out = [{"source": source, "method": method, "variant": variant, "seeds": len(g),
            "px": int(g["image_size"].iloc[0]) if "image_size" in g.columns else None,
            "full test AUROC": round(g["AUROC"].mean() * 100, 1),
            "MedMNIST-exact AUROC": round(g["AUROC_medmnist_exact"].mean() * 100, 1),
            "change (points)": round((g["AUROC_medmnist_exact"] - g["AUROC"]).mean() * 100, 1)}
           for source, method, variant, g in groups]
    columns = ["source", "method", "variant", "seeds", "px", "full test AUROC", "MedMNIST-exact AUROC",
               "change (points)"]
    return pd.DataFrame(out, columns=columns)


def masking_summary(effect: pd.DataFrame) -> pd.DataFrame:
    """`masking_effect` per detector, for reading (the per-table lines stay in the CSV): rows, mean full-test and
    MedMNIST-exact AUROC (%), and the change in points as median with its range."""
    if effect.empty:
        return pd.DataFrame(columns=["method", "rows", "full test AUROC", "MedMNIST-exact AUROC", "change (points)"])
    out = []
    for method, g in effect.groupby("method", sort=False):
        change = g["change (points)"]
        spread = f" ({change.min():+.1f} to {change.max():+.1f})" if len(g) > 1 else ""
        out.append({"method": method, "rows": len(g), "full test AUROC": g["full test AUROC"].mean(),
                    "MedMNIST-exact AUROC": g["MedMNIST-exact AUROC"].mean(),
                    "change (points)": f"{change.median():+.1f}{spread}".replace("-0.0", "0.0").replace("+0.0", "0.0")})
    return pd.DataFrame(out).sort_values("full test AUROC", ascending=False, ignore_index=True)


def masking_sentences(effect: pd.DataFrame, n_masked: int | None = None) -> list[str]:
    """What the masking table says, as Markdown bullets."""
    sources = sorted({s for s in effect["source"] if s != "budget study"})
    where = (f"notebooks' committed tables ({', '.join(f'`{s}`' for s in sources)})" if sources else
             "the budget study only (the committed tables of notebooks 02-06 predate the `AUROC_medmnist_exact` "
             "column; they get it when re-executed)")
    if effect.empty:
        return ["No committed pneumonia row carries `AUROC_medmnist_exact` yet: the table fills when notebooks "
                "02-06 or the budget study are re-executed."]
    change = effect["change (points)"]
    masked = f"the {n_masked} Kaggle-only normals" if n_masked else "the Kaggle-only normals"
    top = effect.loc[change.abs().idxmax()]
    lines = [f"Rows from {where}: {len(effect)} detector rows.",
             f"Masking {masked} changes the test AUROC by {change.min():+.1f} to {change.max():+.1f} points "
             f"(median {change.median():+.1f}); it raises it for {int((change > 0.5).sum())} rows, lowers it for "
             f"{int((change < -0.5).sum())} and moves {int((change.abs() <= 0.5).sum())} by at most 0.5.",
             f"Largest change: {top['method']} ({top['variant']}, {top['source']}): {top['full test AUROC']:.1f} "
             f"→ {top['MedMNIST-exact AUROC']:.1f}."]
    if change.median() > 0.5:
        lines.append("The Kaggle-only normals are, on balance, scored as *more* anomalous than the other test "
                     "normals: they differ from the training normals (the shift section measures it), so the full "
                     "test split is harder than MedMNIST's own. Compare papers with the MedMNIST-exact column.")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# shift between the parts of the protocol
# ----------------------------------------------------------------------------------------------------------------
def shift_groups(protocol) -> dict:
    """The groups of normal images the shift diagnostics compare (plus the test pneumonia images for the image
    statistics). The test normals are split into MedMNIST-exact and Kaggle-only ones when the split has both."""
    test_normals = protocol.test.normals()
    groups = {"train normals": protocol.train, "val normals": protocol.val.normals(), "test normals": test_normals}
    exact = test_normals.medmnist_exact
    if exact is not None and 0 < exact.sum() < len(exact):
        groups["test normals, MedMNIST-exact"] = test_normals.subset(exact)
        groups["test normals, Kaggle-only"] = test_normals.subset(~exact)
    return groups


def shift_table(groups: dict, max_images: int, seed: int = 0) -> pd.DataFrame:
    """Cross-validated AUROC (%) of a classifier telling two groups of normal images apart (50: indistinguishable)."""
    from .shift import domain_classifier_auroc

    pairs = [("train normals", "val normals"), ("train normals", "test normals"), ("val normals", "test normals")]
    pairs += [("train normals", g) for g in groups if g.startswith("test normals,")]
    rows = []
    for a, b in pairs:
        mean, std = domain_classifier_auroc(groups[a], groups[b], max_images=max_images, seed=seed)
        rows.append({"group A": a, "group B": b, "images in B": len(groups[b]),
                     "classifier AUROC (A vs B, %)": round(mean * 100, 1), "± (5 folds)": round(std * 100, 1)})
    return pd.DataFrame(rows)


def shift_figure(stats: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for ax, column in zip(axes, ["brightness", "contrast", "sharpness"]):
        sns.kdeplot(data=stats, x=column, hue="group", common_norm=False, ax=ax, fill=True, alpha=0.15,
                    legend=ax is axes[-1])
        ax.set(ylabel="density", title=column)
    sns.move_legend(axes[-1], "center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, title_fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def shift_sentences(shift: pd.DataFrame, stats: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """The shift diagnostics in words, with the AE's validation and test AUROC."""
    auc = shift.set_index(["group A", "group B"])["classifier AUROC (A vs B, %)"] / 100
    tv, tt = auc[("train normals", "val normals")], auc[("train normals", "test normals")]
    sharp = stats.groupby("group", sort=False)["sharpness"].mean()
    verdict = "the test normals are a visibly different population." if tt > tv + 0.1 else \
        "the shift is not obvious at the pixel level."
    lines = [f"A classifier tells train normals from val normals with AUROC {_pct(tv)} and train normals from test "
             f"normals with AUROC {_pct(tt)}: {verdict}"]
    kaggle = [(b, v) for (a, b), v in auc.items() if b.startswith("test normals,")]
    if kaggle:
        lines.append("Split by provenance: " + ", ".join(f"{b.split(', ')[1]} {_pct(v)}" for b, v in kaggle) +
                     " (train normals vs each part of the test normals).")
    lines.append("Mean sharpness: " + ", ".join(f"{g} {v:.4f}" for g, v in sharp.items()) + ".")
    val, test = rows["val_AUROC"].mean(), rows["AUROC"].mean()
    lines.append(f"For the conv AE: validation AUROC {_pct(val)} vs test AUROC {_pct(test)}. Choices made on "
                 "validation (threshold, early stopping) are made on a population closer to the training images "
                 "than the test set is.")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# why a reconstruction error can rank below chance
# ----------------------------------------------------------------------------------------------------------------
def detail_sentences(diag: dict, name: str = "the conv AE score") -> list[str]:
    """`adlib.shift.detail_diagnostic` in words."""
    d, rho = diag["detail_AUROC"], diag["spearman_score_detail"]
    lines = [f"Fine detail alone, used as an anomaly score, has test AUROC {_pct(d)}: "
             + ("pneumonia images are *smoother* than normal ones." if d < 0.45 else
                "detail does not separate the classes much on this split." if d <= 0.55 else
                "pneumonia images have *more* fine detail here.")]
    follows = "follows image detail" if rho > 0.3 else "hardly follows image detail" if rho < 0.1 else \
        "follows image detail weakly"
    lines.append(f"{name} {follows}: Spearman ρ {rho:.2f} over all test images, {diag['spearman_within_normal']:.2f} "
                 f"within normals and {diag['spearman_within_anomalous']:.2f} within pneumonia (its AUROC: "
                 f"{_pct(diag['score_AUROC'])}).")
    if diag["score_AUROC"] < 0.5 and d < 0.5 and rho > 0.3:
        lines.append("A pixel error that grows with detail ranks the smooth pneumonia images as normal: an AUROC "
                     "below chance by construction, not a bug. Whether a larger training budget changes it: see "
                     "the budget study (notebook 08, `results/budget/`).")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# how much validation flatters (also notebook 01)
# ----------------------------------------------------------------------------------------------------------------
def validation_vs_test(results_dir: Path | None = None, pattern: str = "0[0-6]_*.csv") -> pd.DataFrame:
    """Committed pneumonia rows that have both a validation and a test AUROC, one line per table, method,
    variant and weights: mean validation and test AUROC (%) and the gap (validation - test, points)."""
    out = []
    for stem, frame in _committed_rows(pattern, results_dir or COMMITTED_RESULTS):
        if "val_AUROC" not in frame.columns:
            continue
        frame = frame.dropna(subset=["AUROC", "val_AUROC"])
        keys = [k for k in ("method", "variant", "weights") if k in frame.columns]
        for key, g in frame.groupby(keys, sort=False):
            line = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
            out.append({"table": f"{stem}.csv", **line, "seeds": len(g),
                        "validation AUROC": round(g["val_AUROC"].mean() * 100, 1),
                        "test AUROC": round(g["AUROC"].mean() * 100, 1),
                        "gap (points)": round((g["val_AUROC"] - g["AUROC"]).mean() * 100, 1)})
    return pd.DataFrame(out, columns=["table", "method", "variant", "weights", "seeds", "validation AUROC",
                                      "test AUROC", "gap (points)"])


def validation_flatters_sentence(frame: pd.DataFrame, focus: pd.DataFrame | None = None) -> str:
    """How often and by how much validation exceeds test in ``frame`` (from `validation_vs_test`); ``focus`` (a
    subset of it) names the closest analogues with their numbers."""
    if frame.empty:
        return "No committed pneumonia row has both a validation and a test AUROC to compare."
    gap = frame["gap (points)"]
    text = (f"In {int((gap > 0).sum())} of {len(frame)} committed pneumonia result groups with both numbers, the "
            f"validation AUROC is higher than the test AUROC (median gap {gap.median():+.1f} points, largest "
            f"{gap.max():+.1f}).")
    if focus is not None and not focus.empty:
        text += " Closest to this notebook: " + "; ".join(
            f"{r['method']} ({r['weights']} weights, `{r['table']}`): validation {r['validation AUROC']:.1f} vs "
            f"test {r['test AUROC']:.1f}" for _, r in focus.iterrows()) + "."
    return text


# ----------------------------------------------------------------------------------------------------------------
# conclusions
# ----------------------------------------------------------------------------------------------------------------
def conclusions(rows: pd.DataFrame, paper_value: float, test_labels, budget: pd.DataFrame | None = None,
                name: str = "conv AE") -> list[str]:
    """Notebook 00's discussion as Markdown bullets: chance, the paper's number, the budget row, the threshold
    rules, the two test sets and validation against test."""
    lines = [verdicts.chance_sentence(rows, "AUROC", name=name),
             verdicts.paper_gap(rows, paper_value, "AUROC", name=f"{name} vs SALAD's AE (Table I)").text]
    if budget is not None and not budget.empty:
        where = f"{budget['image_size'].iloc[0]} px, `{budget['data_source'].iloc[0]}`" \
            if {"image_size", "data_source"} <= set(budget.columns) else "its own run"
        lines.append(verdicts.chance_sentence(budget, "AUROC", name=f"AE, {budget['budget'].iloc[0]}") +
                     f" The budget study's best rung (chosen on validation AUROC; {where}).")
    youden, f1max = _rule_summary(rows, ""), _rule_summary(rows, "_f1max")
    lines.append(f"Thresholds: Youden's J is degenerate for {youden['n_degenerate']} of {youden['n']} seed(s), "
                 f"F1-max for {f1max['n_degenerate']}; "
                 + ("the table's F1/SEN/SPE are no result (shown as —)." if youden["n_degenerate"] else
                    "the table's F1/SEN/SPE come from non-degenerate Youden thresholds."))
    if "AUROC_medmnist_exact" in rows.columns and rows["AUROC_medmnist_exact"].notna().any():
        full, exact = rows["AUROC"].mean(), rows["AUROC_medmnist_exact"].mean()
        n = int(rows["n_test_medmnist_exact"].iloc[0]) if "n_test_medmnist_exact" in rows.columns else None
        lines.append(f"Test AUROC {_pct(full)} on the full split, {_pct(exact)} on the "
                     f"{n if n is not None else 'MedMNIST-exact'} MedMNIST-exact images "
                     f"({(exact - full) * 100:+.1f} points)." if abs(exact - full) > 1e-12 else
                     f"Test AUROC {_pct(full)}: this test split is MedMNIST's own, so both test AUROCs agree.")
    val, test = rows["val_AUROC"].mean(), rows["AUROC"].mean()
    lines.append(f"Validation AUROC {_pct(val)} vs test AUROC {_pct(test)} ({(val - test) * 100:+.1f} points): "
                 + ("validation flatters." if val - test > 0.02 else "no large gap on this run."))
    return lines
