"""f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): a baseline of SALAD's Table I.

Two stages, each with `adlib.training.train_loop`:
1. A Wasserstein GAN with gradient penalty (Gulrajani et al. 2017) on normal images: generator G (the DCGAN
   decoder of `adlib.gan`, z ~ N(0, I) of size ``nz``) and critic C (DCGAN-style conv 4x4 stride 2 +
   LeakyReLU blocks *without* BatchNorm - a per-sample gradient penalty is ill-defined with batch statistics -
   then a linear layer). Critic loss E[C(G(z))] - E[C(x)] + 10 * GP (`adlib.gan.gradient_penalty`, on random
   interpolates of real and generated images), ``n_critic`` = 5 critic steps per generator step, Adam lr 1e-4,
   betas (0, 0.9) (Gulrajani et al.).
2. izi_f encoder training: an encoder E (the DCGAN encoder of `adlib.gan`) maps x to z with G and C fixed, minimising
   1/n ||x - G(E(x))||^2 + kappa / n_f ||f(x) - f(G(E(x)))||^2, where f is the critic's last feature map
   (kappa = 1).
Score (Schlegl et al. Eq. 8): the same quantity per image, A(x) = A_R(x) + kappa * A_D(x) (image residual +
critic-feature residual). Kept encoder checkpoint: best validation AUROC when ``fit`` gets a validation split,
else the lowest izi_f loss on held-out normals (the GAN stage keeps its last weights). G, C and E are in eval mode
whenever anything is scored.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.imageset import ImageSet
from ..detectors import register
from ..gan import Decoder, Encoder, dcgan_depth, dcgan_init, frozen, gradient_penalty, pyramid_widths, to_signed, \
    to_unit
from ..reconstruction import ReconstructionDetector
from ..training import DivergenceGuard, Phase, TrainHistory, seed_everything, step_generator, train_loop


class Critic(nn.Module):
    """WGAN critic: forward(x) -> (value (N,), features (N, F)); no normalisation layers."""

    def __init__(self, channels: int, size: int, width: int = 32, max_width: int = 256, depth: int | None = None):
        super().__init__()
        depth = depth or dcgan_depth(size)
        widths = pyramid_widths(depth, width, max_width)
        layers, c = [], channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c * (size // 2**depth) ** 2, 1)
        dcgan_init(self)

    def forward(self, x: torch.Tensor):
        f = self.features(x).flatten(1)
        return self.out(f).flatten(), f


@register("f_anogan")
class FAnoGANDetector(ReconstructionDetector):
    """f-AnoGAN: WGAN-GP, then izi_f encoder; score = image residual + kappa * critic-feature residual."""

    eval_modules = ("generator", "critic", "encoder")

    latent_phase = "encoder"  # latent declaration (MADDR): z = E(x), trained in the izi_f stage

    def __init__(self, nz: int = 128, width: int = 32, max_width: int = 256, gan_steps: int = 2000,
                 encoder_steps: int = 1000, n_critic: int = 5, gp_weight: float = 10.0, kappa: float = 1.0,
                 batch_size: int = 64, lr: float = 1e-4, betas: tuple[float, float] = (0.0, 0.9), seed: int = 0,
                 holdout_fraction: float = 0.1, max_holdout: int = 256, eval_every: int = 100,
                 patience: int | None = None, checkpoint_on: str = "auto", checkpoint_path: str | None = None,
                 device: str | None = None, progress: bool = True):
        self._setup(dict(nz=nz, width=width, max_width=max_width, gan_steps=gan_steps, encoder_steps=encoder_steps,
                         n_critic=n_critic, gp_weight=gp_weight, kappa=kappa, batch_size=batch_size, lr=lr,
                         betas=tuple(betas), seed=seed, holdout_fraction=holdout_fraction, max_holdout=max_holdout,
                         eval_every=eval_every, patience=patience), checkpoint_on=checkpoint_on,
                    checkpoint_path=checkpoint_path, device=device, progress=progress)
        self.gan_history: TrainHistory | None = None

    def _z(self, n: int, step: int, stream: int) -> torch.Tensor:
        return torch.randn(n, self.hp["nz"], 1, 1, generator=step_generator(self.hp["seed"], step, stream)).to(self.device)

    # ----- stage 1: WGAN-GP -----------------------------------------------------------------------------
    def _critic_loss(self, batch: torch.Tensor, step: int, rows=None):
        x = to_signed(batch)
        stream = 10 + (int(rows[0]) % 1000 if rows is not None and len(rows) else 0)
        with torch.no_grad():
            fake = self.generator(self._z(len(x), step, stream))
        gp = gradient_penalty(self.critic, x, fake, generator=step_generator(self.hp["seed"], step, stream + 1))
        wasserstein = self.critic(x)[0].mean() - self.critic(fake)[0].mean()
        return -wasserstein + self.hp["gp_weight"] * gp, {"W distance": float(wasserstein.detach()),
                                                          "GP": float(gp.detach())}

    def _generator_loss(self, batch: torch.Tensor, step: int):
        with frozen(self.critic):
            return -self.critic(self.generator(self._z(len(batch), step, 3)))[0].mean()

    # ----- stage 2: izi_f -------------------------------------------------------------------------------
    def _izi_f(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image A_R (pixel MSE) and A_D (critic-feature MSE) of x vs G(E(x))."""
        x = to_signed(batch.to(self.device))
        z = self.encoder(x)
        self.emit_latent(z)
        x_hat = self.generator(z)
        f_x, f_hat = self.critic(x)[1], self.critic(x_hat)[1]
        return (x - x_hat).pow(2).flatten(1).mean(1), (f_x - f_hat).pow(2).mean(1)

    def _encoder_loss(self, batch: torch.Tensor, step: int):
        with frozen(self.generator, self.critic):
            residual, feature = self._izi_f(batch)
        return residual.mean() + self.hp["kappa"] * feature.mean(), {"A_R": float(residual.mean().detach()),
                                                                     "A_D": float(feature.mean().detach())}

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        c, s = train.channels, train.size
        self.channels, self.size, depth = c, s, dcgan_depth(s)
        self.generator = Decoder(c, s, hp["nz"], hp["width"], hp["max_width"], depth, "none").to(self.device)
        self.critic = Critic(c, s, hp["width"], hp["max_width"], depth).to(self.device)
        self.encoder = Encoder(c, s, hp["nz"], hp["width"], hp["max_width"], depth).to(self.device)
        fit_set, holdout = self._split(train)
        ckpt = self.checkpoint_path
        opt_c = torch.optim.Adam(self.critic.parameters(), lr=hp["lr"], betas=hp["betas"])
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp["lr"], betas=hp["betas"])
        phases = [Phase("critic", opt_c, self._critic_loss, repeats=hp["n_critic"], pass_indices=True),
                  Phase("generator", opt_g, self._generator_loss)]
        self.gan_history = train_loop({"generator": self.generator, "critic": self.critic}, phases, fit_set,
                                      steps=hp["gan_steps"], batch_size=hp["batch_size"], seed=hp["seed"],
                                      divergence=DivergenceGuard(), checkpoint_path=f"{ckpt}.gan" if ckpt else None,
                                      device=self.device, desc="f-AnoGAN WGAN-GP", progress=self.progress)
        self.generator.eval()
        self.critic.eval()
        opt_e = torch.optim.Adam(self.encoder.parameters(), lr=hp["lr"], betas=hp["betas"])
        monitor, criterion = self._checkpoint_monitor(val, holdout)
        phases = self.with_latent_hook([Phase("encoder", opt_e, self._encoder_loss)], fit_set)
        self.history = self._train({"encoder": self.encoder}, phases, fit_set, monitor, criterion,
                                   desc="f-AnoGAN izi_f", steps=hp["encoder_steps"], seed=hp["seed"] + 1,
                                   checkpoint_path=f"{ckpt}.enc" if ckpt else None)
        # one record of both stages: the encoder stage's history carries the GAN stage's curves as logs
        self.history.images_seen += self.gan_history.images_seen
        self.history.seconds += self.gan_history.seconds
        self.history.extras.update(gan_status=self.gan_history.status, gan_steps=hp["gan_steps"])
        return self

    # ----- inference ----------------------------------------------------------------------------------
    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        residual, feature = self._izi_f(batch)
        return residual + self.hp["kappa"] * feature

    def score_components(self, images) -> dict[str, np.ndarray]:
        both = torch.cat(self._map(images, lambda b: torch.stack(self._izi_f(b), 1).cpu())).double().numpy()
        return {"residual": both[:, 0], "feature": both[:, 1]}

    def score(self, images) -> np.ndarray:
        c = self.score_components(images)
        return c["residual"] + self.hp["kappa"] * c["feature"]

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        return to_unit(self.generator(self.encoder(to_signed(batch))))

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        return self.encoder(to_signed(batch))

    def latent_dim(self) -> int:
        return self.hp["nz"]

    def encode_latent(self, batch: torch.Tensor) -> torch.Tensor:
        return self.encoder(to_signed(batch))
