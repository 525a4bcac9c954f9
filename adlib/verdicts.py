"""Verdicts: the sentences the notebooks print about their result tables, as Markdown.

Every function takes result rows in the layout of results/*.csv: one row per seed with the columns method,
variant, seed, AUROC, AUROC_ci_low, AUROC_ci_high, F1, SEN, SPE, degenerate, ... (a Series is one row). A row of
a summary (`adlib.results.summarize`: AUROC_mean, AUROC_std, n_seeds, ...) is accepted too. Each verdict says
what it found and shows the numbers it was decided on.

The rules, stated once:
  noise       of one method: its mean over seeds, the spread of the seeds (mean ± std) and the test-image
              bootstrap 95 % CI (the mean of its seeds' CI bounds), taken together; `Stats.noise_interval`.
  chance      an AUROC whose noise interval lies wholly below 0.5 is "below chance" (the detector ranks normal
              images above anomalous ones), wholly above is "above chance", otherwise "at chance". Without a CI
              the interval is at least mean ± CHANCE_MARGIN.
  better      A beats B only when the difference of means exceeds the sum of their seed stds AND their CIs do
              not overlap; without CIs both need two or more seeds (one seed has no spread to compare with).
              Otherwise it is a "tie (within noise)". Two AUROCs below chance are "both below chance", not ranked;
              one below chance and one at chance are "not comparable (neither above chance)".
  degenerate  F1, ACC, SEN and SPE of a row whose threshold put (almost) every image in one class (the row's
              `degenerate` flag, see adlib.metrics) describe a constant prediction: such a row is never ranked,
              and never counted as beating or matching a paper number, on those metrics. AUROC needs no
              threshold and is unaffected.
  order claim "A > B > C" reproduces when every step is "better"; fails when some step is reversed (the
              right-hand method better); is undecided otherwise. Each step is listed with its numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHANCE = 0.5
# Without a test-image CI, an AUROC within this distance of 0.5 (or within its seed std, if larger) is at chance.
CHANCE_MARGIN = 0.02
# Metrics that depend on the validation threshold (a degenerate threshold makes them meaningless).
THRESHOLD_METRICS = ("F1", "ACC", "SEN", "SPE")
# Fallback for rows written before the `degenerate` flag: SEN and SPE this close to 1 and 0 (or 0 and 1) mean at
# least this share of the images was called one class, whatever the class ratio (adlib.metrics.DEGENERATE_SHARE).
DEGENERATE_SHARE = 0.975


# ----------------------------------------------------------------------------------------------------------------
# one method's numbers
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """One method's result on one metric: mean and std over seeds, the test-image CI, the degenerate flag."""

    name: str
    metric: str
    mean: float
    std: float  # NaN with one seed
    n_seeds: int
    ci_low: float = float("nan")  # mean of the seeds' bootstrap CI bounds; NaN when the rows have none
    ci_high: float = float("nan")
    degenerate: bool = False

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    @property
    def seed_std(self) -> float:
        """The seed spread, 0 when there is none to measure (one seed)."""
        return self.std if math.isfinite(self.std) else 0.0

    def noise_interval(self) -> tuple[float, float]:
        """The values this result cannot be told apart from: mean ± seed std, joined with the test-image CI (or,
        without a CI, with mean ± CHANCE_MARGIN)."""
        low, high = self.mean - self.seed_std, self.mean + self.seed_std
        if self.has_ci:
            return min(low, self.ci_low), max(high, self.ci_high)
        return min(low, self.mean - CHANCE_MARGIN), max(high, self.mean + CHANCE_MARGIN)

    def text(self, scale: float = 100.0) -> str:
        """e.g. '71.2 ± 1.3 (3 seeds; CI 66.0–76.1)', in points when scale is 100."""
        value = f"{self.mean * scale:.1f}"
        seeds = f"{self.n_seeds} seeds" if self.n_seeds != 1 else "1 seed"
        if self.n_seeds > 1 and math.isfinite(self.std):
            value += f" ± {self.std * scale:.1f}"
        details = [seeds]
        if self.has_ci:
            details.append(f"CI {self.ci_low * scale:.1f}–{self.ci_high * scale:.1f}")
        if self.degenerate and is_threshold_metric(self.metric):
            details.append("degenerate threshold")
        return f"{value} ({'; '.join(details)})"


def is_threshold_metric(metric: str) -> bool:
    return metric.removesuffix("_f1max") in THRESHOLD_METRICS


def stats(rows: pd.DataFrame | pd.Series, metric: str = "AUROC", name: str | None = None) -> Stats:
    """The Stats of one method's rows (all its seeds) or of one summary row."""
    frame = rows.to_frame().T if isinstance(rows, pd.Series) else rows
    if len(frame) == 0:
        raise ValueError(f"no result rows for {name or 'this method'}: check the filter that selected them")
    _require_one_group(frame)
    name = name or _name_of(frame)
    if metric not in frame.columns and f"{metric}_mean" in frame.columns:
        return _stats_of_summary(frame, metric, name)
    if metric not in frame.columns:
        raise KeyError(f"the rows have no column {metric!r} (columns: {', '.join(map(str, frame.columns))})")
    values = pd.to_numeric(frame[metric], errors="coerce").dropna()
    if values.empty:
        raise ValueError(f"{name}: every {metric} is blank (diverged runs?); nothing to judge")
    ci_low, ci_high = (_column_mean(frame, f"{metric}_ci_{side}") for side in ("low", "high"))
    return Stats(name, metric, float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                 len(values), ci_low, ci_high, _degenerate(frame, metric, suffix=""))


def _stats_of_summary(frame: pd.DataFrame, metric: str, name: str) -> Stats:
    if len(frame) != 1:
        raise ValueError(f"{name}: pass one summary row per method ({len(frame)} given)")
    row = frame.iloc[0]
    n_seeds = int(row["n_seeds"]) if "n_seeds" in frame.columns and pd.notna(row["n_seeds"]) else 1
    std = float(row[f"{metric}_std"]) if f"{metric}_std" in frame.columns else float("nan")
    ci_low, ci_high = (_column_mean(frame, f"{metric}_ci_{side}_mean") for side in ("low", "high"))
    return Stats(name, metric, float(row[f"{metric}_mean"]), std if n_seeds > 1 else float("nan"), n_seeds,
                 ci_low, ci_high, _degenerate(frame, metric, suffix="_mean"))


def _column_mean(frame: pd.DataFrame, column: str) -> float:
    if column not in frame.columns:
        return float("nan")
    values = pd.to_numeric(frame[column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else float("nan")


def _degenerate(frame: pd.DataFrame, metric: str, suffix: str) -> bool:
    """The rows' degenerate flag for the threshold behind ``metric`` (the F1-max one for *_f1max metrics); rows
    written before the flag existed are judged by SEN/SPE (a conservative fallback: it can miss cases)."""
    from .results import as_flags

    f1max = "_f1max" if metric.endswith("_f1max") else ""
    flag = f"degenerate{f1max}"
    if flag in frame.columns:
        return bool(as_flags(frame[flag]).any())
    sen_col, spe_col = f"SEN{f1max}{suffix}", f"SPE{f1max}{suffix}"
    if sen_col not in frame.columns or spe_col not in frame.columns:
        return False
    sen, spe = (pd.to_numeric(frame[c], errors="coerce").to_numpy() for c in (sen_col, spe_col))
    edge = 1.0 - DEGENERATE_SHARE
    return bool(np.any(((sen >= DEGENERATE_SHARE) & (spe <= edge)) | ((sen <= edge) & (spe >= DEGENERATE_SHARE))))


def _require_one_group(frame: pd.DataFrame) -> None:
    """Averaging over seeds only makes sense within one dataset/method/variant."""
    for column in ("dataset", "method", "variant"):
        if column in frame.columns and frame[column].nunique(dropna=False) > 1:
            raise ValueError(f"the rows mix several {column}s ({', '.join(map(str, frame[column].unique()))}); "
                             "select one method's rows (all its seeds) first")


def _name_of(frame: pd.DataFrame) -> str:
    if "method" not in frame.columns:
        return "this result"
    name = str(frame["method"].iloc[0])
    variant = str(frame["variant"].iloc[0]) if "variant" in frame.columns else ""
    return name if variant in ("", "default", "nan") else f"{name} ({variant})"


# ----------------------------------------------------------------------------------------------------------------
# chance
# ----------------------------------------------------------------------------------------------------------------
def chance_status(rows: pd.DataFrame | pd.Series, metric: str = "AUROC") -> str:
    """'below chance', 'at chance' or 'above chance' for an AUROC-like metric (chance = 0.5)."""
    return _chance_of(stats(rows, metric))


def _chance_of(s: Stats) -> str:
    low, high = s.noise_interval()
    if high < CHANCE:
        return "below chance"
    if low > CHANCE:
        return "above chance"
    return "at chance"


def chance_sentence(rows: pd.DataFrame | pd.Series, metric: str = "AUROC", name: str | None = None) -> str:
    """A Markdown sentence: '**AE**: AUROC 28.4 ± 1.7 (3 seeds; CI 24.4–32.7) is **below chance** ...'."""
    s = stats(rows, metric, name)
    status = _chance_of(s)
    why = {"below chance": ": it ranks normal images above anomalous ones (its scores, negated, would do better)",
           "at chance": ": it cannot be told apart from random scores",
           "above chance": ""}[status]
    return f"**{s.name}**: {metric} {s.text()} is **{status}**{why}."


def chance_groups(rows: pd.DataFrame, by=("method",), metric: str = "AUROC") -> pd.DataFrame:
    """One line per group of result rows (e.g. by method and dataset; each group all seeds of one result): the
    group's keys, its mean, the number of seeds and its chance status by the rule above. Groups whose metric is
    blank (diverged runs) are left out."""
    by = list(by)
    out = []
    for key, group in rows.groupby(by, sort=False):
        if pd.to_numeric(group[metric], errors="coerce").notna().sum() == 0:
            continue
        s = stats(group.assign(variant="default", method="pooled"), metric)
        out.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), metric: s.mean,
                    "seeds": s.n_seeds, "chance": _chance_of(s)})
    return pd.DataFrame(out, columns=[*by, metric, "seeds", "chance"])


def below_chance_sentence(groups: pd.DataFrame, what: str = "results", metric: str = "AUROC") -> str:
    """A Markdown sentence naming the groups of `chance_groups` that are below chance (their keys and means)."""
    keys = [c for c in groups.columns if c not in (metric, "seeds", "chance")]
    below = groups[groups["chance"] == "below chance"]
    if below.empty:
        return f"None of the {len(groups)} {what} is below chance."
    names = [" / ".join(str(r[k]) for k in keys) + f" {100 * r[metric]:.1f}" for _, r in below.iterrows()]
    return (f"**{len(below)} of {len(groups)} {what} are below chance** ({metric} in %, the noise interval wholly "
            f"below 50): " + ", ".join(names) + ".")


# ----------------------------------------------------------------------------------------------------------------
# two methods
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A against B on one metric. outcome (from A's side): 'better', 'worse', 'tie', 'both below chance' or
    'not comparable'; `label` and `text` say it in words."""

    a: Stats
    b: Stats
    outcome: str
    reason: str

    @property
    def label(self) -> str:
        return {"better": f"{self.a.name} better", "worse": f"{self.b.name} better", "tie": "tie (within noise)",
                "both below chance": "both below chance",
                "not comparable": "not comparable (degenerate threshold)" if "degenerate" in self.reason
                else "not comparable (neither above chance)"}[self.outcome]

    @property
    def difference(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def text(self) -> str:
        return (f"**{self.a.name}** vs **{self.b.name}** ({self.a.metric}): **{self.label}**: "
                f"{self.a.text()} vs {self.b.text()}; {self.reason}.")

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


def compare(a_rows: pd.DataFrame | pd.Series, b_rows: pd.DataFrame | pd.Series, metric: str = "AUROC",
            names: tuple[str, str] | None = None) -> Comparison:
    """Compare two methods' rows (each: all seeds of one method on one dataset) by the rules of this module."""
    a = stats(a_rows, metric, names[0] if names else None)
    b = stats(b_rows, metric, names[1] if names else None)
    if is_threshold_metric(metric) and (a.degenerate or b.degenerate):
        which = " and ".join(s.name for s in (a, b) if s.degenerate)
        return Comparison(a, b, "not comparable", f"the validation threshold of {which} is degenerate "
                                                  f"(one class for ≥ {DEGENERATE_SHARE:.1%} of the images)")
    if not is_threshold_metric(metric) and _chance_of(a) == _chance_of(b) == "below chance":
        return Comparison(a, b, "both below chance", "neither ranks anomalous images above normal ones")
    if not is_threshold_metric(metric) and "above chance" not in (_chance_of(a), _chance_of(b)) \
            and "below chance" in (_chance_of(a), _chance_of(b)):
        # a random ranking beside an inverted one: "better" would crown a detector that detects nothing
        return Comparison(a, b, "not comparable", f"neither is above chance ({a.name} {_chance_of(a)}, {b.name} "
                                                  f"{_chance_of(b)}): neither detects, so neither is better")
    difference, spread = a.mean - b.mean, a.seed_std + b.seed_std
    numbers = (f"difference {difference * 100:+.1f} points, seed spread {spread * 100:.1f}"
               if min(a.n_seeds, b.n_seeds) >= 2 else
               f"difference {difference * 100:+.1f} points (one seed: no seed spread to measure)")
    if abs(difference) <= spread:
        return Comparison(a, b, "tie", f"{numbers}: the difference is within the seeds' spread")
    if a.has_ci and b.has_ci:
        if a.ci_low <= b.ci_high and b.ci_low <= a.ci_high:
            return Comparison(a, b, "tie", f"{numbers}, but the test-image CIs overlap")
        evidence = f"{numbers} and the test-image CIs do not overlap"
    elif min(a.n_seeds, b.n_seeds) < 2:
        return Comparison(a, b, "tie", f"{numbers}, but with one seed and no test-image CI the noise is unknown")
    else:
        evidence = f"{numbers} (no test-image CIs)"
    return Comparison(a, b, "better" if difference > 0 else "worse", evidence)


# ----------------------------------------------------------------------------------------------------------------
# a paper's claimed order
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderClaim:
    """A claim 'A > B > C' checked step by step. verdict: 'reproduces', 'fails' or 'undecided'."""

    order: tuple[str, ...]
    metric: str
    steps: tuple[Comparison, ...]
    verdict: str

    @property
    def text(self) -> str:
        lines = [f"Claim **{' > '.join(self.order)}** ({self.metric}): **{self.verdict}**."]
        for step in self.steps:
            holds = {"better": "holds", "worse": "reversed"}.get(step.outcome, "open")
            lines.append(f"- {step.a.name} > {step.b.name}: {holds} ({step.label}): {step.a.text()} vs "
                         f"{step.b.text()}; {step.reason}.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


def order_claim(rows_by_method: dict[str, pd.DataFrame] | pd.DataFrame, order: str | list[str],
                metric: str = "AUROC", by: str = "method") -> OrderClaim:
    """Check a claimed order, e.g. order_claim(rows, "SALAD > f-AnoGAN > AE").

    rows_by_method: {name: that method's rows}, or one table whose ``by`` column names the methods (filter it to
    one dataset first). The claim reproduces only when every step A > B is 'better' by the rules above; it fails
    when some step is reversed beyond noise; otherwise it is undecided."""
    names = [n.strip() for n in order.split(">")] if isinstance(order, str) else [str(n) for n in order]
    if len(names) < 2:
        raise ValueError(f"an order needs at least two methods, got {names}")
    if isinstance(rows_by_method, pd.DataFrame):
        rows_by_method = {str(k): v for k, v in rows_by_method.groupby(by, sort=False)}
    missing = [n for n in names if n not in rows_by_method]
    if missing:
        raise KeyError(f"no rows for {missing}; the rows have: {', '.join(map(str, rows_by_method))}")
    steps = tuple(compare(rows_by_method[a], rows_by_method[b], metric, names=(a, b)) for a, b in zip(names, names[1:]))
    outcomes = [s.outcome for s in steps]
    verdict = "fails" if "worse" in outcomes else "reproduces" if all(o == "better" for o in outcomes) else "undecided"
    return OrderClaim(tuple(names), metric, steps, verdict)


# ----------------------------------------------------------------------------------------------------------------
# ours against a paper's printed number
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperGap:
    """Our result against the number a paper printed (in the paper's units, usually percent).

    status: 'matches (within noise)' when the printed number lies in our noise interval, 'above paper' or
    'below paper' otherwise, 'not counted (degenerate threshold)' for a threshold metric of a degenerate row.
    marks: what the reader must know about our number (degenerate threshold, below or at chance)."""

    ours: Stats
    paper_value: float
    gap_points: float  # ours - paper, in the paper's units
    status: str
    marks: tuple[str, ...]
    scale: float = 100.0  # ours x scale = the paper's units

    @property
    def counted(self) -> bool:
        """Whether this row may count as matching or beating the paper."""
        return not self.status.startswith("not counted")

    @property
    def text(self) -> str:
        marks = f" ⚠ {'; '.join(self.marks)}." if self.marks else ""
        digits, unit = (1, " points") if self.scale == 100 else (3, "")
        return (f"**{self.ours.name}** ({self.ours.metric}): ours {self.ours.text(self.scale)} vs paper "
                f"{self.paper_value:.{digits}f}: {self.gap_points:+.{digits}f}{unit}, **{self.status}**.{marks}")

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


def paper_gap(rows: pd.DataFrame | pd.Series, paper_value: float, metric: str = "AUROC", scale: float = 100.0,
              name: str | None = None) -> PaperGap:
    """Our rows (one method, all seeds) against one printed number; ``scale`` converts ours to the paper's units."""
    s = stats(rows, metric, name)
    gap = s.mean * scale - float(paper_value)
    marks = []
    if s.degenerate and is_threshold_metric(metric):
        marks.append("degenerate threshold: our F1/ACC/SEN/SPE are those of a constant prediction")
    if not is_threshold_metric(metric) and _chance_of(s) != "above chance":
        marks.append(f"ours is {_chance_of(s)}")
    low, high = (v * scale for v in s.noise_interval())
    if s.degenerate and is_threshold_metric(metric):
        status = "not counted (degenerate threshold)"
    elif low <= paper_value <= high:
        status = "matches (within noise)"
    else:
        status = "above paper" if gap > 0 else "below paper"
    return PaperGap(s, float(paper_value), gap, status, tuple(marks), scale)


def paper_gaps(rows: pd.DataFrame, printed: pd.DataFrame, metric: str = "AUROC", scale: float = 100.0) -> pd.DataFrame:
    """One `paper_gap` per printed number of ``printed`` (rows of `adlib.paper_numbers.paper_numbers`) that our
    rows have: matched on method, on variant when the paper names one, and on dataset (our_dataset) when both
    sides give it. Columns: method, variant, dataset, ours, paper, gap, status, marks, sentence."""
    out = []
    for _, number in printed[printed["metric"] == metric].iterrows():
        mine = rows[rows["method"] == number["method"]]
        variant = str(number.get("variant", "") or "")
        if variant and variant != "nan" and "variant" in mine.columns:
            mine = mine[mine["variant"] == variant]
        dataset = number.get("our_dataset")
        if isinstance(dataset, str) and dataset and "dataset" in mine.columns:
            mine = mine[mine["dataset"] == dataset]
        if mine.empty:
            continue
        gap = paper_gap(mine, number["value"], metric, scale)
        out.append({"method": number["method"], "variant": variant, "dataset": dataset,
                    "ours": round(gap.ours.mean * scale, 1), "paper": gap.paper_value, "gap": round(gap.gap_points, 1),
                    "status": gap.status, "marks": "; ".join(gap.marks), "sentence": gap.text})
    return pd.DataFrame(out, columns=["method", "variant", "dataset", "ours", "paper", "gap", "status", "marks",
                                      "sentence"])


# ----------------------------------------------------------------------------------------------------------------
# showing verdicts
# ----------------------------------------------------------------------------------------------------------------
def as_markdown(*verdicts) -> str:
    """Verdicts (Comparison, OrderClaim, PaperGap or Markdown strings) as one Markdown block, one per paragraph."""
    return "\n\n".join(getattr(v, "text", str(v)) for v in verdicts)


def show(*verdicts) -> str:
    """Display the verdicts as rendered Markdown in a notebook (printed as text elsewhere); returns the Markdown."""
    text = as_markdown(*verdicts)
    from .runtime import in_notebook_kernel

    if in_notebook_kernel():
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)
    return text
