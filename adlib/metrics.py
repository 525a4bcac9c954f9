"""Image- and pixel-level metrics, and the validation-only threshold.

AUROC and AP need no threshold. F1, ACC, SEN (recall of anomalies) and SPE (recall of normals) need
one: it is chosen on the validation split and then applied, unchanged, to the test split.
`select_threshold_on_validation` refuses test data: a ScoredSplit built with `ScoredSplit.of(scores, images)`
carries the protocol's per-image test mark, whatever its split is called.

Two rules choose the threshold (`THRESHOLD_RULES`):
  "youden" (the default): the score that maximises Youden's J = SEN + SPE - 1 on validation. J does not depend
      on the class ratio, so a weak detector is not pushed to "everything anomalous".
  "f1max": the score that maximises F1 on validation. F1 rewards recall of the majority class: on a validation
      split that is 74 % anomalous (PneumoniaMNIST), calling every image anomalous already scores F1 = 0.85,
      and for weak detectors that is where the F1 maximum lies (SEN 1, SPE 0).
`evaluate_scores` reports the metrics at the Youden threshold and, as secondary `*_f1max` columns, at the F1-max
threshold, with a `degenerate` flag for thresholds that put (almost) every image in one class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_recall_curve, roc_auc_score,
                             roc_curve)


@dataclass(frozen=True)
class ScoredSplit:
    """Anomaly scores (higher = more anomalous) with their labels and the split they came from."""

    scores: np.ndarray
    labels: np.ndarray
    split: str
    contains_test: bool = False
    medmnist_exact: np.ndarray | None = None  # per image: in MedMNIST's own split (see ImageSet.medmnist_exact)

    @classmethod
    def of(cls, scores, images, split: str | None = None) -> "ScoredSplit":
        """Scores of an ImageSet (or FeatureSplit): labels, the test mark and the MedMNIST-membership mask (when
        the images carry one) come from ``images`` itself."""
        if not hasattr(images, "contains_test"):
            raise TypeError("ScoredSplit.of needs an ImageSet or FeatureSplit (they carry the test-split mark)")
        name = split or (images.meta.get("split", "unknown") if hasattr(images, "meta") else getattr(images, "split", "unknown"))
        return cls(scores, images.labels, name, bool(images.contains_test), getattr(images, "medmnist_exact", None))

    def __post_init__(self) -> None:
        s, y = np.asarray(self.scores, dtype=np.float64).reshape(-1), np.asarray(self.labels).reshape(-1)
        if len(s) != len(y):
            raise ValueError(f"{len(s)} scores but {len(y)} labels")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores contain NaN or inf; the detector diverged or was fed bad input")
        object.__setattr__(self, "scores", s)
        object.__setattr__(self, "labels", y.astype(np.int64))
        if self.medmnist_exact is not None:
            exact = np.asarray(self.medmnist_exact, dtype=bool).reshape(-1)
            if len(exact) != len(y):
                raise ValueError(f"{len(y)} scores but {len(exact)} entries in the medmnist_exact mask")
            object.__setattr__(self, "medmnist_exact", exact)
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


THRESHOLD_RULES = ("youden", "f1max")
# A threshold is "degenerate" when it sends at least this share of a split's images to one class: its F1, ACC,
# SEN and SPE then describe a constant prediction ("all anomalous" or "all normal"), not the detector.
DEGENERATE_SHARE = 0.975


def select_threshold_on_validation(val: ScoredSplit, rule: str = "youden") -> float:
    """The score threshold chosen on the validation split (predict anomalous if score >= t).

    rule="youden": maximise SEN + SPE on validation; ties go to the highest threshold (the fewest alarms).
    rule="f1max": maximise F1 on validation; ties go to the lowest threshold.
    The threshold is always one of the validation scores.
    """
    from .data.imageset import refuse_test_data

    if not isinstance(val, ScoredSplit):
        raise TypeError("pass a ScoredSplit built from validation scores")
    refuse_test_data(val, "select_threshold_on_validation (thresholds are chosen on the validation split only)")
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {THRESHOLD_RULES}")
    if len(np.unique(val.labels)) < 2:
        raise ValueError("the validation split needs both normal and anomalous images to choose a threshold")
    if rule == "f1max":
        precision, recall, thresholds = precision_recall_curve(val.labels, val.scores)
        f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
        return float(thresholds[int(np.argmax(f1))])
    # Every distinct score, from the highest down (roc_curve's first, infinite threshold calls nothing anomalous
    # and is not a score: left out). The first maximum is the highest threshold among ties; ties are equal up to
    # rounding (2/3 - 0 and 1 - 1/3 differ in the last bit).
    fpr, tpr, thresholds = roc_curve(val.labels, val.scores, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    youden_j = (tpr - fpr)[finite]
    best = int(np.flatnonzero(youden_j >= youden_j.max() - 1e-12)[0])
    return float(thresholds[finite][best])


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


def is_degenerate(split: ScoredSplit, threshold: float, share: float = DEGENERATE_SHARE) -> bool:
    """True when the threshold predicts one class for at least ``share`` of the split's images."""
    called_anomalous = float(np.mean(split.scores >= threshold))
    return bool(max(called_anomalous, 1.0 - called_anomalous) >= share)


def medmnist_exact_auroc(test: ScoredSplit) -> dict[str, float]:
    """AUROC on the test images that belong to MedMNIST's own test split, with their count; empty when the split
    carries no membership mask (not a MedMNIST dataset), NaN when those images hold one class only."""
    if test.medmnist_exact is None:
        return {}
    exact = test.medmnist_exact
    labels = test.labels[exact]
    value = auroc(labels, test.scores[exact]) if len(np.unique(labels)) == 2 else float("nan")
    return {"AUROC_medmnist_exact": value, "n_test_medmnist_exact": int(exact.sum())}


def evaluate_scores(val: ScoredSplit, test: ScoredSplit, rule: str = "youden") -> dict[str, float | str | bool]:
    """AUROC (with its bootstrap 95 % CI over test images) and AP on test, F1/ACC/SEN/SPE at the threshold chosen
    on validation by ``rule`` (default Youden's J), and the same four at the F1-max validation threshold as
    `F1_f1max`, `ACC_f1max`, `SEN_f1max`, `SPE_f1max` (with `threshold_f1max`).

    `threshold_rule` names the rule ("youden-val"). `degenerate` is True when the chosen threshold predicts one
    class for at least DEGENERATE_SHARE (97.5 %) of the test images or of the validation images: its F1/ACC/
    SEN/SPE are then those of a constant prediction (`degenerate_f1max` likewise for the F1-max threshold).
    When the test split carries MedMNIST membership (MedMNIST datasets), `AUROC_medmnist_exact` and
    `n_test_medmnist_exact` give the AUROC on the images that are in MedMNIST's own test split.
    """
    threshold = select_threshold_on_validation(val, rule)
    threshold_f1max = select_threshold_on_validation(val, "f1max")
    ci_low, ci_high = auroc_bootstrap_ci(test.labels, test.scores)
    at_f1max = {f"{name}_f1max": value for name, value in metrics_at_threshold(test, threshold_f1max).items()}
    return {"AUROC": auroc(test.labels, test.scores), "AUROC_ci_low": ci_low, "AUROC_ci_high": ci_high,
            "AP": average_precision(test.labels, test.scores),
            **metrics_at_threshold(test, threshold), "threshold": threshold, "threshold_rule": f"{rule}-val",
            "degenerate": is_degenerate(test, threshold) or is_degenerate(val, threshold),
            **at_f1max, "threshold_f1max": threshold_f1max,
            "degenerate_f1max": is_degenerate(test, threshold_f1max) or is_degenerate(val, threshold_f1max),
            "val_AUROC": auroc(val.labels, val.scores), **medmnist_exact_auroc(test)}
