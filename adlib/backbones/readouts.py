"""Read-outs of pooled features (notebook 01): nearest neighbours, a k-NN anomaly score, a linear probe."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from .extractor import FeatureExtractor


@torch.no_grad()
def pooled_features(ext: FeatureExtractor, images, layers: Iterable[str] | None = None, batch_size: int = 64,
                    progress: bool = False) -> "np.ndarray":
    """Global-average-pooled features (N, sum of C) of ``images`` (an ImageSet or a (N,C,H,W) tensor)."""
    from ..progress import progress_bar

    tensor = images.images if hasattr(images, "images") else images
    layers = list(layers or ext.layers)
    device = ext.mean.device
    chunks = []
    for start in progress_bar(range(0, len(tensor), batch_size), desc=f"{ext.arch} features ({ext.weights_source})",
                      disable=not progress, mininterval=2):
        out = ext(tensor[start:start + batch_size].to(device))
        chunks.append(torch.cat([out[name].mean(dim=(2, 3)) for name in layers], dim=1).cpu())
    return torch.cat(chunks).numpy().astype(np.float32)


def cosine_neighbours(query: "np.ndarray", gallery: "np.ndarray", k: int) -> "np.ndarray":
    """Indices (Nq, k) of the k gallery rows with the highest cosine similarity to each query row."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    return np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]


def knn_anomaly_scores(normal_features: "np.ndarray", features: "np.ndarray", k: int = 5) -> "np.ndarray":
    """Mean cosine distance to the k nearest *normal* training features: high = unlike any normal image."""
    n = normal_features / np.linalg.norm(normal_features, axis=1, keepdims=True).clip(1e-12)
    f = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    distance = 1.0 - f @ n.T
    return np.sort(distance, axis=1)[:, :k].mean(axis=1)


def linear_probe_scores(train_features: "np.ndarray", train_labels: "np.ndarray", features: "np.ndarray",
                        seed: int = 0) -> "np.ndarray":
    """Probability of class 1 from a standardised logistic regression (fixed C=1, nothing tuned)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    probe.fit(train_features, train_labels)
    return probe.predict_proba(features)[:, 1]
