"""`DatasetFeatures`: the backbone maps of one protocol, extracted once and reused across methods, seeds, K and
layer choices (notebook 06); `pool_indices` finds the few-shot draws in the anomaly pool by image content."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data.imageset import ImageSet
from .detector import FeatureSplit
from .featurizer import PatchFeaturizer, combine_layers


def _row_keys(images: torch.Tensor) -> list[bytes]:
    return [bytes(memoryview(row.contiguous().numpy()).cast("B")) for row in images]


def pool_indices(pool: ImageSet, drawn: ImageSet) -> np.ndarray:
    """Row indices in ``pool`` of the images of ``drawn`` (a subset of it, e.g. few_shot_anomalies)."""
    lookup = {}
    for i, key in enumerate(_row_keys(pool.images)):
        lookup.setdefault(key, i)
    try:
        return np.array([lookup[key] for key in _row_keys(drawn.images)], dtype=np.int64)
    except KeyError as err:
        raise ValueError("an image of the drawn set is not in the pool") from err


class DatasetFeatures:
    """Backbone maps of one protocol, extracted once and reused across methods, seeds, K and layer choices.

    splits: "train" (the training normals used), "val", "test", "pool" (the union of every few-shot draw).
    ``features(split, layers)`` combines the cached raw maps with Eq. 1-3 (memoised);
    ``few_shot(k, seed, ...)`` returns the features of ``adlib.data.few_shot_anomalies(protocol, k, seed)``.
    """

    def __init__(self, featurizer: PatchFeaturizer, protocol, train: ImageSet, draws: list[tuple[int, int]],
                 per_class: bool = False, val: ImageSet | None = None, test: ImageSet | None = None,
                 batch_size: int = 32, progress: bool = True):
        from ..data import few_shot_anomalies

        self.featurizer, self.protocol, self.per_class = featurizer, protocol, per_class
        self.images = {"train": train, "val": val if val is not None else protocol.val,
                       "test": test if test is not None else protocol.test}
        self.draws: dict[tuple[int, int], np.ndarray] = {}
        for k, seed in draws:
            drawn = few_shot_anomalies(protocol, k, seed, per_class=per_class)
            self.draws[(k, seed)] = pool_indices(protocol.train_anomaly_pool, drawn)
        used = np.unique(np.concatenate(list(self.draws.values()))) if self.draws else np.zeros(0, np.int64)
        self.pool_rows = {int(p): r for r, p in enumerate(used)}
        self.images["pool"] = protocol.train_anomaly_pool.subset(used)
        self.raw: dict[str, dict[str, torch.Tensor]] = {}
        self.n_images = sum(len(s) for s in self.images.values())
        t0 = time.perf_counter()
        for split, imgs in self.images.items():
            if len(imgs):
                self.raw[split] = featurizer.extract_layers(imgs, batch_size, progress, desc=f"{split} features")
        self.seconds = time.perf_counter() - t0
        self._memo: dict = {}

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")

    def labels(self, split: str) -> np.ndarray:
        return self.images[split].labels

    def features(self, split: str, layers=None, patch_size: int | None = None, dim: int | None = None) -> torch.Tensor:
        c = self.featurizer.config
        layers = tuple(layers or c.layers)
        patch_size, dim = patch_size or c.patch_size, dim or c.dim
        key = (split, layers, patch_size, dim)
        if key not in self._memo:
            missing = [name for name in layers if name not in self.raw[split]]
            if missing:
                raise ValueError(f"layers {missing} were not extracted (have {list(self.raw[split])})")
            self._memo[key] = combine_layers(self.raw[split], layers, patch_size, dim)
        return self._memo[key]

    def pair(self, split: str, **kw) -> FeatureSplit:
        imgs = self.images[split]
        return FeatureSplit(self.features(split, **kw), imgs.labels, split, imgs.from_test, imgs.raw_labels,
                            imgs.medmnist_exact)

    def few_shot(self, k: int, seed: int, **kw) -> tuple[torch.Tensor, np.ndarray]:
        """Features and raw labels (grades) of the K-shot draw (k, seed) made at construction."""
        if (k, seed) not in self.draws:
            raise KeyError(f"draw (k={k}, seed={seed}) was not extracted; pass it in `draws`")
        rows = np.array([self.pool_rows[int(p)] for p in self.draws[(k, seed)]])
        feats = self.features("pool", **kw)[torch.as_tensor(rows)]
        raw = self.images["pool"].raw_labels
        return feats, (raw[rows] if raw is not None else np.ones(len(rows), np.int64))

    def drop_raw(self) -> None:
        """Free the raw maps (keeps memoised combined features)."""
        self.raw = {}
