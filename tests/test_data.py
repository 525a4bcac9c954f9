"""Datasets, protocol and data-file verification on the real files in $ADLIB_DATA."""
import shutil

import numpy as np
import pytest
import torch

from adlib.data import (ChecksumError, DataNotFoundError, ImageSet, concat, few_shot_anomalies, load_split, locate,
                        make_multidomain, make_phantoms, make_protocol)
from adlib.data import medmnist_files

# Sizes and label counts from shared/data/MANIFEST.md ("Contents").
MANIFEST = {
    "pneumonia": {"train": (4708, {0: 1214, 1: 3494}), "val": (524, {0: 135, 1: 389}), "test": (624, {0: 234, 1: 390})},
    "breast": {"train": (546, {0: 147, 1: 399}), "val": (78, {0: 21, 1: 57}), "test": (156, {0: 42, 1: 114})},
    "retina": {"train": (1080, {0: 486, 1: 128, 2: 206, 3: 194, 4: 66}), "val": (120, {0: 54, 1: 12, 2: 28, 3: 20, 4: 6}),
               "test": (400, {0: 174, 1: 46, 2: 92, 3: 68, 4: 20})},
}


@pytest.mark.parametrize("name", sorted(MANIFEST))
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_split_sizes_and_raw_label_counts_match_manifest(name, split):
    s = load_split(name, split, size=28)
    n, counts = MANIFEST[name][split]
    assert len(s) == n
    assert dict(zip(*np.unique(s.raw_labels, return_counts=True))) == counts
    assert s.meta["source_kind"] == "official"


def test_normal_definitions_per_dataset():
    assert load_split("pneumonia", "test").counts() == {"normal": 234, "anomalous": 390}
    assert load_split("breast", "test").counts() == {"normal": 114, "anomalous": 42}  # 1 = normal/benign
    assert load_split("retina", "test").counts() == {"normal": 174, "anomalous": 226}  # grades 1-4 anomalous


def test_protocol_train_is_normal_only_and_val_test_are_whole_splits():
    p = make_protocol("pneumonia", 28)
    assert p.train.counts() == {"normal": 1214, "anomalous": 0}
    assert p.val.counts() == {"normal": 135, "anomalous": 389}
    assert p.test.counts() == {"normal": 234, "anomalous": 390}
    assert len(p.train_anomaly_pool) == 3494


def test_rebuilt_64px_pneumonia_is_a_recorded_substitute_with_same_labels():
    s64 = load_split("pneumonia", "test", size=64)
    s28 = load_split("pneumonia", "test", size=28)
    assert s64.images.shape == (624, 1, 64, 64)
    assert s64.meta["source_kind"] == "rebuilt-substitute"
    np.testing.assert_array_equal(s64.raw_labels, s28.raw_labels)


def test_size_and_channel_conversion():
    rgb = load_split("retina", "val", size=64, channels=1)
    assert rgb.images.shape == (120, 1, 64, 64) and rgb.meta["file_size"] == 28
    gray = load_split("breast", "val", size=64, channels=3)
    assert gray.images.shape == (78, 3, 64, 64) and gray.meta["file_size"] == 64
    assert torch.equal(gray.images[:, 0], gray.images[:, 2])


def test_corrupt_file_is_refused(tmp_path, monkeypatch):
    src = locate("breastmnist", 28).path
    (tmp_path / "medmnist").mkdir()
    bad = tmp_path / "medmnist" / "breastmnist.npz"
    shutil.copy(src, bad)
    data = bytearray(bad.read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path))
    with pytest.raises(ChecksumError, match="MD5"):
        locate("breastmnist", 28)
    with pytest.raises(ChecksumError):
        load_split("breast", "test", size=28)


def test_corrupt_substitute_is_refused(tmp_path, monkeypatch):
    (tmp_path / "rebuilt").mkdir()
    (tmp_path / "rebuilt" / "pneumoniamnist_64_rebuilt.npz").write_bytes(b"not the rebuilt file")
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path))
    monkeypatch.setenv("ADLIB_OFFLINE", "1")
    with pytest.raises(ChecksumError, match="SHA256"):
        locate("pneumoniamnist", 64)


def test_offline_and_missing_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path))
    monkeypatch.setenv("ADLIB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as err:
        locate("retinamnist", 64)
    msg = str(err.value)
    assert "retinamnist_64.npz" in msg and str(tmp_path) in msg and "ADLIB_DATA" in msg


def test_failed_download_is_reported_not_hidden(tmp_path, monkeypatch):
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path))
    monkeypatch.delenv("ADLIB_OFFLINE", raising=False)

    def no_network(flag, size, directory):
        raise OSError("network is unreachable")

    monkeypatch.setattr(medmnist_files, "_download", no_network)
    with pytest.raises(DataNotFoundError, match="download failed: OSError: network is unreachable"):
        locate("breastmnist", 128)


def test_few_shot_anomalies_are_seeded_and_come_from_train():
    p = make_protocol("retina", 28)
    a = few_shot_anomalies(p, 4, seed=3)
    b = few_shot_anomalies(p, 4, seed=3)
    c = few_shot_anomalies(p, 4, seed=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert (a.labels == 1).all() and a.split == "train"
    per = few_shot_anomalies(p, 2, seed=0, per_class=True)
    assert sorted(per.raw_labels.tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]
    only_grade_2 = few_shot_anomalies(p, 5, seed=0, classes=[2])
    assert set(only_grade_2.raw_labels.tolist()) == {2}


def test_multidomain_carries_organ_and_modality():
    m = make_multidomain(["pneumonia", "breast", "retina"], size=32, channels=3, max_train_per_domain=20)
    assert m.train.images.shape[1:] == (3, 32, 32)
    assert set(m.train.domains["organ"]) == {"chest", "breast", "eye"}
    assert set(m.test.domains["modality"]) == {"X-ray", "ultrasound", "fundus photograph"}
    assert len(m.test) == 624 + 156 + 400


def test_synthetic_phantoms_are_deterministic_and_masks_mark_lesions():
    a, b = make_phantoms(16, 32, 0.5, seed=1), make_phantoms(16, 32, 0.5, seed=1)
    assert torch.equal(a.images, b.images)
    assert a.masks[a.labels == 1].flatten(1).any(1).all()
    assert not a.masks[a.labels == 0].any()
    assert make_phantoms(4, 64, channels=3).images.shape == (4, 3, 64, 64)


def test_imageset_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(images=torch.rand(2, 1, 8, 8), labels=[0, 1])
    with pytest.raises(ValueError, match="labels"):
        ImageSet(images=torch.zeros(2, 1, 8, 8, dtype=torch.uint8), labels=[0])
    with pytest.raises(ValueError, match="unknown dataset"):
        make_protocol("oct")


def test_subset_masks_follow_subset_sample_and_concat_like_labels():
    from adlib.data.protocol import cap_splits

    a = ImageSet(torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous(),
                 labels=[0, 1, 0, 1, 0, 1], subsets={"medmnist_exact": [1, 1, 0, 1, 0, 1]})
    assert a.medmnist_exact.dtype == bool
    picked = a.subset([4, 0, 2])
    np.testing.assert_array_equal(picked.medmnist_exact, [False, True, False])
    # the mask stays with its image: image k holds the value k in every pixel
    sampled = a.sample(4, seed=1)
    np.testing.assert_array_equal(sampled.medmnist_exact, a.medmnist_exact[sampled.images[:, 0, 0, 0].numpy()])
    both = concat([a, picked])
    np.testing.assert_array_equal(both.medmnist_exact, np.concatenate([a.medmnist_exact, picked.medmnist_exact]))
    unmarked = ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels=[0, 1])
    assert unmarked.medmnist_exact is None
    assert concat([a, unmarked]).medmnist_exact is None  # unknown for the unmarked images: not guessed
    with pytest.raises(ValueError, match="subset mask 'medmnist_exact'"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels=[0, 1], subsets={"medmnist_exact": [True]})

    p = make_protocol("breast", 28)
    capped = cap_splits(p, 30, 50, seed=0)
    assert len(capped.test.medmnist_exact) == 50 and capped.test.medmnist_exact.all()  # official file: all exact


def _rebuilt_file(size: int):
    from adlib.paths import data_dir

    path = data_dir() / "rebuilt" / f"pneumoniamnist_{size}_rebuilt.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent: point ADLIB_DATA at shared/data to check the rebuilt PneumoniaMNIST files")
    return path


@pytest.mark.parametrize("size", [64, 128])
def test_rebuilt_pneumonia_marks_the_67_test_normals_missing_from_medmnist(size):
    _rebuilt_file(size)
    test = load_split("pneumonia", "test", size=size)
    assert test.meta["source_kind"] == "rebuilt-substitute"
    exact = test.medmnist_exact
    assert len(exact) == 624 and exact.sum() == 557  # MANIFEST: 557 of 624 matched, 67 Kaggle-only normals
    assert (test.labels[~exact] == 0).all()
    exact_test = test.subset(exact)
    assert exact_test.counts() == {"normal": 234 - 67, "anomalous": 390}
    for split in ("train", "val"):
        assert load_split("pneumonia", split, size=size).medmnist_exact.all()
    assert load_split("pneumonia", "test", size=28).medmnist_exact.all()  # the official 28 px file


def test_rebuilt_medmnist_exact_mask_is_aligned_with_the_images():
    """Downsized to 28 px, a matched image looks like the official image at the same index (MANIFEST: MAD about
    3); the 67 substituted ones do not (MAD about 31). So the mask is in the images' order."""
    _rebuilt_file(64)
    rebuilt = load_split("pneumonia", "test", size=28, file_size=64)
    official = load_split("pneumonia", "test", size=28)
    mad = (rebuilt.images.float() - official.images.float()).abs().mean(dim=(1, 2, 3)).numpy()
    exact = rebuilt.medmnist_exact
    assert np.median(mad[exact]) < 6 and np.median(mad[~exact]) > 15
    assert mad[exact].max() < mad[~exact].min()


def test_rebuilt_file_without_its_provenance_csv_is_refused(tmp_path, monkeypatch):
    source = _rebuilt_file(64)
    (tmp_path / "rebuilt").mkdir()
    (tmp_path / "rebuilt" / source.name).symlink_to(source)
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path))
    monkeypatch.setenv("ADLIB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="provenance.csv is missing"):
        load_split("pneumonia", "test", size=64, file_size=64)
    not_the_csv = tmp_path / "rebuilt" / "pneumoniamnist_64_128_provenance.csv"
    not_the_csv.write_text("split,index,label,matched_to_official\n")
    with pytest.raises(ChecksumError, match="SHA256"):
        load_split("pneumonia", "test", size=64, file_size=64)
