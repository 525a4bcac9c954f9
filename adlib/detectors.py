"""One interface for every anomaly detector, and a registry to create them by name.

A detector is fitted on training images (normal only; weakly supervised methods may also receive a
few anomalies or the validation split) and scores images: higher = more anomalous. Where a method has
them, it also gives anomaly maps, reconstructions and embeddings.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Callable

import numpy as np
import torch

from .data.imageset import ImageSet, refuse_test_data


def _guard_fit(fit):
    """Wrap a subclass's fit so that test-split images can never reach a choice (training, early stopping,
    checkpoint or hyperparameter choice on `val`, few-shot anomalies)."""

    @functools.wraps(fit)
    def guarded(self, train, val=None, anomalies=None, *args, **kwargs):
        for part, data in (("train", train), ("val", val), ("anomalies", anomalies)):
            refuse_test_data(data, f"{type(self).__name__}.fit({part}=...)")
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


def _load_methods() -> None:
    # Registration happens when adlib.methods is imported. Imported lazily, by name, so that this base module
    # never imports a method module at import time (methods import the base, not the reverse).
    import importlib

    importlib.import_module("adlib.methods")


def available() -> list[str]:
    _load_methods()
    return sorted(_REGISTRY)


def create(name: str, **kwargs) -> Detector:
    _load_methods()
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)
