"""Losses of the adversarial autoencoders (CCB-AAE paper, Eqs. 2 and 4-7) and of the GAN baselines.

Eq. 4   L_adv = E log D(x) + E log(1 - D(x_hat)). The discriminator maximises it: `discriminator_bce` (binary
        cross-entropy, real = input, fake = reconstruction). The generator's side is *feature matching* on the
        discriminator's features, || E f(x) - E f(x_hat) ||^2 over the batch (`feature_matching`; GANomaly's Eq.
        1 and Salimans et al. 2016), not a loss on D's outputs (a known trap of public GAN anomaly-detection
        code).
Eq. 5   L_s   = E |x - x_hat|_2: mean squared error per image (`image_error`), the image similarity loss.
Eq. 6   L_lat = E |z - z_hat|_2: mean squared error between latent vectors per image (`latent_error`).
Eq. 7   L = lambda_s L_s + lambda_adv L_adv + lambda_lat L_lat, lambda_s = 50, lambda_adv = 1, lambda_lat = 1
        (`generator_objective`).
Eq. 2   A(x) = alpha D1(x, x_hat) + (1 - alpha) D2(z, z_hat) (`combine`), with D1, D2 the per-image errors of
        Eqs. 5/6, each divided by its mean over held-out normal training images so that alpha weighs
        comparable numbers.
"""
from __future__ import annotations

import numpy as np
import torch

from ...gan import discriminator_bce, generator_bce, image_l1  # noqa: F401  (re-exported: the GAN side of Eq. 4)

LAMBDA_S, LAMBDA_ADV, LAMBDA_LAT = 50.0, 1.0, 1.0  # Eq. 7, "Parameter Setting"


def image_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error (Eq. 5's |x - x_hat|_2 and D1 of Eq. 2)."""
    return (x - x_hat).pow(2).flatten(1).mean(1)



def latent_error(z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error of latent vectors (Eq. 6 and D2 of Eq. 2)."""
    return (z.flatten(1) - z_hat.flatten(1)).pow(2).mean(1)


def feature_matching(f_real: torch.Tensor, f_fake: torch.Tensor) -> torch.Tensor:
    """|| E f(x) - E f(x_hat) ||^2 (mean over feature dimensions) of the batch: the generator's adversarial loss."""
    return (f_real.flatten(1).mean(0) - f_fake.flatten(1).mean(0)).pow(2).mean()




def generator_objective(x, x_hat, z, z_hat, f_real, f_fake, lambda_s: float = LAMBDA_S,
                        lambda_adv: float = LAMBDA_ADV, lambda_lat: float = LAMBDA_LAT):
    """Eq. 7 for a batch; returns (total, {"similarity", "adversarial", "latent"})."""
    l_s = image_error(x, x_hat).mean()
    l_adv = feature_matching(f_real, f_fake)
    l_lat = latent_error(z, z_hat).mean()
    total = lambda_s * l_s + lambda_adv * l_adv + lambda_lat * l_lat
    return total, {"similarity": float(l_s.detach()), "adversarial": float(l_adv.detach()),
                   "latent": float(l_lat.detach())}


def combine(image: np.ndarray, latent: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 2 on (normalised) per-image components."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha * np.asarray(image, dtype=np.float64) + (1 - alpha) * np.asarray(latent, dtype=np.float64)
