"""CIFAR-10 for one-vs-rest experiments, read from the JPEG-bytes archive in the data directory.

The archive (see shared/data/MANIFEST.md) is decoded once with PIL and the arrays cached, so later
loads take a second. Two directions are used in the papers:
  one_normal    : one class is normal, the other nine anomalous (DPA, Table 1);
  one_anomalous : one class is anomalous, the other nine normal (CCB-AAE).
CIFAR-10 has no validation split; we hold out a seeded 10 % of the train split as validation.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from ..progress import progress_bar

from ..io import atomic_path, file_digest
from ..paths import cache_dir, data_dir
from .imageset import ImageSet
from .medmnist_files import ChecksumError, DataNotFoundError
from .protocol import Protocol
from .transforms import resize_uint8, to_channels

CIFAR_FILE = "cifar10/cifar10_yoongikim_jpeg.npz"
CIFAR_SHA256 = "af7fcc331dd52d0c2f0881924df62ea2af60784792bdcec73f668a3c3de818bc"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _decode(jpeg: np.ndarray, offsets: np.ndarray, desc: str) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(offsets) - 1, 32, 32, 3), dtype=np.uint8)
    for i in progress_bar(range(len(out)), desc=f"decoding CIFAR-10 {desc}", mininterval=2):
        out[i] = np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
    return out


def load_cifar10_arrays() -> dict[str, np.ndarray]:
    """{train,test}_{images,labels} as uint8 arrays (N, 32, 32, 3), decoded once and cached."""
    cached = cache_dir() / f"cifar10_decoded_{CIFAR_SHA256[:12]}.npz"
    if cached.exists():
        with np.load(cached) as npz:
            return {k: npz[k] for k in npz.files}
    src = data_dir() / CIFAR_FILE
    if not src.exists():
        raise DataNotFoundError(
            f"CIFAR-10 archive {CIFAR_FILE} not found in {data_dir()}. Point ADLIB_DATA at a directory that "
            "holds it (this project's CI uses ../shared/data).")
    if file_digest(src) != CIFAR_SHA256:
        raise ChecksumError(f"{src} failed its SHA-256 check; it will not be used. Restore it from shared/data.")
    with np.load(src) as npz:
        arrays = {}
        for split in ("train", "test"):
            arrays[f"{split}_images"] = _decode(npz[f"{split}_jpeg"], npz[f"{split}_offsets"], split)
            arrays[f"{split}_labels"] = npz[f"{split}_labels"].astype(np.int64)
    with atomic_path(cached) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return arrays


def _imageset(images: np.ndarray, raw: np.ndarray, labels: np.ndarray, split: str, size: int, channels: int | None,
              normal_class: int, direction: str) -> ImageSet:
    t = to_channels(resize_uint8(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), size), channels)
    return ImageSet(images=t.contiguous(), labels=labels, raw_labels=raw,
                    meta={"dataset": f"cifar10[{CLASSES[normal_class]}:{direction}]", "split": split, "size": size,
                          "source": "CIFAR-10 JPEG q75 re-encoding (shared/data)"})


def cifar10_one_vs_rest(cls: int, direction: str = "one_normal", size: int = 32, channels: int | None = None,
                        val_fraction: float = 0.1, max_train: int | None = None, seed: int = 0) -> Protocol:
    """A CIFAR-10 anomaly-detection protocol for class ``cls`` in the given direction."""
    if direction not in ("one_normal", "one_anomalous"):
        raise ValueError("direction must be 'one_normal' or 'one_anomalous'")
    if not 0 <= cls < 10:
        raise ValueError(f"CIFAR-10 class must be 0..9, got {cls}")
    arr = load_cifar10_arrays()

    def anomaly_labels(raw: np.ndarray) -> np.ndarray:
        is_cls = raw == cls
        return np.where(is_cls, 0, 1) if direction == "one_normal" else np.where(is_cls, 1, 0)

    raw_train = arr["train_labels"]
    perm = np.random.default_rng(seed).permutation(len(raw_train))
    n_val = int(round(val_fraction * len(raw_train)))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    mk = lambda imgs, raw, split: _imageset(imgs, raw, anomaly_labels(raw), split, size, channels, cls, direction)  # noqa: E731
    train_all = mk(arr["train_images"][train_idx], raw_train[train_idx], "train")
    val = mk(arr["train_images"][val_idx], raw_train[val_idx], "val")
    test = mk(arr["test_images"], arr["test_labels"], "test")
    return Protocol(train_all.meta["dataset"], train_all.normals().sample(max_train, seed), val, test,
                    train_all.anomalies())
