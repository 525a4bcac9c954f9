"""The anomaly-detection protocol shared by every paper, and the MedMNIST datasets it runs on.

train      = normal images of the train split only (the anomalous train images are kept apart as a pool
             for few-shot, weakly supervised methods);
validation = the whole val split, normal and anomalous (thresholds, early stopping, hyperparameters);
test       = the whole test split, touched only for the final numbers.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from .imageset import ANOMALOUS, NORMAL, ImageSet, concat, mark_as_test
from .medmnist_files import OFFICIAL_SIZES, DataSource, load_arrays, locate, medmnist_membership
from .transforms import resize_uint8, to_channels


@dataclass(frozen=True)
class DatasetSpec:
    """What 'normal' means for one dataset, stated once for the whole project."""

    flag: str
    organ: str
    modality: str
    normal_labels: tuple[int, ...]
    description: str


DATASETS: dict[str, DatasetSpec] = {
    "pneumonia": DatasetSpec("pneumoniamnist", "chest", "X-ray", (0,),
                             "label 0 normal is normal; label 1 pneumonia is anomalous"),
    "breast": DatasetSpec("breastmnist", "breast", "ultrasound", (1,),
                          "label 1 normal-or-benign is normal; label 0 malignant is anomalous"),
    "retina": DatasetSpec("retinamnist", "eye", "fundus photograph", (0,),
                          "grade 0 (no retinopathy) is normal; grades 1-4 are anomalous"),
}


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)} (or 'synthetic', 'cifar10')")
    return DATASETS[name]


def available_file_size(name: str, wanted: int) -> int:
    """The file resolution to read for a wanted image size: the smallest official size >= wanted that is
    present (or obtainable), else the largest present one (then images are upsampled, and meta says so)."""
    from ..paths import data_dir
    from .medmnist_files import KNOWN_SUBSTITUTES, official_filename

    flag = _spec(name).flag
    present = [
        s for s in OFFICIAL_SIZES
        if any((data_dir() / d / official_filename(flag, s)).exists() for d in ("", "medmnist"))
        or ((flag, s) in KNOWN_SUBSTITUTES and (data_dir() / KNOWN_SUBSTITUTES[(flag, s)][0]).exists())
    ]
    bigger = [s for s in present if s >= wanted]
    if bigger:
        return min(bigger)
    if present:
        return max(present)
    return wanted if wanted in OFFICIAL_SIZES else 28  # nothing local: let locate() download or explain


def load_split(name: str, split: str, size: int = 28, channels: int | None = None,
               file_size: int | None = None) -> ImageSet:
    """One split of a MedMNIST dataset as an ImageSet with binary anomaly labels.

    size: the image size delivered (resized if the file has another resolution).
    file_size: which file resolution to read (default: best available, see `available_file_size`).
    The set carries the per-image subset mask "medmnist_exact" (`ImageSet.medmnist_exact`): which images are
    in MedMNIST's own split (all of an official file; all but 67 test normals of the rebuilt 64/128 px files).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    spec = _spec(name)
    file_size = file_size or available_file_size(name, size)
    source = locate(spec.flag, file_size)
    arrays = load_arrays(source)
    images = torch.from_numpy(arrays[f"{split}_images"])
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    images = to_channels(resize_uint8(images.contiguous(), size), channels)
    raw = arrays[f"{split}_labels"].reshape(-1).astype(np.int64)
    labels = np.where(np.isin(raw, spec.normal_labels), NORMAL, ANOMALOUS)
    n = len(raw)
    exact = medmnist_membership(source, arrays)[split]  # in the file's order, like images and labels
    return ImageSet(
        from_test=np.full(n, split == "test"),
        images=images.contiguous(), labels=labels, raw_labels=raw,
        domains={"organ": np.full(n, spec.organ), "modality": np.full(n, spec.modality),
                 "dataset": np.full(n, name)},
        meta={"dataset": name, "split": split, "size": size, "file_size": file_size,
              "source": source.short(), "source_kind": source.kind, "data_source": source},
        subsets={"medmnist_exact": exact},
    )


@dataclass
class Protocol:
    """Train normals, the validation split, the test split, and the pool of anomalous train images."""

    dataset: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    train_anomaly_pool: ImageSet
    source: DataSource | None = None

    def __post_init__(self) -> None:
        # The test split is marked here, once, for every protocol (MedMNIST, CIFAR-10, synthetic, multi-domain).
        mark_as_test(self.test)
        for part in ("train", "val", "train_anomaly_pool"):
            if getattr(self, part).contains_test:
                raise ValueError(f"protocol {self.dataset}: its {part} part contains test-split images")

    def summary(self) -> "object":
        import pandas as pd

        rows = []
        for part, s in [("train (normals only)", self.train), ("validation", self.val), ("test", self.test),
                        ("train anomalies (few-shot pool)", self.train_anomaly_pool)]:
            rows.append({"dataset": self.dataset, "part": part, **s.counts(), "image shape": tuple(s.images.shape[1:])})
        return pd.DataFrame(rows)

    def data_source(self) -> str:
        return self.source.short() if self.source is not None else self.train.meta.get("source", "generated")

    def data_sha256(self) -> str:
        """SHA-256 of the file the images were read from; for generated data, of the splits' images and labels
        (small sets: the hash tells two generated datasets apart, e.g. two data seeds)."""
        if self.source is not None:
            return _file_sha256(self.source.path)
        digest = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            digest.update(part.images.contiguous().numpy().tobytes() if torch.is_tensor(part.images)
                          else np.ascontiguousarray(part.images).tobytes())
            digest.update(np.ascontiguousarray(np.asarray(part.labels)).tobytes())
        return digest.hexdigest()


def cap_splits(protocol: Protocol, val_cap: int | None, test_cap: int | None, seed: int = 0) -> Protocol:
    """Seeded subsets of the validation and test splits, in place (cpu- and smoke-sized runs); None keeps a split
    whole. The test subset stays marked as test data."""
    protocol.val = protocol.val.sample(val_cap, seed)
    protocol.test = protocol.test.sample(test_cap, seed)
    return protocol


@functools.lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
    from ..io import file_digest

    return file_digest(path)


def make_protocol(name: str, size: int = 28, channels: int | None = None, file_size: int | None = None,
                  max_train: int | None = None, seed: int = 0) -> Protocol:
    """The anomaly-detection protocol for a MedMNIST dataset (see module docstring).

    max_train caps the number of training normals (seeded subsample) for CPU-sized runs.
    """
    train_all = load_split(name, "train", size, channels, file_size)
    val = load_split(name, "val", size, channels, file_size)
    test = load_split(name, "test", size, channels, file_size)
    return Protocol(name, train_all.normals().sample(max_train, seed), val, test, train_all.anomalies(),
                    source=train_all.meta["data_source"])


def few_shot_anomalies(protocol: Protocol, k: int, seed: int, per_class: bool = False,
                       classes: list[int] | None = None) -> ImageSet:
    """K anomalous images drawn reproducibly from the train split (never from val or test).

    per_class=True draws K from each anomalous raw class (e.g. each retinopathy grade);
    classes restricts the draw to some raw classes (an anomaly set of confined variability).
    """
    pool = protocol.train_anomaly_pool
    rng = np.random.default_rng(seed)
    raw = pool.raw_labels if pool.raw_labels is not None else np.zeros(len(pool), dtype=np.int64)
    allowed = np.ones(len(pool), bool) if classes is None else np.isin(raw, classes)
    if per_class:
        picks = []
        for c in np.unique(raw[allowed]):
            idx = np.flatnonzero(allowed & (raw == c))
            if len(idx) < k:
                raise ValueError(f"class {c} has only {len(idx)} anomalous train images, fewer than k={k}")
            picks.append(rng.choice(idx, size=k, replace=False))
        chosen = np.sort(np.concatenate(picks))
    else:
        idx = np.flatnonzero(allowed)
        if len(idx) < k:
            raise ValueError(f"only {len(idx)} anomalous train images available, fewer than k={k}")
        chosen = np.sort(rng.choice(idx, size=k, replace=False))
    out = pool.subset(chosen)
    out.meta.update({"few_shot_k": k, "few_shot_seed": seed, "per_class": per_class})
    return out


def make_multidomain(names: list[str], size: int = 64, channels: int = 3, max_train_per_domain: int | None = None,
                     seed: int = 0) -> Protocol:
    """Several datasets in one protocol, each image carrying organ/modality/dataset labels (MADDR)."""
    parts = [make_protocol(n, size, channels, max_train=max_train_per_domain, seed=seed) for n in names]

    def join(attr: str, split: str) -> ImageSet:
        return concat([getattr(p, attr) for p in parts],
                      meta={"dataset": "+".join(names), "split": split, "size": size,
                            "source": "; ".join(f"{p.dataset}: {p.data_source()}" for p in parts)})

    return Protocol("+".join(names), join("train", "train"), join("val", "val"), join("test", "test"),
                    join("train_anomaly_pool", "train"))
