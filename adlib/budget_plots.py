"""Reading the training-budget study (issue 20, notebook 08): its curves, what each one says, its tables, figures.

Everything here reads the rows `adlib.budget` appends to results/budget/budget_rows.csv and returns frames,
figures or Markdown sentences generated from those numbers by the rules of `adlib.verdicts` (chance, noise,
better). The rung of a detector that counts as its best budget is chosen on *validation* AUROC
(`adlib.notebook.best_budget_rows`); the test AUROC never chooses.

    curve_frame(rows)            one line per (method, width, multiplier): val/test AUROC, CI, cost
    curve_summary(rows, ...)     one line per detector: its last doubling, x1 -> best, chance at best, paper
    curve_sentences(...)         the same as Markdown bullets
    budget_table(rows, ...)      test AUROC at the cpu budget (x1) and at the best budget, CPU hours, paper
    remaining_plan(rows, study)  the rungs not run yet, with the runner's estimates (wall and CPU seconds)
    curves_figure / cost_figure  the figures
"""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import verdicts
from .notebook import best_budget_rows, bullet_list, device_note, reading_table

FAMILIES = {"autoencoders": ("AE", "AE (L1)", "VAE", "SSIM-AE", "MemAE", "DPA"),
            "GANs": ("f-AnoGAN", "GANomaly", "Skip-GANomaly", "CCB-AAE", "EGBAD", "AnoGAN"),
            "self-supervised / feature-based": ("SALAD", "CutPaste", "SimpleNet", "WSCXR")}
OK_STATUS = ("completed", "early")
PLATEAU_POINTS = 1.0  # a doubling that moves both val and test AUROC by less than this (points) is a plateau
# the printed numbers drawn beside the curves: the papers that test on the same ZhangLab test images as ours
SAME_TEST_SET = "ZhangLab chest X-ray"
PLAIN_VARIANTS = ("", "default", "unsupervised")


def family_of(method: str) -> str:
    return next((f for f, members in FAMILIES.items() if method in members), "other")


def usable(rows: pd.DataFrame, dataset: str, width: str | None = None) -> pd.DataFrame:
    """The finished rows (status completed / early-stopped) of one dataset (and width)."""
    if rows.empty:
        return rows
    keep = (rows["dataset"] == dataset) & rows["status"].astype(str).str.startswith(OK_STATUS)
    if width is not None:
        keep &= rows["width_label"] == width
    return rows[keep]


def rung_label(multiplier, width: str, knob: str, value, device=None) -> str:
    """The label `adlib.notebook.best_budget_rows` gives a rung, e.g. 'budget x4 (cpu width, steps 600)' (with the
    device when it was not the CPU: 'budget x16 (wide width, steps 2400, NVIDIA H200)')."""
    return f"budget x{int(multiplier)} ({width} width, {knob} {float(value):g}{device_note(device)})"


def on_cpu(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows trained on a CPU (the cost figures and CPU hours are theirs; GPU rows are counted apart)."""
    if rows.empty or "device" not in rows.columns:
        return rows
    return rows[rows["device"].astype(str).str.startswith("cpu")]


def with_budget_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with their rung's label as ``budget`` and ``variant`` (as `best_budget_rows` labels them), so that a
    budget row saved among a notebook's results is never taken for a default-budget row (notebook 07 reuses
    rows of the variants 'default' / 'unsupervised' only)."""
    if rows.empty:
        return rows
    devices = rows["device"] if "device" in rows.columns else [None] * len(rows)
    labels = [rung_label(m, w, k, v, d) for m, w, k, v, d in
              zip(rows["budget_multiplier"], rows["width_label"], rows["budget_knob"], rows["budget_value"], devices)]
    return rows.assign(budget=labels, variant=labels)


# ---- the curves -------------------------------------------------------------------------------------------------

def curve_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (method, width, multiplier): mean validation and test AUROC over its seeds, the mean test CI,
    seeds, the kept checkpoint step(s), and the rung's wall and CPU seconds (summed over seeds)."""
    if rows.empty:
        return pd.DataFrame()
    out = rows.groupby(["method", "width_label", "budget_multiplier"], sort=False).agg(
        budget_knob=("budget_knob", "first"), budget_value=("budget_value", "first"), seeds=("seed", "size"),
        val_AUROC=("val_AUROC", "mean"), AUROC=("AUROC", "mean"), AUROC_ci_low=("AUROC_ci_low", "mean"),
        AUROC_ci_high=("AUROC_ci_high", "mean"), best_step=("best_step", lambda s: tuple(sorted(s.dropna()))),
        job_wall_seconds=("job_wall_seconds", "sum"), job_cpu_seconds=("job_cpu_seconds", "sum"))
    return out.reset_index().sort_values(["method", "width_label", "budget_multiplier"], ignore_index=True)


def paper_marks(study: dict, dataset: str = "pneumonia") -> pd.DataFrame:
    """The AUROC (in %) each paper printed for each study entry on the same test images as ours (rows of
    adlib/paper_numbers.csv whose dataset is the ZhangLab test set): method, paper, source. A weakly supervised
    entry takes the printed number of its K."""
    from .paper_numbers import paper_numbers

    printed = paper_numbers()
    printed = printed[(printed["our_dataset"] == dataset) & (printed["metric"] == "AUROC")
                      & (printed["dataset_in_paper"] == SAME_TEST_SET)]
    out = []
    for name, entry in study["detectors"].items():
        wanted = (f"K={entry['k']}",) if entry.get("k") is not None else PLAIN_VARIANTS
        hit = printed[(printed["method"] == name) & printed["variant"].astype(str).isin(wanted)]
        if len(hit):
            first = hit.iloc[0]
            out.append(dict(method=name, paper=float(first["value"]), source=f"{first['paper']} {first['table']}"))
    return pd.DataFrame(out, columns=["method", "paper", "source"])


def _stats(rows: pd.DataFrame, name: str, metric: str = "AUROC") -> verdicts.Stats:
    return verdicts.stats(rows.assign(variant="default"), metric, name)


def budget_step(upper: pd.DataFrame, lower: pd.DataFrame, names: tuple[str, str]) -> tuple[str, str]:
    """('better' | 'worse' | 'tie', the numbers) for two rungs of ONE detector: the noise rule of
    `adlib.verdicts.compare` (a difference beyond the seeds' spread, and test-image CIs that do not overlap),
    without its below-chance exception: how a detector's own AUROC moves with its budget is measured even below
    chance (moving from 30 to 40 is a change, not a ranking of two methods)."""
    a, b = _stats(upper, names[0]), _stats(lower, names[1])
    difference, spread = a.mean - b.mean, a.seed_std + b.seed_std
    numbers = f"difference {difference * 100:+.1f} points, seed spread {spread * 100:.1f}"
    if abs(difference) <= spread:
        return "tie", f"{numbers}: within the seeds' spread"
    if a.has_ci and b.has_ci:
        if a.ci_low <= b.ci_high and b.ci_low <= a.ci_high:
            return "tie", f"{numbers}, but the test-image CIs overlap"
        return ("better" if difference > 0 else "worse"), f"{numbers} and the test-image CIs do not overlap"
    if min(a.n_seeds, b.n_seeds) < 2:
        return "tie", f"{numbers}, but with one seed and no test-image CI the noise is unknown"
    return ("better" if difference > 0 else "worse"), f"{numbers} (no test-image CIs)"


def last_doubling(mine: pd.DataFrame) -> dict:
    """What the last two measured rungs of one method at one width say: the change of test and validation AUROC,
    the verdict (`adlib.verdicts.compare` of the upper rung against the lower one) and a trend word."""
    ladder = sorted(mine["budget_multiplier"].unique())
    if len(ladder) < 2:
        return dict(trend="one rung only", lower=None, upper=ladder[0] if ladder else None)
    lo, hi = ladder[-2], ladder[-1]
    a, b = mine[mine["budget_multiplier"] == hi], mine[mine["budget_multiplier"] == lo]
    outcome, reason = budget_step(a, b, (f"x{hi}", f"x{lo}"))
    d_test = (a["AUROC"].mean() - b["AUROC"].mean()) * 100
    d_val = (a["val_AUROC"].mean() - b["val_AUROC"].mean()) * 100
    a0, b0 = (r[r["seed"] == r["seed"].min()].iloc[0] for r in (a, b))  # the ladder's one seed, on both rungs
    same = (pd.notna(a0["best_step"]) and a0["best_step"] == b0["best_step"]
            and abs(a0["AUROC"] - b0["AUROC"]) < 1e-9 and a0["seed"] == b0["seed"])
    if same:
        trend = "flat: the same checkpoint"
    elif outcome == "better":
        trend = "still climbs"
    elif outcome == "worse":
        trend = "falls"
    elif abs(d_test) < PLATEAU_POINTS and abs(d_val) < PLATEAU_POINTS:
        trend = "plateau"
    else:
        trend = "rises within noise" if d_test > 0 else "falls within noise"
    return dict(trend=trend, lower=lo, upper=hi, d_test=d_test, d_val=d_val, reason=reason,
                kept_step=a0["best_step"])


def curve_summary(rows: pd.DataFrame, study: dict, paper: pd.DataFrame, dataset: str = "pneumonia") -> pd.DataFrame:
    """One line per (method, width) that has rows: measured and planned ladder, the last doubling's trend, x1 ->
    best change, the best budget (by validation), chance at the best budget and the paper's number."""
    out = []
    ok = usable(rows, dataset)
    planned = {name: {**study.get("ladders", {}), **entry.get("ladders", {})} for name, entry in study["detectors"].items()}
    for (method, width), mine in ok.groupby(["method", "width_label"], sort=False):
        ladder = sorted(mine["budget_multiplier"].unique())
        step = last_doubling(mine)
        best = best_budget_rows(method, dataset, ok[ok["width_label"] == width])
        x1 = mine[mine["budget_multiplier"] == ladder[0]]
        gain = budget_step(best, x1, (best["budget"].iloc[0], f"x{int(ladder[0])}"))
        number = paper.loc[paper["method"] == method, "paper"]
        out.append(dict(family=family_of(method), method=method, width=width,
                        measured=f"x{int(ladder[0])}–x{int(ladder[-1])}" if len(ladder) > 1 else f"x{int(ladder[0])}",
                        planned_top=max(planned.get(method, {}).get(width, [np.nan])), trend=step["trend"],
                        last_step=(f"x{int(step['lower'])}→x{int(step['upper'])}" if step["lower"] else ""),
                        d_test=step.get("d_test", np.nan), d_val=step.get("d_val", np.nan),
                        rises=_rises(mine), x1_test=x1["AUROC"].mean() * 100, best=best["budget"].iloc[0],
                        best_test=best["AUROC"].mean() * 100, best_val=best["val_AUROC"].mean() * 100,
                        gain=gain[0] if int(best["budget_multiplier"].iloc[0]) != ladder[0] else "x1 is best",
                        chance_at_best=verdicts.chance_status(best.assign(variant="default")),
                        paper=float(number.iloc[0]) if len(number) else np.nan, _step=step, _gain=gain, _best=best))
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    order = {m: i for i, m in enumerate(m for members in FAMILIES.values() for m in members)}
    return frame.sort_values("method", key=lambda s: s.map(order).fillna(99), ignore_index=True)


def curve_reading(summary: pd.DataFrame) -> pd.DataFrame:
    """`curve_summary` for reading (every column stays in its CSV): per detector and width, test AUROC (%) at x1
    and at the best budget (chosen on validation), the change between them (the noise rule of `budget_step`),
    whether the best budget is above chance, the last doubling's trend and the paper's number."""
    if summary.empty:
        return pd.DataFrame()
    table = pd.DataFrame({
        "method": summary["method"], "width": summary["width"], "measured": summary["measured"],
        "test AUROC at x1": summary["x1_test"], "best budget (by validation)": summary["best"],
        "test AUROC at best": summary["best_test"], "x1 → best": summary["gain"],
        "at best": summary["chance_at_best"], "last doubling": summary["trend"], "paper": summary["paper"]})
    return table.drop(columns=["width"] if table["width"].nunique() == 1 else [])


def _trend_text(line) -> str:
    step = line["_step"]
    if step["lower"] is None:
        return "none (one rung only: no curve yet)"
    d = f"x{int(step['lower'])} → x{int(step['upper'])}: test {step['d_test']:+.1f}, validation {step['d_val']:+.1f} points"
    trend, reason = step["trend"], step["reason"]
    if trend == "flat: the same checkpoint":
        return (f"**flat** ({d}): both rungs kept the checkpoint of step {int(step['kept_step'])} (chosen on "
                "validation), so the extra steps changed nothing")
    if trend == "plateau":
        return f"**plateau** ({d}: both under {PLATEAU_POINTS:g} point)"
    return f"**{trend}** ({d}; {reason})"


def _rises(mine: pd.DataFrame) -> str:
    """'test AUROC rose at 3 of 3 doublings' (seed-0 rows of one method and width)."""
    seed = mine[mine["seed"] == mine["seed"].min()].sort_values("budget_multiplier")
    steps = np.diff(seed["AUROC"].to_numpy())
    return f"test AUROC rose at {int((steps > 0).sum())} of {len(steps)} doublings" if len(steps) > 1 else ""


def curve_sentences(summary: pd.DataFrame) -> list[str]:
    """One Markdown bullet per detector (and width): where its curve plateaus or still climbs, the change from the
    cpu budget to the best budget, whether it leaves chance there (and, when it does not, what the curve says
    about why), and the paper's number."""
    lines = []
    for _, line in summary.iterrows():
        best, gain = line["_best"], line["_gain"]
        chance = verdicts.chance_sentence(best.assign(variant="default"), name=f"{line['method']} at {line['best']}")
        text = (f"**{line['method']}** ({line['width']} width; measured {line['measured']} of the planned "
                f"x1–x{int(line['planned_top'])}): last doubling {_trend_text(line)}"
                + (f"; {line['rises']}." if line["rises"] else "."))
        if line["gain"] != "x1 is best":
            change = {"better": "a rise beyond noise", "worse": "a fall beyond noise", "tie": "within noise"}[gain[0]]
            text += (f" From the cpu budget to the best one: test {line['x1_test']:.1f} → {line['best_test']:.1f} "
                     f"(**{change}**: {gain[1]}).")
        text += " " + chance
        if line["chance_at_best"] != "above chance":
            text += " " + _why_not_above_chance(line)
        if np.isfinite(line["paper"]):
            text += " " + verdicts.paper_gap(best.assign(variant="default"), line["paper"],
                                             name=f"{line['method']} at its best budget").text
        lines.append(text)
    return lines


def _why_not_above_chance(line) -> str:
    """What the curve says about a detector that does not leave chance at its best budget (generated)."""
    trend = line["trend"]
    if trend in ("still climbs", "rises within noise", "one rung only"):
        upper, top = int(line["_step"]["upper"]), int(line["planned_top"])
        shape = "still rises" if trend != "one rung only" else "has one rung"
        if upper >= top:
            return (f"Its curve {shape} at x{upper}, the top of its planned ladder: a budget effect cannot be ruled "
                    f"out without rungs beyond x{top}.")
        return (f"Its curve {shape} at x{upper}: a budget effect cannot be ruled out until the rungs above it "
                f"(planned up to x{top}) are measured.")
    return ("More training did not move it (its last doubling: " + trend + "): at this width and resolution the "
            "budget is not what holds it back.")


def order_claims(rows: pd.DataFrame, claims, dataset: str = "pneumonia") -> list:
    """Each paper order (e.g. 'CCB-AAE > Skip-GANomaly > GANomaly') judged on test AUROC with every method at its
    own best budget (by validation); a claim with a method not in the rows becomes a sentence saying so."""
    out = []
    ok = usable(rows, dataset)
    for claim in claims:
        names = [n.strip() for n in claim.split(">")]
        best = {n: best_budget_rows(n, dataset, ok) for n in names}
        missing = [n for n, b in best.items() if b.empty]
        if missing:
            out.append(f"Claim **{claim}**: not judged: no budget rows for {', '.join(missing)} yet.")
            continue
        out.append(verdicts.order_claim({n: b.assign(variant="default") for n, b in best.items()}, names))
        out.append("Budgets used: " + "; ".join(f"{n} {b['budget'].iloc[0]}" for n, b in best.items()) + ".")
    return out


# ---- tables -----------------------------------------------------------------------------------------------------

def budget_table(rows: pd.DataFrame, paper: pd.DataFrame, dataset: str = "pneumonia") -> pd.DataFrame:
    """One line per detector: test AUROC (%) at the cpu budget (x1, cpu width) and at the best budget measured
    (chosen on validation, labelled), the validation AUROC there, the paper's number and the difference, the
    CPU and wall hours its rows cost, and the notes of `adlib.notebook.reading_table` (chance, MedMNIST-exact)."""
    ok = usable(rows, dataset)
    if ok.empty:
        return pd.DataFrame()
    x1 = ok[(ok["width_label"] == "cpu") & (ok["budget_multiplier"] == 1)].assign(variant="default")
    best = pd.concat([best_budget_rows(m, dataset, ok) for m in ok["method"].unique()], ignore_index=True)
    at_x1 = reading_table(x1, keys=["method"]).rename(columns={"ours AUROC": "test AUROC at x1 (cpu budget)"})
    at_best = reading_table(best.assign(variant="default"), keys=["method"], paper=paper[["method", "paper"]])
    at_best = at_best.rename(columns={"ours AUROC": "test AUROC at best", "note": "note (best)"})
    labels = best.groupby("method", sort=False).agg(best_budget=("budget", "first"),
                                                    val_at_best=("val_AUROC", "mean")).reset_index()
    labels["val_at_best"] = (labels["val_at_best"] * 100).round(1)
    cpu = on_cpu(ok)
    gpu = ok.drop(index=cpu.index)
    cost = ok.groupby("method", sort=False).agg(rungs=("seed", "size")).reset_index()
    cost = cost.merge(cpu.groupby("method").agg(cpu_h=("job_cpu_seconds", "sum"), wall_h=("job_wall_seconds", "sum"))
                      .reset_index(), on="method", how="left")
    cost = cost.merge(gpu.groupby("method").agg(gpu_h=("job_wall_seconds", "sum")).reset_index(), on="method",
                      how="left")
    for column in ("cpu_h", "wall_h", "gpu_h"):  # two significant digits: a few seconds are 0.0026 h, not 0.0
        cost[column] = [_significant(v / 3600) if v == v else "—" for v in cost[column]]
    table = (labels.merge(at_x1[["method", "test AUROC at x1 (cpu budget)"]], on="method", how="left")
             .merge(at_best, on="method", how="left").merge(cost, on="method", how="left"))
    table = table.rename(columns={"best_budget": "best budget (by validation)", "val_at_best": "val AUROC at best",
                                  "rungs": "rows", "cpu_h": "CPU h", "wall_h": "wall h",
                                  "gpu_h": "GPU wall h"})
    order = {m: i for i, m in enumerate(m for members in FAMILIES.values() for m in members)}
    table = table.sort_values("method", key=lambda s: s.map(order).fillna(99), ignore_index=True)
    first = ["method", "test AUROC at x1 (cpu budget)", "best budget (by validation)", "test AUROC at best",
             "val AUROC at best"]
    return table[first + [c for c in table.columns if c not in first]]


def _significant(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` significant digits, never in exponent notation ('0.0026', '1.5', '120')."""
    if not np.isfinite(value):
        return ""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(np.floor(np.log10(abs(value)))))
    return f"{round(value, decimals):.{decimals}f}"


def rerun_check(rerun: pd.DataFrame, rows: pd.DataFrame, tolerance: float) -> tuple[pd.DataFrame, str]:
    """The rungs this notebook re-trained beside the committed rows of the same rung (same method, width,
    multiplier, seed, dataset key and detector options): the test and validation AUROC of both and whether they
    agree within ``tolerance``; with a generated sentence."""
    keys = ["method", "width_label", "budget_multiplier", "seed", "data"]
    lines, matched = [], []
    for _, row in rerun.iterrows():
        match = rows.copy()
        for k in keys:
            match = match[match[k] == row[k]] if k in match.columns else match.iloc[0:0]
        if len(match):
            match = match[[json.loads(k) == json.loads(row["detector_kwargs"]) for k in match["detector_kwargs"]]]
        old = match.iloc[0] if len(match) else None
        if old is not None:
            matched.append(old)
        line = dict(method=row["method"], rung=f"x{int(row['budget_multiplier'])}", data=row["data"],
                    seed=int(row["seed"]), rerun_test=row["AUROC"], rerun_val=row["val_AUROC"],
                    committed_test=old["AUROC"] if old is not None else np.nan,
                    committed_val=old["val_AUROC"] if old is not None else np.nan)
        line["difference"] = line["rerun_test"] - line["committed_test"]
        line["agrees"] = bool(abs(line["difference"]) <= tolerance) if old is not None else None
        lines.append(line)
    frame = pd.DataFrame(lines)
    compared = frame[frame["agrees"].notna()] if len(frame) else frame
    if compared.empty:
        data = ", ".join(sorted(set(rerun["data"]))) if len(rerun) else "none"
        return frame, (f"The {len(rerun)} re-trained rung(s) (data {data}) have no committed row to compare with: "
                       "they show the code path only (the committed ladder is the cpu profile's PneumoniaMNIST-64).")
    agree = int(compared["agrees"].sum())
    worst = compared["difference"].abs().max()
    text = (f"**{agree} of {len(compared)}** re-trained rung(s) reproduce the committed row within "
            f"{100 * tolerance:g} points of test AUROC (largest difference {100 * worst:.2f} points).")
    off = compared[~compared["agrees"].astype(bool)]
    if len(off):
        text += (" **Not reproduced**: " + "; ".join(f"{r.method} {r.rung} ({100 * r.difference:+.2f} points)"
                                                   for r in off.itertuples())
                 + ": " + _why_not_reproduced(pd.DataFrame(matched)))
    return frame, text


def _why_not_reproduced(rows: pd.DataFrame) -> str:
    """The possible causes of a re-trained rung that differs, naming the CPU kind when it is known to differ."""
    from .provenance import cpu_kind

    mine = cpu_kind()
    recorded = set(rows["cpu_model"].dropna().astype(str)) - {""} if "cpu_model" in rows.columns else set()
    if "cpu_isa" in rows.columns:
        isas = set(rows["cpu_isa"].dropna().astype(str)) - {""}
    else:
        isas = set()
    if not recorded:
        cpu = ("the committed rows do not record their CPU (written before the cpu_model column), and another CPU "
               "kind picks other kernels (README, 'What a re-run reproduces')")
    elif recorded == {mine["cpu_model"]} and (not isas or isas == {mine["cpu_isa"]}):
        cpu = "the CPU kind is the same as this machine's, so it is not the cause"
    else:
        cpu = (f"the committed rows were trained on {', '.join(sorted(recorded))}, this run on {mine['cpu_model']} "
               f"({mine['cpu_isa']}): another CPU kind picks other kernels (README, 'What a re-run reproduces')")
    return ("the code or the data changed since those rows were written (compare the rows' git_commit and "
            f"data_sha256 with this run's), or the thread count, device or CPU kind differs; {cpu}.")


# ---- what is left -----------------------------------------------------------------------------------------------

def remaining_plan(rows: pd.DataFrame, study: dict, profile: str = "cpu") -> pd.DataFrame:
    """Every rung of the study's configuration that has no committed row, with the runner's estimate of its wall
    seconds (`adlib.budget.estimate_seconds`, from the measured rungs' wall time, i.e. at the CPU share they got)
    and the same estimate from their CPU seconds (what it takes on an idle core with one thread)."""
    from .budget import build_ladder, estimate_seconds

    rungs = build_ladder(study, profile)
    # a rung is done when any profile's rows hold it (the wide networks' rungs ran in the paper profile, on a GPU)
    done = set(zip(rows["method"], rows["width_label"], rows["data"], rows["budget_multiplier"].astype(int),
                   rows["seed"].astype(int))) if len(rows) else set()
    todo = [r for r in rungs if (r.job.method, r.width_label, r.job.data_key, r.multiplier, r.job.seed) not in done]
    rows = on_cpu(rows)  # the estimates scale CPU seconds
    slim = rows[["method", "width_label", "data", "budget_value", "job_wall_seconds", "job_cpu_seconds"]] \
        if len(rows) else pd.DataFrame(columns=["method", "width_label", "data", "budget_value", "job_wall_seconds",
                                                "job_cpu_seconds"])
    per_method = {m: part for m, part in slim.groupby("method")}  # each estimate reads its own entry's rows only
    cache = {}

    def estimates(r) -> tuple[float, float]:
        key = (r.job.method, r.width_label, r.job.data_key, r.budget_value)
        if key not in cache:
            done = per_method.get(r.job.method, slim.iloc[0:0])
            cache[key] = (estimate_seconds(r, done, study),
                          estimate_seconds(r, done.assign(job_wall_seconds=done["job_cpu_seconds"]), study))
        return cache[key]

    return pd.DataFrame([dict(method=r.job.method, width=r.width_label, data=r.job.data_key, multiplier=r.multiplier,
                              seed=r.job.seed, label=r.label(), est_wall_s=estimates(r)[0], est_cpu_s=estimates(r)[1])
                         for r in todo])


def missing_sentences(rows: pd.DataFrame, study: dict, plan: pd.DataFrame, dataset_key: str = "pneumonia-64") -> list[str]:
    """A bullet per detector of the study that has no row on ``dataset_key`` yet ('not run yet', with the hours its
    ladder needs there) and per detector the study leaves out (with the configuration's reason)."""
    have = set(rows.loc[rows["data"] == dataset_key, "method"]) if len(rows) else set()
    lines = []
    for name in study["detectors"]:
        if name in have:
            continue
        mine = plan[(plan["method"] == name) & (plan["data"] == dataset_key)]
        widths = ", ".join(sorted(set(mine["width"])))
        lines.append(f"**{name}**: not run yet on {dataset_key}: its ladder there ({len(mine)} rungs, widths "
                     f"{widths}) needs ~{mine['est_wall_s'].sum() / 3600:.1f} h of wall time by the runner's "
                     f"estimate (~{mine['est_cpu_s'].sum() / 3600:.1f} h on an idle core).")
    for name, reason in study.get("not_in_ladder", {}).items():
        lines.append(f"**{name}**: not in the ladder: {reason}.")
    return lines


def recompute_markdown(rows: pd.DataFrame, plan: pd.DataFrame, rows_file: str) -> str:
    """How to recompute the long rungs and how long they take, from the committed rows' seconds and the plan."""
    gpu = rows.drop(index=on_cpu(rows).index)
    rows = on_cpu(rows)
    wall, cpu = rows["job_wall_seconds"].sum() / 3600, rows["job_cpu_seconds"].sum() / 3600
    longest = rows.loc[rows["job_wall_seconds"].idxmax()]
    gpu_text = ""
    if len(gpu):
        gpu_text = (f"\n\n**On a GPU** ({', '.join(sorted(set(gpu['device'].astype(str))))}, profile "
                    f"{', '.join(sorted(set(gpu['profile'].astype(str))))}): {len(gpu)} more rows, "
                    f"{gpu['job_wall_seconds'].sum() / 3600:.2f} h of wall time summed over parallel runners, one "
                    "per detector (`scripts/budget_parallel.sh --profile paper --widths wide`, rows merged into "
                    "results/paper/budget/budget_rows.csv).")
    per = plan.groupby(["width", "data"], sort=False)[["est_wall_s", "est_cpu_s"]].sum().div(3600).round(1)
    table = bullet_list(f"{w} width, {d}: {int((plan['width'] == w).mul(plan['data'] == d).sum())} rungs, "
                        f"~{r.est_wall_s:.1f} h wall (~{r.est_cpu_s:.1f} h on an idle core)"
                        for (w, d), r in per.iterrows())
    return "\n\n".join([
        f"**Measured so far**: {len(rows)} rows in `{rows_file}`, {wall:.2f} h of wall time and {cpu:.2f} h of CPU "
        f"in all; the longest rung, {longest['method']} x{int(longest['budget_multiplier'])}, took "
        f"{longest['job_wall_seconds']:.0f} s of wall time for {longest['job_cpu_seconds']:.0f} s of CPU (a CPU "
        f"share of {longest['job_cpu_seconds'] / longest['job_wall_seconds']:.2f}: the machine was shared)."
        + gpu_text,
        "**To recompute or extend the ladder** (one process, one thread, resumable: a rung whose row is there is "
        "skipped; rows are appended as they finish):\n\n"
        "    python -m adlib.budget --profile cpu --dry-run     # the plan with estimated hours\n"
        "    nohup nice python -m adlib.budget --profile cpu --datasets pneumonia-64 --widths cpu --max-hours 8 \\\n"
        "        --no-progress >> results/budget/budget_run.log 2>&1 &",
        f"**Still to run**: {len(plan)} rungs, ~{plan['est_wall_s'].sum() / 3600:.1f} h of wall time by the "
        f"runner's estimate (~{plan['est_cpu_s'].sum() / 3600:.1f} h on an idle core):\n\n{table}"])


# ---- figures ----------------------------------------------------------------------------------------------------

def curves_figure(rows: pd.DataFrame, paper: pd.DataFrame, dataset: str = "pneumonia",
                  title: str = "AUROC vs training budget") -> plt.Figure:
    """Validation (top row) and test AUROC (%, bottom row) against the budget multiplier (log2 axis), one column
    per family, one colour and marker per detector (solid: cpu width, dashed with hollow markers: wide); the test CI
    as a band, chance as a grey line and the paper's printed number as a star at the right edge (spread sideways so
    no star hides another). One legend per family, beside its column."""
    from .plots import series_styles

    curves = curve_frame(usable(rows, dataset))
    families = list(FAMILIES)
    top = int(max(curves["budget_multiplier"].max() if len(curves) else 1, 2))
    paper_x = top * 2
    fig, axes = plt.subplots(2, len(families), figsize=(5.2 * len(families), 7.8), squeeze=False)
    for col, family in enumerate(families):
        members = [m for m in FAMILIES[family] if len(curves) and m in set(curves["method"])]
        styles = series_styles(FAMILIES[family])
        starred = [m for m in members if len(paper.loc[paper["method"] == m, "paper"])]
        for row, (metric, split) in enumerate((("val_AUROC", "validation"), ("AUROC", "test"))):
            ax = axes[row, col]
            for method in members:
                style = styles[method]
                for width, part in curves[curves["method"] == method].groupby("width_label"):
                    cpu = width == "cpu"
                    ax.plot(part["budget_multiplier"], 100 * part[metric], "-" if cpu else "--", marker=style["marker"],
                            ms=5, color=style["color"], mfc=style["color"] if cpu else "white",
                            label=method if cpu else f"{method} ({width})")
                    if metric == "AUROC":
                        ax.fill_between(part["budget_multiplier"], 100 * part["AUROC_ci_low"],
                                        100 * part["AUROC_ci_high"], color=style["color"], alpha=0.12, lw=0)
                number = paper.loc[paper["method"] == method, "paper"]
                if metric == "AUROC" and len(number):
                    spread = 2 ** (0.35 * (starred.index(method) - (len(starred) - 1) / 2))
                    ax.plot([paper_x * spread], [number.iloc[0]], "*", ms=12, color=style["color"], mec="k", mew=0.5)
            ax.axhline(50, color="grey", ls=":", lw=1.2, label="chance (50 %)")
            if row == 1 and starred:
                ax.plot([], [], "*", ms=12, color="white", mec="k", mew=0.5, label="paper's number (its colour)")
            ticks = [2 ** k for k in range(int(np.log2(top)) + 1)]
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks + [paper_x], [f"x{t}" for t in ticks] + ["paper ★" if row == 1 else ""])
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlim(0.8, paper_x * 1.6)
            ax.set_ylim(0, 100)
            ax.set(xlabel="budget (multiple of the cpu budget)", ylabel=f"{split} AUROC (%)",
                   title=f"{family}: {split}" if members else f"{family}: {split} (no rows yet)")
    fig.suptitle(f"{title} ({dataset}; one seed per rung; test band: bootstrap 95 % CI)", fontsize=14)
    fig.tight_layout()
    for col in range(len(families)):  # one legend per family, under its column: it covers no curve
        box = axes[1, col].get_position()
        handles, labels = axes[1, col].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=((box.x0 + box.x1) / 2, box.y0 - 0.07),
                   ncol=2, fontsize=10, frameon=False, handlelength=3)
    return fig


def cost_figure(rows: pd.DataFrame, dataset: str = "pneumonia") -> plt.Figure:
    """CPU seconds of one rung against its budget multiplier (log-log), one line per detector: the price of
    climbing the ladder (a straight line of slope 1 is a cost proportional to the budget). Every detector has its
    own colour, marker and line style (`plots.series_styles`), and the legend's long handles show the dashes."""
    from .plots import series_styles

    curves = curve_frame(usable(on_cpu(rows), dataset))
    fig, ax = plt.subplots(figsize=(9.5, 5.0))
    order = [m for members in FAMILIES.values() for m in members if len(curves) and m in set(curves["method"])]
    styles = series_styles(order)
    for method in order:
        part = curves[(curves["method"] == method) & (curves["width_label"] == "cpu")]
        per_seed = part["job_cpu_seconds"] / part["seeds"]
        ax.plot(part["budget_multiplier"], per_seed, ms=6, label=method, **styles[method])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    if len(curves):
        ticks = [2 ** k for k in range(int(np.log2(curves["budget_multiplier"].max())) + 1)]
        ax.set_xticks(ticks, [f"x{t}" for t in ticks])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(xlabel="budget (multiple of the cpu budget)", ylabel="CPU seconds per rung (one thread)",
           title=f"What a rung costs ({dataset}, cpu width)")
    ax.legend(fontsize=9, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5), handlelength=3.5, frameon=False)
    fig.tight_layout()
    return fig


# ---- the ladder and the discussion ------------------------------------------------------------------------------

def ladder_frame(study: dict, rows: pd.DataFrame, data_key: str = "pneumonia-64") -> pd.DataFrame:
    """One line per study entry: its family, registered detector, budget knob and x1 value (the cpu budget), batch
    size, the planned ladder per width and the multipliers measured so far on ``data_key``."""
    out = []
    for name, entry in study["detectors"].items():
        ladders = {**study.get("ladders", {}), **entry.get("ladders", {})}
        widths = [w for w in study.get("widths", ["cpu"]) if w == "cpu" or w in entry]
        mine = rows[(rows["method"] == name) & (rows["data"] == data_key)] if len(rows) else rows
        measured = {w: sorted(int(m) for m in mine.loc[mine["width_label"] == w, "budget_multiplier"].unique())
                    for w in widths} if len(mine) else {}
        out.append(dict(family=family_of(name), method=name, detector=entry["detector"], knob="+".join(entry["knob"]),
                        x1=sum(int(entry["kwargs"][k]) for k in entry["knob"]),
                        batch=entry["kwargs"].get("batch_size", "—"),
                        planned="; ".join(f"{w} x{min(ladders[w])}–x{max(ladders[w])}" for w in widths),
                        measured="; ".join(f"{w} " + ",".join(f"x{m}" for m in ms) for w, ms in measured.items() if ms)
                        or "not run yet"))
    return pd.DataFrame(out)


def coverage_sentence(rows: pd.DataFrame, study: dict) -> str:
    """Which width x dataset parts of the study have rows so far and which have none (generated)."""
    have, empty = [], []
    for width in study.get("widths", ["cpu"]):
        for data in study.get("datasets", []):
            n = int(((rows["width_label"] == width) & (rows["data"] == data)).sum()) if len(rows) else 0
            (have if n else empty).append(f"{width} width on {data}" + (f" ({n} rows)" if n else ""))
    return (f"Measured so far: {', '.join(have) or 'nothing'}; no rows yet: {', '.join(empty) or 'none'}. "
            "The curves and verdicts here are those of the measured parts only.")


def discussion(summary: pd.DataFrame, rows: pd.DataFrame, claims, dataset: str = "pneumonia") -> list[str]:
    """The notebook's closing sentences, generated: how many detectors leave chance at their best budget, which
    curves still rise or are flat where the ladder stops, and whether a paper order changes verdict between the
    cpu budget (x1) and the best budget."""
    def names(mask) -> str:
        picked = [m if w == "cpu" else f"{m} ({w})" for m, w in summary.loc[mask, ["method", "width"]].itertuples(
            index=False)]
        return ", ".join(picked) if picked else "none"

    status = summary["chance_at_best"]
    lines = [f"At its best budget measured (chosen on validation), **{int((status == 'above chance').sum())} of "
             f"{len(summary)}** detectors are above chance ({names(status == 'above chance')}); at chance: "
             f"{names(status == 'at chance')}; below chance: {names(status == 'below chance')}.",
             f"Still rising where the ladder stops (beyond noise: {names(summary['trend'] == 'still climbs')}; within "
             f"noise: {names(summary['trend'] == 'rises within noise')}): their numbers in notebooks 00-07 are "
             "budget-limited until the higher rungs are measured.",
             f"Flat because the checkpoint chosen on validation did not move: "
             f"{names(summary['trend'] == 'flat: the same checkpoint')}; plateau: {names(summary['trend'] == 'plateau')}; "
             f"one rung only so far: {names(summary['trend'] == 'one rung only')}."]
    moved = summary[summary["gain"] == "better"]
    lines.append(f"Test AUROC rose beyond noise from the cpu budget to the best budget for {names(summary['gain'] == 'better')}"
                 + (f" (largest: {moved.loc[(moved['best_test'] - moved['x1_test']).idxmax(), 'method']}, "
                    f"{(moved['best_test'] - moved['x1_test']).max():+.1f} points)." if len(moved) else "."))
    ok = usable(rows, dataset)
    x1 = ok[(ok["width_label"] == "cpu") & (ok["budget_multiplier"] == 1)]
    for claim in claims:
        order = [n.strip() for n in claim.split(">")]
        if not all((x1["method"] == n).any() for n in order):
            continue
        at_x1 = verdicts.order_claim({n: x1[x1["method"] == n].assign(variant="default") for n in order}, order)
        at_best = order_claims(rows, [claim], dataset)[0]
        verdict = getattr(at_best, "verdict", "not judged")
        lines.append(f"Claim **{claim}**: **{at_x1.verdict}** at the cpu budget, **{verdict}** at the best budget "
                     + ("(the verdict did not change)." if verdict == at_x1.verdict else "(the verdict changed)."))
    return lines
