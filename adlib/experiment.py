"""The one experiment runner: fit -> score validation and test -> threshold on validation -> metrics -> one
result row with full provenance. Every notebook goes through `run_experiment` (images) or
`evaluate_feature_detector` (methods scored on cached features, e.g. PatchCore/WSCXR across K and seeds); rows
that re-use one run's scores on parts of a split (per anomaly class, per dataset of a joint model) go through
`score_and_record`, the one function that turns scores into metrics and a row.

A row says what produced it: profile, seed, image size, weights source and file hash, data source and the data
file's SHA-256, the run config's hash, git commit, wall time, peak memory, threads, device, and the run's status
(``completed``, ``early-stopped`` or ``diverged: ...``; a diverged run gets NaN metrics, never a score).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import RunConfig
from .data.imageset import ImageSet, refuse_test_data
from .data.protocol import Protocol
from .detectors import Detector, create
from .metrics import ScoredSplit, evaluate_scores
from .provenance import run_provenance
from .results import ResultsTable
from .training import ResourceMeter, TrainingDiverged, seed_everything

METRIC_KEYS = ("AUROC", "AUROC_ci_low", "AUROC_ci_high", "AP", "F1", "ACC", "SEN", "SPE", "threshold",
               "F1_f1max", "ACC_f1max", "SEN_f1max", "SPE_f1max", "threshold_f1max", "val_AUROC")


@dataclass
class ExperimentResult:
    """What one run produced: the fitted detector, its scored splits, the metrics and the row written."""

    detector: Detector | None
    val: ScoredSplit | None
    test: ScoredSplit | None
    metrics: dict
    row: dict
    status: str = "completed"
    timing: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.status.startswith("diverged")


def weights_columns(detector) -> dict:
    """weights / weights_file / weights_sha256 of a detector (the backbone it stands on, if any)."""
    return {"weights": getattr(detector, "weights", "none"),
            "weights_file": getattr(detector, "weights_file", ""),
            "weights_sha256": getattr(detector, "weights_sha256", "")}


def provenance_columns(config: RunConfig, protocol: Protocol | None = None, image_size: int | None = None) -> dict:
    cols = {"profile": config.profile.name, "config_sha256": config.sha256[:16], **run_provenance()}
    if protocol is not None:
        cols.update(data_source=protocol.data_source(), data_sha256=protocol.data_sha256()[:16],
                    image_size=image_size or protocol.train.size,
                    n_val=len(protocol.val), n_test=len(protocol.test))  # the evaluation splits (caps)
    return cols


def record_row(table: ResultsTable | None, *, config: RunConfig, protocol: Protocol | None, method: str, seed: int,
               metrics: dict, detector=None, variant: str = "default", dataset: str | None = None,
               image_size: int | None = None, status: str = "completed", **extra) -> dict:
    """Add one row with every provenance column to ``table`` (when given) and return it."""
    prov = provenance_columns(config, protocol, image_size)
    row = dict(dataset=dataset or (protocol.dataset if protocol is not None else "unknown"), method=method,
               variant=variant, seed=seed, profile=prov.pop("profile"),
               image_size=prov.pop("image_size", image_size or 0),
               weights=weights_columns(detector)["weights"] if detector is not None else extra.pop("weights", "none"),
               data_source=prov.pop("data_source", extra.pop("data_source", "generated")),
               status=status, **metrics, **extra)
    if detector is not None:
        row.update({k: v for k, v in weights_columns(detector).items() if k != "weights"})
    row.update(prov)
    if table is not None:
        table.add_row(row)
    return row


def nan_metrics() -> dict:
    """The metrics of a run that has no scores (diverged, or a part of a split with one class only)."""
    return {k: float("nan") for k in METRIC_KEYS}


def score_and_record(table: ResultsTable | None, val: ScoredSplit | None, test: ScoredSplit | None, *,
                     config: RunConfig, protocol: Protocol | None, method: str, seed: int, detector=None,
                     variant: str = "default", dataset: str | None = None, status: str = "completed",
                     **extra) -> tuple[dict, dict]:
    """(metrics, row): test AUROC/AP and F1/ACC/SEN/SPE at the threshold chosen on ``val``, then one row with every
    provenance column, added to ``table``. NaN metrics when ``val`` or ``test`` is None. The only place where
    scores become metrics and a row."""
    metrics = evaluate_scores(val, test) if val is not None and test is not None else nan_metrics()
    row = record_row(table, config=config, protocol=protocol, method=method, seed=seed, metrics=metrics,
                     detector=detector, variant=variant, dataset=dataset, status=status, **extra)
    return metrics, row


def scored_part(scores: np.ndarray, images: ImageSet, mask: np.ndarray) -> ScoredSplit | None:
    """The scores of ``images[mask]`` as a ScoredSplit, or None when that part lacks normal or anomalous images."""
    part = images.subset(mask)
    if len(np.unique(part.labels)) < 2:
        return None
    return ScoredSplit.of(np.asarray(scores)[mask], part)


def run_experiment(detector: "Detector | str | Callable[[], Detector]", protocol: Protocol, *, config: RunConfig,
                   seed: int, method: str, table: ResultsTable | None = None, variant: str = "default",
                   train: ImageSet | None = None, anomalies: ImageSet | None = None, use_val_in_fit: bool = False,
                   detector_kwargs: dict | None = None, dataset: str | None = None, **extra) -> ExperimentResult:
    """Fit on the protocol's training normals (or ``train``), score val and test, add one row to ``table``.

    detector: a registered name (created with ``seed`` and ``detector_kwargs``), a factory, or an instance.
    anomalies: few labelled anomalies for weakly supervised methods (drawn from the train split's pool).
    use_val_in_fit: pass the validation split to ``fit`` (checkpoint choice on validation AUROC).
    """
    train = protocol.train if train is None else train
    for part, data in (("training images", train), ("few-shot anomalies", anomalies)):
        refuse_test_data(data, f"run_experiment ({part})")
    seed_everything(seed)
    if isinstance(detector, str):  # by registered name: the row records its configuration hash (notebook 07 reuse)
        if train is protocol.train:
            extra.setdefault("run_sha256", run_config_sha256(
                detector, detector_kwargs, protocol, image_size=extra.get("image_size"), anomalies=anomalies,
                use_val_in_fit=use_val_in_fit, weights=weights_of(detector, detector_kwargs)))
        detector = create(detector, seed=seed, **(detector_kwargs or {}))
    elif not isinstance(detector, Detector):
        detector = detector()
    status, timing, diverged_history = "completed", [], None
    with ResourceMeter(images=len(train)) as fit_meter:
        try:
            detector.fit(train, val=protocol.val if use_val_in_fit else None, anomalies=anomalies)
        except TrainingDiverged as err:
            status, diverged_history = err.history.status, err.history
            print(f"[adlib] {method} seed {seed}: {err}")
    # the history of *this* fit: a reused detector instance still holds its previous fit's history
    history = diverged_history if diverged_history is not None else getattr(detector, "history", None)
    if history is not None and getattr(history, "images_seen", 0):
        fit_meter.images = history.images_seen
    if diverged_history is None and history is not None and getattr(history, "status", "").startswith("early"):
        status = history.status
    timing.append(fit_meter.as_row(stage="fit", method=method, variant=variant, seed=seed))
    if status.startswith("diverged"):
        metrics, row = score_and_record(table, None, None, config=config, protocol=protocol, method=method, seed=seed,
                                        detector=detector, variant=variant, dataset=dataset, status=status,
                                        fit_seconds=round(fit_meter.seconds, 2),
                                        peak_memory_MB=round(fit_meter.peak_mb, 1),
                                        added_memory_MB=round(fit_meter.added_mb, 1), **extra)
        return ExperimentResult(detector, None, None, metrics, row, status, timing)
    with ResourceMeter(images=len(protocol.val) + len(protocol.test)) as score_meter:
        val = ScoredSplit.of(detector.score(protocol.val), protocol.val)
        test = ScoredSplit.of(detector.score(protocol.test), protocol.test)
    timing.append(score_meter.as_row(stage="score val+test", method=method, variant=variant, seed=seed))
    best = getattr(history, "best_step", None)
    metrics, row = score_and_record(table, val, test, config=config, protocol=protocol, method=method, seed=seed,
                                    detector=detector, variant=variant, dataset=dataset, status=status,
                                    fit_seconds=round(fit_meter.seconds, 2), score_seconds=round(score_meter.seconds, 2),
                     fit_images_per_s=round(fit_meter.images_per_second, 1),
                                    score_images_per_s=round(score_meter.images_per_second, 1),
                                    peak_memory_MB=round(max(fit_meter.peak_mb, score_meter.peak_mb), 1),
                                    added_memory_MB=round(max(fit_meter.added_mb, score_meter.added_mb), 1),
                                    **({"best_step": best} if best is not None else {}),
                                    **({"checkpoint_criterion": history.checkpoint_criterion}
                                       if getattr(history, "checkpoint_criterion", "") else {}), **extra)
    return ExperimentResult(detector, val, test, metrics, row, status, timing)


def evaluate_feature_detector(detector, val, test, *, table: ResultsTable | None, config: RunConfig,
                              protocol: Protocol | None, method: str, seed: int, variant: str = "default",
                              **extra) -> dict:
    """Score cached features of val and test (FeatureSplits), threshold on validation, write one row.

    For detectors that work on features extracted once (adlib.patch_features): the same metrics and
    provenance as `run_experiment`, without re-extracting features per method, seed and K."""
    with ResourceMeter(images=len(val.labels) + len(test.labels)) as meter:
        v, t = scored_features(detector, val, test)
    history = getattr(detector, "history", None)
    status = getattr(history, "status", "completed") if history is not None else "completed"
    best = getattr(history, "best_step", None)
    return score_and_record(table, v, t, config=config, protocol=protocol, method=method, seed=seed,
                            detector=detector, variant=variant, status=status, score_seconds=round(meter.seconds, 2),
                            **({"best_step": best} if best is not None else {}), **extra)[1]


def scored_features(detector, val, test) -> tuple[ScoredSplit, ScoredSplit]:
    """Validation and test scores of a detector that works on cached features (FeatureSplits)."""
    return (ScoredSplit.of(detector.score_features(val.features), val),
            ScoredSplit.of(detector.score_features(test.features), test))


def evaluate_features(detector, val, test) -> dict:
    """The metrics of a feature detector, without a row (for a selection curve over a hyperparameter: the
    kept setting's row is then written by `evaluate_feature_detector`)."""
    return evaluate_scores(*scored_features(detector, val, test))


def check_finite(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN or inf; the detector diverged or was fed bad input")
    return values


# ----- the configuration hash of a run (rows of a benchmark are reused only when it matches) ----------------------
HASH_IGNORED_SETTINGS = ("progress", "device", "verbose")  # how a run is shown or placed, not what it computes


def weights_of(detector: str, kwargs: dict | None) -> str:
    """The weights source a registered detector will use with ``kwargs`` (its constructor default when not given;
    'none' for a detector without pretrained weights), read from its signature without building it."""
    import inspect

    from .detectors import detector_class

    if kwargs and "weights" in kwargs:
        return str(kwargs["weights"])
    param = inspect.signature(detector_class(detector)).parameters.get("weights")
    return "none" if param is None or param.default is inspect.Parameter.empty else str(param.default)


def run_config_sha256(detector: str, kwargs: dict | None, protocol: Protocol, *, image_size: int | None = None,
                      anomalies: ImageSet | None = None, use_val_in_fit: bool = False, weights: str = "none",
                      threshold_rule: str | None = None) -> str:
    """16 hex digits of SHA-256 over everything that decides a run's result except its seed: the registered
    detector and its settings (steps, width, ... but not progress/device), the weights source, the image size and
    channels, the data file's hash and the sizes of the training, validation and test splits, the few-shot
    anomalies (their pixels), whether validation is seen in fit, and the threshold rule."""
    import hashlib
    import inspect
    import json

    rule = threshold_rule or f"{inspect.signature(evaluate_scores).parameters['rule'].default}-val"
    settings = {k: v for k, v in (kwargs or {}).items() if k not in HASH_IGNORED_SETTINGS}
    shots = "" if anomalies is None else hashlib.sha256(np.ascontiguousarray(anomalies.images).tobytes()).hexdigest()
    text = json.dumps(dict(detector=detector, settings=settings, weights=str(weights),
                           image_size=int(image_size or protocol.train.size), channels=int(protocol.train.channels),
                           data_sha256=protocol.data_sha256()[:16], n_train=len(protocol.train),
                           n_val=len(protocol.val), n_test=len(protocol.test), anomalies=shots,
                           use_val_in_fit=bool(use_val_in_fit), threshold_rule=rule),
                      sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
