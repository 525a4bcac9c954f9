"""Shared GAN components: the DCGAN-style generator, encoders and discriminators of the adversarial-autoencoder
family (GANomaly, Skip-GANomaly, CCB-AAE) and of the DCGAN/BiGAN baselines (AnoGAN, EGBAD), their binary
cross-entropy GAN losses, and `frozen` (read a network without training it). Methods import this module; it
imports no method.

Resolution levels. The encoder G_E has ``depth`` down-sampling blocks (conv 4x4 stride 2, BatchNorm,
LeakyReLU 0.2; the paper's Fig. 3 uses 5). Block i outputs ``size / 2**(i+1)`` px with ``widths[i]`` channels.
A final linear conv whose kernel covers the remaining grid maps the last block to the latent vector z
(``nz`` numbers, shape (N, nz, 1, 1)), as DCGAN/GANomaly encoders end. At 32 px the five blocks already reach
1 x 1 and that conv is a 1 x 1 projection; at 64/128 px they end at 2 x 2 / 4 x 4. Sizes below 32 px get
``log2(size)`` blocks (fewer levels; the CCB lengths then keep their top entries) - see `default_depth`.

The decoder G_D mirrors it: a transposed conv from z to the bottom grid, then ``depth`` up-sampling blocks
(transposed conv 4x4 stride 2, BatchNorm, ReLU; Tanh on the output block). The encoder output of level
i (i = 0 .. depth-2, shallowest first) is connected to the decoder level of the same resolution by

  skip="none"   nothing (GANomaly: a plain encoder-decoder);
  skip="plain"  concatenation of the encoder features (Skip-GANomaly, a U-Net);
  skip="ccb"    a chain of ``length`` blocks conv 3x3 (same width, padding 1) + ReLU, then concatenation
                (CCB-AAE, Fig. 2). Lengths are given bottom (deepest) to top (shallowest): [1, 2, 3, 4] for
                5 levels, so the shallowest connection gets the longest chain (paper, Sec. "CCB").

Images enter and leave these networks in [-1, 1] (the detectors convert from/to [0, 1]).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

SKIPS = ("none", "plain", "ccb")
PAPER_CCB_LENGTHS = (1, 2, 3, 4)  # bottom to top, Fig. 2/3 and Tables 6/7 row "[1-4]"


def default_depth(size: int, depth: int = 5) -> int:
    """Number of down-sampling blocks for ``size`` px: the paper's 5 when the image halves 5 times (32, 64,
    128 px), else as many as halve the image down to 1 px (16 px -> 4)."""
    if size < 4 or (size & (size - 1) and size % 2**depth):
        raise ValueError(f"image size must be a power of two or a multiple of {2**depth} (32, 64, 128), got {size}")
    if size % 2**depth == 0:
        return depth
    return int(math.log2(size))


def dcgan_depth(size: int) -> int:
    """Down-sampling blocks of a standard DCGAN (Radford et al.), down to a 4 x 4 grid: 32 px -> 3, 64 -> 4,
    128 -> 5. Used by the GAN baselines AnoGAN and EGBAD, whose papers use DCGAN networks; GAN training from
    a 1 x 1 bottleneck through five up-sampling blocks was unstable at the step counts used here."""
    depth = 0
    while size % 2 == 0 and size // 2 >= 4:
        size, depth = size // 2, depth + 1
    if depth == 0:
        raise ValueError(f"image size {size} is too small for a DCGAN")
    return depth


def pyramid_widths(depth: int, width: int, max_width: int) -> list[int]:
    """Channels of each level, doubling per level (DCGAN): width, 2 width, ... capped at max_width."""
    return [min(width * 2**i, max_width) for i in range(depth)]


def scaled_ccb_lengths(factor: int, base: Sequence[int] = PAPER_CCB_LENGTHS) -> tuple[int, ...]:
    """The ablation rows of Tables 6/7: [1,2,3,4] x factor (2 -> [2,4,6,8], ..., 8 -> [8,16,24,32])."""
    return tuple(int(factor) * int(n) for n in base)


def ccb_lengths_for_levels(lengths: Sequence[int], levels: int) -> tuple[int, ...]:
    """Chain lengths per skip level, shallowest level first, from a bottom-to-top list.

    With fewer levels than lengths (small images), the top (shallowest) entries are kept."""
    lengths = tuple(int(n) for n in lengths)
    if any(n < 1 for n in lengths):
        raise ValueError(f"CCB lengths must be >= 1, got {lengths}")
    if len(lengths) < levels:
        raise ValueError(f"need {levels} CCB lengths (one per skip level, bottom to top), got {lengths}")
    return tuple(reversed(lengths[len(lengths) - levels:]))


class ChainOfConvBlocks(nn.Sequential):
    """CCB (Fig. 2): ``length`` x (conv 3x3, padding 1, same width -> ReLU); maps keep their size."""

    def __init__(self, channels: int, length: int):
        layers = []
        for _ in range(length):
            layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=False)]
        super().__init__(*layers)
        self.length = length

    @property
    def n_conv(self) -> int:
        return sum(isinstance(m, nn.Conv2d) for m in self)


def down_block(c_in: int, c_out: int, batch_norm: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=False))
    return nn.Sequential(*layers)


def up_block(c_in: int, c_out: int, dropout: float = 0.0) -> nn.Sequential:
    layers = [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Pyramid(nn.Module):
    """The down-sampling blocks shared by encoders and discriminators; returns every level's output."""

    def __init__(self, channels: int, size: int, width: int = 64, max_width: int = 512, depth: int | None = None,
                 first_batch_norm: bool = True):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"images need 1 or 3 channels, got {channels}")
        self.depth = depth or default_depth(size)
        if size % 2**self.depth:
            raise ValueError(f"{size} px does not halve {self.depth} times")
        self.size, self.channels = size, channels
        self.widths = pyramid_widths(self.depth, width, max_width)
        self.bottom = size // 2**self.depth
        c, blocks = channels, []
        for i, w in enumerate(self.widths):
            blocks.append(down_block(c, w, batch_norm=first_batch_norm or i > 0))
            c = w
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class Encoder(nn.Module):
    """G_E (and GANomaly's second encoder E): image -> latent vector z of shape (N, nz, 1, 1)."""

    def __init__(self, channels: int, size: int, nz: int = 100, width: int = 64, max_width: int = 512,
                 depth: int | None = None):
        super().__init__()
        self.pyramid = Pyramid(channels, size, width, max_width, depth)
        self.to_latent = nn.Conv2d(self.pyramid.widths[-1], nz, self.pyramid.bottom, 1, 0)
        self.nz = nz
        dcgan_init(self)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feats = self.pyramid(x)
        z = self.to_latent(feats[-1])
        return (z, feats) if return_features else z


class Decoder(nn.Module):
    """G_D: z -> image, mirroring `Pyramid`; optional skip connections (none / plain / CCB) from the encoder.

    dropout: rate of the Dropout after the ``dropout_blocks`` innermost up-sampling blocks (lowest resolutions;
    pix2pix's U-Net, on which Skip-GANomaly builds, puts its dropout there too); 0 disables it.
    """

    def __init__(self, channels: int, size: int, nz: int = 100, width: int = 64, max_width: int = 512,
                 depth: int | None = None, skip: str = "none", ccb_lengths: Sequence[int] = PAPER_CCB_LENGTHS,
                 dropout: float = 0.0, dropout_blocks: int = 2):
        super().__init__()
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
        self.depth = depth or default_depth(size)
        self.size, self.channels, self.skip = size, channels, skip
        self.widths = pyramid_widths(self.depth, width, max_width)
        self.bottom = size // 2**self.depth
        w = self.widths
        self.from_latent = nn.Sequential(nn.ConvTranspose2d(nz, w[-1], self.bottom, 1, 0, bias=False),
                                         nn.BatchNorm2d(w[-1]), nn.ReLU(inplace=False))
        levels = self.depth - 1  # skip levels: every encoder level but the bottom one
        self.ccb_lengths = ccb_lengths_for_levels(ccb_lengths, levels) if skip == "ccb" else ()
        ups, c = [], w[-1]
        for j in range(self.depth - 1, 0, -1):  # output at the resolution of encoder level j-1
            inner = (self.depth - 1 - j) < dropout_blocks
            ups.append(up_block(c, w[j - 1], dropout if inner else 0.0))
            c = w[j - 1] * (1 if skip == "none" else 2)
        self.ups = nn.ModuleList(ups)
        self.to_image = nn.Sequential(nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh())
        if skip == "ccb":  # connection of encoder level i (shallowest first)
            self.connections = nn.ModuleList(ChainOfConvBlocks(w[i], n) for i, n in enumerate(self.ccb_lengths))
        else:
            self.connections = nn.ModuleList(nn.Identity() for _ in range(levels if skip == "plain" else 0))
        dcgan_init(self)

    def forward(self, z: torch.Tensor, feats: list[torch.Tensor] | None = None) -> torch.Tensor:
        if self.skip != "none" and feats is None:
            raise ValueError(f"skip={self.skip!r} needs the encoder features")
        h = self.from_latent(z)
        for k, up in enumerate(self.ups):
            level = self.depth - 2 - k  # encoder level whose resolution this block outputs
            h = up(h)
            if self.skip != "none":
                h = torch.cat([h, self.connections[level](feats[level])], dim=1)
        return self.to_image(h)

    def conv_blocks_per_level(self) -> list[int]:
        """Conv blocks in each CCB connection, bottom (deepest) level first (0 for plain/none)."""
        if self.skip != "ccb":
            return [0] * len(self.connections)
        return [c.n_conv for c in reversed(self.connections)]


class AdversarialAutoencoder(nn.Module):
    """The generator G of GANomaly / Skip-GANomaly / CCB-AAE: G_E -> (skip connections) -> G_D, plus GANomaly's
    second encoder E (``second_encoder=True``) that maps the reconstruction back to a latent vector.

    forward(x) -> (x_hat, z, z_hat), z_hat None without the second encoder; x, x_hat in [-1, 1].
    """

    def __init__(self, channels: int, size: int, nz: int = 100, width: int = 64, max_width: int = 512,
                 skip: str = "ccb", ccb_lengths: Sequence[int] = PAPER_CCB_LENGTHS, dropout: float = 0.5,
                 dropout_blocks: int = 2, second_encoder: bool = False, depth: int | None = None):
        super().__init__()
        self.channels, self.size, self.skip = channels, size, skip
        self.encoder = Encoder(channels, size, nz, width, max_width, depth)
        self.decoder = Decoder(channels, size, nz, width, max_width, self.encoder.pyramid.depth, skip, ccb_lengths,
                               dropout, dropout_blocks)
        self.encoder2 = Encoder(channels, size, nz, width, max_width, depth) if second_encoder else None

    @property
    def depth(self) -> int:
        return self.encoder.pyramid.depth

    def forward(self, x: torch.Tensor):
        z, feats = self.encoder(x, return_features=True)
        x_hat = self.decoder(z, feats if self.skip != "none" else None)
        z_hat = self.encoder2(x_hat) if self.encoder2 is not None else None
        return x_hat, z, z_hat


class Discriminator(nn.Module):
    """DCGAN discriminator used as classifier *and* feature extractor (paper, Sec. "Proposed Method").

    forward(x) -> (logit (N,), features (N, F)): the features are the last down-sampling block's output,
    flattened; the logit comes from a linear conv over that grid. No BatchNorm on the first block (DCGAN).
    """

    def __init__(self, channels: int, size: int, width: int = 64, max_width: int = 512, depth: int | None = None):
        super().__init__()
        self.pyramid = Pyramid(channels, size, width, max_width, depth, first_batch_norm=False)
        self.classifier = nn.Conv2d(self.pyramid.widths[-1], 1, self.pyramid.bottom, 1, 0)
        dcgan_init(self)

    def forward(self, x: torch.Tensor):
        feats = self.pyramid(x)[-1]
        return self.classifier(feats).flatten(), feats.flatten(1)


class JointDiscriminator(nn.Module):
    """BiGAN discriminator D(x, z) of EGBAD: an image branch (DCGAN pyramid), a latent branch (linear layer),
    and a joint layer whose output is the intermediate feature used by EGBAD's feature-matching score.

    forward(x, z) -> (logit (N,), features (N, hidden)). Dropout ``dropout`` after each joint layer (EGBAD: 0.2).
    """

    def __init__(self, channels: int, size: int, nz: int = 100, width: int = 64, max_width: int = 512,
                 hidden: int = 256, dropout: float = 0.2, depth: int | None = None):
        super().__init__()
        self.pyramid = Pyramid(channels, size, width, max_width, depth, first_batch_norm=False)
        x_dim = self.pyramid.widths[-1] * self.pyramid.bottom**2
        self.z_branch = nn.Sequential(nn.Linear(nz, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout))
        self.joint = nn.Sequential(nn.Linear(x_dim + hidden, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, 1)
        dcgan_init(self)

    def forward(self, x: torch.Tensor, z: torch.Tensor):
        hx = self.pyramid(x)[-1].flatten(1)
        hz = self.z_branch(z.flatten(1))
        feats = self.joint(torch.cat([hx, hz], dim=1))
        return self.classifier(feats).flatten(), feats


def dcgan_init(module: nn.Module) -> nn.Module:
    """DCGAN initialisation (Radford et al.; also GANomaly's): conv weights N(0, 0.02), BatchNorm scale
    N(1, 0.02) and shift 0. Applied to every network of this family after construction."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----- value ranges, losses, freezing ---------------------------------------------------------------------
def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> the networks' [-1, 1]."""
    return x * 2.0 - 1.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network output -> [0, 1] images."""
    return (x + 1.0) / 2.0


def image_l1(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute error (EGBAD's and AnoGAN's residual loss)."""
    return (x - x_hat).abs().flatten(1).mean(1)


def discriminator_bce(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D on real (label 1) and reconstructed/generated (label 0) images (-(CCB-AAE
    Eq. 4))."""
    return 0.5 * (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                  + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))


def generator_bce(logit_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN generator loss (-log D(G(z))): for the DCGAN of AnoGAN and the BiGAN of EGBAD."""
    return F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` get no gradient inside the block (gradients still flow through them to the
    inputs, e.g. from D to G); their previous ``requires_grad`` flags are restored afterwards."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


# ----- WGAN-GP (Gulrajani et al. 2017): shared by the Wasserstein critics (f-AnoGAN) ----------------------
def interpolates(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random points on the straight lines between real and fake samples: eps * real + (1 - eps) * fake with
    one eps ~ U[0, 1] per sample (drawn from ``generator`` unless given). Returns (points, eps)."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake batches differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}")
    if eps is None:
        eps = torch.rand(len(real), generator=generator).to(real.device)
    eps = eps.reshape(len(real), *([1] * (real.ndim - 1))).to(real.dtype)
    return eps * real.detach() + (1 - eps) * fake.detach(), eps


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x critic(x_mix)||_2 - 1)^2] on `interpolates` of real and fake samples.

    ``critic(x)`` returns one value per sample (or a tuple whose first element does). The graph is kept
    (create_graph) so that the penalty trains the critic."""
    mix, _ = interpolates(real, fake, eps, generator)
    mix.requires_grad_(True)
    out = critic(mix)
    out = out[0] if isinstance(out, tuple) else out
    grad, = torch.autograd.grad(out.sum(), mix, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
