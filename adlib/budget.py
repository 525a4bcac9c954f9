"""The training-budget study (issue 20): what a bigger training budget buys each detector that trains.

For every detector entry of ``adlib/configs/08_training_budget.toml`` the study trains a geometric ladder of
budgets - multiples of the cpu budget (the cpu-profile setting of notebook 07) of the entry's budget knob (``steps``;
``gan_steps`` + ``encoder_steps`` for f-AnoGAN; ``epochs`` for SimpleNet / WSCXR) - at two widths (the cpu width and
a wider network closer to the paper's), on each dataset of the configuration, one seed per rung and three seeds at
the top rung of each ladder.

Each rung is one benchmark `Job`, run by `adlib.benchmark.run_job` (the same row columns and provenance as notebook
07's grid), plus the columns of the study: ``budget_multiplier``, ``budget_knob``, ``budget_value``,
``width_label``, ``detector_kwargs`` (JSON), ``data_spec`` (JSON), the job's wall and CPU seconds and the fit's CPU
seconds, ``job_key``. The rungs run ONE AT A TIME in this process, cheapest first (a rung's cost is estimated from
its budget and the seconds per budget unit measured on the rungs already done), and each finished row is appended
to ``results/budget/budget_rows.csv`` atomically (read, append, write a temporary file, ``os.replace``): an
interrupted run loses at most the rung it was running, and a re-run skips every rung whose ``job_key`` is there.

    python -m adlib.budget --profile cpu --dry-run              # the plan, with estimated hours
    python -m adlib.budget --profile cpu --datasets pneumonia-64 --widths cpu --max-hours 2

This is a base module: detectors are created through the registry by name, never by importing a method module.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .benchmark import ConfigRef, Job, dataset_column, run_job
from .benchmark.grid import _frozen
from .io import atomic_path
from .paths import relative_to_project

CONFIG = "08_training_budget"
ROWS_FILE = Path("budget") / "budget_rows.csv"  # under the profile's results folder (cpu: results/budget/)
CPU_WIDTH = "cpu"  # the width label whose network is the entry's ``kwargs`` as they are


@dataclass(frozen=True)
class Rung:
    """One point of a ladder: a benchmark job at a multiple of the cpu budget, at one width."""

    job: Job
    width_label: str
    multiplier: int
    knob: tuple[str, ...]
    budget_value: int        # the knob's value (the sum of its keys for a two-key knob)
    key: str                 # `rung_key`: a row with this key in the CSV means the rung is done

    @property
    def kwargs(self) -> dict:
        return _plain(self.job.kwargs)

    def label(self) -> str:
        return (f"{self.job.method} [{self.width_label}] x{self.multiplier} ({'+'.join(self.knob)}="
                f"{self.budget_value}) {self.job.data_key} seed {self.job.seed}")


def _plain(frozen) -> dict:
    """A job's frozen (key, value) pairs back as a dict of plain values (tuples -> lists) for JSON."""
    def plain(value):
        if isinstance(value, tuple) and value and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
                                                      for x in value):
            return {k: plain(v) for k, v in value}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    return plain(frozen) if frozen else {}


def rung_key(job: Job, width_label: str, multiplier: int, data_spec: dict, profile: str) -> str:
    """A hash of everything that decides a rung's result: the job (detector, method, data, seed, weights, K), its
    detector options, the dataset spec, the width label, the multiplier and the profile.

    Unlike `adlib.benchmark.job_key` it leaves out the git commit and the configuration file's hash: the ladder
    runs for hours across sessions and commits, and a rung that is done stays done when the code or another
    entry of the configuration changes (each row records its git_commit and config_sha256)."""
    text = json.dumps([job.describe(), _plain(job.kwargs), data_spec, width_label, int(multiplier), profile],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ---- the ladder --------------------------------------------------------------------------------------------------

def _entries(values: dict, detectors: list[str] | None) -> list[str]:
    """The entries to run: the configuration's ``run`` (empty: all), narrowed to ``detectors`` (entry names or
    registered detector names)."""
    table = values["detectors"]
    names = list(values.get("run") or table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"{CONFIG}: `run` names {unknown}, which have no [detectors] entry; entries: {list(table)}")
    if detectors:
        known = set(table) | {e["detector"] for e in table.values()}
        missing = [d for d in detectors if d not in known]
        if missing:
            raise ValueError(f"unknown detector(s) {missing}; entries: {', '.join(table)} (or their registered names)")
        names = [n for n in names if n in detectors or table[n]["detector"] in detectors]
    return names


def _scaled(kwargs: dict, knob: tuple[str, ...], multiplier: int) -> tuple[dict, int]:
    """The options with each knob key multiplied, and the budget value (the sum of the knob's keys)."""
    out = dict(kwargs)
    for key in knob:
        base = kwargs.get(key)
        if not isinstance(base, int) or isinstance(base, bool) or base < 1:
            raise ValueError(f"budget knob {key!r} must be a whole number of 1 or more in the entry's kwargs, "
                             f"got {base!r}")
        out[key] = base * int(multiplier)
    return out, sum(out[k] for k in knob)


def build_ladder(values: dict, profile: str, *, datasets: list[str] | None = None,
                 detectors: list[str] | None = None, widths: list[str] | None = None) -> list[Rung]:
    """Every rung of the study's configuration (``values``: `RunConfig.as_dict()` of 08_training_budget), in
    configuration order: entry x width x dataset x multiplier x seed. ``datasets`` / ``detectors`` / ``widths``
    narrow it (``detectors``: entry names such as "AE (L1)" or registered names such as "conv_ae")."""
    from .detectors import available

    datasets = list(datasets or values["datasets"])
    widths = list(widths or values["widths"])
    for what, asked, known in (("dataset", datasets, values["data"]), ("width", widths, values["widths"])):
        unknown = [a for a in asked if a not in known]
        if unknown:
            raise ValueError(f"unknown {what}(s) {unknown}; the configuration has {', '.join(known)}")
    registered = set(available())
    seed = int(values.get("seed", 0))
    top_seeds = sorted({seed, *(int(s) for s in values.get("top_seeds", [seed]))})
    rungs = []
    for name in _entries(values, detectors):
        entry = values["detectors"][name]
        if entry["detector"] not in registered:
            raise ValueError(f"entry {name!r}: {entry['detector']!r} is not a registered detector")
        knob = tuple(entry["knob"])
        ladders = {**values.get("ladders", {}), **entry.get("ladders", {})}
        for width in widths:
            if width != CPU_WIDTH and width not in entry:
                continue  # this detector has one width only (the entry's `no_wide` says why)
            base = {**entry["kwargs"], **(entry.get(width, {}) if width != CPU_WIDTH else {})}
            ladder = sorted({int(m) for m in ladders[width]})
            for data_key in datasets:
                spec = dict(values["data"][data_key])
                for multiplier in ladder:
                    kwargs, value = _scaled(base, knob, multiplier)
                    for s in (top_seeds if multiplier == ladder[-1] else [seed]):
                        k = entry.get("k")
                        job = Job(entry["detector"], name, data_key, dataset_column(spec), int(spec["size"]), int(s),
                                  str(entry.get("weights", "none")), None if k is None else int(k), (name,),
                                  _frozen(kwargs))
                        rungs.append(Rung(job, width, multiplier, knob, value,
                                          rung_key(job, width, multiplier, spec, profile)))
    return rungs


# ---- cost estimates ----------------------------------------------------------------------------------------------

def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed seconds, seconds per budget unit) through measured (budget value, seconds) points: a least-squares
    line when two or more budgets were measured and it is sensible (fixed cost >= 0, a rising cost), else
    proportional (the median seconds per unit)."""
    values = np.array([p[0] for p in points], float)
    seconds = np.array([p[1] for p in points], float)
    if len(set(values)) >= 2:
        slope, fixed = np.polyfit(values, seconds, 1)
        if slope > 0 and fixed >= 0:
            return float(fixed), float(slope)
    return 0.0, float(np.median(seconds / values))


def estimate_seconds(rung: Rung, done: pd.DataFrame, values: dict) -> float:
    """Seconds (one core) a rung should take: from the rungs of its entry already done - same width and dataset,
    else same width on another dataset, else the cpu width's rate times ``wide_cost`` - and before anything was
    measured, the entry's ``est_seconds`` (its 1x cpu-width rung) times the multiplier."""
    entry = values["detectors"][rung.job.method]
    wide_cost = float(entry.get("wide_cost", values.get("wide_cost", 1.0)))

    def measured(width: str, data_key: str | None) -> tuple[float, float] | None:
        if done.empty:
            return None
        # numpy masks, not frame indexing: a plan estimates hundreds of rungs against the same rows
        keep = (done["method"].to_numpy() == rung.job.method) & (done["width_label"].to_numpy() == width)
        if data_key is not None:
            keep &= done["data"].to_numpy() == data_key
        value = pd.to_numeric(done["budget_value"], errors="coerce").to_numpy(float)
        # CPU seconds of the job's process, not wall seconds: a rung that shared its core (or whose process was
        # suspended) measured wall times 2x to 18x its cost (cpu_share 0.06-0.6 in results/budget/)
        wall = pd.to_numeric(done["job_wall_seconds"], errors="coerce").to_numpy(float)
        cpu = (pd.to_numeric(done["job_cpu_seconds"], errors="coerce").to_numpy(float)
               if "job_cpu_seconds" in done.columns else np.full(len(done), np.nan))
        seconds = np.where(np.isnan(cpu), wall, cpu)  # rows without a CPU measurement: their wall seconds
        keep &= ~np.isnan(seconds) & (value > 0)
        return _line(list(zip(value[keep], seconds[keep]))) if keep.any() else None

    for width, data_key, factor in ((rung.width_label, rung.job.data_key, 1.0), (rung.width_label, None, 1.0),
                                    (CPU_WIDTH, rung.job.data_key, wide_cost), (CPU_WIDTH, None, wide_cost)):
        line = measured(width, data_key)
        if line is not None:
            return factor * (line[0] + line[1] * rung.budget_value)
    factor = 1.0 if rung.width_label == CPU_WIDTH else wide_cost
    return factor * float(entry.get("est_seconds", 60.0)) * rung.multiplier


def cheapest_first(rungs: list[Rung], done: pd.DataFrame, values: dict) -> list[tuple[Rung, float]]:
    """(rung, estimated seconds), cheapest first; ties by multiplier, seed, then configuration order."""
    order = {r.key: i for i, r in enumerate(rungs)}
    costed = [(r, estimate_seconds(r, done, values)) for r in rungs]
    return sorted(costed, key=lambda rc: (round(rc[1], 3), rc[0].multiplier, rc[0].job.seed, order[rc[0].key]))


# ---- the rows file -----------------------------------------------------------------------------------------------

def read_rows(path: str | Path) -> pd.DataFrame:
    """The rows finished so far (an empty frame when there are none)."""
    path = Path(path)
    return pd.read_csv(path, low_memory=False) if path.is_file() else pd.DataFrame()


def append_row(path: str | Path, row: dict) -> pd.DataFrame:
    """Append one row to the CSV atomically: read it, add the row, write the whole table to a temporary file next
    to it, then ``os.replace`` it over the old one. A crash at any point leaves the old file or the new one,
    never a torn one. Returns the new table."""
    frame = read_rows(path)
    new = pd.DataFrame([row])
    frame = new if frame.empty else pd.concat([frame, new], ignore_index=True, sort=False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


@contextlib.contextmanager
def exclusive(path: Path):
    """Hold a lock on the rows file for the whole run: two runners appending to one file would lose rows. The lock
    file lives in the temporary folder (named after the rows file's path), not among the results."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"adlib-budget-{digest}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another budget run is writing {path}; wait for it or stop it first") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---- running -----------------------------------------------------------------------------------------------------

def run_rung(rung: Rung, ref: ConfigRef, threads: int = 1) -> dict:
    """Train and score one rung (`adlib.benchmark.run_job`) and return its row with the study's columns.

    ``fit_cpu_seconds``: the fit's wall seconds times the job's CPU share (process CPU seconds / wall seconds over
    the whole job, fit and scoring). With one thread on an idle core that share is ~1; on a shared, niced core it
    is what the process actually got, so ``fit_cpu_seconds`` is the compute the fit cost."""
    import torch

    wall0, cpu0 = time.perf_counter(), time.process_time()
    row = run_job(rung.job, ref, threads)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    share = cpu / wall if wall > 0 else float("nan")
    fit = pd.to_numeric(row.get("fit_seconds"), errors="coerce")
    kwargs = rung.kwargs
    spec = dict(_plain(ref.data_spec(rung.job.data_key)))
    row.update(
        source=CONFIG, job_key=rung.key, K=rung.job.k if rung.job.k is not None else np.nan,
        width_label=rung.width_label, budget_multiplier=rung.multiplier, budget_knob="+".join(rung.knob),
        budget_value=rung.budget_value,
        width=kwargs.get("width", row.get("width", np.nan)),
        job_wall_seconds=round(wall, 2), job_cpu_seconds=round(cpu, 2), cpu_share=round(share, 3),
        fit_cpu_seconds=round(float(fit) * share, 2) if np.isfinite(fit) else np.nan,
        detector_kwargs=json.dumps(kwargs, sort_keys=True), data_spec=json.dumps(spec, sort_keys=True),
        torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return row


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def run_study(rungs: list[Rung], ref: ConfigRef, rows_path: str | Path, *, max_hours: float | None = None,
              max_rungs: int | None = None, threads: int = 1, progress: bool = True, log=print) -> list[dict]:
    """Run the rungs not yet in ``rows_path`` one at a time, cheapest first (re-estimated after every rung), each
    row appended atomically as it finishes. Stops when every rung is done, after ``max_rungs`` rungs, or before a
    rung whose estimate would end past ``max_hours`` of this run. A rung that raises is logged and skipped (it is
    tried again by the next run). Returns the rows of this run."""
    from tqdm.auto import tqdm

    from .detectors import detector_class

    rows_path = Path(rows_path)
    values = _plain(ref.values)
    for name in dict.fromkeys(r.job.detector for r in rungs):
        detector_class(name)  # load every method's code now, with the git commit the rows record (read just below)
    with exclusive(rows_path):
        done = read_rows(rows_path)
        finished = set(done["job_key"]) if "job_key" in done else set()
        todo = [r for r in rungs if r.key not in finished]
        plan = cheapest_first(todo, done, values)
        log(f"[budget] {len(rungs)} rungs planned, {len(rungs) - len(todo)} already in "
            f"{relative_to_project(rows_path)}, {len(todo)} to run "
            f"(~{_hours(sum(s for _, s in plan))} estimated); limits: max hours {max_hours}, max rungs {max_rungs}; "
            f"git {rows_git_commit()}, {threads} thread(s)")
        start, ran, failed = time.monotonic(), [], set()
        total = len(todo) if max_rungs is None else min(len(todo), max_rungs)
        # the bar and the log lines share stdout (one ordered stream in the log file); a line is written through
        # the bar so that it starts on a line of its own
        with tqdm(total=total, desc="budget rungs", disable=not progress, mininterval=30, file=sys.stdout) as bar:
            def say(text: str) -> None:
                if progress:
                    bar.write(text, file=sys.stdout)
                    sys.stdout.flush()
                else:
                    log(text)

            while True:
                plan = cheapest_first([r for r in todo if r.key not in finished and r.key not in failed], done, values)
                if not plan:
                    say("[budget] every planned rung is done")
                    break
                if max_rungs is not None and len(ran) >= max_rungs:
                    say(f"[budget] stopping: {max_rungs} rung(s) run (--max-rungs); {len(plan)} left")
                    break
                rung, estimate = plan[0]
                elapsed = time.monotonic() - start
                if max_hours is not None and elapsed + estimate > max_hours * 3600:
                    say(f"[budget] stopping after {_hours(elapsed)}: the next rung, {rung.label()}, needs "
                        f"~{_hours(estimate)} and the limit is {max_hours} h; {len(plan)} left "
                        f"(~{_hours(sum(s for _, s in plan))})")
                    break
                try:
                    row = run_rung(rung, ref, threads)
                except Exception:  # a broken rung must not stop the ladder: log it, the next run tries it again
                    failed.add(rung.key)
                    say(f"[budget] FAILED {rung.label()}:\n{traceback.format_exc()}")
                    continue
                done = append_row(rows_path, row)
                finished.add(rung.key)
                ran.append(row)
                bar.update()
                say(f"[budget] {len(rungs) - len(todo) + len(ran)}/{len(rungs)} {rung.label()}: "
                    f"AUROC {row.get('AUROC', np.nan):.3f} (val {row.get('val_AUROC', np.nan):.3f}, "
                    f"{row.get('status')}); {row['job_wall_seconds']:.0f} s (fit {row.get('fit_seconds', np.nan):.0f} s, "
                    f"{row['fit_cpu_seconds']:.0f} CPU s; estimated {estimate:.0f} s); "
                    f"run {_hours(time.monotonic() - start)}")
    return ran


def rows_git_commit() -> str:
    from .provenance import git_commit

    return git_commit()


def describe_plan(plan: list[tuple[Rung, float]]) -> str:
    """The dry run's text: every rung in run order with its estimate and the running total, then the hours per
    entry x width x dataset."""
    lines, total = [], 0.0
    lines.append(f"{'#':>4} {'est s':>8} {'total h':>8}  rung")
    for i, (rung, seconds) in enumerate(plan, 1):
        total += seconds
        lines.append(f"{i:>4} {seconds:>8.0f} {total / 3600:>8.2f}  {rung.label()}")
    frame = pd.DataFrame([dict(method=r.job.method, width=r.width_label, data=r.job.data_key, multiplier=r.multiplier,
                               seconds=s) for r, s in plan])
    if len(frame):
        summary = frame.groupby(["method", "width", "data"], sort=False).agg(
            rungs=("seconds", "size"), top=("multiplier", "max"), hours=("seconds", lambda s: round(s.sum() / 3600, 2)))
        lines += ["", "estimated hours of one core per entry x width x dataset:", summary.to_string(), "",
                  "per width x dataset:",
                  frame.groupby(["width", "data"], sort=False)["seconds"].sum().div(3600).round(1).to_string()]
    lines.append(f"\n{len(plan)} rungs, ~{total / 3600:.1f} hours of one core in all")
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------------------------------

def study_values(profile: str = "cpu") -> dict:
    """The study's configuration for ``profile`` as plain values, read WITHOUT activating that profile (a notebook
    running the smoke profile reads the cpu study's ladder this way and keeps writing to its own folders)."""
    import tomllib

    from .config import _merge, config_path

    data = tomllib.loads(config_path(CONFIG).read_text())
    return _merge(data.get("common", {}), data.get(profile, {}))


def rows_path_for(profile: str) -> Path:
    """results/budget/budget_rows.csv for the cpu profile, results/<profile>/budget/... for the others."""
    from .paths import results_dir_of

    return results_dir_of(profile) / ROWS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adlib.budget",
                                     description="The training-budget study: run the ladder of 08_training_budget, "
                                                 "cheapest rung first, resumable.")
    parser.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $ADLIB_PROFILE, else cpu/paper)")
    parser.add_argument("--datasets", nargs="+", metavar="KEY", help="dataset keys of the configuration (default: all)")
    parser.add_argument("--detectors", nargs="+", metavar="NAME",
                        help="entries (e.g. 'AE (L1)') or registered detector names (default: all)")
    parser.add_argument("--widths", nargs="+", metavar="LABEL", help="width labels (default: all, e.g. cpu wide)")
    parser.add_argument("--max-hours", type=float, default=None, help="start no rung that would end past this")
    parser.add_argument("--max-rungs", type=int, default=None, help="run at most this many rungs")
    parser.add_argument("--dry-run", action="store_true", help="list the plan with estimated hours; run nothing")
    parser.add_argument("--rows", type=Path, default=None,
                        help="the rows file (default: results/budget/budget_rows.csv of the profile)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (the log lines stay)")
    args = parser.parse_args(argv)
    for flag, value in (("--max-hours", args.max_hours), ("--max-rungs", args.max_rungs)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be more than 0, got {value}")

    import torch

    from .config import load_run_config

    cfg = load_run_config(CONFIG, args.profile)  # activates the profile: one torch thread unless $ADLIB_THREADS
    values = cfg.as_dict()
    try:
        rungs = build_ladder(values, cfg.profile.name, datasets=args.datasets, detectors=args.detectors,
                             widths=args.widths)
    except ValueError as err:
        parser.error(str(err))
    rows_path = args.rows or rows_path_for(cfg.profile.name)
    ref = ConfigRef.of(cfg)
    if args.dry_run:
        done = read_rows(rows_path)
        finished = set(done["job_key"]) if "job_key" in done else set()
        todo = [r for r in rungs if r.key not in finished]
        print(f"{relative_to_project(rows_path)}: {len(rungs) - len(todo)} of {len(rungs)} rungs done"
              + (f" (all rows: {len(done)}, {done['job_wall_seconds'].sum() / 3600:.2f} h wall, "
                 f"{done['job_cpu_seconds'].sum() / 3600:.2f} h CPU)" if len(done) else ""))
        print(describe_plan(cheapest_first(todo, done, values)))
        return 0
    run_study(rungs, ref, rows_path, max_hours=args.max_hours, max_rungs=args.max_rungs,
              threads=torch.get_num_threads(), progress=not args.no_progress,
              log=lambda text: print(text, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
