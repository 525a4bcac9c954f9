"""The benchmark of notebook 07: every registered detector on every dataset under one protocol.

The grid (detectors x datasets x seeds) is a list of `Job` s. `plan_grid` matches each job against the result rows
the paper notebooks already wrote (``results/*.csv`` for the cpu profile, ``results/<profile>/`` for the others):
a row with the same dataset, image size, method, seed, weights source (and K for a weakly supervised method) is
*reused*, and only the missing jobs run. The runs go through `adlib.experiment.run_experiment` (one row with
provenance each), scheduled by `joblib.Parallel`: the local (loky) backend by default, joblib's Ray backend when
``$ADLIB_RAY_ADDRESS`` names a Ray cluster (``ray`` is imported only then).

From the grid's rows: `cell_stats` (mean ± std and a bootstrap 95 % CI of test AUROC per method and dataset;
the bootstrap resamples the *seeds*, because the rows keep no per-image scores), `rank_methods` (Friedman test
and Nemenyi critical difference from ``autorank``), `leaderboard`, `resources` (fit time, score time, peak
memory), and `paper_vs_ours` (every paper's printed number beside ours, with the reasons we name for the gap,
generated from the rows' provenance columns).

This is a base module: it creates detectors through the registry (`adlib.detectors.create`) and never imports a
method module; the per-method paper-number files are read as data files.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .paths import PROJECT_ROOT, results_dir
from .paths import results_dir_of as results_folder_for  # a profile's rows: results/ or results/<profile>/

PACKAGE_DIR = Path(__file__).resolve().parent
RAY_ENV = "ADLIB_RAY_ADDRESS"
UNSUPERVISED = "unsupervised"
# a printed number with one of these variants compares with our default variant
PLAIN_VARIANTS = ("", "default", "unsupervised")
# columns of the runner's rows that the grid keeps (when present)
ROW_COLUMNS = ["AUROC", "AUROC_ci_low", "AUROC_ci_high", "AP", "F1", "ACC", "val_AUROC", "pixel_AUROC", "fit_seconds", "score_seconds",
               "peak_memory_MB", "added_memory_MB", "fit_images_per_s", "score_images_per_s", "status",
               "data_source", "data_sha256", "n_val", "n_test", "profile",
               "steps", "width", "threads", "device", "config_sha256", "git_commit"]


def weak_block(k: int) -> str:
    return f"weakly supervised (K={k})"


# ----------------------------------------------------------------------------------------------------------------
# the grid
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One cell of the grid: a registered detector on one dataset with one seed (and K for weak supervision)."""

    detector: str            # registered name (adlib.detectors.create)
    method: str              # the name result rows use (the notebooks' display name)
    data_key: str            # the dataset's key in the run configuration, e.g. "pneumonia-64"
    dataset: str             # the rows' dataset column, e.g. "pneumonia", "cifar10[airplane:one_normal]"
    image_size: int
    seed: int
    weights: str = "none"
    k: int | None = None     # few-shot anomalies (weakly supervised methods)
    aliases: tuple[str, ...] = ()
    kwargs: tuple = field(default=(), compare=False)  # detector options as sorted (key, value) pairs

    @property
    def block(self) -> str:
        return UNSUPERVISED if self.k is None else weak_block(self.k)

    @property
    def variant(self) -> str:
        return "default" if self.k is None else f"K={self.k}"

    def describe(self) -> dict:
        return dict(method=self.method, detector=self.detector, block=self.block, data=self.data_key,
                    dataset=self.dataset, image_size=self.image_size, seed=self.seed, weights=self.weights,
                    variant=self.variant)


def _frozen(value):
    if isinstance(value, dict) or hasattr(value, "items"):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value):
    """Detector options back from `_frozen` (sequences stay tuples, which every detector accepts)."""
    if isinstance(value, tuple) and value and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
                                                  for x in value):
        return {k: _thawed(v) for k, v in value}
    return value


def dataset_column(spec: dict) -> str:
    """The dataset column the notebooks' rows use for a dataset spec of the configuration."""
    if spec["name"] == "cifar10":
        from .data.cifar import CLASSES

        return f"cifar10[{CLASSES[int(spec['cifar_class'])]}:{spec.get('direction', 'one_normal')}]"
    return spec["name"]


def build_grid(values: dict) -> list[Job]:
    """Every (detector, dataset, seed[, K]) of a run configuration's ``methods``, ``datasets`` and ``seeds``.

    ``methods`` defaults to every registered detector; ``names.<detector>`` are the method names the notebooks'
    rows use (the first is the one our rows get); ``weights.<detector>`` the expected weights source;
    ``ks.<detector>`` the K values of a weakly supervised detector; ``kwargs.<detector>`` its options.
    """
    from .detectors import available

    methods = list(values.get("methods") or available())
    unknown = sorted(set(methods) - set(available()))
    if unknown:
        raise ValueError(f"07 config names unregistered detectors {unknown}; registered: {available()}")
    names, weights, ks = values.get("names", {}), values.get("weights", {}), values.get("ks", {})
    jobs = []
    for det, key, seed in itertools.product(methods, values["datasets"], values["seeds"]):
        spec = values["data"][key]
        aliases = tuple(names.get(det, (det,)))
        kw = dict(values.get("kwargs", {}).get(det, {}))
        kw.update(values.get("kwargs_by_data", {}).get(key, {}).get(det, {}))
        for k in (ks.get(det) or [None]):
            jobs.append(Job(det, aliases[0], key, dataset_column(spec), int(spec["size"]), int(seed),
                            str(weights.get(det, "none")), None if k is None else int(k), aliases, _frozen(kw)))
    return jobs


# ----------------------------------------------------------------------------------------------------------------
# reuse of the notebooks' rows
# ----------------------------------------------------------------------------------------------------------------
def existing_rows(folder: Path | None = None, exclude_prefix: str = "07_") -> pd.DataFrame:
    """Every runner row (dataset, method, seed, image_size, weights, AUROC) in a results folder, with its file.

    Rows of the benchmark itself (``07_*``), summaries and timing tables are left out. Files are read in sorted
    order, so when two notebooks wrote the same configuration the lower-numbered notebook's row comes first."""
    folder = Path(folder) if folder is not None else results_dir()
    need = {"dataset", "method", "seed", "image_size", "weights", "AUROC"}
    frames = []
    for path in sorted(folder.glob("*.csv")):
        if path.name.startswith(exclude_prefix) or path.stem.endswith("_summary") or "timing" in path.stem:
            continue
        frame = pd.read_csv(path, low_memory=False)
        if not need <= set(frame.columns):
            continue
        frame = frame.assign(source=path.name, variant=frame.get("variant", "default"))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=sorted(need | {"variant", "source"}))
    out = pd.concat(frames, ignore_index=True, sort=False)
    out["variant"] = out["variant"].fillna("default").astype(str)
    return out


FINGERPRINT_COLUMNS = ("data_sha256", "n_test")  # the evaluation data a reused row must share with the job


def data_fingerprint(ref: "ConfigRef", key: str) -> dict:
    """What identifies a dataset of the configuration's grid: its file's (or generated images') hash and the
    size of its test split (after caps). Rows written before a column existed are not checked on it."""
    prot = _protocol(ref.data_spec(key))
    return {"data_sha256": prot.data_sha256()[:16], "n_test": len(prot.test)}


def matching_rows(job: Job, rows: pd.DataFrame, reuse_variants=("default", "unsupervised", "per dataset"),
                  fingerprint: dict | None = None) -> pd.DataFrame:
    """Every row that ran ``job``'s configuration: dataset, image size, method, seed, weights, K, and (where
    both the row and ``fingerprint`` have it) the same data file and test-split size."""
    if rows.empty:
        return rows
    variants = set(reuse_variants) if job.k is None else {job.variant}
    hit = rows[(rows["dataset"].astype(str) == job.dataset) & (rows["image_size"].astype(int) == job.image_size)
               & rows["method"].isin(job.aliases) & (rows["seed"].astype(int) == job.seed)
               & (rows["weights"].astype(str) == job.weights) & rows["variant"].isin(variants)]
    if "K" in hit.columns and job.k is not None:
        hit = hit[hit["K"].isna() | (pd.to_numeric(hit["K"], errors="coerce") == job.k)]
    for col, want in (fingerprint or {}).items():
        if col in hit.columns:
            known = hit[col].notna() & (hit[col].astype(str) != "")
            hit = hit[~known | (hit[col].astype(str).str.replace(r"\.0$", "", regex=True) == str(want))]
    return hit


def matching_row(job: Job, rows: pd.DataFrame, reuse_variants=("default", "unsupervised", "per dataset"),
                 fingerprint: dict | None = None):
    """The first row that ran ``job``'s configuration (see `matching_rows`), or None."""
    hit = matching_rows(job, rows, reuse_variants, fingerprint)
    return None if hit.empty else hit.iloc[0].to_dict()


def plan_grid(jobs: list[Job], rows: pd.DataFrame, *, run_on: list[str] | None = None,
              run_seeds: list[int] | dict | None = None, reuse: bool = True,
              reuse_variants=("default", "unsupervised", "per dataset"),
              fingerprints: dict | None = None) -> tuple[list[dict], list[Job]]:
    """Split the grid into reused rows and the jobs to run.

    A cell (detector, dataset, K) takes all its reused seeds from ONE results file, the one that ran the most of
    its seeds (the lower-numbered notebook on a tie), so a cell never mixes two notebooks' budgets; its other
    seeds are listed as 'not run (cell reused)'. A cell that no file ran runs here, on the datasets (keys) of
    ``run_on`` and the seeds of ``run_seeds`` (None: all; ``run_seeds`` may also map a dataset key to its
    seeds, the others then take all); the rest is listed as 'not run (budget)'. ``fingerprints``:
    {dataset key: `data_fingerprint`}. Returns (grid rows so far, jobs to run)."""
    def seeds_of(key):
        return run_seeds.get(key) if hasattr(run_seeds, "get") else run_seeds

    cells: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        cells.setdefault((job.detector, job.method, job.data_key, job.k), []).append(i)
    decided: dict[int, tuple] = {}
    for members in cells.values():
        hits = {i: matching_rows(jobs[i], rows, reuse_variants, (fingerprints or {}).get(jobs[i].data_key))
                if reuse else pd.DataFrame() for i in members}
        counts: dict[str, int] = {}
        for hit in hits.values():
            for src in dict.fromkeys(hit["source"].astype(str)) if len(hit) else ():
                counts[src] = counts.get(src, 0) + 1
        best = min(counts, key=lambda src: (-counts[src], src)) if counts else None
        for i in members:
            job = jobs[i]
            if best is not None:
                hit = hits[i][hits[i]["source"].astype(str) == best] if len(hits[i]) else hits[i]
                decided[i] = ("reused", hit.iloc[0].to_dict()) if len(hit) else ("not run (cell reused)", {})
                continue
            seeds = None if run_seeds is None else seeds_of(job.data_key)
            if (run_on is None or job.data_key in run_on) and (seeds is None or job.seed in seeds):
                decided[i] = ("run", None)
            else:
                decided[i] = ("not run (budget)", {})
    planned, todo = [], []
    for i, job in enumerate(jobs):
        how, row = decided[i]
        if how == "run":
            todo.append(job)
        else:
            planned.append(_grid_row(job, row, how, row.get("source", "") if how == "reused" else ""))
    return planned, todo


def _grid_row(job: Job, row: dict, how: str, source: str) -> dict:
    out = job.describe()
    out.update(how=how, source=source)
    for col in ROW_COLUMNS:
        out[col] = row.get(col, np.nan)
    return out


# ----------------------------------------------------------------------------------------------------------------
# running the missing jobs
# ----------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _protocol(spec_items: tuple):
    """The protocol of a dataset spec (cached per process: every job on a dataset reads it once)."""
    from .data import cifar10_one_vs_rest, make_protocol, make_synthetic_protocol
    from .data.protocol import cap_splits

    spec = dict(spec_items)
    name, size = spec["name"], int(spec["size"])
    if name == "synthetic":
        return make_synthetic_protocol(n_train=int(spec.get("n_train", 256)), n_val=int(spec.get("n_val", 64)),
                                       n_test=int(spec.get("n_test", 128)), size=size,
                                       channels=int(spec.get("channels", 1)), seed=int(spec.get("data_seed", 0)))
    if name == "cifar10":
        prot = cifar10_one_vs_rest(int(spec["cifar_class"]), spec.get("direction", "one_normal"), size=size,
                                   max_train=spec.get("max_train"), seed=0)
    else:
        prot = make_protocol(name, size=size, channels=spec.get("channels"), max_train=spec.get("max_train"), seed=0)
    return cap_splits(prot, spec.get("val_cap"), spec.get("test_cap"), seed=0)


@dataclass(frozen=True)
class ConfigRef:
    """What a worker needs to rebuild the run configuration (a RunConfig holds read-only mappings, which do not
    pickle): the notebook, the profile, the values and the file's hash."""

    notebook: str
    profile: str
    values: tuple
    sha256: str

    @classmethod
    def of(cls, cfg) -> "ConfigRef":
        return cls(cfg.notebook, cfg.profile.name, _frozen(cfg.as_dict()), cfg.sha256)

    def config(self):
        from .config import RunConfig, _freeze
        from .profiles import PROFILES

        return RunConfig(self.notebook, PROFILES[self.profile], _freeze(_thawed(self.values)), self.sha256)

    def data_spec(self, key: str) -> tuple:
        return _frozen(_thawed(self.values)["data"][key])


def run_job(job: Job, ref: ConfigRef, threads: int | None = 1) -> dict:
    """Run one job through `adlib.experiment.run_experiment` and return its grid row (also pixel AUROC where the
    test split has lesion masks and the detector gives anomaly maps)."""
    import torch

    from .data import few_shot_anomalies
    from .experiment import run_experiment
    from .metrics import pixel_auroc

    if threads:
        torch.set_num_threads(threads)
    cfg = ref.config()
    protocol = _protocol(ref.data_spec(job.data_key))
    kw = dict(_thawed(job.kwargs) or {})
    kw.setdefault("progress", False)
    anomalies = few_shot_anomalies(protocol, job.k, seed=job.seed) if job.k is not None else None
    result = run_experiment(job.detector, protocol, config=cfg, seed=job.seed, method=job.method, table=None,
                            variant=job.variant, anomalies=anomalies, use_val_in_fit=True, detector_kwargs=kw,
                            dataset=job.dataset, image_size=job.image_size,
                            **({"K": job.k} if job.k is not None else {}),
                            **({"steps": kw["steps"]} if "steps" in kw else {}))
    row = dict(result.row)
    det, test = result.detector, protocol.test
    if result.ok and test.masks is not None and det is not None and det.supports("anomaly_maps"):
        maps = det.anomaly_maps(test)
        row["pixel_AUROC"] = pixel_auroc(np.asarray(test.masks), maps)
    if str(row.get("weights")) != job.weights:
        warnings.warn(f"{job.method} on {job.data_key}: the detector reports weights {row.get('weights')!r}, the "
                      f"configuration expects {job.weights!r}; later re-runs will not find this row")
    return _grid_row(job, row, "ran", "07_benchmark")


def _ray_backend():
    """Register joblib's Ray backend and connect to $ADLIB_RAY_ADDRESS (or the Ray already started)."""
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise RuntimeError(f"${RAY_ENV} is set, but Ray is not installed: `pip install ray` (or unset "
                           f"{RAY_ENV} to use the local joblib backend)") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get(RAY_ENV) or None)
    register_ray()
    return "ray"


def job_key(job: Job, ref: ConfigRef) -> str:
    """A hash of everything that decides a job's result: the cell, the detector options, the dataset spec and
    the run configuration's file hash (a resumed grid only takes rows of the very same configuration)."""
    from .provenance import git_commit

    text = json.dumps([job.describe(), repr(job.kwargs), repr(ref.data_spec(job.data_key)), ref.profile,
                       ref.sha256, git_commit()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def read_finished(checkpoint: Path | None) -> dict[str, dict]:
    """Rows that an interrupted grid already finished, by `job_key` (a torn last line is skipped)."""
    done = {}
    if checkpoint is None or not Path(checkpoint).is_file():
        return done
    for line in Path(checkpoint).read_text().splitlines():
        try:
            entry = json.loads(line)
            done[entry["key"]] = entry["row"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def run_jobs(jobs: list[Job], ref: ConfigRef, *, n_jobs: int = 1, backend: str | None = None,
             threads: int | None = 1, checkpoint: str | os.PathLike | None = None,
             progress: bool = True) -> list[dict]:
    """Run jobs with joblib: ``backend`` None means Ray when $ADLIB_RAY_ADDRESS is set, else loky (local
    processes; n_jobs=1 runs in this process). Returns one grid row per job, in the jobs' order.

    ``checkpoint``: a JSON-lines file that gets each finished row as it arrives; a re-run after an interruption
    takes the rows of the same jobs (same `job_key`) from it and runs only the rest. The caller removes it once
    the grid is saved. Rows taken from it say how='ran (resumed)'."""
    from joblib import parallel_backend
    from tqdm.auto import tqdm

    if not jobs:
        return []
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    keys = [job_key(job, ref) for job in jobs]
    finished = read_finished(checkpoint)
    rows: dict[int, dict] = {i: {**finished[key], "how": "ran (resumed)"} for i, key in enumerate(keys)
                             if key in finished}
    missing = [i for i in range(len(jobs)) if i not in rows]
    if rows:
        print(f"resuming: {len(rows)} of {len(jobs)} jobs finished earlier ({checkpoint})")
    if missing:
        if backend is None:
            backend = _ray_backend() if os.environ.get(RAY_ENV) else "loky"
        elif backend == "ray":
            _ray_backend()
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            if checkpoint.is_file() and not checkpoint.read_bytes().endswith(b"\n"):
                with open(checkpoint, "a") as fh:  # close a torn last line, so the next row starts its own
                    fh.write("\n")
        with parallel_backend(backend, n_jobs=n_jobs), warnings.catch_warnings(), \
                tqdm(total=len(missing), desc="benchmark grid", disable=not progress) as bar:
            # loky replaces a worker whose memory grew (each worker caches its datasets and backbones); the
            # jobs are re-sent and their results are the same, so its warning says nothing about the grid
            warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given")
            for i, row in _run_in_order(missing, jobs, ref, threads, backend, n_jobs):
                rows[i] = row
                bar.update()
                if checkpoint is not None:
                    with open(checkpoint, "a") as fh:  # one line per row: a torn line is skipped on resume
                        fh.write(json.dumps({"key": keys[i], "row": row}, default=_json_value) + "\n")
    return [rows[i] for i in range(len(jobs))]


def _run_in_order(indices, jobs, ref, threads, backend, n_jobs):
    """(index, row) of each job as it finishes, in order. joblib's local backends yield each result as soon as
    it and those before it are done; a backend without generator output (Ray) runs in chunks of a few tasks
    per worker, so the checkpoint still grows while the grid runs."""
    from joblib import Parallel, delayed

    if backend in ("loky", "threading", "multiprocessing", "sequential"):
        results = Parallel(return_as="generator")(delayed(run_job)(jobs[i], ref, threads) for i in indices)
        yield from zip(indices, results)
        return
    chunk = 4 * (int(n_jobs) if int(n_jobs) > 0 else os.cpu_count() or 1)
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        yield from zip(part, Parallel()(delayed(run_job)(jobs[i], ref, threads) for i in part))


def _json_value(value):
    """numpy scalars in a row, for json."""
    return value.item() if hasattr(value, "item") else str(value)


def grid_frame(rows: list[dict], jobs: list[Job]) -> pd.DataFrame:
    """The grid's rows in the jobs' order (one row per job)."""
    order = {(j.method, j.data_key, j.seed, j.variant): i for i, j in enumerate(jobs)}
    frame = pd.DataFrame(rows)
    frame["_order"] = [order.get((r["method"], r["data"], r["seed"], r["variant"]), len(order)) for r in rows]
    return frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------------
# the leaderboard
# ----------------------------------------------------------------------------------------------------------------
def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy.stats.bootstrap); NaN with fewer than two values."""
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def cell_stats(grid: pd.DataFrame) -> pd.DataFrame:
    """Per (block, method, dataset): seeds, mean ± std of test AUROC, its bootstrap 95 % CI over seeds
    (ci_low/ci_high), the bootstrap 95 % CI over test images of each run averaged over seeds (image_ci_low/high;
    rows written before runs recorded it have none), pixel AUROC, the mean fit/score seconds and the largest
    memory a run added."""
    done = grid[pd.to_numeric(grid["AUROC"], errors="coerce").notna()].copy()
    if done.empty:
        return pd.DataFrame(columns=["block", "method", "data", "n_seeds", "AUROC_mean", "AUROC_std",
                                     "ci_low", "ci_high"])
    rows = []
    for (block, method, data), g in done.groupby(["block", "method", "data"], sort=False):
        a = pd.to_numeric(g["AUROC"], errors="coerce").to_numpy()
        lo, hi = bootstrap_ci(a)
        num = lambda c, f: float(f(pd.to_numeric(g[c], errors="coerce"))) if c in g else float("nan")  # noqa: E731
        rows.append(dict(block=block, method=method, data=data,
                         weights="/".join(sorted(set(g["weights"].astype(str)))) if "weights" in g else "",
                         n_seeds=len(a), AUROC_mean=a.mean(),
                         AUROC_std=a.std(ddof=1) if len(a) > 1 else float("nan"), ci_low=lo, ci_high=hi,
                         image_ci_low=num("AUROC_ci_low", pd.Series.mean),
                         image_ci_high=num("AUROC_ci_high", pd.Series.mean),
                         pixel_AUROC=num("pixel_AUROC", pd.Series.mean),
                         fit_seconds=num("fit_seconds", pd.Series.mean),
                         score_seconds=num("score_seconds", pd.Series.mean),
                         added_memory_MB=num("added_memory_MB", pd.Series.max),
                         reused=int((g["how"] == "reused").sum()),
                         ran=int(g["how"].astype(str).str.startswith("ran").sum())))
    return pd.DataFrame(rows)


def complete_block(matrix: pd.DataFrame, min_datasets: int = 5) -> pd.DataFrame:
    """The largest complete datasets x methods sub-table (no missing cell) with at least ``min_datasets`` rows
    and two methods, chosen by the number of cells (ties: more datasets); empty if there is none."""
    best, best_key = pd.DataFrame(), (0, 0)
    for n in range(len(matrix.index), min_datasets - 1, -1):
        for ds in itertools.combinations(matrix.index, n):
            sub = matrix.loc[list(ds)].dropna(axis=1)
            if sub.shape[1] >= 2 and (sub.size, n) > best_key:
                best, best_key = sub, (sub.size, n)
    return best


def rank_methods(cells: pd.DataFrame, block: str = UNSUPERVISED, alpha: float = 0.05, min_datasets: int = 5):
    """Friedman test + Nemenyi critical difference (autorank, non-parametric) of mean test AUROC per dataset,
    on the largest complete methods x datasets table of ``block``. Returns (autorank result or None, the table
    ranked, a sentence saying what was compared)."""
    sub = cells[cells["block"] == block]
    matrix = sub.pivot_table(index="data", columns="method", values="AUROC_mean", sort=False)
    table = complete_block(matrix, min_datasets)
    if table.empty:
        return None, table, (f"no {min_datasets} datasets on which two or more {block} methods all have results: "
                             "no ranking test (autorank needs at least five datasets)")
    from autorank import autorank

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # autorank prints its choices
        warnings.simplefilter("ignore")
        result = autorank(table, alpha=alpha, order="descending", approach="frequentist",
                          force_mode="nonparametric")
    what = (f"{result.omnibus} test over {table.shape[0]} datasets ({', '.join(table.index)}) and "
            f"{table.shape[1]} methods: p = {result.pvalue:.3g}; post-hoc {result.posthoc}, critical difference "
            f"{result.cd:.2f} mean ranks" if result.cd is not None else
            f"{result.omnibus} test over {table.shape[0]} datasets: p = {result.pvalue:.3g}")
    return result, table, what


def leaderboard(cells: pd.DataFrame, ranks: dict | None = None) -> pd.DataFrame:
    """One row per (block, method): datasets covered, mean rank (autorank, over the ranked datasets; blank for
    a method outside the complete table), mean AUROC over its datasets, and 'mean ± std (n seeds)' per dataset.

    ranks: {block: autorank result or None}."""
    ranks = ranks or {}
    out = []
    for (block, method), g in cells.groupby(["block", "method"], sort=False):
        res = ranks.get(block)
        mean_rank = float(res.rankdf.loc[method, "meanrank"]) if res is not None and method in res.rankdf.index \
            else float("nan")
        row = dict(method=method, block=block,
                   weights="/".join(sorted(set("/".join(g["weights"].astype(str)).split("/")))) if "weights" in g
                   else "", n_datasets=int(g["data"].nunique()), mean_rank=mean_rank,
                   mean_auroc=float(g["AUROC_mean"].mean()), fit_seconds=float(g["fit_seconds"].mean()),
                   score_seconds=float(g["score_seconds"].mean()), added_memory_MB=float(g["added_memory_MB"].max()))
        for _, c in g.iterrows():
            std = "" if not np.isfinite(c["AUROC_std"]) else f" ± {c['AUROC_std']:.3f}"
            row[f"AUROC {c['data']}"] = f"{c['AUROC_mean']:.3f}{std} (n={int(c['n_seeds'])})"
        out.append(row)
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    frame["_b"] = (frame["block"] != UNSUPERVISED).astype(int)
    frame["_k"] = pd.to_numeric(frame["block"].str.extract(r"K=(\d+)")[0], errors="coerce")  # K=2 before K=16
    frame = frame.sort_values(["_b", "_k", "block", "mean_rank", "mean_auroc"],
                              ascending=[True, True, True, True, False],
                              na_position="last").drop(columns=["_b", "_k"])
    return frame.reset_index(drop=True)


def resources(cells: pd.DataFrame) -> pd.DataFrame:
    """Training time, scoring time and memory per method (mean over its datasets; memory = the largest that one
    run added at its peak, `ResourceMeter.added_mb`; only rows written since that column exists have it)."""
    agg = cells.groupby(["block", "method"], sort=False).agg(
        n_cells=("data", "size"), fit_seconds=("fit_seconds", "mean"), score_seconds=("score_seconds", "mean"),
        added_memory_MB=("added_memory_MB", "max"))
    return agg.reset_index()


# ----------------------------------------------------------------------------------------------------------------
# paper vs ours
# ----------------------------------------------------------------------------------------------------------------
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


def paper_vs_ours(printed: pd.DataFrame, rows: pd.DataFrame,
                  default_variants=("default", "unsupervised", "per dataset")) -> pd.DataFrame:
    """Each printed number beside ours (mean over seeds, percent) and the difference (ours - printed).

    Our rows are looked up in the notebook files named for the paper (``_results`` prefixes): same dataset (and
    variant, where the dataset map gives one, e.g. a CIFAR-10 class), same method, and the paper's variant when
    our rows have it, else our default variant. Printed numbers without a counterpart keep a blank 'ours'."""
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
        out.append(dict(paper=p["paper"], table=p["table"], dataset_paper=p["dataset_paper"],
                        dataset_ours=p["our_dataset"] or "", method=p["method_paper"], variant=p["variant"],
                        metric=p["metric"], printed=p["printed"], ours=round(value, 2) if np.isfinite(value) else value,
                        n_seeds=int(ours["seed"].nunique()) if not ours.empty else 0,
                        weights="/".join(sorted(set(ours["weights"].astype(str)))) if not ours.empty else "",
                        profile="/".join(sorted(set(ours["profile"].astype(str)))) if not ours.empty
                        and "profile" in ours else "",
                        difference=round(value - p["printed"], 2) if np.isfinite(value) else float("nan"),
                        reason="; ".join(filter(None, [reasons(p, ours, p["_size"], p["_weights"], p["_same_data"]),
                                                       classes])) if not ours.empty else
                        ("no run of ours" if p["our_dataset"] else "dataset not available here"),
                        source=ours["source"].iloc[0] if not ours.empty else ""))
    return pd.DataFrame(out)


__all__ = ["Job", "ConfigRef", "build_grid", "existing_rows", "data_fingerprint", "matching_rows", "matching_row",
           "plan_grid", "job_key", "read_finished", "run_job", "run_jobs",
           "grid_frame", "bootstrap_ci", "cell_stats", "complete_block", "rank_methods", "leaderboard", "resources",
           "printed_numbers", "paper_vs_ours", "reasons", "results_folder_for", "weak_block"]
