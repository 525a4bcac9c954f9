"""Weakly-supervised hyperparameter selection (DPA Sec. III-C, IV-C) and the unsupervised criterion.

Protocol: split the normal training images into 3 folds and the small abnormal validation set (one
anomaly type, never test images) into 3 folds. For every configuration of the grid and every fold k,
train on the other two normal folds and compute the AUROC of normal fold k vs abnormal fold k. The
configuration with the best mean AUROC is retrained on all normals and evaluated on the test split.
For comparison, the *unsupervised* criterion picks the configuration with the lowest reconstruction
loss on the held-out normal folds (which, as the paper warns, favours large bottlenecks).

Each fold model scores the whole candidate pool of validation anomalies once, so the selection can be
repeated cheaply for many subsets of that pool (Fig. 5: number and variety of validation anomalies).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from ...progress import progress_bar

from ...data.imageset import ImageSet, require_marked
from ...detectors import Detector
from ...metrics import auroc


def config_name(config: dict) -> str:
    return ", ".join(f"{k}={'+'.join(v) if isinstance(v, (tuple, list)) else v}" for k, v in config.items())


def kfold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """A seeded partition of range(n) into ``folds`` nearly equal parts."""
    if n < folds:
        raise ValueError(f"need at least {folds} images to make {folds} folds, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, folds)]


@dataclass
class SearchResult:
    """Per-(config, fold) scores of held-out normals and of every candidate validation anomaly."""

    configs: list[dict]
    folds: int
    normal_scores: dict = field(default_factory=dict)  # (config index, fold) -> scores of held-out normals
    pool_scores: dict = field(default_factory=dict)  # (config index, fold) -> scores of the whole anomaly pool
    pool_raw_labels: np.ndarray | None = None
    seed: int = 0

    def evaluate(self, abnormal_idx: np.ndarray | None = None, seed: int | None = None) -> pd.DataFrame:
        """Mean validation AUROC per config with the given pool images as abnormal validation set
        (split into the same number of folds), plus the unsupervised criterion (mean held-out loss)."""
        n_pool = len(next(iter(self.pool_scores.values())))
        idx = np.arange(n_pool) if abnormal_idx is None else np.asarray(abnormal_idx)
        parts = [idx[p] for p in kfold_indices(len(idx), self.folds, self.seed if seed is None else seed)]
        rows = []
        for c, config in enumerate(self.configs):
            aucs, losses = [], []
            for k in range(self.folds):
                normal = self.normal_scores[(c, k)]
                abnormal = self.pool_scores[(c, k)][parts[k]]
                labels = np.r_[np.zeros(len(normal)), np.ones(len(abnormal))]
                aucs.append(auroc(labels, np.r_[normal, abnormal]))
                losses.append(float(np.mean(normal)))
            rows.append({"config": config_name(config), **{k: (("+".join(v)) if isinstance(v, tuple) else v)
                                                           for k, v in config.items()},
                         "val_AUROC_mean": float(np.mean(aucs)), "val_AUROC_std": float(np.std(aucs)),
                         "heldout_normal_loss": float(np.mean(losses))})
        return pd.DataFrame(rows)

    def select(self, abnormal_idx: np.ndarray | None = None, seed: int | None = None) -> dict:
        """{'weakly-supervised': config index, 'unsupervised': config index}."""
        table = self.evaluate(abnormal_idx, seed)
        return {"weakly-supervised": int(table["val_AUROC_mean"].values.argmax()),
                "unsupervised": int(table["heldout_normal_loss"].values.argmin())}


def weakly_supervised_search(make_detector: Callable[[dict, int], Detector], grid: list[dict], normals: ImageSet,
                             anomaly_pool: ImageSet, folds: int = 3, seed: int = 0,
                             progress: bool = True) -> SearchResult:
    """Train every config on every fold (``make_detector(config, fold)`` returns an unfitted detector).

    normals: the normal training images; anomaly_pool: the abnormal validation candidates (confined
    variability; from the train anomaly pool or the validation split, never the test split).
    """
    require_marked(normals, "weakly_supervised_search (normal images)")
    require_marked(anomaly_pool, "weakly_supervised_search (abnormal validation pool)")
    if len(anomaly_pool) < folds:
        raise ValueError(f"the abnormal validation pool needs at least {folds} images, got {len(anomaly_pool)}")
    normal_parts = kfold_indices(len(normals), folds, seed)
    result = SearchResult(list(grid), folds, pool_raw_labels=anomaly_pool.raw_labels, seed=seed)
    jobs = [(c, k) for c in range(len(grid)) for k in range(folds)]
    for c, k in progress_bar(jobs, desc="weakly-supervised search", disable=not progress):
        train_idx = np.sort(np.concatenate([normal_parts[j] for j in range(folds) if j != k]))
        detector = make_detector(grid[c], k).fit(normals.subset(train_idx))
        result.normal_scores[(c, k)] = detector.score(normals.subset(normal_parts[k]))
        result.pool_scores[(c, k)] = detector.score(anomaly_pool)
    return result


def sample_validation_anomalies(raw_labels: np.ndarray, n: int, n_types: int = 1, seed: int = 0,
                                types: list | None = None) -> np.ndarray:
    """Indices of ``n`` pool images drawn from ``n_types`` randomly chosen anomaly types (raw labels)."""
    rng = np.random.default_rng(seed)
    available = np.unique(raw_labels) if types is None else np.asarray(types)
    if n_types > len(available):
        raise ValueError(f"only {len(available)} anomaly types available, asked for {n_types}")
    chosen = rng.choice(available, size=n_types, replace=False)
    idx = np.flatnonzero(np.isin(raw_labels, chosen))
    if len(idx) < n:
        raise ValueError(f"only {len(idx)} pool images of types {sorted(chosen.tolist())}, asked for {n}")
    return np.sort(rng.choice(idx, size=n, replace=False))


def retrained_test_columns(results) -> dict[str, list]:
    """The test columns of the selection grid, one entry per retrained configuration (ExperimentResult-like
    objects with a ``metrics`` dict): `test_AUROC` on the whole test split and, where the test split carries
    MedMNIST membership (PneumoniaMNIST), `AUROC_medmnist_exact` / `n_test_medmnist_exact` on the images that
    are in MedMNIST's own test split, as every other pneumonia table has them (NaN for a diverged run)."""
    nan = float("nan")
    out = {"test_AUROC": [r.metrics.get("AUROC", nan) for r in results]}
    if any("AUROC_medmnist_exact" in r.metrics for r in results):
        out["AUROC_medmnist_exact"] = [r.metrics.get("AUROC_medmnist_exact", nan) for r in results]
        out["n_test_medmnist_exact"] = [r.metrics.get("n_test_medmnist_exact", nan) for r in results]
    return out


def selection_curve(search: SearchResult, test_auroc: list[float], sizes: list[int], repeats: int,
                    n_types: int = 1, seed: int = 0, exact_auroc: list[float] | None = None) -> pd.DataFrame:
    """Fig. 5: test AUROC of the weakly-selected config vs the number of validation anomalies.

    test_auroc[c] is the test AUROC of config c retrained on all normals; exact_auroc[c], if given, its AUROC
    on the MedMNIST-exact test images (column `AUROC_medmnist_exact`). For each size, ``repeats``
    validation sets are sampled from the pool; each selects a config on the 3-fold split.
    """
    raw = search.pool_raw_labels if search.pool_raw_labels is not None else np.zeros(
        len(next(iter(search.pool_scores.values()))), dtype=int)
    exact = None if exact_auroc is None else list(exact_auroc)
    rows = []
    for n in sizes:
        for r in range(repeats):
            s = seed + 1000 * n + r
            idx = sample_validation_anomalies(raw, n, n_types, s)
            chosen = search.select(idx, seed=s)["weakly-supervised"]
            rows.append({"n_anomalies": n, "n_types": n_types, "repeat": r, "chosen": config_name(search.configs[chosen]),
                         "test_AUROC": test_auroc[chosen],
                         **({} if exact is None else {"AUROC_medmnist_exact": exact[chosen]})})
    return pd.DataFrame(rows)
