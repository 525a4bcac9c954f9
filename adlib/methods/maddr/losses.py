"""MADDR's extra terms (Zhang, Lu et al., MICCAI 2023, Eqs. 2-4) and mixup with domain bookkeeping.

focal_loss    Eqs. 2/3: - alpha (1 - p_k)^gamma log p_k for the true class k of each image, averaged over the
              batch (the printed equations sum over images; see the package docstring). With soft targets t
              (mixup) the per-image term is - sum_k t_k alpha (1 - p_k)^gamma log p_k, which is the printed term
              for a one-hot t. gamma = 0, alpha = 1 gives the cross-entropy.
centre_loss   Eq. 4 for one batch: (1/L) sum_i ||z_i - m_i||^2 with m_i the mean of the *other* L - 1 codes.
mixup         Zhang et al. 2018: x' = lam x_i + (1 - lam) x_j for a seeded partner j of each image in the batch;
              every per-image label distribution (organ, modality) is mixed with the same lam and partner.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0  # Sec. 3.1: alpha_o^k = alpha_m^l = 0.25, gamma = 2
LAMBDAS = (1.0, 1.0, 1.0)  # Eq. 1: lambda_1 = lambda_2 = lambda_3 = 1


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), n_classes).float()


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA,
               gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Batch mean of the focal loss; ``targets``: class indices (N,) or class distributions (N, K)."""
    if targets.ndim == 1:
        targets = one_hot(targets, logits.shape[1])
    log_p = F.log_softmax(logits, dim=1)
    weight = alpha * (1.0 - log_p.exp()).clamp_min(0.0).pow(gamma)
    return -(targets * weight * log_p).sum(1).mean()


def centre_loss(z: torch.Tensor) -> torch.Tensor:
    """Eq. 4 on one batch of codes z (N, D), N >= 2: mean squared distance of each code to the mean of the rest."""
    z = z.flatten(1)
    n = len(z)
    if n < 2:
        raise ValueError("the leave-one-out centre loss needs at least 2 codes in a batch")
    rest_mean = (z.sum(0, keepdim=True) - z) / (n - 1)
    return (z - rest_mean).pow(2).sum(1).mean()


def mixup(batch: torch.Tensor, targets: dict[str, torch.Tensor], lam: float, partner: torch.Tensor):
    """Mix each image with ``batch[partner]``; returns (mixed batch, mixed targets). ``targets``: name ->
    (N, K) distributions (one-hot for unmixed images), mixed with the same lam and partner as the images."""
    mixed = lam * batch + (1.0 - lam) * batch[partner]
    return mixed, {k: lam * t + (1.0 - lam) * t[partner] for k, t in targets.items()}
