"""adlib on your own images (`python -m adlib fit/score`, adlib.own_images, adlib.persistence).

A folder of images is written from the synthetic phantoms (lesions = anomalies) as PNG files, plus one NPZ file,
one JPEG and one grayscale image saved as RGB; PatchCore (random backbone, smoke sizes of tests/test_contract.py)
and the conv AE are fitted on it, through the command once (a subprocess) and through the API otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlib import own_images, persistence
from adlib.__main__ import main
from adlib.data import make_synthetic_protocol
from adlib.detectors import create
from adlib.metrics import auroc
from adlib.own_images import ImageFolderError
from adlib.persistence import ModelDirectoryError, WeightsHashError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32
PATCHCORE = dict(arch="resnet18", layers=["layer1"], weights="random", input_size=64, patch_size=3, dim=64,
                 coreset_fraction=0.25)
CONV_AE = dict(latent=16, width=16, steps=100, batch_size=32, eval_every=50)
ROOT = Path(__file__).resolve().parents[1]


def _write_png(image: torch.Tensor, path: Path, mode: str = "L", scale: int = 1) -> None:
    img = Image.fromarray(image[0].numpy()).convert(mode)
    if scale != 1:  # another size than the model's: the reader resizes it
        img = img.resize((img.width * scale, img.height * scale), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """normal/ (PNG files, one of them 64 px, and one NPZ file holding 8 images), val/ and test/ with normal/ and
    anomalous/ subfolders (one JPEG and one grayscale image stored as RGB among them)."""
    root = tmp_path_factory.mktemp("own")
    protocol = make_synthetic_protocol(n_train=48, n_val=32, n_test=40, size=SIZE, channels=1, seed=0)
    train = protocol.train.images
    for i, image in enumerate(train[:-8]):
        _write_png(image, root / "normal" / f"n{i:03d}.png", scale=2 if i == 0 else 1)
    np.savez(root / "normal" / "more.npz", images=train[-8:, 0].numpy())  # (N, H, W) uint8
    for split, images in (("val", protocol.val), ("test", protocol.test)):
        for i, (image, label) in enumerate(zip(images.images, images.labels)):
            sub = "anomalous" if label else "normal"
            _write_png(image, root / split / sub / f"{split}{i:03d}.png", mode="RGB" if i == 1 else "L")
    jpeg = root / "test" / "normal" / "photo.jpg"
    Image.fromarray(protocol.test.normals().images[0, 0].numpy()).save(jpeg, quality=95)
    return root


@pytest.fixture(scope="module")
def patchcore_model(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "patchcore"
    return own_images.fit(folders / "normal", method="patchcore", out=out, val=folders / "val", size=SIZE,
                          kwargs=PATCHCORE, progress=False)


def test_reader_resizes_converts_and_names_every_image(folders):
    train = own_images.load_images(folders / "normal", size=SIZE, split="train")
    assert tuple(train.images.shape) == (48, 1, SIZE, SIZE) and train.images.dtype == torch.uint8
    names = list(train.domains["file"])
    assert names[0] == "more.npz[0]" and "n000.png" in names and len(set(names)) == 48
    assert not train.contains_test
    test = own_images.load_labelled_folder(folders / "test", size=SIZE, channels=None, split="test")
    assert test.channels == 1  # the RGB file with three equal channels counts as grayscale
    assert test.contains_test and test.from_test.all()  # images given to `score --test` are test data
    assert sorted(np.unique(test.labels)) == [0, 1] and "normal/photo.jpg" in list(test.domains["file"])
    val = own_images.load_labelled_folder(folders / "val", size=SIZE, channels=None, split="val")
    assert not val.contains_test  # the validation folder is not


def test_command_fits_and_scores_with_metrics_csv_and_maps(folders, tmp_path, capsys):
    model = tmp_path / "model"
    settings = [arg for key, value in PATCHCORE.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    env = {**os.environ, "ADLIB_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "adlib", "fit", "--normal", str(folders / "normal"), "--val",
                           str(folders / "val"), "--out", str(model), "--size", str(SIZE), "--quiet", *settings],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "threshold" in done.stderr and (model / "weights.pt").is_file()
    config = json.loads((model / "config.json").read_text())
    assert config["method"] == "patchcore" and config["size"] == SIZE and config["channels"] == 1
    assert config["format_version"] == persistence.FORMAT_VERSION and len(config["weights_sha256"]) == 64
    assert config["threshold_rule"] == "youden-val" and config["validation"]["anomalous"] > 0

    out, maps, metrics = tmp_path / "scores.csv", tmp_path / "maps", tmp_path / "metrics.json"
    assert main(["score", "--model", str(model), "--test", str(folders / "test"), "--out", str(out), "--maps",
                 str(maps), "--metrics", str(metrics), "--quiet"]) == 0
    assert "AUROC" in capsys.readouterr().out
    values = json.loads(metrics.read_text())
    assert values["AUROC"] > 0.75, f"test AUROC {values['AUROC']:.3f} on easy phantoms"
    assert values["threshold"] == pytest.approx(config["threshold"])
    rows = out.read_text().splitlines()
    assert rows[0] == "file,score,prediction,label,map" and len(rows) == 1 + 41
    assert {r.split(",")[2] for r in rows[1:]} == {"normal", "anomalous"}
    pngs = sorted(maps.glob("*.png"))
    assert len(pngs) == 41 and (maps / "maps.json").is_file()
    assert Image.open(pngs[0]).size == (SIZE, SIZE)

    # unlabelled images: the CSV goes to standard output
    assert main(["score", "--model", str(model), str(folders / "test" / "anomalous" / "test001.png"),
                 str(folders / "normal" / "more.npz"), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "file,score,prediction" and len(lines) == 1 + 1 + 8


def test_scores_after_reload_equal_scores_before(patchcore_model, folders):
    test = own_images.load_labelled_folder(folders / "test", size=SIZE, channels=1, split="test")
    before = patchcore_model.detector.score(test)
    loaded = own_images.load_model(patchcore_model.directory)
    np.testing.assert_array_equal(loaded.detector.score(test), before)
    assert auroc(test.labels, before) > 0.75
    assert loaded.threshold == patchcore_model.threshold
    metrics, images, scores, maps = own_images.evaluate_folder(loaded, folders / "test", maps=True)
    np.testing.assert_array_equal(scores, before)  # features computed once for scores and maps: the same numbers
    np.testing.assert_array_equal(maps, patchcore_model.detector.anomaly_maps(test))
    assert metrics["AUROC"] == pytest.approx(auroc(test.labels, before))


def test_conv_ae_reloads_to_the_same_scores_and_maps(folders, tmp_path):
    model = own_images.fit(folders / "normal", method="conv_ae", out=tmp_path / "ae", size=SIZE,
                           kwargs={**CONV_AE, "device": "cpu"}, progress=False)
    assert model.threshold is None and model.config["training"]["steps_run"] > 0
    assert "device" not in model.config["kwargs"]  # where to run is chosen when loading
    test = own_images.load_labelled_folder(folders / "test", size=SIZE, channels=1, split="test")
    rng = torch.get_rng_state()
    loaded = own_images.load_model(tmp_path / "ae", device="cpu")
    assert torch.equal(torch.get_rng_state(), rng), "loading a model changed the global random state"
    np.testing.assert_array_equal(loaded.detector.score(test), model.detector.score(test))
    np.testing.assert_array_equal(loaded.detector.anomaly_maps(test), model.detector.anomaly_maps(test))
    assert loaded.detector.hp["steps"] == CONV_AE["steps"]  # the saved record, not the rebuild's zero budget
    assert auroc(test.labels, loaded.detector.score(test)) > 0.6
    metrics, *_ = own_images.evaluate_folder(loaded, folders / "test")
    assert metrics["threshold"] is None and "--val" in metrics["note"]


def test_a_detector_with_build_reloads_to_the_same_scores(tmp_path):
    """GANomaly's networks are rebuilt by its own build(channels, size), not by a zero-budget fit."""
    protocol = make_synthetic_protocol(n_train=32, n_val=16, n_test=16, size=SIZE, channels=1, seed=1)
    kwargs = dict(nz=16, width=8, max_width=32, steps=10, batch_size=16, eval_every=10, seed=0)
    detector = create("ganomaly", progress=False, device="cpu", **kwargs).fit(protocol.train)
    persistence.save_detector(detector, tmp_path / "g", method="ganomaly", kwargs=kwargs, size=SIZE, channels=1)
    loaded = persistence.load_detector(tmp_path / "g", device="cpu").detector
    np.testing.assert_array_equal(loaded.score(protocol.test), detector.score(protocol.test))
    assert loaded.norm == detector.norm and loaded.alpha == detector.alpha


def test_state_values_keep_tuples_and_keys():
    value = {"betas": (0.5, 0.999), "table": {8: ["relu1_2"]}, "n": None, "x": [1.5, "a"]}
    assert persistence.decode_value(json.loads(json.dumps(persistence.encode_value(value)))) == value


# ----- the clear errors -----------------------------------------------------------------------------------------
def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ImageFolderError, match="holds no images"):
        own_images.load_images(tmp_path / "empty", size=SIZE, split="train")
    assert main(["fit", "--normal", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 1
    assert "error:" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_unreadable_image_is_named(folders, tmp_path):
    shutil.copytree(folders / "val" / "normal", tmp_path / "imgs")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageFolderError, match="broken.png"):
        own_images.load_images(tmp_path / "imgs", size=SIZE, split="train")


def test_mixed_channels_say_how_to_convert(folders, tmp_path):
    shutil.copytree(folders / "val" / "normal", tmp_path / "mixed")
    colour = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    colour[..., 0] = 200  # red: a true colour image
    Image.fromarray(colour).save(tmp_path / "mixed" / "red.png")
    with pytest.raises(ImageFolderError, match="--channels 1"):
        own_images.load_images(tmp_path / "mixed", size=SIZE, split="train")
    gray = own_images.load_images(tmp_path / "mixed", size=SIZE, channels=1, split="train")
    assert gray.channels == 1 and gray.meta["converted"] == 1


def test_labelled_folder_needs_both_subfolders(folders, tmp_path):
    shutil.copytree(folders / "val" / "normal", tmp_path / "val" / "normal")
    with pytest.raises(ImageFolderError, match="anomalous/"):
        own_images.load_labelled_folder(tmp_path / "val", size=SIZE, channels=None, split="val")


def _copy(model, tmp_path) -> Path:
    return Path(shutil.copytree(model.directory, tmp_path / "copy"))


def test_model_directory_of_another_format_version(patchcore_model, tmp_path):
    copy = _copy(patchcore_model, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config["format_version"] = persistence.FORMAT_VERSION + 1
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirectoryError, match="format"):
        own_images.load_model(copy)
    with pytest.raises(ModelDirectoryError, match="not an adlib model directory"):
        own_images.load_model(tmp_path)


def test_missing_or_altered_weights(patchcore_model, tmp_path):
    copy = _copy(patchcore_model, tmp_path)
    with open(copy / "weights.pt", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(WeightsHashError, match="SHA-256"):
        own_images.load_model(copy)
    (copy / "weights.pt").unlink()
    with pytest.raises(ModelDirectoryError, match="no weights file"):
        own_images.load_model(copy)


def test_unknown_and_unsupported_methods(folders, tmp_path):
    with pytest.raises(ValueError, match="unknown detector 'no_such_method'; available: .*patchcore"):
        own_images.fit(folders / "normal", method="no_such_method", out=tmp_path / "m")
    with pytest.raises(NotImplementedError, match="deep_if.*can be saved: .*conv_ae"):
        own_images.fit(folders / "normal", method="deep_if", out=tmp_path / "m")
    with pytest.raises(ValueError, match="no_such_setting"):
        own_images.fit(folders / "normal", method="conv_ae", kwargs={"no_such_setting": 1}, out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_no_half_written_model_directory(patchcore_model, tmp_path, monkeypatch):
    detector, config = patchcore_model.detector, patchcore_model.config
    args = dict(method="patchcore", kwargs=PATCHCORE, size=SIZE, channels=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not written by adlib"):
        persistence.save_detector(detector, mine, **args)
    assert (mine / "data.txt").read_text() == "keep"

    def disk_full(*_, **__):
        raise OSError("No space left on device")

    target = tmp_path / "model"
    monkeypatch.setattr(persistence, "atomic_write_text", disk_full)
    with pytest.raises(OSError):
        persistence.save_detector(detector, target, **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no model, no temporary directory
    monkeypatch.undo()

    persistence.save_detector(detector, target, threshold=config["threshold"], **args)
    monkeypatch.setattr(persistence, "atomic_write_text", disk_full)
    with pytest.raises(OSError):
        persistence.save_detector(detector, target, threshold=0.0, **args)  # replacing it fails half-way
    monkeypatch.undo()
    assert own_images.load_model(target).threshold == config["threshold"]  # the previous model is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "model"]
