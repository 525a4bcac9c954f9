"""EGBAD: Efficient GAN-Based Anomaly Detection (Zenati et al. 2018), a baseline of the CCB-AAE paper (Table 1-5).

A BiGAN: an encoder E (image -> z), a generator G (z -> image) and a joint discriminator D(x, z) that tells
pairs (x, E(x)) from pairs (G(z), z), z ~ N(0, I). D is trained with binary cross-entropy; E and G together
with the swapped labels (non-saturating). The networks are the DCGAN blocks of `adlib.gan`
(E as G_E, G as G_D without skip connections or dropout, D with an image branch, a latent branch and a joint
layer with dropout 0.2), at the standard DCGAN depth (down to a 4 x 4 grid, `adlib.gan.dcgan_depth`).

Score (EGBAD, feature-matching variant): A(x) = alpha * ||x - G(E(x))||_1 + (1 - alpha) * ||f(x, E(x)) -
f(G(E(x)), E(x))||_1 (per-image means), alpha = 0.9, where f is D's joint layer. Checkpoint criterion
(`adlib.reconstruction`): the validation AUROC of that score, or the mean residual on held-out normals.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.imageset import ImageSet
from ..detectors import register
from ..reconstruction import ReconstructionDetector
from ..training import DivergenceGuard, Phase, seed_everything, step_generator
from ..gan import Decoder, Encoder, JointDiscriminator, dcgan_depth, discriminator_bce, frozen, image_l1, to_signed, \
    to_unit


@register("egbad")
class EGBADDetector(ReconstructionDetector):
    """BiGAN-based detector; ``alpha`` weighs the residual against the discriminator feature loss."""

    eval_modules = ("encoder", "generator", "discriminator")
    map_error = "abs"

    def __init__(self, nz: int = 100, width: int = 64, max_width: int = 512, depth: int | None = None,
                 hidden: int = 256, d_dropout: float = 0.2, steps: int = 2000, batch_size: int = 64, lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), alpha: float = 0.9, seed: int = 0,
                 holdout_fraction: float = 0.1, max_holdout: int = 256, eval_every: int = 100,
                 patience: int | None = None, collapse_window: int = 200, checkpoint_on: str = "auto",
                 checkpoint_path: str | None = None, device: str | None = None, progress: bool = True):
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self._setup(dict(nz=nz, width=width, max_width=max_width, depth=depth, hidden=hidden, d_dropout=d_dropout,
                         steps=steps, batch_size=batch_size, lr=lr, betas=tuple(betas), alpha=alpha, seed=seed,
                         holdout_fraction=holdout_fraction, max_holdout=max_holdout, eval_every=eval_every,
                         patience=patience, collapse_window=collapse_window), checkpoint_on=checkpoint_on,
                    checkpoint_path=checkpoint_path, device=device, progress=progress)
        self.alpha = alpha

    def _z(self, n: int, step: int, stream: int) -> torch.Tensor:
        g = step_generator(self.hp["seed"], step, stream)
        return torch.randn(n, self.hp["nz"], 1, 1, generator=g).to(self.device)

    def _discriminator_loss(self, batch: torch.Tensor, step: int):
        x = to_signed(batch)
        z = self._z(len(x), step, 11)
        with torch.no_grad():
            ex, gz = self.encoder(x), self.generator(z)
        real, _ = self.discriminator(x, ex)
        fake, _ = self.discriminator(gz, z)
        return discriminator_bce(real, fake)

    def _generator_loss(self, batch: torch.Tensor, step: int):
        """E and G fool D: (x, E(x)) labelled fake, (G(z), z) labelled real (swapped BiGAN labels)."""
        x = to_signed(batch)
        z = self._z(len(x), step, 11)
        with frozen(self.discriminator):
            real, _ = self.discriminator(x, self.encoder(x))
            fake, _ = self.discriminator(self.generator(z), z)
        return discriminator_bce(fake, real)

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        c, s = train.channels, train.size
        self.channels, self.size = c, s
        self.depth = hp["depth"] or dcgan_depth(s)
        self.encoder = Encoder(c, s, hp["nz"], hp["width"], hp["max_width"], self.depth).to(self.device)
        self.generator = Decoder(c, s, hp["nz"], hp["width"], hp["max_width"], self.depth, "none").to(self.device)
        self.discriminator = JointDiscriminator(c, s, hp["nz"], hp["width"], hp["max_width"], hp["hidden"],
                                                hp["d_dropout"], self.depth).to(self.device)
        fit_set, holdout = self._split(train)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp["lr"], betas=hp["betas"])
        opt_g = torch.optim.Adam(list(self.encoder.parameters()) + list(self.generator.parameters()), lr=hp["lr"],
                                 betas=hp["betas"])
        phases = [Phase("discriminator", opt_d, self._discriminator_loss),
                  Phase("generator+encoder", opt_g, self._generator_loss)]
        monitor, criterion = self._checkpoint_monitor(val, holdout, lambda b, step: self._components_batch(b)[0].mean())
        self.history = self._train({"encoder": self.encoder, "generator": self.generator,
                                    "discriminator": self.discriminator}, phases, fit_set, monitor, criterion,
                                   desc="EGBAD",
                                   divergence=DivergenceGuard("discriminator", collapse_window=hp["collapse_window"]))
        return self

    # ----- inference ----------------------------------------------------------------------------------
    def _components_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_signed(batch.to(self.device))
        ex = self.encoder(x)
        x_hat = self.generator(ex)
        _, f_real = self.discriminator(x, ex)
        _, f_fake = self.discriminator(x_hat, ex)
        return image_l1(x, x_hat), (f_real - f_fake).abs().mean(1)

    def score_components(self, images) -> dict[str, np.ndarray]:
        parts = self._map(images, lambda b: torch.stack(self._components_batch(b), 1).cpu())
        both = torch.cat(parts).double().numpy()
        return {"residual": both[:, 0], "feature": both[:, 1]}

    def score(self, images) -> np.ndarray:
        c = self.score_components(images)
        return self.alpha * c["residual"] + (1 - self.alpha) * c["feature"]

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        residual, feature = self._components_batch(batch)
        return self.alpha * residual + (1 - self.alpha) * feature

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        return to_unit(self.generator(self.encoder(to_signed(batch))))

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        return self.encoder(to_signed(batch))
