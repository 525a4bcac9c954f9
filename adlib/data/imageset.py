"""ImageSet: the one container every loader returns and every detector accepts."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch

NORMAL, ANOMALOUS = 0, 1


@dataclass
class ImageSet:
    """Images with binary anomaly labels (0 normal, 1 anomalous) and optional extras.

    images: uint8 tensor of shape (N, C, H, W); C is 1 (grayscale) or 3 (colour).
    labels: int64 array (N,), the anomaly-detection label.
    raw_labels: the dataset's own class labels (e.g. retinopathy grade), kept for analysis.
    masks: optional bool tensor (N, H, W) of anomalous pixels (synthetic lesions).
    domains: optional dict of per-image string arrays (e.g. organ, modality).
    meta: where the images came from (dataset, split, size, data source).
    from_test: per-image bool, True for images of a protocol's test split. Set once by the protocol
        (`mark_as_test`), kept by `subset` and `concat` whatever the set is called afterwards, and checked by
        every function that makes a choice (`refuse_test_data`): the test split never chooses anything.
    subsets: named per-image bool masks that select a sub-population for a second evaluation, kept by
        `subset`, `sample` and `concat` exactly as the labels are. MedMNIST loads carry "medmnist_exact":
        True for images that belong to MedMNIST's own split (see `medmnist_exact`).
    """

    images: torch.Tensor
    labels: np.ndarray
    raw_labels: np.ndarray | None = None
    masks: torch.Tensor | None = None
    domains: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    from_test: np.ndarray | None = None
    subsets: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                "ImageSet.images must be a uint8 torch tensor of shape (N, C, H, W); "
                f"got {type(self.images).__name__} {getattr(self.images, 'dtype', '')} {tuple(getattr(self.images, 'shape', ()))}"
            )
        if self.images.shape[1] not in (1, 3):
            raise ValueError(f"ImageSet images need 1 or 3 channels, got {self.images.shape[1]}")
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.from_test is None:
            self.from_test = np.zeros(len(self.labels), dtype=bool)
        self.from_test = np.asarray(self.from_test, dtype=bool).reshape(-1)
        if len(self.from_test) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.from_test)} from_test marks")
        self.subsets = {name: np.asarray(mask, dtype=bool).reshape(-1) for name, mask in self.subsets.items()}
        for name, mask in self.subsets.items():
            if len(mask) != len(self.labels):
                raise ValueError(f"{len(self.images)} images but {len(mask)} entries in the subset mask {name!r}")

    @property
    def medmnist_exact(self) -> np.ndarray | None:
        """Per-image bool: True where the image is in MedMNIST's own split. All True for an official MedMNIST
        file; for the rebuilt PneumoniaMNIST 64/128 px files, False for the 67 test normals that MedMNIST's test
        set lacks (they stand in for 67 MedMNIST images no public source holds). None for other datasets."""
        return self.subsets.get("medmnist_exact")

    @property
    def contains_test(self) -> bool:
        """True when any image comes from a protocol's test split (whatever this set is called now)."""
        return bool(self.from_test.any())

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def split(self) -> str:
        return self.meta.get("split", "unknown")

    def counts(self) -> dict[str, int]:
        return {"normal": int((self.labels == NORMAL).sum()), "anomalous": int((self.labels == ANOMALOUS).sum())}

    def subset(self, index) -> "ImageSet":
        """A new ImageSet with the rows given by a boolean mask or integer index array."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        t = torch.as_tensor(idx, dtype=torch.long)
        return replace(
            self,
            images=self.images[t],
            labels=self.labels[idx],
            raw_labels=None if self.raw_labels is None else self.raw_labels[idx],
            masks=None if self.masks is None else self.masks[t],
            domains={k: v[idx] for k, v in self.domains.items()},
            meta=dict(self.meta),
            from_test=self.from_test[idx],
            subsets={k: v[idx] for k, v in self.subsets.items()},
        )

    def normals(self) -> "ImageSet":
        return self.subset(self.labels == NORMAL)

    def anomalies(self) -> "ImageSet":
        return self.subset(self.labels == ANOMALOUS)

    def sample(self, n: int | None, seed: int) -> "ImageSet":
        """A seeded random subset of at most n images (all of them when n is None)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return self.subset(idx)

    def float_images(self) -> torch.Tensor:
        """All images as float32 in [0, 1]; prefer `batches` for large sets."""
        return self.images.float().div_(255.0)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Float [0, 1] batches in order, converted lazily to keep memory bounded."""
        for start in range(0, len(self), batch_size):
            yield self.images[start:start + batch_size].float().div_(255.0)


def concat(sets: list[ImageSet], meta: dict | None = None) -> ImageSet:
    """Stack several ImageSets of the same size and channel count. Domain labels and subset masks are kept
    when every set has them (a mask missing from one set says nothing about its images)."""
    shapes = {tuple(s.images.shape[1:]) for s in sets}
    if len(shapes) != 1:
        raise ValueError(f"cannot concatenate image sets of different shapes: {sorted(shapes)}; resize them first")
    domain_keys = set.intersection(*(set(s.domains) for s in sets)) if sets else set()
    subset_keys = set.intersection(*(set(s.subsets) for s in sets)) if sets else set()
    masks = None
    if all(s.masks is not None for s in sets):
        masks = torch.cat([s.masks for s in sets])
    raw = None
    if all(s.raw_labels is not None for s in sets):
        raw = np.concatenate([s.raw_labels for s in sets])
    return ImageSet(
        images=torch.cat([s.images for s in sets]),
        labels=np.concatenate([s.labels for s in sets]),
        raw_labels=raw,
        masks=masks,
        domains={k: np.concatenate([s.domains[k] for s in sets]) for k in domain_keys},
        meta=meta or {},
        from_test=np.concatenate([s.from_test for s in sets]),
        subsets={k: np.concatenate([s.subsets[k] for s in sets]) for k in sorted(subset_keys)},
    )


class TestDataError(ValueError):
    """Test-split data was passed where a choice is made (threshold, checkpoint, hyperparameter, fit)."""

    __test__ = False  # an exception, not a pytest test class


def mark_as_test(images: ImageSet) -> ImageSet:
    """Mark every image of ``images`` as test data (done by the protocols, once); returns it."""
    images.from_test = np.ones(len(images), dtype=bool)
    return images


def refuse_test_data(data, purpose: str) -> None:
    """Raise TestDataError when ``data`` (an ImageSet, a ScoredSplit, a FeatureSplit or anything carrying
    ``contains_test``) holds test-split images. ``purpose`` says which choice was about to be made."""
    if data is None:
        return
    if getattr(data, "contains_test", False):
        raise TestDataError(
            f"{purpose}: got data from the test split (marked by the protocol, so renaming, subsetting or "
            "concatenating does not hide it). Choices use the validation split or training data only; "
            "the test split is scored once, for the final numbers.")


def require_marked(data, purpose: str):
    """Accept only containers that carry the test mark (ImageSet, ScoredSplit, FeatureSplit): a bare tensor
    or array could be test data in disguise."""
    if data is not None and not hasattr(data, "contains_test"):
        raise TypeError(f"{purpose}: pass an ImageSet (or a ScoredSplit/FeatureSplit built from one), not a bare "
                        f"{type(data).__name__}; only those carry the protocol's test-split mark")
    refuse_test_data(data, purpose)


def as_float_tensor(x: "ImageSet | torch.Tensor | np.ndarray") -> torch.Tensor:
    """Accept an ImageSet, a uint8 tensor/array (N,C,H,W) or a float tensor in [0,1]."""
    if isinstance(x, ImageSet):
        return x.float_images()
    t = torch.as_tensor(x)
    if t.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float().div(255.0)
    return t.float()


def iter_float_batches(x: "ImageSet | torch.Tensor", batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(x, ImageSet):
        yield from x.batches(batch_size)
        return
    t = torch.as_tensor(x)
    for start in range(0, len(t), batch_size):
        yield as_float_tensor(t[start:start + batch_size])


def checked_float_batches(images: ImageSet | torch.Tensor | np.ndarray, batch_size: int, *,
                          channels: int | None = None, size: int | None = None,
                          who: str = "detector") -> Iterator[torch.Tensor]:
    """Float [0, 1] batches of (N, C, H, W) images, after checking shape, channels, size and range.

    Accepts an ImageSet, a uint8 tensor/array, or a float tensor already in [0, 1]. `channels`/`size`
    (when given) must match what the detector was fitted on.
    """
    if isinstance(images, ImageSet):
        source = images.images
    else:
        source = torch.as_tensor(images)
        if source.ndim != 4:
            raise ValueError(f"{who}: expected images of shape (N, C, H, W), got shape {tuple(source.shape)}")
        if source.dtype != torch.uint8 and not source.is_floating_point():
            raise ValueError(f"{who}: expected uint8 or float images, got dtype {source.dtype}")
        if source.is_floating_point() and len(source) and (float(source.min()) < -1e-3 or float(source.max()) > 1 + 1e-3):
            raise ValueError(f"{who}: float images must lie in [0, 1] (got range "
                             f"[{float(source.min()):.3g}, {float(source.max()):.3g}]); pass uint8 images or divide by 255")
    if len(source) == 0:
        raise ValueError(f"{who}: got an empty set of images")
    if source.shape[1] not in (1, 3):
        raise ValueError(f"{who}: images need 1 or 3 channels, got {source.shape[1]} (shape {tuple(source.shape)})")
    if channels is not None and source.shape[1] != channels:
        raise ValueError(f"{who}: fitted on {channels}-channel images, got {source.shape[1]} channels")
    if size is not None and tuple(source.shape[-2:]) != (size, size):
        raise ValueError(f"{who}: fitted on {size}x{size} images, got {tuple(source.shape[-2:])}")
    if source.shape[-1] != source.shape[-2]:
        raise ValueError(f"{who}: expected square images, got {tuple(source.shape[-2:])}")
    for start in range(0, len(source), batch_size):
        chunk = source[start:start + batch_size]
        yield chunk.float().div(255.0) if chunk.dtype == torch.uint8 else chunk.float()
