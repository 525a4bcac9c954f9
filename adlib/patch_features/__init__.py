"""Patch features from a frozen backbone, memory banks, nearest-neighbour distances and anomaly maps.

The machinery PatchCore, SimpleNet and WSCXR share (WSCXR paper, Sec. II-B, Eq. 1-3):

1. chosen layers of a frozen CNN (``adlib.backbones.FeatureExtractor``) are upsampled (bilinear) to the grid
   of the largest one and *aligned in channels*: each layer's C channels are average-pooled to ``dim``
   values per position, the layers are concatenated and pooled once more to ``dim``;
2. neighbourhood aggregation (Eq. 1-2): each position is replaced by the average of its p x p neighbourhood
   (``f_agg`` = adaptive average pooling, as in the paper; zero padding is *not* counted at the border);
3. the feature set of an image (Eq. 3) is the (h, w) grid of these ``dim``-dimensional patch features.

One module per job:

``featurizer``   `PatchFeatureConfig` (recorded with results), Eq. 1-3 (`align_channels`,
                 `aggregate_neighbourhood`, `combine_layers`), `PatchFeaturizer`, `flatten_patches`
``memory_bank``  `greedy_coreset` (farthest-point / k-centre greedy on a random projection, as in PatchCore) and
                 `knn_distances` (exact k-nearest-neighbour distances in chunks, so that memory stays bounded),
                 with a faiss variant and `time_knn` for the speed comparison
``maps``         patch scores -> `image_scores` (the largest patch score) and image-sized, Gaussian-smoothed
                 anomaly maps (`patch_maps_to_images`)
``detector``     `PatchFeatureDetector`, the base of the three detectors: it extracts features once and
                 subclasses work on feature tensors (so a notebook can cache features and reuse them across
                 methods); `FeatureSplit` and the guard that refuses test features in ``fit_features``;
                 `evaluate_on_features`
``scorer``       `PatchDiscriminator`, `apply_patchwise` and `train_patch_scorer` (SimpleNet's and WSCXR's
                 training, the checkpoint chosen on validation)
``cache``        `DatasetFeatures`: a protocol's backbone maps extracted once (notebook 06); `pool_indices`

Every name is re-exported here, so ``from adlib.patch_features import X`` keeps working. To monkeypatch a function,
patch the module that owns it (e.g. ``adlib.patch_features.memory_bank.knn_distances``).
"""
from .cache import DatasetFeatures, pool_indices
from .detector import FeatureSplit, PatchFeatureDetector, evaluate_on_features
from .featurizer import (PatchFeatureConfig, PatchFeaturizer, aggregate_neighbourhood, align_channels, combine_layers,
                         flatten_patches)
from .maps import gaussian_kernel1d, gaussian_smooth, image_scores, patch_maps_to_images
from .memory_bank import greedy_coreset, knn_distances, knn_distances_faiss, time_knn
from .scorer import PatchDiscriminator, apply_patchwise, train_patch_scorer

__all__ = [
    "DatasetFeatures", "pool_indices",
    "FeatureSplit", "PatchFeatureDetector", "evaluate_on_features",
    "PatchFeatureConfig", "PatchFeaturizer", "aggregate_neighbourhood", "align_channels", "combine_layers",
    "flatten_patches",
    "gaussian_kernel1d", "gaussian_smooth", "image_scores", "patch_maps_to_images",
    "greedy_coreset", "knn_distances", "knn_distances_faiss", "time_knn",
    "PatchDiscriminator", "apply_patchwise", "train_patch_scorer",
]
