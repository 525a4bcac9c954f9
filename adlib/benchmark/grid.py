"""The grid of notebook 07: which jobs (detector x dataset x seed [x K]) there are, what each runs on, and the
grid row each one gets.

A `Job` is one cell of the grid; `build_grid` makes them from a run configuration. `ConfigRef` is what a worker
needs to rebuild that configuration, and `_protocol` the dataset a job runs on (cached per process).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

UNSUPERVISED = "unsupervised"
# columns of the runner's rows that the grid keeps (when present)
ROW_COLUMNS = ["AUROC", "AUROC_ci_low", "AUROC_ci_high", "AUROC_medmnist_exact", "n_test_medmnist_exact", "AP", "F1",
               "ACC", "SEN", "SPE", "threshold_rule", "degenerate", "F1_f1max", "ACC_f1max", "degenerate_f1max",
               "val_AUROC", "pixel_AUROC", "checkpoint_criterion", "best_step", "fit_seconds", "score_seconds",
               "peak_memory_MB", "added_memory_MB", "fit_images_per_s", "score_images_per_s", "status",
               "data_source", "data_sha256", "n_val", "n_test", "profile",
               "steps", "width", "threads", "device", "config_sha256", "run_sha256", "git_commit"]


def weak_block(k: int) -> str:
    return f"weakly supervised (K={k})"


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
        from ..data.cifar import CLASSES

        return f"cifar10[{CLASSES[int(spec['cifar_class'])]}:{spec.get('direction', 'one_normal')}]"
    return spec["name"]


def build_grid(values: dict) -> list[Job]:
    """Every (detector, dataset, seed[, K]) of a run configuration's ``methods``, ``datasets`` and ``seeds``.

    ``methods`` defaults to every registered detector; ``names.<detector>`` are the method names the notebooks'
    rows use (the first is the one our rows get); ``weights.<detector>`` the expected weights source;
    ``ks.<detector>`` the K values of a weakly supervised detector; ``kwargs.<detector>`` its options.
    """
    from ..detectors import available

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


@functools.lru_cache(maxsize=8)
def _protocol(spec_items: tuple):
    """The protocol of a dataset spec (cached per process: every job on a dataset reads it once)."""
    from ..data import cifar10_one_vs_rest, make_protocol, make_synthetic_protocol
    from ..data.protocol import cap_splits

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
        from ..config import RunConfig, _freeze
        from ..profiles import PROFILES

        return RunConfig(self.notebook, PROFILES[self.profile], _freeze(_thawed(self.values)), self.sha256)

    def data_spec(self, key: str) -> tuple:
        return _frozen(_thawed(self.values)["data"][key])


def _grid_row(job: Job, row: dict, how: str, source: str) -> dict:
    out = job.describe()
    out.update(how=how, source=source)
    for col in ROW_COLUMNS:
        out[col] = row.get(col, np.nan)
    return out


def grid_frame(rows: list[dict], jobs: list[Job]) -> pd.DataFrame:
    """The grid's rows in the jobs' order (one row per job)."""
    order = {(j.method, j.data_key, j.seed, j.variant): i for i, j in enumerate(jobs)}
    frame = pd.DataFrame(rows)
    frame["_order"] = [order.get((r["method"], r["data"], r["seed"], r["variant"]), len(order)) for r in rows]
    return frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)
