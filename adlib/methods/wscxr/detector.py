"""WSCXR (Ni et al., "Weakly Supervised Anomaly Detection for Chest X-Ray Image"): a few anomalous images
with image-level labels help a patch-feature detector.

1. Normal feature set M_n: patch features (Eq. 1-3, ``adlib.patch_features``) of the training normals,
   reduced by a greedy coreset (the authors keep 50 %).
2. Anomaly feature mining (Eq. 4-5): every patch feature m of the K anomalous images gets the score S(m) =
   its distance to the nearest normal features (the authors' code: mean distance to the k = 5 nearest;
   the paper's Eq. 4: the nearest one, k = 1); the floor(r |M_a|) features with the largest S form M'_a
   (retention rate r = 0.2). Most patches of a pneumonia image are normal tissue; mining drops them.
3. Linear mixing (Eq. 6): m'_a = w m_a + (1 - w) m_n with m_a in M'_a, m_n in M_n, w ~ U[0.1, 1], drawn
   afresh for every training batch, so that the augmented anomaly set M*_a is as large as M_n.
4. Discriminator D trained with Eq. 7: mean over normals of max(0, D(m_n)) + mean over anomalies of
   max(0, 1 - D(m_a)). ``depth`` = 1 is the authors' code (one linear layer 1024 -> 1, no bias); the paper
   says "a basic MLP" (``depth`` = 2, the default here, following the paper where paper and code differ).
5. Anomaly map (Eq. 8) = D of every patch of a test image, upsampled and smoothed; image score = its max.

Differences from the authors' code (also stated in notebook 06): the paper's Eq. 7 loss (the code uses a
0.5-margin hinge); the checkpoint epoch is chosen on the *validation* split (the code evaluated the test set
every epoch and kept the best test epoch).
"""
from __future__ import annotations

import numpy as np
import torch

from ...detectors import register
from ...patch_features import (PatchDiscriminator, PatchFeatureDetector, apply_patchwise, flatten_patches,
                              greedy_coreset, knn_distances, train_patch_scorer)


def mining_scores(anomaly_patches: torch.Tensor, normal_bank: torch.Tensor, k: int = 5,
                  max_bytes: int = 256 * 2**20) -> torch.Tensor:
    """S(m) of Eq. 4 for each row of ``anomaly_patches`` (M, D): mean L2 distance to its k nearest normal
    features (k = 1 is exactly Eq. 4)."""
    return knn_distances(anomaly_patches, normal_bank, k=k, max_bytes=max_bytes).mean(1)


def mine_anomaly_features(anomaly_patches: torch.Tensor, normal_bank: torch.Tensor, retention: float = 0.2,
                          k: int = 5, max_bytes: int = 256 * 2**20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4-5: keep the floor(retention * M) anomalous patch features farthest from the normal bank.

    Returns (mined features (floor(rM), D), their row indices into anomaly_patches, S of every row (M,)).
    """
    if not 0 < retention <= 1:
        raise ValueError(f"retention rate r must be in (0, 1], got {retention}")
    m = len(anomaly_patches)
    n_keep = int(np.floor(retention * m))
    if n_keep < 1:
        raise ValueError(f"retention {retention} of {m} anomalous patch features keeps none; use more images or a larger r")
    scores = mining_scores(anomaly_patches, normal_bank, k, max_bytes)
    keep = torch.topk(scores, n_keep, largest=True).indices
    return anomaly_patches[keep], keep, scores


def linear_mix(normal: torch.Tensor, anomalous: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Eq. 6: w * anomalous + (1 - w) * normal, row-wise (w: (B,) or scalar, in [0, 1])."""
    w = torch.as_tensor(w, dtype=normal.dtype)
    if w.ndim == 1:
        w = w[:, None]
    return w * anomalous + (1 - w) * normal


def wscxr_loss(d_normal: torch.Tensor, d_anomalous: torch.Tensor) -> torch.Tensor:
    """Eq. 7 (the double mean over pairs separates into two means): normals pushed to D <= 0, anomalies
    to D >= 1."""
    return torch.relu(d_normal).mean() + torch.relu(1 - d_anomalous).mean()


@register("wscxr")
class WSCXRDetector(PatchFeatureDetector):
    """WSCXR on patch features. ``mining`` / ``mixing`` switch Eq. 4-5 / Eq. 6 off for the ablation
    (Table II): without mining the whole anomaly set M_a is used; without mixing the (mined) anomaly
    features themselves are the anomalous batches (sampled with replacement)."""

    def __init__(self, retention: float = 0.2, mining_k: int = 5, mixing_range: tuple[float, float] = (0.1, 1.0),
                 mining: bool = True, mixing: bool = True, coreset_fraction: float = 0.5,
                 projection_dim: int | None = 128, depth: int = 2, hidden: int = 1024, epochs: int = 100,
                 batch_size: int = 512, lr: float = 2e-4, weight_decay: float = 1e-5, eval_every: int = 5,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        lo, hi = mixing_range
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"mixing_range must satisfy 0 <= low <= high <= 1, got {mixing_range}")
        self.hp = dict(retention=retention, mining_k=mining_k, mixing_range=(lo, hi), mining=mining, mixing=mixing,
                       coreset_fraction=coreset_fraction, projection_dim=projection_dim, depth=depth, hidden=hidden,
                       epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                       eval_every=eval_every, seed=seed)
        self.seed = seed
        self.normal_bank: torch.Tensor | None = None
        self.anomaly_set: torch.Tensor | None = None  # M'_a (or M_a without mining)
        self.mined_index: torch.Tensor | None = None
        self.mining_scores: torch.Tensor | None = None
        self.discriminator: PatchDiscriminator | None = None
        self.history = None

    def fit_features(self, normal, val=None, anomalies=None, anomaly_classes=None, bank: torch.Tensor | None = None,
                     diagnostic=None):
        """normal (N, h, w, D) features of training normals; anomalies (K, h, w, D) of the few-shot anomalous
        images; val = (features, labels) of the validation split (checkpoint choice); bank: an already
        computed coreset of the normal features (shared with PatchCore); diagnostic = (test features,
        labels), only recorded, see ``train_patch_scorer``."""
        hp = self.hp
        if anomalies is None or len(anomalies) == 0:
            raise ValueError("WSCXR is weakly supervised: fit needs at least one anomalous training image")
        if bank is None:
            patches = flatten_patches(normal)
            keep = greedy_coreset(patches, fraction=hp["coreset_fraction"], projection_dim=hp["projection_dim"],
                                  seed=self.seed)
            bank = patches[keep]
        self.normal_bank = bank.float().contiguous()
        anomaly_patches = flatten_patches(anomalies).float()
        if hp["mining"]:
            self.anomaly_set, self.mined_index, self.mining_scores = mine_anomaly_features(
                anomaly_patches, self.normal_bank, hp["retention"], hp["mining_k"])
        else:
            self.anomaly_set, self.mined_index = anomaly_patches, torch.arange(len(anomaly_patches))
        torch.manual_seed(self.seed)
        self.discriminator = PatchDiscriminator(bank.shape[1], hp["depth"], hp["hidden"])
        optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"],
                                     foreach=True)
        lo, hi = hp["mixing_range"]
        anomaly_set, normal_bank, disc = self.anomaly_set, self.normal_bank, self.discriminator

        def step_loss(normal_batch, gen):
            b = len(normal_batch)
            m_a = anomaly_set[torch.randint(len(anomaly_set), (b,), generator=gen)]
            if hp["mixing"]:
                m_n = normal_bank[torch.randint(len(normal_bank), (b,), generator=gen)]
                w = lo + (hi - lo) * torch.rand(b, generator=gen)
                m_a = linear_mix(m_n, m_a, w)
            scores = disc(torch.cat([normal_batch, m_a]))
            return wscxr_loss(scores[:b], scores[b:])

        self.fitted = True  # patch_scores is needed for validation inside the loop
        self.history = train_patch_scorer(disc, optimizer, step_loss, self.normal_bank, self.patch_scores,
                                          epochs=hp["epochs"], batch_size=hp["batch_size"], seed=self.seed,
                                          val=val, eval_every=hp["eval_every"], diagnostic=diagnostic,
                                          progress=self.progress, desc="WSCXR discriminator")
        return self

    def patch_scores(self, features: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        self.discriminator.eval()
        return apply_patchwise(self.discriminator, features)

    def mixed_examples(self, n: int, seed: int = 0) -> torch.Tensor:
        """n mixed anomaly features drawn like in training (for figures)."""
        gen = torch.Generator().manual_seed(seed)
        lo, hi = self.hp["mixing_range"]
        m_a = self.anomaly_set[torch.randint(len(self.anomaly_set), (n,), generator=gen)]
        m_n = self.normal_bank[torch.randint(len(self.normal_bank), (n,), generator=gen)]
        return linear_mix(m_n, m_a, lo + (hi - lo) * torch.rand(n, generator=gen))


# ------------------------------------------------------------------------------------------ diagnostic
def authors_protocol_diagnostic(history, test_labels: np.ndarray) -> dict[str, float]:
    """What the authors' evaluation would have reported, for comparison only (never our numbers): the epoch with
    the best *test* AUROC, and ACC/F1 at the threshold that maximises Youden's J (SEN + SPE - 1) *on the test set*
    (an oracle threshold: it has seen the test labels). Needs a history recorded with
    ``diagnostic=(test features, labels)``."""
    from sklearn.metrics import roc_curve

    from ...metrics import ScoredSplit, metrics_at_threshold

    diag_auroc, diag_scores = history.extras.get("diagnostic_auroc"), history.extras.get("diagnostic_scores")
    if not diag_scores:
        raise ValueError("no diagnostic test scores were recorded; fit with diagnostic=<test FeatureSplit>")
    best = int(np.argmax(diag_auroc))
    scores = np.asarray(diag_scores[best])
    fpr, tpr, thresholds = roc_curve(test_labels, scores, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    threshold = float(thresholds[finite][int(np.argmax((tpr - fpr)[finite]))])
    at = metrics_at_threshold(ScoredSplit(scores, np.asarray(test_labels), "test (diagnostic)"), threshold)
    return {"AUROC": float(diag_auroc[best]), "ACC": at["ACC"], "F1": at["F1"],
            "epoch": int(history.eval_steps[best] // history.extras["steps_per_epoch"])}
