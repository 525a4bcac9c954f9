"""Notebook glue, written once: the run helper, the tables a student reads, generated conclusions, budget rows.

The notebooks keep their cells short by calling these. Full provenance (weights, data and config hashes, git
commit, threads, ...) stays in results/*.csv; the reading tables show what a student compares: method, ours
(mean ± std over seeds, or one value marked "1 seed"), the paper's number, the difference and a note that marks
results below or at chance, degenerate thresholds and runs that diverged.
"""
from __future__ import annotations

import html
import re
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
        dashed = []
        for extra in extra_metrics:
            if extra not in group.columns:
                continue
            e = verdicts.stats(group, extra)
            degenerate = e.degenerate and verdicts.is_threshold_metric(extra)
            line[extra] = "—" if degenerate else _value_text(e, scale, digits)
            dashed += [extra] if degenerate else []
        note = _note(group, s, metric, scale)
        if dashed and "degenerate threshold" not in note:  # say why a '—' stands where a number would
            note = "; ".join(filter(None, [f"degenerate threshold ({'/'.join(dashed)} —: constant prediction, "
                                           "not a result)", note]))
        line["note"] = note
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


# ----------------------------------------------------------------------------------------------------------------
# showing a table
# ----------------------------------------------------------------------------------------------------------------
# columns of running text: the only ones that wrap (every other cell stays on one line)
TEXT_COLUMNS = {"note", "notes", "reason", "reasons", "why", "verdict", "status", "description", "sentence",
                "normal / anomalous", "comment", "what", "meaning", "caveat"}
WRAP_AFTER = 48  # characters: a text column whose longest cell is longer wraps
# header words a student reads instead of the CSV's snake_case
HEADER_WORDS = {"ci": "CI", "auroc": "AUROC", "ap": "AP", "f1": "F1", "acc": "ACC", "sen": "SEN", "spe": "SPE",
                "cpu": "CPU", "val": "validation", "sha256": "SHA-256"}
HEADERS = {"n_seeds": "seeds"}  # whole headers
_MINUS_ZERO = re.compile(r"(?<![\w.])-(0(?:\.0+)?)(?![\d.])")


def readable_header(column) -> str:
    """'fit_images_per_s' -> 'fit images/s', 'n_seeds' -> 'seeds', 'AUROC_ci_low' -> 'AUROC CI low',
    'job_cpu_seconds' -> 'job CPU s'; headers without an underscore are kept as they are."""
    text = str(column)
    if "_" not in text:
        return text
    if text in HEADERS:
        return HEADERS[text]
    text = text.replace("_per_s", "/s").replace("_seconds", " s").replace("_MB", " (MB)")
    return " ".join(HEADER_WORDS.get(w.lower(), w) for w in text.replace(" ", "_").split("_") if w)


def _decimals(values: pd.Series) -> int:
    """One number of decimals per column: none for whole numbers, 1 from 10 up, 2 from 1 up, and enough for two
    significant digits of the smallest value below 1 (at most 4); fewer when every value already has fewer (a
    column rounded to 1 decimal upstream shows 3.9, not 3.90)."""
    finite = values[np.isfinite(values)]
    if finite.empty or np.allclose(finite, np.round(finite)):
        return 0
    size = finite.abs()
    big = size.max()
    if big >= 10:
        decimals = 1
    elif big >= 1:
        decimals = 2
    else:
        decimals = int(min(4, max(2, 1 - np.floor(np.log10(size[size > 0].min())))))
    exact = next((k for k in range(1, decimals) if np.allclose(finite, np.round(finite, k), rtol=0, atol=1e-9)),
                 decimals)
    return exact


def _number_text(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return _MINUS_ZERO.sub(r"\1", text)


def cell_texts(frame: pd.DataFrame, percent=(), digits: dict | None = None) -> pd.DataFrame:
    """The frame as the strings a student reads: fractions in ``percent`` columns × 100, one number of decimals
    per column (`_decimals`, or ``digits[column]``), whole numbers without '.0', no '-0.0', missing values blank,
    booleans as yes/no."""
    digits = dict(digits or {})
    out = {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            out[column] = series.map({True: "yes", False: "no"}).astype(object)
            continue
        numeric = pd.to_numeric(series, errors="coerce") if series.dtype != object else None
        if numeric is not None and pd.api.types.is_numeric_dtype(series):
            values = numeric.astype(float) * (100.0 if column in percent else 1.0)
            decimals = digits.get(column, 1 if column in percent else _decimals(values))
            out[column] = [_number_text(v, decimals) if np.isfinite(v) else "" for v in values]
            continue
        texts = []
        for v in series:
            if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA or v is pd.NaT:
                texts.append("")
            elif isinstance(v, (bool, np.bool_)):
                texts.append("yes" if v else "no")
            elif isinstance(v, (float, np.floating)):
                v = float(v) * (100.0 if column in percent else 1.0)
                texts.append(_number_text(v, digits.get(column, 1 if column in percent or abs(v) >= 10 else 2)))
            else:
                texts.append(_MINUS_ZERO.sub(r"\1", str(v)))
        out[column] = texts
    return pd.DataFrame(out, index=range(len(frame)), columns=list(frame.columns))


def _wrapping(texts: pd.DataFrame, wrap) -> set:
    if wrap is not None:
        return {c for c in texts.columns if c in set(wrap)}
    if texts.empty:  # no rows: nothing to wrap (and an empty column has no .str)
        return set()
    return {c for c in texts.columns
            if (str(c).lower() in TEXT_COLUMNS or texts[c].str.len().max() > WRAP_AFTER) and len(texts)
            and texts[c].str.len().max() > 24}


def _is_numeric_text(column: pd.Series) -> bool:
    shown = [t for t in column if t]
    return bool(shown) and all(re.match(r"^[-+−]?[\d.,]+(\s|%|$)", t) for t in shown)


@dataclass
class ReadingTable:
    """A table as shown: HTML in a notebook (no index; every cell on one line except running-text columns), the
    same table as plain text elsewhere (and as the text/plain copy of the output)."""

    texts: pd.DataFrame
    wrap: set

    def _repr_html_(self) -> str:
        esc = html.escape
        right = {c for c in self.texts.columns if _is_numeric_text(self.texts[c])}

        def style(column, header=False):  # headers wrap between words; values only in running-text columns
            parts = ["white-space: normal; min-width: 14em; max-width: 36em" if column in self.wrap
                     else "white-space: normal" if header else "white-space: nowrap"]
            parts.append("text-align: right" if column in right else "text-align: left")
            if header:
                parts.append("vertical-align: bottom")
            else:
                parts.append("vertical-align: top")
            return "; ".join(parts)

        head = "".join(f'<th style="{style(c, True)}">{esc(readable_header(c))}</th>' for c in self.texts.columns)
        body = "".join("<tr>" + "".join(f'<td style="{style(c)}">{esc(t)}</td>' for c, t in zip(self.texts.columns, row))
                       + "</tr>" for row in self.texts.itertuples(index=False, name=None))
        return (f'<table class="dataframe adlib-table" style="width: auto; border-collapse: collapse">'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __repr__(self) -> str:
        if self.texts.empty:
            return " | ".join(readable_header(c) for c in self.texts.columns) + "\n(no rows)"
        left = {c: (lambda t, w=int(self.texts[c].str.len().max()): t.ljust(w))
                for c in self.texts.columns if not _is_numeric_text(self.texts[c])}
        return self.texts.to_string(index=False, formatters=left, header=[readable_header(c) for c in self.texts.columns])


def reading_view(frame: pd.DataFrame, *, percent=(), digits: dict | None = None, wrap=None) -> ReadingTable:
    """The frame as `show_table` shows it (see `cell_texts` for the numbers, `readable_header` for the headers)."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if isinstance(frame.columns, pd.MultiIndex):  # ('brightness', 'mean') -> 'brightness mean'
        frame = frame.set_axis([" ".join(str(p) for p in c if str(p)) for c in frame.columns], axis=1)
    named = any(n is not None for n in frame.index.names)
    frame = frame.reset_index(drop=not named)  # a named index (a groupby key) becomes a column, row numbers go
    texts = cell_texts(frame, percent=percent, digits=digits)
    return ReadingTable(texts, _wrapping(texts, wrap))


def show_table(frame: pd.DataFrame, caption: str | None = None, source: str | Path | None = None, *,
               percent=(), digits: dict | None = None, wrap=None):
    """Display a reading table without its index (rendered HTML in a notebook, text elsewhere); ``source`` names
    the CSV that holds the full provenance.

    Values never wrap inside a cell ('57.6 (1 seed)', '18.3 ± 13.1' and CIs stay on one line); only running-text
    columns (note, reason, verdict, ... or any text longer than `WRAP_AFTER` characters; ``wrap`` names them
    explicitly) wrap. ``percent`` names columns of fractions (AUROC 0.632) shown in % (63.2); ``digits`` fixes a
    column's decimals. snake_case headers read as words (`readable_header`); '-0.0' reads '0.0'."""
    from .runtime import in_notebook_kernel

    lines = []
    if caption:
        lines.append(f"**{caption}**")
    if source is not None:
        lines.append(f"Full provenance of every row: `{relative_to_project(source)}`.")
    view = reading_view(frame, percent=percent, digits=digits, wrap=wrap)
    if in_notebook_kernel():
        from IPython.display import Markdown, display

        if lines:
            display(Markdown("  \n".join(lines)))
        display(view)
    else:
        print("\n".join(lines))
        print(repr(view))
    # returns nothing: a returned frame would be displayed a second time when the call ends a cell


def _setting_text(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {_setting_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):  # e.g. backbones: one line each, named first
            return " | ".join((f"{v['name']}: " if "name" in v else "")
                              + _setting_text({k: x for k, x in v.items() if k != "name"}) for v in value)
        return ", ".join(_setting_text(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_table(cfg) -> pd.DataFrame:
    """A run configuration (`adlib.config.RunConfig`) as setting / value lines, for reading (not raw JSON)."""
    return pd.DataFrame([{"setting": k, "value": _setting_text(v)} for k, v in cfg.as_dict().items()])


def show_config(cfg) -> None:
    """Show the notebook's run configuration as a small setting / value table (its file named in the caption)."""
    show_table(config_table(cfg), caption=f"Run configuration: {cfg.notebook}, profile {cfg.profile.name} "
               f"(adlib/configs/{cfg.notebook}.toml)", wrap=("value",))


def percent_sentence(values: dict, names: dict | None = None, digits: int = 1) -> str:
    """'AUROC 63.2 %, validation AUROC 77.0 %' from {'AUROC': 0.632, 'val_AUROC': 0.77} (fractions in, % out)."""
    names = names or {}
    return ", ".join(f"{names.get(k, readable_header(k))} {_number_text(100 * float(v), digits)} %"
                     for k, v in values.items())


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
# the same study run in the paper profile, on a GPU (scripts/budget_parallel.sh): the wide networks' ladder
PAPER_BUDGET_ROWS = PROJECT_ROOT / "results" / "paper" / "budget" / "budget_rows.csv"
RUNG_COLUMNS = ["method", "dataset", "width_label", "budget_multiplier", "seed"]


def budget_rows(path: str | Path | None = None) -> pd.DataFrame:
    """The committed budget-study rows (empty when none were committed): those of ``path``, or by default the cpu
    profile's (results/budget/) and the paper profile's (results/paper/budget/, trained on a GPU) together; each
    row's ``device`` says where it ran. A rung in both files keeps its cpu-profile row."""
    paths = [Path(path)] if path is not None else [BUDGET_ROWS, PAPER_BUDGET_ROWS]
    frames = [pd.read_csv(p, low_memory=False) for p in paths if p.exists()]
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    if len(frames) > 1 and set(RUNG_COLUMNS) <= set(rows.columns):
        rows = rows.drop_duplicates(RUNG_COLUMNS, keep="first", ignore_index=True)
    return rows


def device_note(device) -> str:
    """'' for a row trained on the CPU, else ', <device>' (e.g. ', NVIDIA H200'): a rung's label says where it
    ran when that was not the CPU."""
    text = str(device) if device is not None and not pd.isna(device) else ""
    return "" if not text or text.startswith("cpu") else f", {text}"


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
    device = best["device"].iloc[0] if "device" in best.columns else None
    label = f"budget x{int(rung[1])} ({rung[0]} width, {knob} {value:g}{device_note(device)})"
    return best.assign(budget=label, variant=label)
