"""Deep IF (Ouardini et al., 2019): an Isolation Forest on features of a frozen pretrained network.

Each image is passed through a frozen backbone (`adlib.backbones.FeatureExtractor`); the activation map
of one layer is global-average-pooled into a vector, and a scikit-learn IsolationForest is fitted on the
vectors of the normal training images. Anomaly score = the negated `score_samples` of the forest (short
average path length = easy to isolate = anomalous), so higher means more anomalous.

DPA (Shvetsova et al., Sec. IV-C) tunes Deep IF by a weakly supervised search for the best layer. Pass
several layers (`layer=("layer2", "layer3", "layer4")`) and a validation split containing anomalies to
`fit`: one forest per layer is fitted on the training normals, and the layer with the highest validation
AUROC is kept (`layer_aurocs` records the search). DPA ran the search with 3-fold cross-validation; this
project selects on its validation split, never on the test split.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from ..progress import progress_bar

from ..data.imageset import ImageSet, checked_float_batches
from ..detectors import Detector, register
from ..training import choose_device, seed_everything


def global_average_pool(feature_map: torch.Tensor) -> torch.Tensor:
    return feature_map.mean(dim=(2, 3))


@register("deep_if")
class DeepIFDetector(Detector):
    """Isolation Forest on global-average-pooled features of a frozen pretrained backbone.

    arch / layer: backbone and layer name(s) (see adlib.backbones); a sequence of layers triggers the
    weakly supervised layer search in `fit` (needs a validation split with normals and anomalies).
    weights: "auto" | "imagenet" | "cifar10" | "random", resolved by adlib.backbones.
    n_estimators / max_samples: IsolationForest settings (defaults of Liu et al. and scikit-learn).
    input_size: optional resize inside the extractor (e.g. 224 for ImageNet-sized inputs).
    """

    def __init__(self, arch: str = "resnet18", layer: str | Sequence[str] = "layer4", weights: str = "auto",
                 n_estimators: int = 100, max_samples: int | float | str = "auto", input_size: int | None = None,
                 batch_size: int = 64, seed: int = 0, device: str | None = None, progress: bool = True):
        if isinstance(layer, str):
            self.candidate_layers = [layer]
        else:
            self.candidate_layers = list(layer)
            if not self.candidate_layers:
                raise ValueError("layer: give a layer name or a non-empty sequence of candidate layers")
        if n_estimators < 1:
            raise ValueError(f"n_estimators must be >= 1, got {n_estimators}")
        self.hp = dict(arch=arch, weights_requested=weights, n_estimators=n_estimators, max_samples=max_samples,
                       input_size=input_size, batch_size=batch_size, seed=seed)
        self.device = choose_device(device)
        self.progress = progress
        self.extractor = None
        self.forest = None  # sklearn.ensemble.IsolationForest after fit
        self.layer: str | None = None  # the layer in use after fit
        self.layer_aurocs: dict[str, float] = {}
        self._channels: int | None = None
        self._size: int | None = None

    # -- features ---------------------------------------------------------------------------------
    def _build_extractor(self, layers: Sequence[str]) -> None:
        from ..backbones import FeatureExtractor  # imported lazily: the backbone module loads weights

        hp = self.hp
        self.extractor = FeatureExtractor(hp["arch"], list(layers), weights=hp["weights_requested"],
                                          seed=hp["seed"], input_size=hp["input_size"]).to(self.device).eval()
        self.weights = self.extractor.weights_source
        self.weights_file, self.weights_sha256 = self.extractor.weights_file, self.extractor.weights_sha256

    @torch.no_grad()
    def _features(self, images, layers: Sequence[str], desc: str) -> dict[str, np.ndarray]:
        """Pooled features {layer: (N, C)} for every requested layer, in one pass over the images."""
        batches = checked_float_batches(images, self.hp["batch_size"], channels=self._channels, size=self._size,
                                        who=self.name)
        total = -(-len(images) // self.hp["batch_size"])
        out: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
        for batch in progress_bar(batches, total=total, desc=desc, disable=not self.progress, leave=False):
            maps = self.extractor(batch.to(self.device))
            for layer in layers:
                out[layer].append(global_average_pool(maps[layer]).cpu())
        return {layer: torch.cat(parts).double().numpy() for layer, parts in out.items()}

    def _new_forest(self):
        from sklearn.ensemble import IsolationForest  # imported on use: keeps `import adlib.methods` light

        return IsolationForest(n_estimators=self.hp["n_estimators"], max_samples=self.hp["max_samples"],
                               random_state=self.hp["seed"], n_jobs=1)

    # -- Detector API -----------------------------------------------------------------------------
    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        if not isinstance(train, ImageSet):
            raise TypeError(f"fit expects an ImageSet of training normals, got {type(train).__name__}")
        if len(train) < 2:
            raise ValueError(f"Deep IF needs at least 2 training images, got {len(train)}")
        seed_everything(self.hp["seed"])
        self._build_extractor(self.candidate_layers)
        self._channels, self._size = train.channels, train.size
        train_features = self._features(train, self.candidate_layers, "Deep IF features (train)")
        if len(self.candidate_layers) == 1:
            self.layer = self.candidate_layers[0]
            self.forest = self._new_forest().fit(train_features[self.layer])
            return self
        if val is None or len(np.unique(val.labels)) < 2:
            raise ValueError("Deep IF layer search: pass a validation ImageSet with both normal and anomalous "
                             f"images (candidates {self.candidate_layers}), or a single layer name")
        from ..metrics import auroc

        val_features = self._features(val, self.candidate_layers, "Deep IF features (val)")
        forests, self.layer_aurocs = {}, {}
        for layer in self.candidate_layers:
            forests[layer] = self._new_forest().fit(train_features[layer])
            self.layer_aurocs[layer] = float(auroc(val.labels, -forests[layer].score_samples(val_features[layer])))
        self.layer = max(self.candidate_layers, key=lambda layer: self.layer_aurocs[layer])  # first best on ties
        self.forest = forests[self.layer]
        self._build_extractor([self.layer])  # score with only the chosen layer (same seeded weights)
        return self

    def _require_fit(self) -> None:
        if self.forest is None or self.extractor is None:
            raise RuntimeError(f"{self.name}: call fit() before score()/embed()")

    def embed(self, images) -> np.ndarray:
        """The pooled backbone features of the selected layer, (N, C)."""
        self._require_fit()
        return self._features(images, [self.layer], "Deep IF features")[self.layer]

    def score(self, images) -> np.ndarray:
        """Negated Isolation-Forest score: higher = shorter isolation path = more anomalous."""
        features = self.embed(images)
        return -self.forest.score_samples(features)
