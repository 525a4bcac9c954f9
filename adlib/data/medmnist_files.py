"""Finding, verifying and (when online) downloading MedMNIST files.

Checksums come from the `medmnist` package's own INFO table. A file that fails its checksum is never
used. Two PneumoniaMNIST sizes (64, 128 px) exist here only as files rebuilt from the original images;
they are known substitutes, verified by SHA-256, used only when the official file is absent, and every
loader records which source it used. Their test split is the Kaggle test set, which differs from MedMNIST's in
67 normal images; the provenance CSV beside them marks each image (`medmnist_membership`), so results can also
be reported on the images the two test sets share.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import file_digest
from ..paths import data_dir, offline

OFFICIAL_SIZES = (28, 64, 128, 224)

# Known substitutes (see shared/data/MANIFEST.md, "Files built here"): not official MedMNIST files.
KNOWN_SUBSTITUTES = {
    ("pneumoniamnist", 64): (
        "rebuilt/pneumoniamnist_64_rebuilt.npz",
        "1a53e5b9e60614ea54025c7261692f144f27901fa6519782693d3e50009ecfb9",
    ),
    ("pneumoniamnist", 128): (
        "rebuilt/pneumoniamnist_128_rebuilt.npz",
        "a9056c4946a23588d70079eeb5600699bc3332722256d394c2d22c556b5c9686",
    ),
}


# One row per image of the rebuilt files (both sizes share it): split, index, label, ..., matched_to_official.
REBUILT_PROVENANCE = (
    "pneumoniamnist_64_128_provenance.csv",
    "9036b79f115a4581d158d7e8fcd2669a9d940f68665e90de4cee9a006103d8dd",
)
SPLITS = ("train", "val", "test")


class DataNotFoundError(FileNotFoundError):
    """A dataset file is missing and could not be downloaded."""


class ChecksumError(ValueError):
    """A dataset file exists but its checksum does not match the reference."""


@dataclass(frozen=True)
class DataSource:
    """Which file a dataset was read from, and how it was verified."""

    flag: str
    size: int
    path: str
    kind: str  # "official" or "rebuilt-substitute"
    checksum: str  # "md5:<hex>" or "sha256:<hex>"

    def short(self) -> str:
        return f"{self.kind} ({Path(self.path).name})"


def official_filename(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def official_md5(flag: str, size: int) -> str:
    from medmnist.info import INFO

    if flag not in INFO:
        raise ValueError(f"unknown MedMNIST dataset {flag!r}; known: {', '.join(sorted(INFO))}")
    key = "MD5" if size == 28 else f"MD5_{size}"
    if key not in INFO[flag]:
        raise ValueError(f"MedMNIST {flag} has no {size} px version (sizes: {OFFICIAL_SIZES})")
    return INFO[flag][key]


def _candidates(directory: Path, filename: str) -> list[Path]:
    return [directory / filename, directory / "medmnist" / filename]


def verify(path: Path, algorithm: str, expected: str) -> None:
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"{path} failed its {algorithm.upper()} check (expected {expected}, got {actual}). "
            "The file is corrupt or not the one expected; it will not be used. Delete it and "
            "download it again (medmnist does so when online), or restore it from shared/data."
        )


def _download(flag: str, size: int, directory: Path) -> Path:
    """Ask medmnist to download and MD5-check the official file into ``directory/medmnist``."""
    import medmnist
    from medmnist.info import INFO

    target = directory / "medmnist"
    target.mkdir(parents=True, exist_ok=True)
    cls = getattr(medmnist, INFO[flag]["python_class"])
    cls(split="test", download=True, root=str(target), size=size)
    return target / official_filename(flag, size)


def locate(flag: str, size: int = 28, directory: Path | None = None, allow_substitute: bool = True) -> DataSource:
    """Find a verified file for MedMNIST ``flag`` at ``size`` px.

    Order: the official file in the data directory (MD5 from medmnist INFO); a known rebuilt substitute
    (SHA-256); a download by medmnist unless offline. Otherwise DataNotFoundError says what to do.
    """
    directory = Path(directory) if directory is not None else data_dir()
    filename = official_filename(flag, size)
    md5 = official_md5(flag, size)
    for path in _candidates(directory, filename):
        if path.exists():
            verify(path, "md5", md5)
            return DataSource(flag, size, str(path), "official", f"md5:{md5}")
    if allow_substitute and (flag, size) in KNOWN_SUBSTITUTES:
        rel, sha = KNOWN_SUBSTITUTES[(flag, size)]
        path = directory / rel
        if path.exists():
            verify(path, "sha256", sha)
            return DataSource(flag, size, str(path), "rebuilt-substitute", f"sha256:{sha}")
    download_error = "downloads are disabled (ADLIB_OFFLINE=1)"
    if not offline():
        try:
            path = _download(flag, size, directory)
            verify(path, "md5", md5)
            return DataSource(flag, size, str(path), "official", f"md5:{md5}")
        except ChecksumError:
            raise
        except Exception as exc:  # network errors come in many types
            download_error = f"download failed: {type(exc).__name__}: {exc}"
    raise DataNotFoundError(
        f"MedMNIST file {filename} ({flag}, {size} px) was not found in {directory} "
        f"(searched {', '.join(str(p) for p in _candidates(directory, filename))}); {download_error}. "
        f"To provide it: connect to the internet and rerun (medmnist downloads and verifies it), or copy "
        f"the official {filename} into {directory}, or point ADLIB_DATA at a directory that holds it "
        f"(this project's CI uses ../shared/data)."
    )


def load_arrays(source: DataSource) -> dict[str, np.ndarray]:
    """The npz contents: {train,val,test}_{images,labels}."""
    with np.load(source.path) as npz:
        return {k: npz[k] for k in npz.files}


def medmnist_membership(source: DataSource, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per split, one bool per image of ``arrays`` (in their order): True where the image belongs to MedMNIST's
    own split. Every image of an official file does. For a rebuilt substitute the answer is the provenance CSV's
    `matched_to_official` column; the CSV is checked (SHA-256, one row per image, same labels in the same order)
    so that the mask cannot drift from the images it describes."""
    counts = {split: len(arrays[f"{split}_labels"]) for split in SPLITS}
    if source.kind == "official":
        return {split: np.ones(n, dtype=bool) for split, n in counts.items()}
    csv_name, sha = REBUILT_PROVENANCE
    csv_path = Path(source.path).with_name(csv_name)
    if not csv_path.exists():
        raise DataNotFoundError(
            f"{csv_path} is missing: it says which images of the rebuilt file {Path(source.path).name} are "
            "MedMNIST's own (67 test normals are not). Restore it from shared/data/rebuilt (MANIFEST.md lists it).")
    membership = _rebuilt_membership(str(csv_path), sha)
    out = {}
    for split, n in counts.items():
        labels, matched = membership[split]
        file_labels = arrays[f"{split}_labels"].reshape(-1).astype(np.int64)
        if len(labels) != n or not np.array_equal(labels, file_labels):
            raise ValueError(f"{csv_path.name} does not describe {Path(source.path).name}: its {split} rows "
                             f"({len(labels)}) do not match the file's {n} images and labels in order. Restore both "
                             "files from shared/data/rebuilt.")
        out[split] = matched.copy()
    return out


@functools.lru_cache(maxsize=4)
def _rebuilt_membership(csv_path: str, sha256: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, matched_to_official) per split, ordered by image index; read and verified once per process."""
    import pandas as pd

    verify(Path(csv_path), "sha256", sha256)
    table = pd.read_csv(csv_path, usecols=["split", "index", "label", "matched_to_official"])
    out = {}
    for split in SPLITS:
        rows = table[table["split"] == split].sort_values("index")
        if not np.array_equal(rows["index"].to_numpy(), np.arange(len(rows))):
            raise ValueError(f"{csv_path}: the {split} rows do not number the images 0..{len(rows) - 1}")
        out[split] = (rows["label"].to_numpy(np.int64), rows["matched_to_official"].to_numpy().astype(bool))
    return out
