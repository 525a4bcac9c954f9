"""Saving a fitted detector to a model directory and loading it back, for scoring later or elsewhere.

A model directory holds two files, written together (into a temporary directory that is renamed into place, so a
directory is complete or absent, never half-written):

``weights.pt``   tensors only (a flat ``{name: tensor}`` dict), read back with ``torch.load(..., weights_only=True)``:
                 no pickled code ever runs when a model is loaded;
``config.json``  the format (``format``, ``format_version``), the adlib version, the method name and its constructor
                 arguments, the image size and channel count the detector was fitted on, the decision threshold,
                 the SHA-256 of ``weights.pt`` (checked on load: a changed or swapped file is refused), the
                 pretrained backbone's file hash where the detector has one (checked too), the non-tensor state,
                 a summary of the training run, and whatever the caller adds (``extra``: `adlib.own_images` keeps
                 the validation scores there).

What is saved: the state is read generically from the fitted detector's attributes,

- every ``torch.nn.Module`` attribute -> its ``state_dict`` (parameters and buffers);
- every tensor and numeric ndarray attribute -> itself;
- every plain value (numbers, strings, None, and tuples/lists/dicts of them, e.g. ``hp``) -> config.json, with
  tuples kept as tuples;
- not saved: the device (chosen again on load), training records (``TrainHistory``, pandas tables: a summary of
  the history goes into config.json), training images (``ImageSet`` attributes such as a hold-out set; a model
  never stores images), and objects the constructor makes from its arguments (a loss function, a
  ``PatchFeatureConfig``, the lazily built patch featurizer, whose backbone file is checked by its hash instead).

Anything else a fit leaves behind (a scikit-learn forest, a fitted density object, a training schedule) cannot be
written as tensors; saving such a detector raises NotImplementedError naming the attribute. So the supported
methods are the reconstruction detectors (every subclass of `adlib.reconstruction.ReconstructionDetector`: conv_ae,
vae, ssim_ae, memae, f_anogan, egbad, salad and the GANomaly family) and the ones listed in `SUPPORTED`;
`supported_methods()` lists them all. Not supported: deep_if, cutpaste, dpa and wscxr.

How a detector is rebuilt on load: the constructor runs again with the saved arguments (``adlib.detectors.create``;
this base module never imports a method). Networks, though, are built inside ``fit`` from the data's shape, so a
fresh detector has none yet. Where the detector has ``build(channels, size)`` (the method its own ``fit`` calls,
e.g. the GANomaly family and SALAD) that is called. Otherwise the detector is fitted with a zero training budget
(``steps=0`` etc., see `_zero_budget`) on a few noise images of the saved shape: its own ``fit`` then builds
exactly the networks it builds for real data, in well under a second, without this module repeating any
architecture or touching the methods' files. Every saved tensor, state dict and plain value is then loaded over
what that fit left (its hyperparameter record ``hp`` included, so the zero budget is not what the loaded detector
reports), and the global random state is restored afterwards: loading a model changes no random stream.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data.imageset import ImageSet
from .detectors import Detector, available, create, detector_class
from .io import atomic_torch_save, atomic_write_text, file_digest
from .patch_features import PatchFeaturizer
from .reconstruction import ReconstructionDetector
from .training import TrainHistory

FORMAT = "adlib-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"

# Methods outside the ReconstructionDetector family that can be saved: their whole fitted state is tensors, networks
# and plain values (see the module docstring), and a save -> load round trip at the smoke sizes of
# tests/test_contract.py gave identical scores and maps (tests/test_own_images.py repeats it for patchcore).
SUPPORTED = ("anogan", "deep_geo", "patchcore", "simplenet")

# constructor arguments that set a training budget, and the smallest value each accepts (for the rebuild fit)
_BUDGET_ARGUMENTS = {"steps": 0, "gan_steps": 0, "encoder_steps": 0, "stage_steps": 0, "transition_steps": 0,
                     "epochs": 1}
_REBUILD_IMAGES = 16  # noise images of the rebuild fit (enough for every hold-out split and batch rule)
# constructor arguments about where and how a detector runs, not what it computes: not saved (load chooses them)
RUNTIME_ARGUMENTS = ("device", "progress", "checkpoint_path")


class ModelDirectoryError(ValueError):
    """A model directory is missing, incomplete, of another format version, or not a model directory at all."""


class WeightsHashError(ModelDirectoryError):
    """The weights file (or the pretrained backbone file) differs from the one the model was saved with."""


@dataclasses.dataclass
class SavedModel:
    """A loaded model directory: the ready-to-score detector and its config (the parsed config.json); ``directory``
    is None for a model that was fitted but not saved."""

    detector: Detector
    config: dict
    directory: Path | None

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def size(self) -> int:
        return int(self.config["size"])

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def threshold(self) -> float | None:
        return self.config.get("threshold")


# ----- which methods --------------------------------------------------------------------------------------------
def is_supported(method: str) -> bool:
    """Whether ``method`` (a registered name) can be saved and loaded (see the module docstring)."""
    return method in SUPPORTED or issubclass(detector_class(method), ReconstructionDetector)


def supported_methods() -> list[str]:
    """The registered detectors that can be saved and loaded."""
    return [name for name in available() if is_supported(name)]


def check_supported(method: str) -> None:
    """Raise ValueError for an unknown name (listing the available ones) and NotImplementedError for a detector
    this module cannot save (listing the ones it can)."""
    detector_class(method)  # unknown name -> ValueError with the available ones
    if not is_supported(method):
        raise NotImplementedError(
            f"saving the detector {method!r} is not supported: part of its fitted state is not tensors or plain "
            f"values. Methods that can be saved: {', '.join(supported_methods())}")


# ----- plain values <-> JSON ------------------------------------------------------------------------------------
class _NotPlain(TypeError):
    pass


def encode_value(value):
    """A plain value as JSON data; tuples become {"__tuple__": [...]}, dicts with non-string keys
    {"__items__": [[key, value], ...]}, so `decode_value` gives back exactly what was saved."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and isinstance(value.item(), (bool, int, float, str)):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [encode_value(v) for v in value]}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not {"__tuple__", "__items__"} & set(value):
            return {k: encode_value(v) for k, v in value.items()}
        return {"__items__": [[encode_value(k), encode_value(v)] for k, v in value.items()]}
    raise _NotPlain(type(value).__name__)


def decode_value(data):
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    if isinstance(data, dict):
        if set(data) == {"__tuple__"}:
            return tuple(decode_value(v) for v in data["__tuple__"])
        if set(data) == {"__items__"}:
            return {_hashable(decode_value(k)): decode_value(v) for k, v in data["__items__"]}
        return {k: decode_value(v) for k, v in data.items()}
    return data


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _is_plain(value) -> bool:
    try:
        encode_value(value)
        return True
    except _NotPlain:
        return False


# ----- reading the state of a fitted detector -------------------------------------------------------------------
def _is_record(value) -> bool:
    """What a fit leaves that is not needed to score: a TrainHistory, a pandas table (e.g. a selection table), an
    ImageSet (training images, e.g. a hold-out set: a model never stores images)."""
    return isinstance(value, (TrainHistory, ImageSet)) or type(value).__module__.split(".")[0] == "pandas"


def _made_by_constructor(fresh: Detector, name: str, value) -> bool:
    """True when a freshly constructed detector (same arguments) has a value of the same type under ``name``:
    the constructor makes it from the arguments, so loading re-creates it. A patch featurizer (built lazily, so
    None in a fresh detector) is re-created from the detector's PatchFeatureConfig the same way."""
    before = getattr(fresh, name, None)
    if before is not None:
        return type(before) is type(value)
    return isinstance(value, PatchFeaturizer)


def capture_state(detector: Detector, fresh: Detector) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors for weights.pt, the state description for config.json) of a fitted ``detector``. ``fresh``: a
    detector constructed with the same arguments, to tell constructor-made objects from fitted state.

    Raises NotImplementedError naming the first attribute that is fitted state but neither tensors nor plain."""
    tensors: dict[str, torch.Tensor] = {}
    state = {"modules": [], "tensors": {}, "arrays": {}, "values": {}, "dropped": []}
    for name, value in vars(detector).items():
        if isinstance(value, torch.nn.Module):
            for key, t in value.state_dict().items():
                tensors[f"module.{name}.{key}"] = t.detach().cpu().contiguous()
            state["modules"].append(name)
        elif isinstance(value, torch.Tensor):
            tensors[f"tensor.{name}"] = value.detach().cpu().contiguous()
            state["tensors"][name] = value.device.type
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensors[f"array.{name}"] = torch.from_numpy(np.ascontiguousarray(value)).clone()
            state["arrays"][name] = str(value.dtype)
        elif _is_plain(value):
            if name not in RUNTIME_ARGUMENTS:  # load chooses device/progress/checkpoint path
                state["values"][name] = encode_value(value)
        elif isinstance(value, torch.device):
            continue  # chosen again on load
        elif _is_record(value):
            state["dropped"].append(name)
        elif not _made_by_constructor(fresh, name, value):
            raise NotImplementedError(
                f"cannot save {detector.name}: its fitted attribute {name!r} is a {type(value).__name__}, neither "
                f"tensors nor plain values. Methods that can be saved: {', '.join(supported_methods())}")
    return tensors, state


def training_summary(detector: Detector) -> dict:
    """The training history in a few numbers (the full history is not saved)."""
    history = getattr(detector, "history", None)
    if not isinstance(history, TrainHistory):
        return {}
    return {"status": history.status, "steps_run": len(history.steps), "best_step": history.best_step,
            "checkpoint_criterion": history.checkpoint_criterion, "seconds": round(history.seconds, 3),
            "images_seen": history.images_seen}


# ----- save -----------------------------------------------------------------------------------------------------
def save_detector(detector: Detector, directory: str | os.PathLike, *, method: str, kwargs: dict, size: int,
                  channels: int, threshold: float | None = None, extra: dict | None = None) -> Path:
    """Write a fitted ``detector`` (created as ``create(method, **kwargs)`` and fitted on ``channels`` x ``size``
    x ``size`` images) to ``directory`` (see the module docstring); returns the directory.

    ``threshold``: the decision threshold (a score >= it is called anomalous), None when none was chosen.
    ``kwargs`` are saved without `RUNTIME_ARGUMENTS` (device, progress, checkpoint_path): `load_detector` chooses
    those. An existing model directory at that path is replaced as a whole; any other existing path is refused."""
    check_supported(method)
    directory = Path(directory)
    kwargs = {k: v for k, v in kwargs.items() if k not in RUNTIME_ARGUMENTS}
    not_plain = sorted(k for k, v in kwargs.items() if not _is_plain(v))
    if not_plain:
        raise ValueError(f"constructor arguments {not_plain} of {method} are objects, not plain values (numbers, "
                         "strings, lists): a model directory re-creates the detector from its arguments; pass "
                         "their plain settings instead (e.g. the PatchFeatureConfig fields rather than a featurizer)")
    fresh = create(method, **kwargs)
    tensors, state = capture_state(detector, fresh)
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "adlib_version": __version__,
        "torch_version": torch.__version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": method, "kwargs": encode_value(kwargs), "size": int(size), "channels": int(channels),
        "threshold": None if threshold is None else float(threshold),
        "weights_file": WEIGHTS_FILE, "weights_sha256": None,
        "backbone": {"weights": str(detector.weights), "file": str(detector.weights_file),
                     "sha256": str(detector.weights_sha256)},
        "state": state, "training": training_summary(detector), **(extra or {}),
    }
    with write_directory(directory, CONFIG_FILE) as tmp:
        atomic_torch_save(tensors, tmp / WEIGHTS_FILE)
        config["weights_sha256"] = file_digest(tmp / WEIGHTS_FILE)
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return directory


@contextlib.contextmanager
def write_directory(target: str | os.PathLike, marker: str):
    """Yield an empty temporary directory beside ``target``; when the block succeeds it becomes ``target`` (an
    existing ``target`` is replaced whole), when it fails it is removed: ``target`` is never half-written.

    ``marker``: a file name that identifies directories this code writes (config.json for a model). An existing
    non-empty ``target`` without it is refused (FileExistsError): a folder of the user's is never replaced."""
    target = Path(target)
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is a file; choose another output directory")
        if any(target.iterdir()) and not (target / marker).is_file():
            raise FileExistsError(f"{target} exists and was not written by adlib (no {marker} in it); choose another "
                                  "output directory, or empty or remove that one yourself")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 directories
        _swap_in(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_in(tmp: Path, directory: Path) -> None:
    """Move the finished ``tmp`` directory to ``directory``, replacing what is there."""
    if not directory.exists():
        os.replace(tmp, directory)
        return
    old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".old"))
    os.replace(directory, old / "previous")
    try:
        os.replace(tmp, directory)
    except OSError:
        os.replace(old / "previous", directory)  # put the previous one back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


# ----- load -----------------------------------------------------------------------------------------------------
def read_config(directory: str | os.PathLike) -> dict:
    """The parsed config.json of a model directory, after checking that it is one, of this format version."""
    directory = Path(directory)
    how = "create one with `python -m adlib fit --normal DIR --out MODEL_DIR`"
    if not directory.is_dir():
        raise ModelDirectoryError(f"{directory} is not a directory; {how}")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"{directory} is not an adlib model directory (no {CONFIG_FILE}); {how}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelDirectoryError(f"{path} is not valid JSON ({err}); the model directory is damaged: fit again")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelDirectoryError(f"{path} does not describe an adlib model (format {FORMAT!r} expected)")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelDirectoryError(
            f"{directory} was written by adlib {config.get('adlib_version', '?')} in model format {version}; this "
            f"adlib ({__version__}) reads format {FORMAT_VERSION} only. Fit the model again with this version "
            f"(`python -m adlib fit ...`), or load it with adlib {config.get('adlib_version', '?')}")
    return config


def load_detector(directory: str | os.PathLike, *, device: str | None = None, progress: bool = False) -> SavedModel:
    """Load a model directory written by `save_detector`: check its format version and the SHA-256 of its weights,
    re-create the detector and load its state. ``device``: where its networks go (default: as the constructor
    chooses, cuda when available)."""
    directory = Path(directory)
    config = read_config(directory)
    weights = directory / config.get("weights_file", WEIGHTS_FILE)
    if not weights.is_file():
        raise ModelDirectoryError(f"{directory} has no weights file {weights.name}: the model directory is "
                                  "incomplete; fit the model again")
    digest = file_digest(weights)
    if digest != config.get("weights_sha256"):
        raise WeightsHashError(f"{weights} has SHA-256 {digest}, but the model was saved with "
                               f"{config.get('weights_sha256')}: the file was changed or replaced after saving. "
                               "Restore the original file or fit the model again")
    tensors = torch.load(weights, map_location="cpu", weights_only=True)
    method = config["method"]
    check_supported(method)
    kwargs = decode_value(config["kwargs"])
    runtime = runtime_kwargs(method, device, progress)
    detector = _rebuild(method, {**kwargs, **runtime}, config["channels"], config["size"], config["state"])
    _restore(detector, tensors, config["state"])
    _check_backbone(detector, config)
    return SavedModel(detector, config, directory)


def accepts_argument(cls: type, name: str) -> bool:
    """Whether ``cls(...)`` takes the keyword ``name``: in its ``__init__`` or, through ``**kwargs``, in a base
    class's (PatchCore passes ``progress`` on to its base)."""
    for klass in cls.__mro__:
        if klass is object:
            return False
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if name in params:
            return True
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return False


def runtime_kwargs(method: str, device: str | None = None, progress: bool | None = None) -> dict:
    """``device`` and ``progress`` as constructor arguments, for the ones the method takes (None: left out)."""
    cls = detector_class(method)
    wanted = {"device": device, "progress": progress}
    return {k: v for k, v in wanted.items() if v is not None and accepts_argument(cls, k)}


def _zero_budget(method: str, kwargs: dict) -> dict:
    """``kwargs`` with every training-budget argument the constructor takes set to its smallest value (an
    ``epochs`` that defaults to None stays None: the step count decides), and the checkpoint choice set to "last"
    (there is no validation split in the rebuild fit)."""
    params = inspect.signature(detector_class(method).__init__).parameters
    out = dict(kwargs)
    for name, smallest in _BUDGET_ARGUMENTS.items():
        if name in params:
            default = params[name].default
            out[name] = None if name == "epochs" and default is None else smallest
    if "checkpoint_on" in params:
        out["checkpoint_on"] = "last"
    out.pop("checkpoint_path", None)
    return out


@contextlib.contextmanager
def _random_state_kept():
    """Restore Python's, numpy's and torch's (CPU) global random state afterwards."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _rebuild(method: str, kwargs: dict, channels: int, size: int, state: dict) -> Detector:
    """A detector constructed with ``kwargs`` whose networks exist (see the module docstring)."""
    detector = create(method, **kwargs)
    if all(isinstance(getattr(detector, name, None), torch.nn.Module) for name in state["modules"]):
        return detector
    with _random_state_kept():
        if callable(getattr(detector, "build", None)):
            detector.build(channels, size)
            return detector
        detector = create(method, **_zero_budget(method, kwargs))
        gen = torch.Generator().manual_seed(0)
        noise = ImageSet(images=torch.randint(0, 256, (_REBUILD_IMAGES, channels, size, size), generator=gen,
                                              dtype=torch.uint8),
                         labels=np.zeros(_REBUILD_IMAGES, dtype=np.int64),
                         meta={"dataset": "rebuild", "split": "train", "size": size})
        detector.fit(noise)
    return detector


def _restore(detector: Detector, tensors: dict[str, torch.Tensor], state: dict) -> None:
    for name in state["modules"]:
        module = getattr(detector, name)
        prefix = f"module.{name}."
        module.load_state_dict({k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)})
        module.eval()
    device = getattr(detector, "device", torch.device("cpu"))
    for name, saved_on in state["tensors"].items():
        t = tensors[f"tensor.{name}"]
        setattr(detector, name, t if saved_on == "cpu" else t.to(device))
    for name in state["arrays"]:
        setattr(detector, name, tensors[f"array.{name}"].numpy())
    for name, value in state["values"].items():
        if name not in RUNTIME_ARGUMENTS:  # keep the device/progress this load chose
            setattr(detector, name, decode_value(value))
    for name in state["dropped"]:
        setattr(detector, name, None)  # not saved; what the rebuild fit left there describes its noise images


def _check_backbone(detector: Detector, config: dict) -> None:
    """The pretrained backbone (patch features) must be the very file the model was fitted with."""
    recorded = (config.get("backbone") or {}).get("sha256")
    if not recorded:
        return
    getattr(detector, "featurizer", None)  # builds a lazily built featurizer, so that its file hash is known
    actual = detector.weights_sha256
    if actual != recorded:
        raise WeightsHashError(
            f"the model was fitted with the backbone weights {config['backbone'].get('file')} (SHA-256 {recorded}), "
            f"but this installation loads {detector.weights_file or 'another file'} (SHA-256 {actual or 'none'}); "
            "install the same weights or fit the model again")
