"""`PatchFeatureDetector`, the base of PatchCore, SimpleNet and WSCXR: it extracts features once and subclasses
work on feature tensors. `FeatureSplit` carries a split's features with its labels and test mark, and the guard
on every subclass's ``fit_features`` refuses test features."""
from __future__ import annotations

import numpy as np
import torch

from ..data.imageset import ImageSet
from ..detectors import Detector
from .featurizer import PatchFeatureConfig, PatchFeaturizer
from .maps import image_scores, patch_maps_to_images


class FeatureSplit:
    """Patch features of one split with its labels and the protocol's test mark (unpacks as (features, labels)).

    Built by `DatasetFeatures.pair`, so test-split features stay marked however they are called. ``medmnist_exact``:
    the images' MedMNIST-exact mask (`ImageSet.medmnist_exact`), so feature rows get the exact-test AUROC too."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray, split: str, from_test: np.ndarray | bool,
                 raw_labels: np.ndarray | None = None, medmnist_exact: np.ndarray | None = None):
        self.features, self.labels, self.split, self.raw_labels = features, np.asarray(labels), split, raw_labels
        self.from_test = np.broadcast_to(np.asarray(from_test, dtype=bool), (len(self.labels),))
        self.medmnist_exact = medmnist_exact

    @property
    def contains_test(self) -> bool:
        return bool(self.from_test.any())

    def __iter__(self):
        return iter((self.features, self.labels))

    def __len__(self) -> int:
        return len(self.labels)


def _guard_fit_features(fit_features):
    """Wrap a subclass's fit_features like `Detector.fit`: the features of training normals, of the few-shot
    anomalies and of the validation split (checkpoint choice) must not come from the test split. A FeatureSplit
    is checked by its test mark and unwrapped to its features; ``val`` must be a FeatureSplit (it carries the
    mark). ``diagnostic=`` (the authors'-protocol comparison) is the one argument that holds test features: it is
    only scored after training (`train_patch_scorer`)."""
    import functools

    from ..data.imageset import refuse_test_data, require_marked

    @functools.wraps(fit_features)
    def guarded(self, normal=None, val=None, anomalies=None, *args, **kwargs):
        who = f"{type(self).__name__}.fit_features"
        for part, data in (("normal", normal), ("anomalies", anomalies)):
            refuse_test_data(data, f"{who}({part}=...)")
        require_marked(val, f"{who}(val=...)")
        normal, anomalies = (d.features if isinstance(d, FeatureSplit) else d for d in (normal, anomalies))
        return fit_features(self, normal, val, anomalies, *args, **kwargs)

    guarded.__guarded__ = True
    return guarded


class PatchFeatureDetector(Detector):
    """Base of patch-feature detectors: ``fit``/``score``/``anomaly_maps`` on images extract features
    and call the feature-level ``fit_features`` / ``patch_scores`` that subclasses implement.

    Pass ``featurizer=`` to share one backbone between detectors, or the PatchFeatureConfig fields.
    ``map_sigma``: Gaussian smoothing of anomaly maps, in pixels of the input image.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fit_features = cls.__dict__.get("fit_features")
        if fit_features is not None and not getattr(fit_features, "__guarded__", False):
            cls.fit_features = _guard_fit_features(fit_features)

    def __init__(self, featurizer: PatchFeaturizer | None = None, config: PatchFeatureConfig | None = None,
                 map_sigma: float = 4.0, batch_size: int = 32, progress: bool = True, **feature_kwargs):
        self._featurizer = featurizer
        self.config = featurizer.config if featurizer is not None else (config or PatchFeatureConfig(**feature_kwargs))
        self.map_sigma, self.batch_size, self.progress = map_sigma, batch_size, progress
        self._image_size: int | None = None
        self.fitted = False

    @property
    def featurizer(self) -> PatchFeaturizer:
        if self._featurizer is None:
            self._featurizer = PatchFeaturizer(self.config)
        return self._featurizer

    @property
    def weights(self) -> str:  # type: ignore[override]
        return self.featurizer.weights_source if self._featurizer is not None else self.config.weights

    @property
    def weights_file(self) -> str:  # type: ignore[override]
        return self.featurizer.extractor.weights_file if self._featurizer is not None else ""

    @property
    def weights_sha256(self) -> str:  # type: ignore[override]
        return self.featurizer.extractor.weights_sha256 if self._featurizer is not None else ""

    def features(self, images) -> torch.Tensor:
        return self.featurizer.extract(images, self.batch_size, self.progress, desc=f"{self.name} features")

    # subclasses ------------------------------------------------------------------------------------
    def fit_features(self, normal: torch.Tensor, val: tuple[torch.Tensor, np.ndarray] | None = None,
                     anomalies: torch.Tensor | None = None, anomaly_classes: np.ndarray | None = None
                     ) -> "PatchFeatureDetector":
        raise NotImplementedError

    def patch_scores(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # Detector API ----------------------------------------------------------------------------------
    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        if not isinstance(train, ImageSet) or len(train) == 0:
            raise ValueError("fit needs a non-empty ImageSet of training normals")
        self._image_size = train.size
        val_pair = None
        if val is not None and len(np.unique(val.labels)) == 2:
            val_pair = FeatureSplit(self.features(val), val.labels, val.split, val.from_test, val.raw_labels,
                                    val.medmnist_exact)
        anomaly_feats = self.features(anomalies) if anomalies is not None and len(anomalies) else None
        classes = anomalies.raw_labels if anomalies is not None and anomaly_feats is not None else None
        return self.fit_features(self.features(train), val_pair, anomaly_feats, classes)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() (or fit_features()) first")

    def score_features(self, features: torch.Tensor) -> np.ndarray:
        self._check_fitted()
        return image_scores(self.patch_scores(features))

    def maps_from_features(self, features: torch.Tensor, image_size: int) -> np.ndarray:
        self._check_fitted()
        return patch_maps_to_images(self.patch_scores(features), image_size, self.map_sigma).numpy()

    def score(self, images) -> np.ndarray:
        return self.score_features(self.features(images))

    def anomaly_maps(self, images) -> np.ndarray:
        size = int(images.size if isinstance(images, ImageSet) else torch.as_tensor(images).shape[-1])
        return self.maps_from_features(self.features(images), size)


def evaluate_on_features(detector: "PatchFeatureDetector", val: FeatureSplit, test: FeatureSplit) -> dict[str, float]:
    """AUROC/AP on test and F1/ACC/SEN/SPE at the threshold chosen on validation: the runner's
    `adlib.experiment.evaluate_features` (kept under this name for notebook 06)."""
    from ..experiment import evaluate_features

    return evaluate_features(detector, val, test)
