"""Image- and pixel-level metrics, and the validation-only threshold.

AUROC and AP need no threshold. F1, ACC, SEN (recall of anomalies) and SPE (recall of normals) need
one: it is chosen on the validation split (the threshold that maximises F1 there) and then applied,
unchanged, to the test split. `select_threshold_on_validation` refuses test data: a ScoredSplit built with
`ScoredSplit.of(scores, images)` carries the protocol's per-image test mark, whatever its split is called.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, precision_recall_curve, roc_auc_score


@dataclass(frozen=True)
class ScoredSplit:
    """Anomaly scores (higher = more anomalous) with their labels and the split they came from."""

    scores: np.ndarray
    labels: np.ndarray
    split: str
    contains_test: bool = False

    @classmethod
    def of(cls, scores, images, split: str | None = None) -> "ScoredSplit":
        """Scores of an ImageSet (or FeatureSplit): labels and the test mark come from ``images`` itself."""
        if not hasattr(images, "contains_test"):
            raise TypeError("ScoredSplit.of needs an ImageSet or FeatureSplit (they carry the test-split mark)")
        name = split or (images.meta.get("split", "unknown") if hasattr(images, "meta") else getattr(images, "split", "unknown"))
        return cls(scores, images.labels, name, bool(images.contains_test))

    def __post_init__(self) -> None:
        s, y = np.asarray(self.scores, dtype=np.float64).reshape(-1), np.asarray(self.labels).reshape(-1)
        if len(s) != len(y):
            raise ValueError(f"{len(s)} scores but {len(y)} labels")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores contain NaN or inf; the detector diverged or was fed bad input")
        object.__setattr__(self, "scores", s)
        object.__setattr__(self, "labels", y.astype(np.int64))
        if "test" in str(self.split).lower():
            object.__setattr__(self, "contains_test", True)


def auroc(labels, scores) -> float:
    return float(roc_auc_score(labels, scores))


def _auroc_of_two_samples(anomalous, normal, axis=-1):
    """AUROC of anomalous vs normal scores as the Mann-Whitney U statistic (average ranks for ties), along the
    last axis: vectorised over bootstrap resamples."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([anomalous, normal], axis=-1), axis=-1)
    n_pos, n_neg = anomalous.shape[-1], normal.shape[-1]
    return (ranks[..., :n_pos].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_bootstrap_ci(labels, scores, confidence: float = 0.95, n_resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the test AUROC over test images (`scipy.stats.bootstrap`). Anomalous and
    normal images are resampled separately (a stratified bootstrap), so every resample has both classes and
    the class balance of the split. NaN when the split has one class only."""
    from scipy.stats import bootstrap

    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.all() or not y.any():
        return float("nan"), float("nan")
    res = bootstrap((s[y], s[~y]), _auroc_of_two_samples, vectorized=True, n_resamples=n_resamples,
                    confidence_level=confidence, method="percentile", batch=250,
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def average_precision(labels, scores) -> float:
    return float(average_precision_score(labels, scores))


def pixel_auroc(masks, maps) -> float:
    """AUROC over all pixels: masks (N,H,W) bool, maps (N,H,W) float."""
    return auroc(np.asarray(masks).reshape(-1).astype(int), np.asarray(maps, dtype=np.float64).reshape(-1))


def select_threshold_on_validation(val: ScoredSplit) -> float:
    """The score threshold that maximises F1 on the validation split (predict anomalous if score >= t)."""
    from .data.imageset import refuse_test_data

    if not isinstance(val, ScoredSplit):
        raise TypeError("pass a ScoredSplit built from validation scores")
    refuse_test_data(val, "select_threshold_on_validation (thresholds are chosen on the validation split only)")
    if len(np.unique(val.labels)) < 2:
        raise ValueError("the validation split needs both normal and anomalous images to choose a threshold")
    precision, recall, thresholds = precision_recall_curve(val.labels, val.scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def metrics_at_threshold(split: ScoredSplit, threshold: float) -> dict[str, float]:
    pred = (split.scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(split.labels, pred, labels=[0, 1]).ravel()
    return {
        "F1": float(f1_score(split.labels, pred, zero_division=0)),
        "ACC": float((tp + tn) / len(pred)),
        "SEN": float(tp / max(tp + fn, 1)),
        "SPE": float(tn / max(tn + fp, 1)),
    }


def all_anomalous_baseline(labels) -> dict[str, float]:
    """ACC and F1 of calling every image anomalous: the floor that a threshold flagging everything reaches."""
    y = np.asarray(labels).astype(bool)
    return {"ACC": float(y.mean()), "F1": float(2 * y.sum() / (y.sum() + len(y))) if len(y) else float("nan")}


def evaluate_scores(val: ScoredSplit, test: ScoredSplit) -> dict[str, float]:
    """AUROC (with its bootstrap 95 % CI over test images) and AP on test, plus F1/ACC/SEN/SPE at the threshold
    chosen on validation."""
    threshold = select_threshold_on_validation(val)
    ci_low, ci_high = auroc_bootstrap_ci(test.labels, test.scores)
    return {"AUROC": auroc(test.labels, test.scores), "AUROC_ci_low": ci_low, "AUROC_ci_high": ci_high,
            "AP": average_precision(test.labels, test.scores),
            **metrics_at_threshold(test, threshold), "threshold": threshold,
            "val_AUROC": auroc(val.labels, val.scores)}
