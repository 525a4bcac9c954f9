"""One interface for every anomaly detector, and a registry to create them by name.

A detector is fitted on training images (normal only; weakly supervised methods may also receive a
few anomalies or the validation split) and scores images: higher = more anomalous. Where a method has
them, it also gives anomaly maps, reconstructions and embeddings. A detector with a latent code may declare
it (`Detector.latent_phase` and three small methods) so that a latent wrapper (MADDR, `LatentHook`) can add
training terms on that code without knowing the detector; `latent_detectors()` lists those that do.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
import dataclasses
from typing import Callable

import numpy as np
import torch

from .data.imageset import ImageSet, checked_float_batches, require_marked


def _guard_fit(fit):
    """Wrap a subclass's fit so that test-split images can never reach a choice (training, early stopping,
    checkpoint or hyperparameter choice on `val`, few-shot anomalies). Bare tensors and arrays are refused too:
    only an ImageSet carries the protocol's test mark."""

    @functools.wraps(fit)
    def guarded(self, train, val=None, anomalies=None, *args, **kwargs):
        if train is None:
            raise TypeError(f"{type(self).__name__}.fit needs training images (an ImageSet)")
        for part, data in (("train", train), ("val", val), ("anomalies", anomalies)):
            require_marked(data, f"{type(self).__name__}.fit({part}=...)")
        return fit(self, train, val, anomalies, *args, **kwargs)

    guarded.__guarded__ = True
    return guarded


class Detector(ABC):
    """Base class: subclasses implement `fit` and `score`, and optionally the other methods.

    Every subclass's ``fit`` is wrapped (``__init_subclass__``) so that it refuses test-split images.
    """

    name: str = "detector"
    weights: str = "none"  # which pretrained weights the method used (recorded in result tables)
    weights_file: str = ""  # the weights file's name, and its SHA-256 (recorded too)
    weights_sha256: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fit = cls.__dict__.get("fit")
        if fit is not None and not getattr(fit, "__guarded__", False):
            cls.fit = _guard_fit(fit)

    @abstractmethod
    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None) -> "Detector":
        """Train on normal images; `val` may be used for early stopping/selection, `anomalies` by
        weakly supervised methods. Returns self."""

    @abstractmethod
    def score(self, images: ImageSet | torch.Tensor) -> np.ndarray:
        """One anomaly score per image (higher = more anomalous)."""

    def anomaly_maps(self, images: ImageSet | torch.Tensor) -> np.ndarray:
        """Per-pixel anomaly maps (N, H, W) at the input resolution."""
        raise NotImplementedError(f"{self.name} does not produce anomaly maps")

    def reconstruct(self, images: ImageSet | torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not reconstruct images")

    def embed(self, images: ImageSet | torch.Tensor) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no embedding")

    def supports(self, capability: str) -> bool:
        """Whether the subclass overrides `anomaly_maps`, `reconstruct` or `embed`."""
        return getattr(type(self), capability) is not getattr(Detector, capability)

    @torch.no_grad()
    def _eval_batches(self, images, fn, modules, batch_size: int = 128) -> list:
        """``fn(batch)`` for each float batch of ``images`` (checked against the trained channels and size), with
        every module in eval mode and no gradient graph, so that a score does not depend on the other images of
        its batch (BatchNorm/dropout) and costs no autograd memory."""
        if any(m is None for m in modules):
            raise RuntimeError(f"{self.name}: call fit() before scoring")
        for m in modules:
            m.eval()
        return [fn(b.to(self.device)) for b in checked_float_batches(images, batch_size, channels=self.channels,
                                                                      size=self.size, who=self.name)]

    # ----- latent declaration: lets a wrapper (MADDR) train extra terms on the detector's latent code -------------
    # A detector that has a latent code z declares it with four small pieces, and is then wrappable without any
    # change to the wrapper:
    #   latent_phase       class attribute: the name of the training Phase whose loss computes z (its main phase);
    #   latent_dim()       the length of z flattened (called in fit, after the networks are built);
    #   encode_latent(b)   z of a float [0, 1] batch (inference: embeddings, the wrapper's heads at test time);
    #   in that phase's loss, ``self.emit_latent(z)`` with the z the loss uses (differentiable), and in fit,
    #   ``phases = self.with_latent_hook(phases, data)`` just before ``train_loop(..., data, ...)``.
    # With no hook attached both calls are no-ops: a detector that is not wrapped trains exactly as before.
    latent_phase: str | None = None
    latent_hook: "LatentHook | None" = None

    def declares_latent(self) -> bool:
        return self.latent_phase is not None

    def latent_dim(self) -> int:
        raise NotImplementedError(f"{self.name} does not declare a latent code")

    def encode_latent(self, batch: torch.Tensor) -> torch.Tensor:
        """z (N, ...) of a float [0, 1] batch already on the detector's device; the caller sets eval/no_grad."""
        raise NotImplementedError(f"{self.name} does not declare a latent code")

    def emit_latent(self, z: torch.Tensor) -> None:
        """Called by the detector inside its latent phase's loss with the batch's z; kept for the hook."""
        if self.latent_hook is not None:
            self._emitted_latent = z

    def with_latent_hook(self, phases: list, data) -> list:
        """``phases`` with the attached hook's terms added to the latent phase's loss (unchanged without a hook).

        ``data``: the ImageSet that train_loop iterates over (the hook reads per-image labels, e.g. organ and
        modality, from ``data.domains`` at the batch's indices). The hook's parameters (e.g. classifier heads)
        join the latent phase's optimizer, with its settings. The hook may transform the batch (mixup); the
        detector's loss then gets ``indices=None``, because a transformed batch has no rows in ``data``.
        """
        hook = self.latent_hook
        if hook is None:
            return phases
        if self.latent_phase not in {p.name for p in phases}:
            raise ValueError(f"{self.name}: latent phase {self.latent_phase!r} is not among {[p.name for p in phases]}")
        hook.setup(self.latent_dim(), getattr(self, "device", torch.device("cpu")), data)
        out = []
        for phase in phases:
            if phase.name != self.latent_phase:
                out.append(phase)
                continue
            held = {id(q) for g in phase.optimizer.param_groups for q in g["params"]}
            new = [q for q in hook.parameters() if id(q) not in held]
            if new:
                phase.optimizer.add_param_group({"params": new})

            def loss(batch, step, indices, _inner=phase.loss, _rows=phase.pass_indices):
                self._emitted_latent = None
                x = hook.prepare(batch, step, indices)
                if _rows:
                    out_ = _inner(x, step, indices if x is batch else None)
                else:
                    out_ = _inner(x, step)
                base, logs = out_ if isinstance(out_, tuple) else (out_, {})
                if self._emitted_latent is None:
                    raise RuntimeError(f"{self.name}: the loss of phase {self.latent_phase!r} never called "
                                       "emit_latent(z); its latent declaration is incomplete")
                extra, extra_logs = hook.loss(self._emitted_latent, step, indices)
                self._emitted_latent = None
                return base + extra, {**logs, "baseline": float(base.detach()), **extra_logs}

            out.append(dataclasses.replace(phase, loss=loss, pass_indices=True,
                                           modules={**phase.modules, **hook.modules()}))
        return out


class LatentHook(ABC):
    """Extra training terms on a detector's declared latent code (see `Detector.with_latent_hook`).

    setup(dim, device, data)          once per fit, before training: build parameters for a z of length ``dim``;
                                      ``data`` is the ImageSet the batches' indices refer to.
    parameters()                      trainable tensors added to the latent phase's optimizer.
    modules()                         the nn.Modules holding them, checkpointed and restored with the detector.
    prepare(batch, step, indices)     the batch the detector trains on (return ``batch`` itself when unchanged).
    loss(z, step, indices)            (extra loss tensor, {name: float}) for the z of the prepared batch.
    """

    @abstractmethod
    def setup(self, dim: int, device, data) -> None: ...

    def parameters(self) -> list:
        return []

    def modules(self) -> dict:
        """{name: nn.Module} holding ``parameters()``: trained, checkpointed and rolled back with the detector."""
        return {}

    def prepare(self, batch: torch.Tensor, step: int, indices: torch.Tensor) -> torch.Tensor:
        return batch

    @abstractmethod
    def loss(self, z: torch.Tensor, step: int, indices: torch.Tensor): ...


# ----- the registry ---------------------------------------------------------------------------------------------
# This base module knows no method. A detector becomes creatable by name in two ways:
#   - the entry-point table ``[project.entry-points."adlib.detectors"]`` in pyproject.toml (name = "module:Class"),
#     read from the installed package's metadata: every process that has adlib installed (notebooks, joblib/Ray
#     workers, the command line) can create the built-in detectors, and another package can add its own the
#     same way;
#   - ``@register(name)`` on a class, which takes effect when its module is imported (tests, a notebook's own
#     detector).
# `create` imports a method module only when that name is asked for, through the table: the base never names a
# method module in its code.
ENTRY_POINT_GROUP = "adlib.detectors"
_REGISTRY: dict[str, Callable[..., Detector]] = {}


def register(name: str):
    """Class decorator: make a detector creatable with `create(name, **kwargs)`."""

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"detector name {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return wrap


def entry_points() -> dict:
    """{name: importlib.metadata.EntryPoint} of the installed detector table."""
    from importlib.metadata import entry_points as installed

    return {ep.name: ep for ep in installed(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Every detector name: the installed table and what ``@register`` added in this process."""
    return sorted(set(entry_points()) | set(_REGISTRY))


def detector_class(name: str):
    """The class registered under ``name`` (loading its module through the entry-point table if needed)."""
    if name not in _REGISTRY:
        table = entry_points()
        if name not in table:
            hint = "" if table else (" (no detector table found: install the package with `pip install -e .`, "
                                     "which ./run_all.sh does, so that its entry points are known)")
            raise ValueError(f"unknown detector {name!r}; available: {', '.join(available()) or 'none'}{hint}")
        cls = table[name].load()  # importing the module runs its @register
        _REGISTRY.setdefault(name, cls)
        if _REGISTRY[name] is not cls:
            raise ValueError(f"entry point {name!r} loads {cls.__qualname__}, but {name!r} is registered to "
                             f"{_REGISTRY[name].__qualname__}: fix the table in pyproject.toml")
    return _REGISTRY[name]


def create(name: str, **kwargs) -> Detector:
    return detector_class(name)(**kwargs)


def latent_detectors() -> list[str]:
    """Registered detectors that declare a latent code (what a latent wrapper such as MADDR can wrap)."""
    return [name for name in available() if getattr(detector_class(name), "latent_phase", None) is not None]
