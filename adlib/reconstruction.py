"""The shared skeleton of every detector that scores an image by how badly a network trained on normals rebuilds
it (AE, VAE, SSIM-AE, MemAE, f-AnoGAN, EGBAD, SALAD, the GANomaly family).

The base owns what was written once per detector before, so that a method keeps only its network, its loss and
its score:

- **the checkpoint criterion**, one explicit choice per detector (``checkpoint_on``), recorded in the training
  history (``history.checkpoint_criterion``) and from there in every result row:

  ============== ==========================================================================================
  "val_auroc"    keep the step with the best validation AUROC (``fit(..., val=...)`` with both classes)
  "holdout_loss" keep the step with the lowest loss on held-out training normals (``holdout_fraction``)
  "last"         keep the last step
  "auto"         val_auroc when ``fit`` gets a validation split with both classes, else holdout_loss when
                 there is a hold-out, else last (the rule every reconstruction detector used before)
  ============== ==========================================================================================

- **eval-mode batched scoring** (`_map`): every network in eval mode, no gradient graph, fixed batches, so a
  score does not depend on the other images of its batch;
- **reconstructions, anomaly maps and embeddings** from three small hooks: `_reconstruction` (x̂ of a float
  [0, 1] batch, in [0, 1] units), `_embedding`, and the pixel error `map_error` ("square" or "abs",
  averaged over channels).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Callable

import numpy as np
import torch

from .data.imageset import ImageSet
from .detectors import Detector
from .training import (Monitor, TrainHistory, choose_device, holdout_loss_monitor, split_holdout, train_loop,
                       validation_auroc_monitor)

CHECKPOINT_CRITERIA = ("auto", "val_auroc", "holdout_loss", "last")


class ReconstructionDetector(Detector):
    """Base of the reconstruction detectors; see the module docstring for what it owns.

    Subclasses set ``eval_modules`` (the attribute names of the networks used at scoring time), call
    `_setup` in ``__init__``, and implement `_error` (one score per image of a float [0, 1] batch), and where
    they have them `_reconstruction` and `_embedding`. In ``fit`` they build their networks and phases, then
    call `_split` and `_train` (or `_checkpoint_monitor` + `train_loop` for several stages).
    """

    eval_modules: tuple[str, ...] = ("model",)
    map_error: str = "square"  # per-pixel error of the anomaly maps: "square" (x - x̂)² or "abs" |x - x̂|
    score_batch_size: int = 128

    def _setup(self, hp: dict, *, checkpoint_on: str, checkpoint_path, device, progress: bool) -> None:
        if checkpoint_on not in CHECKPOINT_CRITERIA:
            raise ValueError(f"checkpoint_on must be one of {', '.join(CHECKPOINT_CRITERIA)}, got {checkpoint_on!r}")
        self.hp = {**hp, "checkpoint_on": checkpoint_on}
        self.checkpoint_path, self.progress = checkpoint_path, progress
        self.device = choose_device(device)
        self.history: TrainHistory | None = None
        for name in self.eval_modules:
            setattr(self, name, None)

    # ----- the three hooks ---------------------------------------------------------------------------------
    @abstractmethod
    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        """The anomaly score per image of a float [0, 1] batch (any device); higher = more anomalous."""

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        """x̂ of a float [0, 1] batch on the device, in [0, 1] units (not clamped)."""
        raise NotImplementedError(f"{self.name} does not reconstruct images")

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no embedding")

    # ----- training helpers ---------------------------------------------------------------------------------
    def _split(self, train: ImageSet) -> tuple[ImageSet, ImageSet]:
        """(images to train on, held-out normals for the hold-out criterion), both seeded."""
        hp = self.hp
        fit_set, holdout = split_holdout(train, hp["holdout_fraction"], hp["seed"])
        if len(holdout) and hp.get("max_holdout") is not None:
            holdout = holdout.sample(hp["max_holdout"], hp["seed"])
        return fit_set, holdout

    def checkpoint_criterion(self, val: ImageSet | None, holdout: ImageSet | None) -> str:
        """The criterion this fit uses: ``checkpoint_on`` itself, or what "auto" resolves to for these splits."""
        wanted = self.hp["checkpoint_on"]
        has_val = val is not None and len(np.unique(val.labels)) == 2
        has_holdout = holdout is not None and len(holdout) > 0
        if wanted == "val_auroc" and not has_val:
            raise ValueError(f"{self.name}: checkpoint_on='val_auroc' needs fit(..., val=...) with normal and "
                             "anomalous validation images; pass them or choose checkpoint_on='holdout_loss'")
        if wanted == "holdout_loss" and not has_holdout:
            raise ValueError(f"{self.name}: checkpoint_on='holdout_loss' needs a hold-out; set holdout_fraction > 0")
        if wanted != "auto":
            return wanted
        return "val_auroc" if has_val else "holdout_loss" if has_holdout else "last"

    def _checkpoint_monitor(self, val: ImageSet | None, holdout: ImageSet | None,
                            holdout_loss: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                            val_scores: Callable[[ImageSet], np.ndarray] | None = None,
                            holdout_batch_size: int = 128) -> tuple[Monitor | None, str]:
        """(the Monitor that keeps the chosen checkpoint, or None for "last"; the criterion's name).

        holdout_loss(batch, step): the mean loss of a hold-out batch (default: the mean score `_error`);
        val_scores(val): validation scores for the AUROC (default: `score`)."""
        hp, criterion = self.hp, self.checkpoint_criterion(val, holdout)
        if criterion == "val_auroc":
            return validation_auroc_monitor(val_scores or self.score, val, hp["eval_every"], hp["patience"]), criterion
        if criterion == "holdout_loss":
            loss = holdout_loss or (lambda b, step: self._error(b).mean())
            return holdout_loss_monitor(loss, holdout, holdout_batch_size, self.device, hp["eval_every"],
                                        hp["patience"]), criterion
        return None, criterion

    def _train(self, models: dict, phases: list, fit_set: ImageSet, monitor: Monitor | None, criterion: str, *,
               desc: str, steps: int | None = None, seed: int | None = None, checkpoint_path=None,
               **loop_kwargs) -> TrainHistory:
        """`train_loop` with this detector's sizes, seed, device and progress bar; records the criterion."""
        hp = self.hp
        history = train_loop(models, phases, fit_set, steps=hp["steps"] if steps is None else steps,
                             batch_size=hp["batch_size"], seed=hp["seed"] if seed is None else seed, monitor=monitor,
                             checkpoint_path=self.checkpoint_path if checkpoint_path is None else checkpoint_path,
                             device=self.device, desc=desc, progress=self.progress, **loop_kwargs)
        history.checkpoint_criterion = criterion
        return history

    # ----- scoring --------------------------------------------------------------------------------------------
    def _map(self, images, fn, batch_size: int | None = None) -> list:
        """``fn(batch)`` per float batch, every network of ``eval_modules`` in eval mode, no gradient graph."""
        return self._eval_batches(images, fn, self._scoring_modules(), batch_size or self.score_batch_size)

    def _scoring_modules(self) -> tuple:
        return tuple(getattr(self, name, None) for name in self.eval_modules)

    def score(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: self._error(b).cpu())).double().numpy()

    def reconstruct(self, images) -> torch.Tensor:
        return torch.cat(self._map(images, lambda b: self._reconstruction(b).clamp(0, 1).cpu()))

    def anomaly_maps(self, images) -> np.ndarray:
        def pixel_error(b):
            diff = self._reconstruction(b) - b
            return (diff.abs() if self.map_error == "abs" else diff.pow(2)).mean(1).cpu()

        return torch.cat(self._map(images, pixel_error)).numpy()

    def embed(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: self._embedding(b).flatten(1).cpu())).numpy()

    def supports(self, capability: str) -> bool:
        """reconstruct / anomaly_maps need `_reconstruction`, embed needs `_embedding` (or an override)."""
        cls = type(self)
        if getattr(cls, capability) is not getattr(ReconstructionDetector, capability):
            return super().supports(capability)
        hook = "_embedding" if capability == "embed" else "_reconstruction"
        return getattr(cls, hook) is not getattr(ReconstructionDetector, hook)
