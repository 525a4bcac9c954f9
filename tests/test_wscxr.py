"""Patch-feature machinery and the WSCXR / PatchCore / SimpleNet detectors (notebook 06).

The detector tests use a randomly initialised DenseNet121 (weights="random": no checkpoint needed, and random
conv features already separate the bright synthetic lesions from the phantom texture) on small synthetic
phantoms with lesion masks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from adlib.data import TestDataError
from adlib.patch_features import FeatureSplit
import torch

from adlib.data import few_shot_anomalies, make_synthetic_protocol
from adlib.detectors import create
from adlib.metrics import auroc, pixel_auroc
from adlib.methods.wscxr import linear_mix, mine_anomaly_features, wscxr_loss
from adlib.patch_features import (PatchFeaturizer, aggregate_neighbourhood, combine_layers, greedy_coreset,
                                  knn_distances, patch_maps_to_images)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_coreset_picks_far_apart_points_and_is_reproducible():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 32, generator=g) * 20
    points = torch.cat([c + 0.1 * torch.randn(50, 32, generator=g) for c in centres])  # 6 tight clusters
    cluster = torch.arange(6).repeat_interleave(50)
    idx = greedy_coreset(points, n_select=6, projection_dim=None, seed=3)
    assert sorted(cluster[idx].tolist()) == list(range(6)), "greedy k-centre must take one point per cluster"
    assert torch.equal(idx, greedy_coreset(points, n_select=6, projection_dim=None, seed=3))
    # with a projection and many points: selected points are farther apart than a random subset
    x = torch.randn(2000, 64, generator=g)
    sel = greedy_coreset(x, fraction=0.02, projection_dim=16, seed=1)
    assert len(sel) == 40 and len(set(sel.tolist())) == 40
    assert torch.equal(sel, greedy_coreset(x, fraction=0.02, projection_dim=16, seed=1))
    rand = torch.randperm(2000, generator=g)[:40]

    def min_pairwise(ix):
        d = torch.cdist(x[ix], x[ix])
        return d[~torch.eye(len(ix), dtype=torch.bool)].min()

    assert min_pairwise(sel) > min_pairwise(rand)
    with pytest.raises(ValueError):
        greedy_coreset(x, n_select=10, fraction=0.1)


@pytest.mark.parametrize("k", [1, 4])
def test_chunked_knn_equals_brute_force(k):
    g = torch.Generator().manual_seed(1)
    q, bank = torch.randn(301, 24, generator=g), torch.randn(517, 24, generator=g)
    brute = torch.cdist(q.double(), bank.double())
    want_d, want_i = torch.topk(brute, k, dim=1, largest=False)
    # a tiny memory budget forces many query blocks *and* bank blocks
    d, i = knn_distances(q, bank, k=k, max_bytes=64 * 1024, return_indices=True)
    assert torch.allclose(d.double(), want_d, atol=1e-4)
    assert torch.equal(i, want_i)
    assert torch.allclose(knn_distances(q, bank, k=k).double(), want_d, atol=1e-4)
    with pytest.raises(ValueError):
        knn_distances(q, bank[:, :5])


def test_mining_keeps_floor_r_times_m_farthest_features():
    g = torch.Generator().manual_seed(2)
    normal = torch.randn(400, 16, generator=g)
    anomalous = torch.cat([torch.randn(90, 16, generator=g), torch.randn(13, 16, generator=g) + 6])
    for r in (0.2, 0.37, 1.0):
        mined, index, scores = mine_anomaly_features(anomalous, normal, retention=r, k=5)
        n_keep = math.floor(r * len(anomalous))
        assert len(mined) == len(index) == n_keep
        brute = torch.cdist(anomalous, normal).topk(5, dim=1, largest=False).values.mean(1)
        assert torch.allclose(scores, brute, atol=1e-4)
        kept = set(index.tolist())
        threshold = brute[index].min()
        assert all(brute[j] <= threshold + 1e-6 for j in range(len(anomalous)) if j not in kept)
        assert torch.equal(mined, anomalous[index])
    # r = 0.2 of 103 keeps 20: the 13 shifted (lesion-like) features must all be among them
    _, index, _ = mine_anomaly_features(anomalous, normal, retention=0.2, k=5)
    assert set(range(90, 103)) <= set(index.tolist())
    with pytest.raises(ValueError):
        mine_anomaly_features(anomalous[:3], normal, retention=0.2)


def test_linear_mixing_stays_on_the_segment():
    g = torch.Generator().manual_seed(3)
    n, a = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g)
    w = 0.1 + 0.9 * torch.rand(200, generator=g)
    m = linear_mix(n, a, w)
    seg = (a - n).norm(dim=1)
    assert torch.allclose((m - n).norm(dim=1) + (a - m).norm(dim=1), seg, atol=1e-5)
    assert torch.allclose((m - n).norm(dim=1), w * seg, atol=1e-5)
    assert torch.allclose(linear_mix(n, a, torch.ones(200)), a) and torch.allclose(linear_mix(n, a, torch.zeros(200)), n)


def test_eq7_loss_and_neighbourhood_aggregation():
    assert float(wscxr_loss(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0]))) == 0.0
    assert float(wscxr_loss(torch.tensor([0.5]), torch.tensor([0.0]))) == pytest.approx(1.5)
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 3] = 25.0
    y = aggregate_neighbourhood(x, 5)
    assert y[0, 0, 3, 3] == pytest.approx(1.0) and y[0, 0, 0, 0] == 0
    assert y[0, 0, 1, 1] == pytest.approx(25 / 16)  # border: padding is not counted (4 x 4 valid cells)
    feats = {"a": torch.randn(2, 8, 4, 4), "b": torch.randn(2, 16, 2, 2)}
    out = combine_layers(feats, ("a", "b"), 3, 6)
    assert out.shape == (2, 4, 4, 6)
    maps = patch_maps_to_images(torch.rand(3, 4, 4), 32, sigma=2)
    assert maps.shape == (3, 32, 32)


@pytest.fixture(scope="module")
def synthetic_features(one_torch_thread):
    protocol = make_synthetic_protocol(n_train=48, n_val=24, n_test=48, size=64, seed=0)
    fz = PatchFeaturizer(arch="densenet121", layers=("denseblock1", "denseblock2"), weights="random",
                         input_size=64, patch_size=3, dim=128)
    anomalies = few_shot_anomalies(protocol, 4, seed=0)
    feats = {name: fz.extract(s, progress=False) for name, s in
             (("train", protocol.train), ("val", protocol.val), ("test", protocol.test), ("anom", anomalies))}
    return protocol, fz, feats


@pytest.mark.parametrize("method,kwargs", [
    ("patchcore", dict(coreset_fraction=0.25)),
    ("simplenet", dict(epochs=10, hidden=128, eval_every=2)),
    ("wscxr", dict(epochs=4, hidden=128, eval_every=2, coreset_fraction=0.25)),
])
def test_detectors_beat_chance_and_localise_synthetic_lesions(synthetic_features, method, kwargs):
    protocol, fz, f = synthetic_features
    det = create(method, featurizer=fz, progress=False, map_sigma=2.0, **kwargs)
    val = FeatureSplit(f["val"], protocol.val.labels, "val", protocol.val.from_test)
    det.fit_features(f["train"], val, f["anom"])
    scores = det.score_features(f["test"])
    assert scores.shape == (len(protocol.test),) and np.isfinite(scores).all()
    image_auroc = auroc(protocol.test.labels, scores)
    anomalous = protocol.test.labels == 1
    maps = det.maps_from_features(f["test"][torch.as_tensor(anomalous)], protocol.test.size)
    pix = pixel_auroc(protocol.test.masks[torch.as_tensor(anomalous)].numpy(), maps)
    assert image_auroc > 0.75, f"{method}: image AUROC {image_auroc:.3f}"
    assert pix > 0.75, f"{method}: pixel AUROC {pix:.3f}"


def test_feature_detectors_refuse_test_features_for_checkpoint_choice(synthetic_features):
    protocol, fz, f = synthetic_features
    renamed = FeatureSplit(f["test"], protocol.test.labels, "val", protocol.test.from_test)  # test data, renamed
    with pytest.raises(TestDataError):
        create("simplenet", featurizer=fz, progress=False, epochs=1).fit_features(f["train"], renamed)
    with pytest.raises(TypeError):  # a bare (features, labels) tuple carries no test mark: refused
        create("simplenet", featurizer=fz, progress=False, epochs=1).fit_features(
            f["train"], (f["val"], protocol.val.labels))
    test_split = FeatureSplit(f["test"], protocol.test.labels, "train", protocol.test.from_test)
    for method in ("simplenet", "patchcore", "wscxr"):  # test features as the training normals or anomalies
        kw = {} if method == "patchcore" else dict(epochs=1)
        with pytest.raises(TestDataError):
            create(method, featurizer=fz, progress=False, **kw).fit_features(test_split)
        with pytest.raises(TestDataError):
            create(method, featurizer=fz, progress=False, **kw).fit_features(f["train"], None, test_split)


def test_wscxr_needs_anomalies_and_detector_api_on_images(synthetic_features):
    protocol, fz, f = synthetic_features
    with pytest.raises(ValueError, match="anomalous"):
        create("wscxr", featurizer=fz, progress=False).fit_features(f["train"], None, None)
    det = create("patchcore", featurizer=fz, progress=False, coreset_fraction=0.1)
    with pytest.raises(RuntimeError):
        det.score(protocol.test.images[:2])
    det.fit(protocol.train.subset(np.arange(8)))
    maps = det.anomaly_maps(protocol.test.subset(np.arange(3)))
    assert maps.shape == (3, 64, 64)
    assert det.weights == "random"


def test_cutpaste_curve_records_without_changing_the_training():
    """The diagnostic curve of notebook 06 (validation AUROC and pretext-task accuracy over training) cuts the run
    into chunks that resume from a checkpoint: the trained model must be exactly the one of a plain fit."""
    protocol = make_synthetic_protocol(n_train=32, n_val=24, n_test=16, size=32)
    kw = dict(arch="efficientnet_lite0", weights="random", steps=5, batch_size=8, freeze_until="stage4",
              input_size=32, progress=False, seed=3)
    plain = create("cutpaste", **kw).fit(protocol.train)
    traced = create("cutpaste", curve_every=2, **kw).fit(protocol.train, val=protocol.val)
    np.testing.assert_array_equal(plain.score(protocol.test), traced.score(protocol.test))
    curve = traced.history.extras["curve"]
    assert curve["step"] == [0, 2, 4, 5] and traced.history.status == "completed"
    assert all(0 <= a <= 1 for a in curve["val_AUROC"] + curve["task_accuracy"])
    with pytest.raises(TestDataError):  # the curve is a validation-split measurement only
        create("cutpaste", curve_every=2, **kw).fit(protocol.train, val=protocol.test)


def test_authors_protocol_diagnostic_is_an_oracle_on_the_test_set():
    """The authors' protocol: the best *test* epoch and Youden's J on test (so at least as good as any threshold)."""
    from types import SimpleNamespace

    from adlib.methods.wscxr import authors_protocol_diagnostic

    labels = np.array([0, 0, 0, 1, 1, 1])
    history = SimpleNamespace(extras={"diagnostic_auroc": [0.5, 1.0], "steps_per_epoch": 2,
                                      "diagnostic_scores": [np.zeros(6), np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])]},
                              eval_steps=[2, 4])
    out = authors_protocol_diagnostic(history, labels)
    assert out == {"AUROC": 1.0, "ACC": 1.0, "F1": 1.0, "epoch": 2}
