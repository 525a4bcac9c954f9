"""Running the jobs that no notebook ran: joblib (local loky processes, or Ray) with a resumable checkpoint.

Each job goes through `adlib.experiment.run_experiment` and creates its detector by registered name
(`adlib.detectors.create`), so a worker process needs nothing but the installed package; this module never
imports a method module. ``$ADLIB_RAY_ADDRESS`` names a Ray cluster (``ray`` is imported only then).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from .grid import ConfigRef, Job, _grid_row, _protocol, _thawed

RAY_ENV = "ADLIB_RAY_ADDRESS"


def run_job(job: Job, ref: ConfigRef, threads: int | None = 1, errors: str = "raise") -> dict:
    """Run one job through `adlib.experiment.run_experiment` and return its grid row (also pixel AUROC where the
    test split has lesion masks and the detector gives anomaly maps).

    What the run prints (a backbone announcing its weights, once per worker process) is kept out of the notebook:
    the row records the weights. With ``errors="record"`` (the grid's `run_jobs`), a job that raises gets a row
    with status 'cannot run: <the error>' and no metrics, so that the grid says why the cell is empty instead of
    stopping; with "raise" (the default) the error propagates."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = _run_experiment_row(job, ref)
    except Exception as err:  # noqa: BLE001 - the grid records why a cell could not run
        if errors != "record":
            raise
        message = " ".join(str(err).split())[:300]
        row = {"status": f"cannot run: {type(err).__name__}: {message}", "weights": job.weights}
    if str(row.get("weights")) != job.weights and not str(row.get("status", "")).startswith("cannot run"):
        row["status"] = f"{row.get('status', 'completed')}; weights {row.get('weights')!r}, expected {job.weights!r}"
    return _grid_row(job, row, "ran", "07_benchmark")


def _run_experiment_row(job: Job, ref: ConfigRef) -> dict:
    from ..data import few_shot_anomalies
    from ..experiment import run_experiment
    from ..metrics import pixel_auroc

    cfg = ref.config()
    protocol = _protocol(ref.data_spec(job.data_key))
    kw = dict(_thawed(job.kwargs) or {})
    kw.setdefault("progress", False)
    anomalies = few_shot_anomalies(protocol, job.k, seed=job.seed) if job.k is not None else None
    result = run_experiment(job.detector, protocol, config=cfg, seed=job.seed, method=job.method, table=None,
                            variant=job.variant, anomalies=anomalies, use_val_in_fit=True, detector_kwargs=kw,
                            dataset=job.dataset, image_size=job.image_size,
                            **({"K": job.k} if job.k is not None else {}),
                            **({"steps": kw["steps"]} if "steps" in kw else {}),
                            **({"width": kw["width"]} if "width" in kw else {}))
    row = dict(result.row)
    det, test = result.detector, protocol.test
    if result.ok and test.masks is not None and det is not None and det.supports("anomaly_maps"):
        maps = det.anomaly_maps(test)
        row["pixel_AUROC"] = pixel_auroc(np.asarray(test.masks), maps)
    return row


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
    from ..provenance import git_commit

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
    from ..progress import progress_bar

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
                progress_bar(total=len(missing), desc="benchmark grid", disable=not progress) as bar:
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
        results = Parallel(return_as="generator")(delayed(run_job)(jobs[i], ref, threads, "record")
                                                  for i in indices)
        yield from zip(indices, results)
        return
    chunk = 4 * (int(n_jobs) if int(n_jobs) > 0 else os.cpu_count() or 1)
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        yield from zip(part, Parallel()(delayed(run_job)(jobs[i], ref, threads, "record") for i in part))


def _json_value(value):
    """numpy scalars in a row, for json."""
    return value.item() if hasattr(value, "item") else str(value)


def schedule(jobs: list[Job], first=()) -> list[Job]:
    """The jobs in the order to run them: those of the detectors named in ``first`` (the longest ones) before the
    others, each group in grid order, so that two workers do not end on one long job while the other idles."""
    rank = {name: i for i, name in enumerate(first)}
    return sorted(jobs, key=lambda job: rank.get(job.detector, len(rank)))
