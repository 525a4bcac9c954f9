"""Finding, verifying and (when online) downloading MedMNIST files.

Checksums come from the `medmnist` package's own INFO table. A file that fails its checksum is never
used. Two PneumoniaMNIST sizes (64, 128 px) exist here only as files rebuilt from the original images;
they are known substitutes, verified by SHA-256, used only when the official file is absent, and every
loader records which source it used.
"""
from __future__ import annotations

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
