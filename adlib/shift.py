"""How different are two sets of images? Measures of dataset shift between protocol parts.

Used to explain why validation numbers flatter on PneumoniaMNIST: its val split is cut from the same pool as
train, while its test split is the separately collected ZhangLab test set.

- `image_statistics`: per-image brightness, contrast and sharpness (mean absolute gradient).
- `domain_classifier_auroc`: can a classifier tell set A from set B? Cross-validated AUROC of a logistic
  regression on downsampled pixels: 0.5 = indistinguishable, 1.0 = trivially separable. Only images of one
  class (normals) should be compared, so that the classifier sees the shift and not the disease.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .data.imageset import ImageSet


def image_statistics(images: ImageSet, group: str) -> pd.DataFrame:
    """One row per image: brightness (mean), contrast (std) and sharpness (mean |vertical + horizontal gradient|)."""
    x = images.float_images().mean(1)  # grayscale view
    dy = (x[:, 1:, :] - x[:, :-1, :]).abs().mean(dim=(1, 2))
    dx = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2))
    return pd.DataFrame({"group": group, "brightness": x.mean(dim=(1, 2)).numpy(),
                         "contrast": x.std(dim=(1, 2)).numpy(), "sharpness": ((dx + dy) / 2).numpy()})


def _pixels(images: ImageSet, size: int) -> np.ndarray:
    x = images.float_images().mean(1, keepdim=True)
    x = F.interpolate(x, size=(size, size), mode="area") if x.shape[-1] != size else x
    return x.flatten(1).numpy()


def domain_classifier_auroc(a: ImageSet, b: ImageSet, *, size: int = 16, folds: int = 5, max_images: int | None = 600,
                            seed: int = 0) -> tuple[float, float]:
    """Mean and std over ``folds`` stratified folds of the AUROC of a standardised logistic regression that
    tells images of ``a`` from images of ``b`` (both subsampled to at most ``max_images``, seeded).

    A diagnostic, never a choice: it reads no anomaly label, and nothing is tuned on it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = a.sample(max_images, seed), b.sample(max_images, seed + 1)
    x = np.concatenate([_pixels(a, size), _pixels(b, size)])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with torch.no_grad():
        scores = cross_val_score(model, x, y, cv=cv, scoring="roc_auc")
    return float(scores.mean()), float(scores.std())


# ----- does a pixel-error score measure detail? ------------------------------------------------------------------
def fine_detail(images: ImageSet) -> np.ndarray:
    """Per image: mean |vertical gradient| of the grayscale view (what a smooth, hazy X-ray lacks)."""
    x = images.float_images().mean(1)
    return (x[:, 1:, :] - x[:, :-1, :]).abs().mean(dim=(1, 2)).numpy().astype(np.float64)


def detail_diagnostic(scores: np.ndarray, images: ImageSet) -> dict[str, float]:
    """How much of an anomaly score is image detail: the test AUROC of fine detail alone (on its own far below
    0.5 on PneumoniaMNIST, where pneumonia images are smoother), and the Spearman correlation of the score with
    detail over all images and within each class. A reconstruction error that follows detail ranks smooth
    pneumonia images as normal: an AUROC below chance, by construction, not by a bug."""
    from scipy.stats import spearmanr

    from .metrics import auroc

    detail, scores, labels = fine_detail(images), np.asarray(scores, dtype=np.float64), images.labels
    out = {"detail_AUROC": auroc(labels, detail), "score_AUROC": auroc(labels, scores),
           "spearman_score_detail": float(spearmanr(scores, detail).statistic)}
    for value, name in ((0, "normal"), (1, "anomalous")):
        chosen = labels == value
        out[f"spearman_within_{name}"] = float(spearmanr(scores[chosen], detail[chosen]).statistic) \
            if chosen.sum() > 2 else float("nan")
    return out


def linear_pixel_error(train: ImageSet, images: ImageSet, components: int = 16, max_train: int | None = 2000,
                       seed: int = 0) -> np.ndarray:
    """A pixel-error anomaly score with no network to train: the squared error of each image's reconstruction
    from the top ``components`` principal components of (at most ``max_train``, seeded) training normals, i.e.
    a linear autoencoder. Seconds on a CPU; a reference for what any pixel-error score measures on a split (e.g.
    beside `fine_detail` in `detail_diagnostic`). Fitted on ``train`` only: nothing is chosen on ``images``."""
    from sklearn.decomposition import PCA

    fit = train.sample(max_train, seed) if max_train is not None and len(train) > max_train else train
    x_fit = fit.float_images().flatten(1).numpy().astype(np.float64)
    pca = PCA(n_components=min(components, len(fit) - 1), random_state=seed).fit(x_fit)
    x = images.float_images().flatten(1).numpy().astype(np.float64)
    return ((x - pca.inverse_transform(pca.transform(x))) ** 2).mean(1)
