"""SALAD's losses, Eqs. 1-9 (paper Sec. III-D), and the anomaly scores A_I, A_F, A_C (Sec. III-E, Table V).

Images are in [-1, 1] (the networks' range) unless a function says otherwise.

Eq. 1  L_{D_I} = 1/2 E|D_I(M_D(z)) - a|^2 + 1/2 E|D_I(x) - b|^2             `discriminator_ls`
Eq. 2  L_{D_F} = 1/2 E|D_F(M_E(x)) - a|^2 + 1/2 E|D_F(z) - b|^2             `discriminator_ls`
Eq. 3  L_adv   = 1/2 E|D_F(M_E(x)) - c|^2 + 1/2 E|D_I(M_D(z)) - c|^2         `adversarial_ls`
       a = 0, b = c = 1 (least squares GAN); D_I's output is a patch map, averaged over patches.
Eq. 4-5 L_str  = -SSIM(x, M_D(M_E(x)))                                       `structure_loss`
       We minimise 1 - SSIM (same gradient as -SSIM, and 0 for identical images). SSIM is `pytorch_msssim.ssim`
       (Gaussian window 11, sigma 1.5), computed on the images mapped to [0, 1] with data_range 1. The paper's
       "c1 = 0.01, c2 = 0.03" are the usual K1, K2 of Wang et al. (c_i = (K_i L)^2), which is what we pass.
       Table III's alternative: pixel-wise L1, `image_l1`.
Eq. 6  L_fea   = |M_E(M_D(z)) - z|  (element-wise L1, mean)                   `feature_l1`
Eq. 7  L_ct    = 1/2 ||M_E(x) - C||_2^2 (sum over dimensions, mean over the batch)   `centre_loss`;
       C follows the centre-loss update of Wen et al. [43] for one class: delta = sum_i (C - z'_i) / (1 + m),
       C <- C - alpha_c * delta (alpha_c = 0.5, Wen et al.'s value), once per training step `update_centre`.
       Table III's alternative: a KL term, `kl_batch` (see there).
Eq. 8  L_self  = |M'_D(M_E(x_s)) - x|  (pixel-wise L1, mean)                  `image_l1`
Eq. 9  L = alpha L_adv + beta L_str + gamma L_fea + delta L_ct + eta L_self, alpha = 1, beta = gamma = delta =
       eta = 10 (paper Sec. IV-B)                                             `total_loss`
"""
from __future__ import annotations

import torch
from pytorch_msssim import ssim

LS_A, LS_B, LS_C = 0.0, 1.0, 1.0  # Eqs. 1-3
WEIGHTS = {"adv": 1.0, "str": 10.0, "fea": 10.0, "ct": 10.0, "self": 10.0}  # alpha, beta, gamma, delta, eta
CENTRE_RATE = 0.5  # alpha of Wen et al.'s centre update
SSIM_WINDOW = 11


def discriminator_ls(fake_out: torch.Tensor, real_out: torch.Tensor, a: float = LS_A, b: float = LS_B) -> torch.Tensor:
    """Eqs. 1/2: 1/2 E|D(fake) - a|^2 + 1/2 E|D(real) - b|^2."""
    return 0.5 * (fake_out - a).pow(2).mean() + 0.5 * (real_out - b).pow(2).mean()


def adversarial_ls(*fake_outs: torch.Tensor, c: float = LS_C) -> torch.Tensor:
    """Eq. 3: sum over the discriminators of 1/2 E|D(fake) - c|^2."""
    return sum(0.5 * (out - c).pow(2).mean() for out in fake_outs)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, win_size: int = SSIM_WINDOW) -> torch.Tensor:
    """SSIM of each pair of [-1, 1] images (N,), via pytorch_msssim on [0, 1]."""
    win = min(win_size, x.shape[-1] - (1 - x.shape[-1] % 2))  # the window must fit (odd size)
    return ssim((x + 1) / 2, (y + 1) / 2, data_range=1.0, size_average=False, win_size=win, K=(0.01, 0.03))


def structure_loss(x: torch.Tensor, x_hat: torch.Tensor, win_size: int = SSIM_WINDOW) -> torch.Tensor:
    """Eq. 4: 1 - SSIM(x, x_hat), mean over the batch (0 for identical images)."""
    return 1.0 - ssim_per_image(x, x_hat, win_size).mean()


def image_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pixel-wise L1 (Eq. 8, and Table III's image-space alternative to L_str)."""
    return (x - y).abs().mean()


def feature_l1(z_hat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Eq. 6: element-wise L1 between reconstructed and sampled feature vectors."""
    return (z_hat - z).abs().mean()


def centre_loss(z: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Eq. 7: 1/2 ||z' - C||^2 per vector (sum over dimensions), mean over the batch; C is a constant here."""
    return 0.5 * (z - centre.detach()).pow(2).sum(1).mean()


@torch.no_grad()
def update_centre(centre: torch.Tensor, z: torch.Tensor, rate: float = CENTRE_RATE) -> torch.Tensor:
    """Wen et al.'s centre update for one class, in place: C <- C - rate * sum_i (C - z_i) / (1 + m)."""
    delta = (centre - z.detach()).sum(0) / (1 + len(z))
    centre -= rate * delta
    return centre


def kl_batch(z: torch.Tensor) -> torch.Tensor:
    """Table III's L_KL for a deterministic encoder (our reading): KL(N(mu, sigma^2) || N(0, 1)) summed over
    dimensions, with mu and sigma^2 the batch mean and variance of each dimension of z'."""
    mu, var = z.mean(0), z.var(0, unbiased=False).clamp_min(1e-6)
    return 0.5 * (var + mu.pow(2) - 1 - var.log()).sum()


def total_loss(terms: dict[str, torch.Tensor], weights: dict[str, float] = WEIGHTS) -> torch.Tensor:
    """Eq. 9: the weighted sum of the terms present (missing terms are switched off)."""
    return sum(weights[k] * v for k, v in terms.items())


# ----- anomaly scores (per image) --------------------------------------------------------------------
def score_feature(z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """A_F = |z_t - z_hat_t| (mean over dimensions): the paper's score."""
    return (z - z_hat).abs().mean(1)


def score_image(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """A_I = |x_t - x_hat_t| (mean over pixels)."""
    return (x - x_hat).abs().flatten(1).mean(1)


def score_centre(z: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """A_C = |z_t - C| (mean over dimensions)."""
    return (z - centre).abs().mean(1)
