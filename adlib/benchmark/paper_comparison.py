"""Paper vs ours: every paper's printed number beside ours, with the reasons we name for the gap (generated from
our rows' provenance columns).

The per-method paper-number files are read as data files (CSV inside the adlib package), never imported.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the adlib package: the numbers files' paths start there

# a printed number with one of these variants compares with our default variant
PLAIN_VARIANTS = ("", "default", "unsupervised")


def _numbers_file(relpath: str) -> pd.DataFrame:
    return pd.read_csv(PACKAGE_DIR / relpath)


def printed_numbers(sources: dict) -> pd.DataFrame:
    """Every paper's printed numbers in one long frame, in percent: paper, table, dataset_paper, method_paper,
    variant, metric, printed, our_dataset, our_variant, method (ours).

    sources: {paper: {file, scale, dataset_map, method_map, variant_column, ...}} (the configuration's
    ``paper_vs_ours`` table). ``file`` is relative to the adlib package (a data file, not a module)."""
    frames = []
    for paper, src in sources.items():
        raw = _numbers_file(src["file"])
        raw = raw[raw["paper"] == paper] if "paper" in raw.columns else raw
        if src.get("tables"):
            raw = raw[raw["table"].isin(list(src["tables"]))]
        value_col = src.get("value_column", "value")
        printed = pd.to_numeric(raw[value_col], errors="coerce")
        if "unit" in raw.columns:
            printed = np.where(raw["unit"] == "fraction", printed * 100, printed)
        else:
            printed = printed * float(src.get("scale", 1.0))
        ds_col = "dataset_in_paper" if "dataset_in_paper" in raw.columns else "dataset"
        metric = raw["metric"].replace(dict(src.get("metric_map", {})))
        variant = raw[src["variant_column"]].fillna("").astype(str) if src.get("variant_column") in raw else ""
        frame = pd.DataFrame(dict(paper=paper, table=raw["table"].values, dataset_paper=raw[ds_col].values,
                                  method_paper=raw["method"].values, variant=np.asarray(variant, dtype=object)
                                  if not isinstance(variant, str) else variant,
                                  metric=metric.values, printed=np.round(np.asarray(printed, dtype=float), 2)))
        dmap = dict(src.get("dataset_map", {}))
        mapped = [dmap.get(d, [None, None]) for d in frame["dataset_paper"]]
        if "our_dataset" in raw.columns and not dmap:
            mapped = [[d if isinstance(d, str) and d else None, None] for d in raw["our_dataset"]]
        frame["our_dataset"] = [m[0] if m else None for m in mapped]
        frame["our_variant"] = [m[1] if len(m) > 1 and m[1] else None for m in mapped]
        mmap = dict(src.get("method_map", {}))
        frame["method"] = [mmap.get(m, m) for m in frame["method_paper"]]
        vmap = {m: dict(v) for m, v in dict(src.get("method_variant_map", {})).items()}
        frame["our_variant_for"] = [vmap.get(m, {}).get(v) for m, v in zip(frame["method"], frame["variant"])]
        frame["_results"] = [tuple(src.get("results", ()))] * len(frame)
        frame["_same_data"] = [tuple(src.get("same_data", ()))] * len(frame)
        frame["_our_weights"] = src.get("our_weights", "")
        frame["_variants"] = [tuple(src.get("our_variants", ()))] * len(frame)
        frame["_size"] = src.get("paper_image_size", np.nan)
        frame["_weights"] = src.get("paper_weights", "")
        frame["_paper_threshold"] = src.get("paper_threshold_rule", "")
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    return out[out["metric"].isin(["AUROC", "ACC", "F1", "SEN", "SPE", "AP"])].reset_index(drop=True)


def reasons(row: dict, ours: pd.DataFrame, paper_size=np.nan, paper_weights: str = "",
            same_data: tuple = ()) -> str:
    """The reasons we name for a gap, from our rows' provenance: data substitute, image size, weights, budget."""
    out = []
    source = "; ".join(sorted(set(ours["data_source"].dropna().astype(str)))) if "data_source" in ours else ""
    if row["dataset_paper"] not in same_data:
        out.append(f"data substitute ({row['dataset_paper']} -> ours: {source or row['our_dataset']})")
    elif "substitute" in source or "rebuilt" in source:
        out.append(f"same images, rebuilt file ({source})")
    sizes = sorted(set(pd.to_numeric(ours["image_size"], errors="coerce").dropna().astype(int)))
    if np.isfinite(paper_size) and sizes and sizes != [int(paper_size)]:
        out.append(f"image size ({int(paper_size)} px -> ours {'/'.join(map(str, sizes))} px)")
    weights = sorted(set(ours["weights"].dropna().astype(str)) - {"none"})
    if weights and paper_weights and weights != [paper_weights]:
        out.append(f"weights ({paper_weights} -> ours {'/'.join(weights)})")
    profiles = sorted(set(ours["profile"].dropna().astype(str))) if "profile" in ours else []
    if profiles and profiles != ["paper"]:
        steps = sorted(set(pd.to_numeric(ours.get("steps", pd.Series(dtype=float)), errors="coerce").dropna()
                           .astype(int)))
        out.append(f"budget ({'/'.join(profiles)} profile" + (f", {'/'.join(map(str, steps))} steps)" if steps
                                                             else ")"))
    return "; ".join(out)


def _text(value) -> str | None:
    """A non-empty string, else None (pandas may turn a missing entry into NaN)."""
    return value if isinstance(value, str) and value else None


# The column that keeps our value of a threshold metric (F1/ACC/SEN/SPE) whose validation threshold is degenerate:
# a constant prediction's number, no result, so `ours` and `difference` stay blank for that row.
DEGENERATE_VALUE = "ours_degenerate_threshold_value"


def has_ours(vs: pd.DataFrame) -> pd.Series:
    """Rows of `paper_vs_ours` that have a counterpart of ours: a result in `ours`, or a degenerate-threshold
    value (a run of ours exists, but its number is no result)."""
    kept = vs[DEGENERATE_VALUE].notna() if DEGENERATE_VALUE in vs else False
    return vs["ours"].notna() | kept


def paper_vs_ours(printed: pd.DataFrame, rows: pd.DataFrame,
                  default_variants=("default", "unsupervised", "per dataset")) -> pd.DataFrame:
    """Each printed number beside ours (mean over seeds, percent) and the difference (ours - printed).

    Our rows are looked up in the notebook files named for the paper (``_results`` prefixes): same dataset (and
    variant, where the dataset map gives one, e.g. a CIFAR-10 class), same method, and the paper's variant when
    our rows have it, else our default variant. Printed numbers without a counterpart keep a blank 'ours'. A
    threshold metric of ours whose validation threshold is degenerate (`degenerate_threshold`) is no result: its
    `ours` and `difference` are blank and the value is kept, for the record, in `ours_degenerate_threshold_value`."""
    out = []
    for _, p in printed.iterrows():
        p = p.copy()
        p["our_dataset"], p["our_variant"] = _text(p["our_dataset"]), _text(p["our_variant"])
        p["variant"] = _text(p["variant"]) or ""
        ours, classes = pd.DataFrame(), ""
        if p["our_dataset"] is not None and not rows.empty:
            pool = rows[rows["source"].map(lambda s: any(str(s).startswith(r) for r in p["_results"]))]
            pool = pool[pool["method"] == p["method"]]
            same = pool[pool["dataset"].astype(str) == p["our_dataset"]]
            if same.empty and p["our_dataset"] == "cifar10":
                # the paper's CIFAR-10 number is a mean over its classes; ours ran a few one-vs-rest classes,
                # each a dataset 'cifar10[<class>:<direction>]' whose variant names the class
                same = pool[pool["dataset"].astype(str).str.startswith("cifar10[")].assign(variant="default")
                n = same["dataset"].nunique()
                classes = f"{n} of 10 CIFAR-10 classes" if n else ""
            pool = same
            if p["_our_weights"]:
                pool = pool[pool["weights"].astype(str) == p["_our_weights"]]
            mapped = _text(p.get("our_variant_for"))
            if p["our_variant"] is not None or mapped is not None:
                pool = pool[pool["variant"] == (p["our_variant"] or mapped)]
            elif p["variant"] and (pool["variant"] == p["variant"]).any():
                pool = pool[pool["variant"] == p["variant"]]
            elif p["variant"] in PLAIN_VARIANTS:  # our default variant, in the order of preference given
                prefs = list(p["_variants"]) or list(default_variants)
                found = [v for v in prefs if (pool["variant"] == v).any()]
                pool = pool[pool["variant"] == found[0]] if found else pool.iloc[0:0]
            else:  # a setting of the paper's (e.g. weakly supervised) that no row of ours ran
                pool = pool.iloc[0:0]
            if not pool.empty:
                ours = pool[pool["source"] == pool["source"].iloc[0]]
        value = float(pd.to_numeric(ours[p["metric"]], errors="coerce").mean() * 100) \
            if not ours.empty and p["metric"] in ours else float("nan")
        marks = _marks(ours, p["metric"])
        kept = round(value, 2) if marks["degenerate_threshold"] and np.isfinite(value) else float("nan")
        value = float("nan") if marks["degenerate_threshold"] else value  # a constant prediction is no result
        out.append(dict(paper=p["paper"], table=p["table"], dataset_paper=p["dataset_paper"],
                        dataset_ours=p["our_dataset"] or "", method=p["method_paper"], variant=p["variant"],
                        metric=p["metric"], printed=p["printed"], ours=round(value, 2) if np.isfinite(value) else value,
                        n_seeds=int(ours["seed"].nunique()) if not ours.empty else 0,
                        weights="/".join(sorted(set(ours["weights"].astype(str)))) if not ours.empty else "",
                        profile="/".join(sorted(set(ours["profile"].astype(str)))) if not ours.empty
                        and "profile" in ours else "",
                        difference=round(value - p["printed"], 2) if np.isfinite(value) else float("nan"),
                        **{DEGENERATE_VALUE: kept},
                        reason="; ".join(filter(None, [reasons(p, ours, p["_size"], p["_weights"], p["_same_data"]),
                                                       classes])) if not ours.empty else
                        ("no run of ours" if p["our_dataset"] else "dataset not available here"),
                        **marks,
                        paper_threshold=p.get("_paper_threshold", "") if _is_threshold(p["metric"]) else "",
                        source=ours["source"].iloc[0] if not ours.empty else ""))
    return pd.DataFrame(out)


def _marks(ours: pd.DataFrame, metric: str) -> dict:
    """What a reader must know before comparing: whether our AUROC is below/at/above chance (adlib.verdicts), and
    whether a threshold metric comes from a degenerate threshold (then it is no result: never 'matches' a paper)."""
    if ours.empty or "AUROC" not in ours:
        return {"auroc_vs_chance": "", "degenerate_threshold": False}
    from ..verdicts import chance_status, is_threshold_metric, stats

    group = ours.assign(variant="default", method=ours["method"].iloc[0], dataset="pooled")  # one cell, as averaged above
    degenerate = bool(is_threshold_metric(metric) and stats(group, metric).degenerate)
    return {"auroc_vs_chance": chance_status(group, "AUROC"), "degenerate_threshold": degenerate}


def _is_threshold(metric: str) -> bool:
    from ..verdicts import is_threshold_metric

    return is_threshold_metric(str(metric))


_SHORT_REASONS = ((r"^data substitute \((.+?) -> ours: (.+)\)$", "substitute data"),
                  (r"^same images, rebuilt file.*", "paper's images, rebuilt file"),
                  (r"^image size \((\d+) px -> ours ([\d/]+) px\)$", r"\2 px (paper \1)"),
                  (r"^weights \((.+?) -> ours (.+)\)$", r"\2 weights (paper \1)"),
                  (r"^budget \((.+?) profile(?:, (.+?))?\)$", r"\1 budget \2"))


def short_reason(reason: str) -> str:
    """The reasons of `reasons` in a few words each (the full text stays in the CSV)."""
    import re

    parts = []
    for part in filter(None, (p.strip() for p in str(reason or "").split(";"))):
        for pattern, repl in _SHORT_REASONS:
            if re.match(pattern, part):
                part = re.sub(pattern, repl, part).strip()
                break
        parts.append(part)
    return "; ".join(parts)


def reading_tables(vs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every printed number that has a counterpart of ours, one table per paper, for reading: table, dataset
    (paper's -> ours), method, variant, metric, paper, ours, difference (ours - paper, points) and a note: our
    AUROC below / at chance (on every metric of that model), a degenerate validation threshold (then ours and the
    difference are '—': a constant prediction is no result), the paper's own threshold rule where it is an oracle,
    and why the numbers differ."""
    out = {}
    for paper, g in vs[has_ours(vs)].groupby("paper", sort=False):
        rows = []
        for _, r in g.iterrows():
            degenerate = bool(r.get("degenerate_threshold", False)) and _is_threshold(r["metric"])
            chance = r.get("auroc_vs_chance")
            notes = [f"our AUROC {chance}" if isinstance(chance, str) and chance in ("below chance", "at chance")
                     else "",
                     "degenerate threshold: not a result" if degenerate else "",
                     f"paper's threshold: {r['paper_threshold']}" if r.get("paper_threshold") else "",
                     short_reason(r["reason"])]
            rows.append({"table": r["table"], "dataset": f"{r['dataset_paper']} → {r['dataset_ours']}",
                         "method": r["method"], "variant": r["variant"], "metric": r["metric"],
                         "paper": r["printed"], "ours": "—" if degenerate else r["ours"],
                         "difference": np.nan if degenerate else r["difference"],
                         "seeds": int(r["n_seeds"]), "note": "; ".join(n for n in notes if isinstance(n, str) and n)})
        out[str(paper)] = pd.DataFrame(rows)
    return out


def unmatched_summary(vs: pd.DataFrame) -> pd.DataFrame:
    """Per paper: printed numbers, those with a counterpart of ours, and why the others have none."""
    rows = []
    for paper, g in vs.groupby("paper", sort=False):
        missing = g[~has_ours(g)]["reason"].value_counts()
        rows.append({"paper": paper, "printed numbers": len(g), "with ours": int(has_ours(g).sum()),
                     **{f"none: {k}": int(v) for k, v in missing.items()}})
    return pd.DataFrame(rows).fillna(0)
