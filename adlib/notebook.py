"""Notebook glue, written once: the run helper, the tables a student reads, generated conclusions, budget rows.

The notebooks keep their cells short by calling these. Full provenance (weights, data and config hashes, git
commit, threads, ...) stays in results/*.csv; the reading tables show what a student compares: method, ours
(mean ± std over seeds, or one value marked "1 seed"), the paper's number, the difference and a note that marks
results below or at chance, degenerate thresholds and runs that diverged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import verdicts
from .paths import PROJECT_ROOT, relative_to_project

KEY_COLUMNS = ("dataset", "method", "variant")


# ----------------------------------------------------------------------------------------------------------------
# running methods
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Runs:
    """One notebook's run helper: ``runs.run(method, protocol, seed, table, dataset=...)`` fits, scores and records
    one row through `adlib.experiment.run_experiment`, and collects the timing rows of every run.

    detector_for(method) -> a registered detector name, a factory or an instance;
    kwargs_for(method, protocol, **over) -> the detector's keyword arguments (the notebook's config decides them).
    columns_for(kwargs) -> extra row columns recorded with each run (default: width and steps when present)."""

    config: object
    detector_for: Callable[[str], object]
    kwargs_for: Callable[..., dict]
    use_val_in_fit: bool = True
    timing: list = field(default_factory=list)

    def run(self, method: str, protocol, seed: int, table=None, *, dataset: str | None = None,
            variant: str = "default", timing_extra: dict | None = None, **over):
        from .experiment import run_experiment

        kwargs = self.kwargs_for(method, protocol, **over)
        steps = kwargs.get("steps", kwargs.get("gan_steps", kwargs.get("epochs")))
        result = run_experiment(self.detector_for(method), protocol, config=self.config, seed=seed, method=method,
                                table=table, variant=variant, use_val_in_fit=self.use_val_in_fit,
                                detector_kwargs=kwargs, dataset=dataset or protocol.dataset,
                                width=kwargs.get("width"), steps=steps)
        extra = dict(timing_extra or {})
        self.timing.extend(dict(t, dataset=dataset or protocol.dataset, **extra) for t in result.timing)
        return result

    def timing_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.timing)


# ----------------------------------------------------------------------------------------------------------------
# reading tables
# ----------------------------------------------------------------------------------------------------------------
def _keys_of(rows: pd.DataFrame, keys) -> list[str]:
    if keys is not None:
        return [k for k in keys if k in rows.columns]
    # the id columns that tell rows apart (method always)
    return [k for k in KEY_COLUMNS if k in rows.columns and (k == "method" or rows[k].nunique(dropna=False) > 1)]


def _note(group: pd.DataFrame, s: verdicts.Stats, metric: str, scale: float) -> str:
    notes = []
    if "status" in group.columns:
        bad = sorted({str(v) for v in group["status"].dropna() if not str(v).startswith(("completed", "early"))})
        if bad:
            notes.append(", ".join(bad))
    if verdicts.is_threshold_metric(metric):
        if s.degenerate:
            notes.append("degenerate threshold (constant prediction; not a result)")
    elif metric.startswith("AUROC") or metric.startswith("AUC"):
        chance = verdicts._chance_of(s)
        if chance != "above chance":
            notes.append(chance)
    exact = f"{metric}_medmnist_exact"
    if exact in group.columns:
        values = pd.to_numeric(group[exact], errors="coerce").dropna()
        if len(values):
            notes.append(f"MedMNIST-exact test {values.mean() * scale:.1f}")
    return "; ".join(notes)


def reading_table(rows: pd.DataFrame, metric: str = "AUROC", *, keys=None, paper: pd.DataFrame | None = None,
                  scale: float = 100.0, digits: int = 1, extra_metrics: tuple[str, ...] = ()) -> pd.DataFrame:
    """One line per method (per dataset/variant when the rows hold several): ours, paper, difference, note.

    rows: per-seed result rows (results/*.csv). paper: rows with some of the key columns and a ``paper`` column in
    the paper's units (ours × scale); unmatched paper rows are left out. extra_metrics: more metrics shown as
    'mean ± std' (a degenerate threshold's F1/ACC/SEN/SPE show as '—')."""
    if rows.empty:
        return pd.DataFrame(columns=[*(keys or ["method"]), f"ours {metric}", "paper", "difference", "note"])
    keys = _keys_of(rows, keys)
    out = []
    for key, group in rows.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        line = dict(zip(keys, key))
        values = pd.to_numeric(group[metric], errors="coerce").dropna() if metric in group else pd.Series([], dtype=float)
        if values.empty:
            line.update({f"ours {metric}": "—", "_mean": np.nan, "note": _status_note(group) or "no result"})
            out.append(line)
            continue
        s = verdicts.stats(group, metric)
        line[f"ours {metric}"] = _value_text(s, scale, digits)
        line["_mean"] = s.mean * scale
        for extra in extra_metrics:
            if extra not in group.columns:
                continue
            e = verdicts.stats(group, extra)
            degenerate = e.degenerate and verdicts.is_threshold_metric(extra)
            line[extra] = "—" if degenerate else _value_text(e, scale, digits)
        line["note"] = _note(group, s, metric, scale)
        out.append(line)
    table = pd.DataFrame(out)
    if paper is not None and not paper.empty:
        on = [k for k in keys if k in paper.columns]
        table = table.merge(paper[[*on, "paper"]].drop_duplicates(on), on=on, how="left") if on else table
    if "paper" in table.columns:
        table["difference"] = (table["_mean"] - pd.to_numeric(table["paper"], errors="coerce")).round(digits)
        table["paper"] = pd.to_numeric(table["paper"], errors="coerce").round(digits)
    columns = [*keys, f"ours {metric}", *[m for m in extra_metrics if m in table.columns],
               *(["paper", "difference"] if "paper" in table.columns else []), "note"]
    return table[columns].fillna({"note": ""})


def _status_note(group: pd.DataFrame) -> str:
    if "status" not in group.columns:
        return ""
    return ", ".join(sorted({str(v) for v in group["status"].dropna()}))


def _value_text(s: verdicts.Stats, scale: float, digits: int) -> str:
    value = f"{s.mean * scale:.{digits}f}"
    if s.n_seeds > 1 and np.isfinite(s.std):
        return f"{value} ± {s.std * scale:.{digits}f}"
    return f"{value} (1 seed)"


def show_table(frame: pd.DataFrame, caption: str | None = None, source: str | Path | None = None):
    """Display a reading table without its index (rendered HTML in a notebook, text elsewhere); ``source`` names
    the CSV that holds the full provenance."""
    from .runtime import in_notebook_kernel

    lines = []
    if caption:
        lines.append(f"**{caption}**")
    if source is not None:
        lines.append(f"Full provenance of every row: `{relative_to_project(source)}`.")
    if in_notebook_kernel():
        from IPython.display import Markdown, display

        if lines:
            display(Markdown("  \n".join(lines)))
        display(frame.style.hide(axis="index").format(na_rep="", precision=1))
    else:
        print("\n".join(lines))
        print(frame.to_string(index=False))
    # returns nothing: a returned frame would be displayed a second time when the call ends a cell


def say(*parts) -> None:
    """Show generated conclusions (verdict objects or Markdown strings) as rendered Markdown (returns nothing, so
    that a call ending a cell does not display the text twice)."""
    verdicts.show(*parts)


def bullet_list(lines) -> str:
    return "\n".join(f"- {line}" for line in lines if line)


# ----------------------------------------------------------------------------------------------------------------
# the budget study's rows (results/budget/)
# ----------------------------------------------------------------------------------------------------------------
BUDGET_ROWS = PROJECT_ROOT / "results" / "budget" / "budget_rows.csv"


def budget_rows(path: str | Path | None = None) -> pd.DataFrame:
    """The committed budget-study rows (empty when none were committed)."""
    path = Path(path) if path is not None else BUDGET_ROWS
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path)


def best_budget_rows(method: str, dataset: str, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of the budget rung (width x budget multiplier) with the best mean *validation* AUROC for one method
    on one dataset (the test AUROC never chooses); a ``budget`` column labels the rung. Empty when none ran."""
    rows = budget_rows() if rows is None else rows
    if rows.empty:
        return rows
    mine = rows[(rows["method"] == method) & (rows["dataset"] == dataset) & rows["val_AUROC"].notna()]
    if "status" in mine.columns:
        mine = mine[mine["status"].astype(str).str.startswith(("completed", "early"))]
    if mine.empty:
        return mine
    rung = mine.groupby(["width_label", "budget_multiplier"])["val_AUROC"].mean().idxmax()
    best = mine[(mine["width_label"] == rung[0]) & (mine["budget_multiplier"] == rung[1])]
    knob, value = best["budget_knob"].iloc[0], best["budget_value"].iloc[0]
    label = f"budget x{int(rung[1])} ({rung[0]} width, {knob} {value:g})"
    return best.assign(budget=label, variant=label)
