"""The DPA detector and its ablation variants, registered as "dpa".

loss = "perceptual"          relative-perceptual-L1 only (the proposed method)
       "l1"                  pixel L1 only (the plain autoencoder baseline, Table 4 row 1)
       "perceptual+l1"       perceptual + l1_weight * L1            (rows 6-7: weights 1 and 0.1)
       "perceptual+adv"      perceptual + adv_weight * WGAN-GP term  (rows 4-5)
       "perceptual+l1+adv"   all three                              (rows 8-9)
The anomaly score is the reconstruction part of the training loss, per image (no adversarial term).
progressive=True grows 8 -> ... -> size px with the loss layer deepening in step (Schedule.grow);
progressive=False trains at the final size directly (Schedule.fixed).
Latent declaration (for MADDR, `adlib.detectors.LatentHook`): z = the bottleneck of the autoencoder, computed
in the "autoencoder" phase.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ...data.imageset import ImageSet
from ...detectors import register
from ...reconstruction import ReconstructionDetector
from ...training import (Phase, ResourceMeter, TrainHistory, choose_device, seed_everything,
                         split_holdout, train_loop)
from .losses import (PerceptualLoss, adversarial_loss, critic_loss_wgan_gp, l1_per_image,
                     relative_perceptual_l1)
from .network import Critic, PerceptualAutoencoder, downsample, upsample
from .progressive import Schedule, default_layers

LOSSES = ("perceptual", "l1", "perceptual+l1", "perceptual+adv", "perceptual+l1+adv")


def resize_to(x: torch.Tensor, res: int) -> torch.Tensor:
    """Average-pool a batch down to ``res`` px (res divides the batch size)."""
    factor = x.shape[-1] // res
    return x if factor == 1 else F.avg_pool2d(x, factor)


def merge_histories(first: TrainHistory | None, second: TrainHistory) -> TrainHistory:
    """One history over both parts (growing, then final-resolution training with early stopping)."""
    if first is None or not first.steps:
        return second
    off = first.steps[-1] + 1
    keys = list(dict.fromkeys([*first.losses, *second.losses]))
    nan1, nan2 = [float("nan")] * len(first.steps), [float("nan")] * len(second.steps)
    return TrainHistory(steps=first.steps + [s + off for s in second.steps],
                        losses={k: first.losses.get(k, nan1) + second.losses.get(k, nan2) for k in keys},
                        monitor_name=second.monitor_name, eval_steps=[s + off for s in second.eval_steps],
                        monitor_values=list(second.monitor_values),
                        best_step=None if second.best_step is None else second.best_step + off,
                        best_value=second.best_value, stopped_early=second.stopped_early, status=second.status,
                        seconds=first.seconds + second.seconds, images_seen=first.images_seen + second.images_seen,
                        extras={"growth_steps": off})


@register("dpa")
class DPADetector(ReconstructionDetector):
    """Deep Perceptual Autoencoder (Shvetsova et al. 2021) with progressive growing and ablation losses.

    Sizes: ``latent``/``latent_spatial``/``widths`` as in PerceptualAutoencoder. Loss layers: ``layers``
    at the final resolution (default: the authors' layer for that size); with progressive growing the
    lower resolutions use ``DEFAULT_LAYERS`` unless ``layer_schedule`` overrides them.
    Training length: ``stage_steps`` (stabilise) and ``transition_steps`` per growing stage, then up to
    ``steps`` at the final size with early stopping on held-out normals (``patience`` evaluations).
    """

    latent_phase = "autoencoder"  # the phase whose loss computes z (the bottleneck), see Detector.with_latent_hook
    eval_modules = ("model",)

    def __init__(self, loss: str = "perceptual", layers: tuple[str, ...] | str | None = None,
                 progressive: bool = False, start_size: int = 8, stage_steps: int = 200,
                 transition_steps: int = 200, layer_schedule: dict | None = None,
                 latent: int = 16, latent_spatial: int = 1, widths: int | list[int] = 16,
                 steps: int = 1000, batch_size: int = 128, lr: float | None = None,
                 l1_weight: float = 0.1, adv_weight: float = 0.1, arch: str = "vgg19", weights: str = "auto",
                 seed: int = 0, holdout_fraction: float = 0.1, eval_every: int = 50, patience: int | None = 4,
                 checkpoint_path: str | None = None, device: str | None = None, progress: bool = True,
                 cache_targets: bool = True, cache_mb: float = 1024.0, checkpoint_on: str = "holdout_loss"):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if progressive and "adv" in loss:
            raise ValueError("the adversarial ablation rows are trained without progressive growing (Table 4)")
        self.loss_name = loss
        self.uses_perceptual, self.uses_l1, self.uses_adv = "perceptual" in loss, "l1" in loss, "adv" in loss
        self.final_layers = (layers,) if isinstance(layers, str) else (tuple(layers) if layers else None)
        self.hp = dict(loss=loss, progressive=progressive, start_size=start_size, stage_steps=stage_steps,
                       transition_steps=transition_steps, latent=latent, latent_spatial=latent_spatial,
                       widths=widths, steps=steps, batch_size=batch_size,
                       lr=lr if lr is not None else (1e-3 if progressive else 2e-3),  # the authors' rates
                       l1_weight=l1_weight if loss != "l1" else 1.0, adv_weight=adv_weight, arch=arch, seed=seed,
                       holdout_fraction=holdout_fraction, eval_every=eval_every, patience=patience,
                       cache_targets=cache_targets, cache_mb=cache_mb, checkpoint_on=checkpoint_on)
        if checkpoint_on not in ("holdout_loss", "val_auroc", "last"):  # DPA's default: the authors' hold-out loss
            raise ValueError(f"checkpoint_on must be holdout_loss, val_auroc or last, got {checkpoint_on!r}")
        self.layer_schedule = dict(layer_schedule or {})
        self.perceptual = PerceptualLoss(arch, weights, seed=0) if self.uses_perceptual else None
        self.weights = self.perceptual.weights_source if self.perceptual else "none"
        info = self.perceptual.weights_info if self.perceptual else None
        self.weights_file, self.weights_sha256 = (info.file, info.sha256) if info is not None else ("", "")
        self.checkpoint_path, self.progress = checkpoint_path, progress
        self.device = choose_device(device)
        self.model: PerceptualAutoencoder | None = None
        self.critic: Critic | None = None
        self.schedule: Schedule | None = None
        self.history: TrainHistory | None = None

    # ----- loss -------------------------------------------------------------------------------
    def reconstruction_loss(self, x: torch.Tensor, recon: torch.Tensor, layers: tuple[str, ...]) -> torch.Tensor:
        """Per-image reconstruction loss (= anomaly score) for the chosen loss combination."""
        total = torch.zeros(len(x), device=x.device)
        if self.uses_perceptual:
            total = total + self.perceptual.per_image(x, recon, layers)
        if self.uses_l1:
            total = total + self.hp["l1_weight"] * l1_per_image(x, recon)
        return total

    def _make_schedule(self, size: int, steps_final: int) -> Schedule:
        hp = self.hp
        table = {**default_layers(hp["arch"]), **self.layer_schedule}
        final_layers = self.final_layers or table[size]
        table[size] = final_layers
        if not hp["progressive"]:
            return Schedule.fixed(size, final_layers, steps_final)
        return Schedule.grow(hp["start_size"], size, hp["stage_steps"], hp["transition_steps"], steps_final, table)

    def _inputs(self, batch: torch.Tensor, step: int):
        state = self.schedule.at(step)
        x = resize_to(batch, state.resolution)
        if state.alpha < 1.0:  # the input is also a blend of the new and the previous resolution
            x = state.alpha * x + (1 - state.alpha) * upsample(downsample(x))
        return state, x

    def _reconstruction_loss(self, offset: int, cache: dict | None = None):
        """Mean training loss of a batch at loop step ``step + offset`` (also the hold-out monitor's loss).
        cache: target features of every training image at the final resolution (rows = ``indices``)."""
        def loss(batch, step, indices=None):
            state, x = self._inputs(batch, step + offset)
            z = self.model.encode(x, state.resolution, state.alpha)  # = self.model(x, ...), with z kept
            self.emit_latent(z)
            recon = self.model.decode(z, state.resolution, state.alpha)
            if cache is not None and indices is not None and state.alpha == 1.0 and state.resolution == self._size:
                targets = {layer: cache[layer][indices.to(cache[layer].device)] for layer in state.layers}
                value = self.perceptual.per_image(x, recon, state.layers, target_features=targets)
                if self.uses_l1:
                    value = value + self.hp["l1_weight"] * l1_per_image(x, recon)
            else:
                value = self.reconstruction_loss(x, recon, state.layers)
            if state.alpha < 1.0:  # Eq. 3
                value = state.alpha * value + (1 - state.alpha) * self.reconstruction_loss(
                    downsample(x), downsample(recon), state.previous_layers)
            return value.mean(), recon, x
        return loss

    @torch.no_grad()
    def _target_cache(self, images: ImageSet) -> dict | None:
        """The backbone features of every (un-augmented) training image at the final resolution, computed once:
        they never change during training, so each step then runs the backbone on the reconstruction only.
        None when there is no perceptual term, caching is off, or the cache would exceed ``cache_mb``."""
        if not (self.uses_perceptual and self.hp["cache_targets"]):
            return None
        layers = self.final_loss_layers
        probe = self.perceptual.normalised_features(images.images[:1].float().div(255).to(self.device), layers)
        megabytes = sum(f[0].numel() for f in probe.values()) * 4 * len(images) / 2**20
        if megabytes > self.hp["cache_mb"]:
            return None
        parts: dict[str, list] = {layer: [] for layer in layers}
        for batch in images.batches(self.hp["batch_size"]):
            for layer, f in self.perceptual.normalised_features(batch.to(self.device), layers).items():
                parts[layer].append(f)
        return {layer: torch.cat(chunks) for layer, chunks in parts.items()}

    def _phases(self, optimizer, offset: int, cache: dict | None = None) -> list[Phase]:
        """The autoencoder phase, preceded (adversarial rows) by one WGAN-GP critic update per step."""
        rec = self._reconstruction_loss(offset, cache)
        phases = []
        if self.uses_adv:
            def critic_step(batch, step):
                state, x = self._inputs(batch, step + offset)
                with torch.no_grad():
                    fake = self.model(x, state.resolution, state.alpha)
                return critic_loss_wgan_gp(self.critic, x, fake)
            phases.append(Phase("critic", self.critic_opt, critic_step))

        def autoencoder_step(batch, step, indices=None):
            value, recon, _ = rec(batch, step, indices)
            if not self.uses_adv:
                return value
            adv = adversarial_loss(self.critic, recon)
            return value + self.hp["adv_weight"] * adv, {"reconstruction": float(value.detach()), "adversarial": float(adv.detach())}
        phases.append(Phase("autoencoder", optimizer, autoencoder_step, pass_indices=cache is not None))
        return self.with_latent_hook(phases, self._train_set)

    # ----- training ---------------------------------------------------------------------------
    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        if len(train) < 4:
            raise ValueError(f"DPA needs at least a few normal training images, got {len(train)}")
        seed_everything(hp["seed"])
        size = train.size
        self.channels, self.size = train.channels, size
        self.model = PerceptualAutoencoder(train.channels, size, hp["widths"], hp["latent"], hp["latent_spatial"])
        self.model.to(self.device)
        if self.perceptual:
            self.perceptual.to(self.device)
        if self.uses_adv:
            self.critic = Critic(train.channels, size).to(self.device)
            self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=hp["lr"], betas=(0.5, 0.9))
        self.schedule = self._make_schedule(size, hp["steps"])
        fit_set, holdout = split_holdout(train, hp["holdout_fraction"], hp["seed"])
        self._train_set = fit_set  # what the phases' batch indices refer to (latent hook)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=hp["lr"])
        models = {"autoencoder": self.model, **({"critic": self.critic} if self.uses_adv else {})}
        ckpt = self.checkpoint_path
        grow_history = None
        growth = self.schedule.growth_steps
        if growth:  # part 1: growing, no early stopping (losses of different stages are not comparable)
            grow_history = train_loop(models, self._phases(optimizer, 0), fit_set, steps=growth,
                                      batch_size=hp["batch_size"], seed=hp["seed"],
                                      checkpoint_path=f"{ckpt}.grow" if ckpt else None, device=self.device,
                                      desc="DPA growing", progress=self.progress)
        rec = self._reconstruction_loss(growth)
        monitor, criterion = self._checkpoint_monitor(val if hp["checkpoint_on"] == "val_auroc" else None, holdout,
                                                      lambda b, step: rec(b, step)[0],
                                                      holdout_batch_size=hp["batch_size"])
        self._size = size
        with ResourceMeter() as cache_meter:
            cache = self._target_cache(fit_set)
        self.cache_seconds = cache_meter.seconds if cache is not None else 0.0
        final = train_loop(models, self._phases(optimizer, growth, cache), fit_set, steps=hp["steps"],
                           batch_size=hp["batch_size"], seed=hp["seed"] + 7919, monitor=monitor,
                           checkpoint_path=f"{ckpt}.final" if ckpt else None, device=self.device,
                           desc=f"DPA {self.loss_name} {size}px", progress=self.progress)
        self.history = merge_histories(grow_history, final)
        self.history.checkpoint_criterion = criterion
        self.model.eval()
        return self

    # ----- inference --------------------------------------------------------------------------
    @property
    def final_loss_layers(self) -> tuple[str, ...]:
        if self.schedule is None:
            raise RuntimeError("call fit() before scoring")
        return self.schedule.stages[-1].layers

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        """The per-image reconstruction loss at the final resolution: the anomaly score."""
        batch = batch.to(self.device)
        return self.reconstruction_loss(batch, self.model(batch), self.final_loss_layers)

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode(batch)

    def anomaly_maps(self, images) -> np.ndarray:
        """Per-pixel perceptual difference (perceptual variants) or absolute residual (L1)."""
        layers = self.final_loss_layers

        def one(b):
            recon = self.model(b)
            if self.uses_perceptual:
                return self.perceptual.maps(b, recon, layers).cpu()
            return (b - recon).abs().mean(1).cpu()
        return torch.cat(self._map(images, one)).numpy()

    def perceptual_scores(self, images, layers: tuple[str, ...] | None = None, relative: bool = True) -> np.ndarray:
        """Per-image perceptual difference of the trained model at other ``layers`` than it was trained with (default:
        its own) and, with relative=False, without Eq. 1's denominator (the mean |difference| of the normalised
        features instead): what-if scores for teaching, no retraining. Needs a perceptual-loss variant."""
        if not self.uses_perceptual:
            raise ValueError("perceptual_scores needs a DPA trained with a perceptual loss")
        layers = tuple(layers or self.final_loss_layers)

        def one(b):
            target, recon = (self.perceptual.normalised_features(t, layers) for t in (b, self.model(b)))
            per_layer = [relative_perceptual_l1(target[l], recon[l]) if relative
                         else (target[l] - recon[l]).abs().flatten(1).mean(1) for l in layers]
            return torch.stack(per_layer).mean(0).cpu()
        return torch.cat(self._map(images, one)).double().numpy()

    def reconstruct(self, images) -> torch.Tensor:
        """The decoder output: for the perceptual loss a 'content tensor', not necessarily an image (not clamped)."""
        return torch.cat(self._map(images, lambda b: self.model(b).cpu()))

    def latent_dim(self) -> int:
        return self.model.latent * self.model.latent_spatial ** 2

    def encode_latent(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode(batch)

    @property
    def train_images_per_second(self) -> float:
        return self.history.images_per_second if self.history else float("nan")

    def config(self) -> dict:
        """Hyperparameters as a flat dict (for tables)."""
        out = copy.deepcopy(self.hp)
        out["layers"] = "+".join(self.final_loss_layers) if self.schedule else str(self.final_layers)
        out["weights"] = self.weights
        return out
