"""adlib on your own images: read folders of PNG/JPEG/NPZ images, fit a detector on normals, save it, score new
images, write scores, anomaly maps and metrics. `python -m adlib` (adlib/__main__.py) is the command around it.

Reading (`load_images`, `load_labelled_folder`):

- PNG and JPEG files (Pillow) and NPZ files holding an array of images (N, H, W), (N, H, W, C) or (N, C, H, W),
  uint8 or floats in [0, 1]; the array named ``images``, or the only array in the file;
- grayscale or RGB: palette and alpha images become RGB / grayscale without the alpha channel, and an RGB image
  whose three channels are identical counts as grayscale (X-rays saved as RGB JPEGs). 16-bit and float images
  are refused: window them to 8 bits first, a choice only you can make;
- any size: every image is resized (bilinear, antialiased; torchvision) to ``size`` x ``size``, the size the
  detector is fitted on; a non-square image is squashed, not cropped;
- one channel count per set: at fit, mixed grayscale and colour images are refused unless ``channels`` says which
  to convert to; validation and scored images are converted to the model's channel count.

A folder is read with its subfolders, in sorted order; other files (a README, a CSV) are skipped. A labelled
folder (validation, test) has the subfolders ``normal/`` and ``anomalous/``. Images given to `score` are marked as
test data (`adlib.data.imageset.mark_as_test`): they never choose anything. The validation folder chooses the
decision threshold (Youden's J, the library default) and its scores are stored in the model directory, so that
`evaluate_folder` reports the metrics of `adlib.metrics.evaluate_scores` at that threshold.

The API, in the order of use::

    model = fit("normals/", method="patchcore", out="model/", val="val/")     # -> persistence.SavedModel
    model = load_model("model/")
    images = load_images(["new/"], size=model.size, channels=model.channels, split="test")
    scores, maps = score_images(model.detector, images, maps=True)          # or model.detector.score(images)
    write_scores_csv("scores.csv", images, scores, model.threshold)
    write_maps("maps/", images, maps)
    metrics, images, scores, maps = evaluate_folder(model, "test/")           # test/normal, test/anomalous
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .data.imageset import ANOMALOUS, NORMAL, ImageSet, mark_as_test
from .data.transforms import resize_uint8, to_channels
from .detectors import create
from .io import atomic_path, atomic_write_text
from .metrics import ScoredSplit, auroc, average_precision, evaluate_scores, select_threshold_on_validation
from .patch_features import PatchFeatureDetector, image_scores, patch_maps_to_images
from .persistence import (SavedModel, check_supported, load_detector, read_config, runtime_kwargs, save_detector,
                          write_directory)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npz",)
SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES
LABELLED_SUBFOLDERS = {"normal": NORMAL, "anomalous": ANOMALOUS}
DEFAULT_SIZE = 64
THRESHOLD_RULE = "youden"
# The command's settings for PatchCore, under the ones you pass: the patch features the benchmark (notebook 07)
# declares for it, EfficientNet-Lite0 with the ImageNet weights that ship with its pip package (present offline;
# the constructor's default backbone, DenseNet-121, needs a download), with two changes for speed, measured on
# PneumoniaMNIST 64 px images: the backbone sees the images at 128 px (or their size when larger) instead of 256,
# and the memory bank keeps 10 % of the patches instead of 50 % (measured on one CPU thread, 400 training normals:
# fit 20 s instead of 13 min, test AUROC 0.76 instead of 0.72 on 100 test images; on 64 px images the 256 px input
# adds no detail). Other methods: their constructor's defaults.
PATCHCORE_INPUT_SIZE = 128
PATCHCORE_DEFAULTS = {"arch": "efficientnet_lite0", "layers": ["stage5_s16", "stage7_s32"], "weights": "imagenet-lite",
                      "coreset_fraction": 0.1}
MAPS_MARKER = "maps.json"


class ImageFolderError(ValueError):
    """A folder or file of images cannot be used as it is: empty, unreadable, mixed channel counts, wrong layout."""


# ----- reading ----------------------------------------------------------------------------------------------------
def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """PNG/JPEG/NPZ files in ``folder`` and its subfolders, sorted; hidden files and folders skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"{folder} is not a folder" + ("" if folder.exists() else " (it does not exist)"))
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    if not files:
        raise ImageFolderError(f"{folder} holds no images: put PNG, JPEG or NPZ files ({', '.join(SUFFIXES)}) in it "
                               "(subfolders are read too)")
    return sorted(files)


def _image_array(path: Path) -> np.ndarray:
    """One PNG/JPEG file as uint8 (H, W, C), C = 1 or 3."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("1", "L", "LA"):
                img = img.convert("L")
            elif mode.startswith("I") or mode == "F":
                raise ImageFolderError(
                    f"{path}: a {mode} image (16-bit or float pixels); adlib reads 8-bit images. Window it to 8 bits "
                    "yourself (e.g. numpy: (a - lo) / (hi - lo) * 255 for the intensity range that matters) and save "
                    "it as an 8-bit PNG")
            else:
                img = img.convert("RGB")  # RGB, RGBA, palette, CMYK, ...: colour without alpha
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        if isinstance(err, ImageFolderError):
            raise
        raise ImageFolderError(f"cannot read the image {path}: {err}. Remove or replace that file "
                               "(re-save it as PNG or JPEG)") from err
    return array[..., None] if array.ndim == 2 else array


def _npz_arrays(path: Path) -> list[np.ndarray]:
    """The images of an NPZ file as uint8 (H, W, C) arrays."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if "images" in keys:
                key = "images"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise ImageFolderError(f"{path}: holds the arrays {keys}; name the image array 'images' (or keep "
                                       "one array in the file)")
            array = npz[key]
    except ImageFolderError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ImageFolderError(f"cannot read the NPZ file {path}: {err}. Write it with numpy.savez(path, "
                               "images=array)") from err
    if array.ndim == 3:
        array = array[..., None]
    elif array.ndim == 4 and array.shape[-1] not in (1, 3) and array.shape[1] in (1, 3):
        array = np.moveaxis(array, 1, -1)
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or len(array) == 0:
        raise ImageFolderError(f"{path}: array {key!r} has shape {array.shape}; expected a non-empty array of images "
                               "(N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3")
    return list(_as_uint8(array, f"{path}[{key!r}]"))


def _as_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if not (np.isfinite(array).all() and lo >= 0.0 and hi <= 1.0):
            raise ImageFolderError(f"{where}: float images must lie in [0, 1] (got [{lo:.4g}, {hi:.4g}]); "
                                   "divide by their maximum or store uint8")
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() <= 255:
        return array.astype(np.uint8)
    raise ImageFolderError(f"{where}: {array.dtype} values outside 0..255; window them to 8 bits (uint8) first")


def _gray_if_equal(array: np.ndarray) -> np.ndarray:
    """An RGB image whose channels are identical, as one channel."""
    if array.shape[-1] == 3 and np.array_equal(array[..., 0], array[..., 1]) \
            and np.array_equal(array[..., 0], array[..., 2]):
        return array[..., :1]
    return array


def _read_entries(sources) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 (H, W, C)) of every image in ``sources`` (files and folders). A folder's images are named by
    their path relative to it, an NPZ file's by ``file.npz[i]``."""
    entries = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files = [(p, str(p.relative_to(source))) for p in list_image_files(source)]
        elif source.is_file():
            if source.suffix.lower() not in SUFFIXES:
                raise ImageFolderError(f"{source}: not a PNG, JPEG or NPZ file ({', '.join(SUFFIXES)})")
            files = [(source, str(source))]
        else:
            raise ImageFolderError(f"{source} does not exist")
        for path, name in files:
            if path.suffix.lower() in ARRAY_SUFFIXES:
                entries += [(f"{name}[{i}]", _gray_if_equal(a)) for i, a in enumerate(_npz_arrays(path))]
            else:
                entries.append((name, _gray_if_equal(_image_array(path))))
    return entries


def _channel_count(entries, channels: int | None, where: str) -> int:
    counts = {}
    for name, array in entries:
        counts.setdefault(array.shape[-1], []).append(name)
    if channels is not None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        return channels
    if len(counts) > 1:
        gray, rgb = counts[1], counts[3]
        raise ImageFolderError(
            f"{where} mixes {len(gray)} grayscale images (e.g. {gray[0]}) and {len(rgb)} colour images (e.g. "
            f"{rgb[0]}). Say which to convert them all to: `--channels 1` (grayscale; in Python channels=1) or "
            "`--channels 3` (RGB, grayscale repeated), or convert the files yourself (Pillow: "
            "Image.open(f).convert('L') or .convert('RGB'))")
    return next(iter(counts))


def load_images(sources, *, size: int, channels: int | None = None, split: str, label: int = NORMAL,
                where: str | None = None) -> ImageSet:
    """The images of ``sources`` (files and folders) as an ImageSet of ``size`` x ``size`` uint8 images.

    ``channels``: convert every image to 1 or 3 channels; None: use the images' own count (refused when it is
    mixed). ``split`` names the set ("train", "val", "test"); "test" marks every image as test data. ``label``:
    every image's label. The file names are in ``images.domains["file"]``; ``meta["converted"]`` counts the
    images whose channel count was converted."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    where = where or ", ".join(str(s) for s in sources)
    entries = _read_entries(sources)
    if not entries:
        raise ImageFolderError(f"{where}: no images")
    target = _channel_count(entries, channels, where)
    tensors, converted = [], 0
    for name, array in entries:
        t = torch.tensor(array).permute(2, 0, 1)[None]
        if t.shape[1] != target:
            converted += 1
            t = to_channels(t, target)
        tensors.append(resize_uint8(t, size))
    images = ImageSet(images=torch.cat(tensors), labels=np.full(len(entries), label, dtype=np.int64),
                      domains={"file": np.array([name for name, _ in entries])},
                      meta={"dataset": "own images", "split": split, "size": size, "source": where,
                            "converted": converted})
    return mark_as_test(images) if split == "test" else images


def load_labelled_folder(folder: str | os.PathLike, *, size: int, channels: int | None, split: str) -> ImageSet:
    """A folder with the subfolders ``normal/`` and ``anomalous/`` (labels 0 and 1), both non-empty."""
    folder = Path(folder)
    missing = [name for name in LABELLED_SUBFOLDERS if not (folder / name).is_dir()]
    if missing:
        raise ImageFolderError(f"{folder} needs the subfolders normal/ and anomalous/ (missing: "
                               f"{', '.join(m + '/' for m in missing)}): put normal images in {folder / 'normal'} and "
                               f"anomalous ones in {folder / 'anomalous'}")
    parts = []
    for name, label in LABELLED_SUBFOLDERS.items():
        part = load_images([folder / name], size=size, channels=channels, split=split, label=label,
                           where=str(folder / name))
        part.domains["file"] = np.array([f"{name}/{f}" for f in part.domains["file"]])
        parts.append(part)
    if parts[0].channels != parts[1].channels:
        raise ImageFolderError(f"{folder}: normal/ holds {parts[0].channels}-channel and anomalous/ "
                               f"{parts[1].channels}-channel images; pass --channels 1 or 3 to convert them")
    images = ImageSet(images=torch.cat([p.images for p in parts]), labels=np.concatenate([p.labels for p in parts]),
                      domains={"file": np.concatenate([p.domains["file"] for p in parts])},
                      meta={"dataset": "own images", "split": split, "size": size, "source": str(folder),
                            "converted": sum(p.meta["converted"] for p in parts)})
    return mark_as_test(images) if split == "test" else images


# ----- fit, load, score -------------------------------------------------------------------------------------------
def method_kwargs(method: str, kwargs: dict | None = None, size: int = DEFAULT_SIZE) -> dict:
    """The constructor arguments `fit` uses for ``size`` px images: for patchcore `PATCHCORE_DEFAULTS` and an
    input size of max(`PATCHCORE_INPUT_SIZE`, size), then ``kwargs`` over them."""
    defaults = {}
    if method == "patchcore":
        defaults = {**PATCHCORE_DEFAULTS, "input_size": max(PATCHCORE_INPUT_SIZE, size)}
    return {**defaults, **(kwargs or {})}


def _create(method: str, kwargs: dict, *, device: str | None, progress: bool):
    try:
        return create(method, **{**kwargs, **runtime_kwargs(method, device, progress)})
    except TypeError as err:  # an argument the constructor does not take
        raise ValueError(f"cannot create {method} with the settings {kwargs}: {err}. Check the setting names "
                         f"(given with --set) against the constructor's: help(adlib.detectors.detector_class"
                         f"({method!r}))") from err


def fit(normal, *, method: str = "patchcore", out: str | os.PathLike | None = None, val=None,
        size: int = DEFAULT_SIZE, channels: int | None = None, kwargs: dict | None = None,
        device: str | None = None, progress: bool = True) -> SavedModel:
    """Fit ``method`` on the normal images of ``normal`` (folders/files), choose the threshold on ``val`` (a folder
    with normal/ and anomalous/; optional) and save the model to ``out`` (optional). Returns the SavedModel.

    ``kwargs``: constructor arguments (over the defaults of `method_kwargs`). The validation images are not used to
    fit, only to choose the threshold (as the notebooks' experiments do)."""
    check_supported(method)
    kwargs = method_kwargs(method, kwargs, size)
    detector = _create(method, kwargs, device=device, progress=progress)  # a wrong setting fails before any reading
    t0 = time.perf_counter()
    train = load_images(normal, size=size, channels=channels, split="train")
    val_set = load_labelled_folder(val, size=size, channels=train.channels, split="val") if val is not None else None
    t1 = time.perf_counter()
    detector.fit(train)
    read_seconds, fit_seconds = t1 - t0, time.perf_counter() - t1
    threshold, validation = None, None
    if val_set is not None:
        scores, _ = score_images(detector, val_set)
        threshold = select_threshold_on_validation(ScoredSplit.of(scores, val_set), THRESHOLD_RULE)
        validation = {"folder": str(val), "files": val_set.domains["file"].tolist(),
                      "labels": val_set.labels.tolist(), "scores": scores.tolist(),
                      "AUROC": auroc(val_set.labels, scores), **val_set.counts()}
    extra = {"threshold_rule": f"{THRESHOLD_RULE}-val" if threshold is not None else None,
             "training_images": {"source": train.meta["source"], "n": len(train)},
             "validation": validation,
             "seconds": {"read": round(read_seconds, 3), "fit": round(fit_seconds, 3)}}
    if out is None:
        return SavedModel(detector, {"method": method, "kwargs": kwargs, "size": size, "channels": train.channels,
                                     "threshold": threshold, **extra}, None)
    save_detector(detector, out, method=method, kwargs=kwargs, size=size, channels=train.channels,
                  threshold=threshold, extra=extra)
    return SavedModel(detector, read_config(out), Path(out))


def load_model(directory: str | os.PathLike, *, device: str | None = None, progress: bool = False) -> SavedModel:
    """A model directory written by `fit` (or `adlib.persistence.save_detector`), ready to score."""
    return load_detector(directory, device=device, progress=progress)


def score_images(detector, images: ImageSet, *, maps: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores, anomaly maps or None). A patch-feature detector (PatchCore, SimpleNet) extracts the features and
    their patch scores once for both (its own `score` and `anomaly_maps` would each compute them: the
    nearest-neighbour search is the slow part); the numbers are those of `score` and `anomaly_maps`."""
    if isinstance(detector, PatchFeatureDetector):
        patch = detector.patch_scores(detector.features(images))
        out_maps = patch_maps_to_images(patch, images.size, detector.map_sigma).numpy() if maps else None
        return np.asarray(image_scores(patch), dtype=np.float64), out_maps
    scores = np.asarray(detector.score(images), dtype=np.float64)
    return scores, (np.asarray(detector.anomaly_maps(images)) if maps else None)


def validation_split(model: SavedModel) -> ScoredSplit | None:
    """The validation scores stored with the model (None when it was fitted without a validation folder)."""
    val = model.config.get("validation")
    if not val:
        return None
    return ScoredSplit(np.asarray(val["scores"], dtype=np.float64), np.asarray(val["labels"]), "val")


def predictions(scores: np.ndarray, threshold: float | None) -> list[str]:
    """"anomalous" where score >= threshold, else "normal" ("" for every image when there is no threshold)."""
    if threshold is None:
        return [""] * len(scores)
    return ["anomalous" if s >= threshold else "normal" for s in scores]


def evaluate_folder(model: SavedModel, folder, *,
                    maps: bool = False) -> tuple[dict, ImageSet, np.ndarray, np.ndarray | None]:
    """Score a test folder (normal/ + anomalous/, marked as test data) and compute its metrics: those of
    `adlib.metrics.evaluate_scores` at the threshold chosen on the model's validation scores, or only AUROC and
    AP when the model has none. Returns (metrics, the images, their scores, their anomaly maps or None)."""
    images = load_labelled_folder(folder, size=model.size, channels=model.channels, split="test")
    scores, out_maps = score_images(model.detector, images, maps=maps)
    test = ScoredSplit.of(scores, images)
    val = validation_split(model)
    if val is not None:
        metrics = evaluate_scores(val, test, THRESHOLD_RULE)
    else:
        metrics = {"AUROC": auroc(test.labels, test.scores), "AP": average_precision(test.labels, test.scores),
                   "threshold": None,
                   "note": "no validation folder at fit: F1/ACC/SEN/SPE need a threshold (fit with --val)"}
    metrics.update(n_test_normal=int((images.labels == NORMAL).sum()),
                   n_test_anomalous=int((images.labels == ANOMALOUS).sum()))
    return metrics, images, scores, out_maps


# ----- writing ----------------------------------------------------------------------------------------------------
def write_png_folder(images: ImageSet, folder: str | os.PathLike, prefix: str = "image") -> list[Path]:
    """Write every image of ``images`` as ``folder/<prefix>NNNNN.png`` (8-bit grayscale or RGB), each file
    atomically: e.g. to try the command on images of one of our datasets. Returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images.images):
        array = image.permute(1, 2, 0).numpy()
        path = folder / f"{prefix}{i:05d}.png"
        with atomic_path(path) as part:
            Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(part, format="PNG")
        paths.append(path)
    return paths


def write_scores_csv(path: str | os.PathLike, images: ImageSet, scores: np.ndarray, threshold: float | None, *,
                     with_labels: bool = False, map_files: list[str] | None = None) -> Path:
    """A CSV with one row per image: file, score, prediction (at ``threshold``), and where given the true label
    and the anomaly-map PNG. Written atomically."""
    path = Path(path)
    atomic_write_text(path, scores_csv_text(images, scores, threshold, with_labels=with_labels, map_files=map_files))
    return path


def scores_csv_text(images: ImageSet, scores: np.ndarray, threshold: float | None, *, with_labels: bool = False,
                    map_files: list[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "score", "prediction"] + (["label"] if with_labels else [])
                    + (["map"] if map_files else []))
    names = {NORMAL: "normal", ANOMALOUS: "anomalous"}
    for i, (name, score, pred) in enumerate(zip(images.domains["file"], scores, predictions(scores, threshold))):
        row = [name, repr(float(score)), pred]
        row += [names[int(images.labels[i])]] if with_labels else []
        row += [map_files[i]] if map_files else []
        writer.writerow(row)
    return buffer.getvalue()


def map_file_names(images: ImageSet) -> list[str]:
    """One PNG name per image: its position and its file name, e.g. ``00003_normal_x12.png`` for normal/x12.png."""
    out = []
    for i, name in enumerate(images.domains["file"]):
        name = Path(str(name)).as_posix()
        suffix = Path(name).suffix
        if suffix.lower() in SUFFIXES:
            name = name[:-len(suffix)]
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
        out.append(f"{i:05d}_{stem[-80:]}.png")
    return out


def write_maps(directory: str | os.PathLike, images: ImageSet, maps: np.ndarray, *, alpha: float = 0.45) -> list[str]:
    """One PNG per image: its anomaly map (colour map 'jet', one scale for every image of the call: from the
    smallest value to the 99.5th percentile, as `adlib.plots.overlay_maps` draws them) over the grayscale image,
    plus ``maps.json`` (the scale and the file names) and ``maps.npz`` (the raw maps). The directory is written
    whole (an earlier maps directory is replaced, a folder of yours refused). Returns the PNG names."""
    from matplotlib import colormaps

    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape != (len(images), images.size, images.size):
        raise ValueError(f"expected maps of shape {(len(images), images.size, images.size)}, got {maps.shape}")
    vmin, vmax = float(maps.min()), float(np.percentile(maps, 99.5))
    span = vmax - vmin if vmax > vmin else 1.0
    colour = colormaps["jet"]
    gray = images.images.float().mean(1).div(255.0).numpy()
    names = map_file_names(images)
    with write_directory(directory, MAPS_MARKER) as tmp:
        for i, name in enumerate(names):
            heat = colour(np.clip((maps[i] - vmin) / span, 0.0, 1.0))[..., :3]
            rgb = (1 - alpha) * gray[i][..., None] + alpha * heat
            with atomic_path(tmp / name) as part:
                Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB").save(part, format="PNG")
        with atomic_path(tmp / "maps.npz") as part:
            with open(part, "wb") as fh:
                np.savez_compressed(fh, maps=maps.astype(np.float32), files=np.asarray(images.domains["file"]))
        atomic_write_text(tmp / MAPS_MARKER, json.dumps(
            {"colormap": "jet", "vmin": vmin, "vmax": vmax, "alpha": alpha,
             "scale": "one scale for every image of this call: min to 99.5th percentile of the maps",
             "files": dict(zip(names, images.domains["file"].tolist()))}, indent=2) + "\n")
    return names
