"""Baseline detectors of DPA (Deep IF, Deep GEO) and WSCXR (CutPaste): behaviour on synthetic phantoms,
the geometric transformations, the CutPaste augmentation, determinism and input checks.

Backbones use weights="random" so that no pretrained checkpoint is needed.
"""
import numpy as np
import pytest
import torch

from adlib.data import make_synthetic_protocol
from adlib.detectors import available, create
from adlib.methods.cutpaste import GaussianDensity, paste_patches
from adlib.methods.deep_geo import (N_TRANSFORMS, TRANSFORMS, apply_transform, default_shift, fit_dirichlet,
                                    inverse_transform, transform_subset)
from adlib.metrics import auroc


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantoms32():
    return make_synthetic_protocol(n_train=128, n_val=32, n_test=64, size=32, channels=1, seed=0)


@pytest.fixture(scope="module")
def phantoms16():
    return make_synthetic_protocol(n_train=128, n_val=32, n_test=64, size=16, channels=1, seed=0)


def test_baselines_are_registered():
    assert {"deep_if", "deep_geo", "cutpaste"} <= set(available())


# ------------------------------------------------------------------------------------------------ Deep IF
def test_deep_if_beats_chance_and_records_weights(phantoms32):
    p = phantoms32
    detector = create("deep_if", weights="random", layer="layer2", progress=False).fit(p.train)
    scores = detector.score(p.test)
    assert scores.shape == (len(p.test),) and np.isfinite(scores).all()
    assert detector.weights == "random"
    assert auroc(p.test.labels, scores) > 0.65
    assert detector.embed(p.test.images[:5]).shape == (5, 128)  # resnet18 layer2 channels


def test_deep_if_layer_search_selects_on_validation(phantoms32):
    p = phantoms32
    layers = ("layer1", "layer2", "layer3")
    detector = create("deep_if", weights="random", layer=layers, progress=False).fit(p.train, p.val)
    assert set(detector.layer_aurocs) == set(layers)
    assert detector.layer == max(layers, key=detector.layer_aurocs.get)
    with pytest.raises(ValueError, match="validation"):
        create("deep_if", weights="random", layer=layers, progress=False).fit(p.train, p.val.normals())


# ------------------------------------------------------------------------------------------------ Deep GEO
def test_deep_geo_has_72_distinct_invertible_transforms():
    assert N_TRANSFORMS == len(TRANSFORMS) == 72 and len(set(TRANSFORMS)) == 72
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    s = default_shift(16)
    assert s == 4  # 8 px at 32 px, scaled
    outputs = torch.stack([apply_transform(x, i) for i in range(72)])
    assert outputs.shape == (72, *x.shape)
    flat = outputs.flatten(1)
    distances = torch.cdist(flat, flat)
    assert (distances + torch.eye(72) * 1e9).min() > 1e-3, "two transformations give the same images"
    assert torch.equal(apply_transform(x, 0), x)  # index 0 is the identity
    for i in range(72):
        # cyclic translations: every transformation is exactly invertible
        circ = apply_transform(x, i, mode="circular")
        assert torch.equal(inverse_transform(circ, i, mode="circular"), x)
        # reflect-filled translations (the original): exact away from the shifted-out border band
        back = inverse_transform(apply_transform(x, i), i)
        assert torch.equal(back[..., s:-s, s:-s], x[..., s:-s, s:-s])
        if TRANSFORMS[i].tx == 0 and TRANSFORMS[i].ty == 0:
            assert torch.equal(back, x)
    # a per-image index tensor equals applying each index on its own; RGB works too
    rgb = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    index = torch.tensor([5, 71, 5, 30])
    expected = torch.cat([apply_transform(rgb[k:k + 1], int(i)) for k, i in enumerate(index)])
    assert torch.equal(apply_transform(rgb, index), expected)
    with pytest.raises(IndexError):
        apply_transform(x, 72)


def test_deep_geo_transform_subsets():
    assert transform_subset(72) == list(range(72))
    eight = [TRANSFORMS[i] for i in transform_subset(8)]
    assert len(eight) == 8 and all(t.tx == 0 and t.ty == 0 for t in eight)
    assert {(t.flip, t.rot) for t in eight} == {(f, r) for f in (False, True) for r in range(4)}
    assert len(transform_subset(4)) == 4
    with pytest.raises(ValueError):
        transform_subset(10)


def test_fit_dirichlet_recovers_known_concentration():
    alpha = np.array([2.0, 5.0, 1.0, 0.5])
    samples = np.random.default_rng(0).dirichlet(alpha, size=4000)
    np.testing.assert_allclose(fit_dirichlet(samples), alpha, rtol=0.1)


def test_deep_geo_beats_chance(phantoms16):
    p = phantoms16
    detector = create("deep_geo", n_transforms=72, widen_factor=1, steps=60, batch_size=32,
                      score_mode="dirichlet", progress=False).fit(p.train)
    assert detector.dirichlet_alphas.shape == (72, 72)
    losses = detector.history.train_loss
    assert np.mean(losses[-10:]) < np.mean(losses[:10])  # the transformation classifier learns
    probabilities = detector.transformation_probabilities(p.test)
    assert probabilities.shape == (len(p.test), 72, 72)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    simple = -np.diagonal(probabilities, axis1=1, axis2=2).mean(axis=1)
    assert auroc(p.test.labels, simple) > 0.65
    assert auroc(p.test.labels, detector.score(p.test)) > 0.65  # the Dirichlet score
    assert detector.embed(p.test.images[:3]).shape == (3, detector.model.feature_dim)


# ------------------------------------------------------------------------------------------------ CutPaste
@pytest.mark.parametrize("kind", ["cutpaste", "scar"])
@pytest.mark.parametrize("channels", [1, 3])
def test_cutpaste_changes_only_pasted_region(kind, channels):
    p = make_synthetic_protocol(n_train=16, n_val=4, n_test=4, size=32, channels=channels, seed=3)
    for x in (p.train.images, p.train.float_images()):
        out, mask = paste_patches(x, kind, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert mask.shape == (len(x), 32, 32) and mask.dtype == torch.bool
        outside = ~mask.unsqueeze(1).expand_as(x)
        assert torch.equal(out[outside], x[outside])
        area = mask.flatten(1).float().mean(1)
        assert (area > 0).all() and (area < 0.5).all()
        assert (out != x).flatten(1).any(1).float().mean() > 0.5  # most images actually changed
    if kind == "cutpaste":
        # without colour jitter an unrotated patch is an exact copy of another region of the image
        x = p.train.float_images()
        out, mask = paste_patches(x, kind, torch.Generator().manual_seed(1), jitter=0.0)
        for img, new, m in zip(x, out, mask):
            rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
            h, w = len(rows), len(cols)
            assert int(m.sum()) == h * w  # a full rectangle
            patch = new[:, rows[0]:rows[0] + h, cols[0]:cols[0] + w]
            windows = img.unfold(1, h, 1).unfold(2, w, 1)  # (C, H-h+1, W-w+1, h, w)
            diff = (windows - patch[:, None, None]).abs().amax(dim=(0, 3, 4))
            assert diff.min() == 0


def test_gaussian_density_matches_sklearn_mahalanobis():
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(40, 64)), rng.normal(size=(10, 64)) * 2  # fewer samples than dimensions
    ours = GaussianDensity().fit(train).mahalanobis(test)
    reference = np.sqrt(LedoitWolf().fit(train).mahalanobis(test))
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_cutpaste_beats_chance_rgb():
    p = make_synthetic_protocol(n_train=128, n_val=32, n_test=64, size=32, channels=3, seed=0)
    detector = create("cutpaste", weights="random", variant="3way", freeze_until="layer1", steps=20,
                      batch_size=16, progress=False).fit(p.train)
    scores = detector.score(p.test)
    assert detector.weights == "random" and scores.shape == (len(p.test),)
    losses = detector.history.train_loss
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # normal / cutpaste / scar become separable
    assert auroc(p.test.labels, scores) > 0.65
    assert detector.embed(p.test.images[:3]).shape == (3, 512)


# ------------------------------------------------------------------------------------------------ all three
TINY = {
    "deep_if": dict(weights="random", layer="layer1"),
    "deep_geo": dict(n_transforms=8, widen_factor=1, steps=8, batch_size=16),
    "cutpaste": dict(weights="random", steps=3, batch_size=8, freeze_until="layer2"),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_seed_gives_identical_scores(name, phantoms16):
    p = phantoms16
    train, test = p.train.sample(48, 0), p.test.sample(24, 0)
    first = create(name, seed=3, progress=False, **TINY[name]).fit(train).score(test)
    second = create(name, seed=3, progress=False, **TINY[name]).fit(train).score(test)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", sorted(TINY))
def test_bad_input_gives_clear_errors(name, phantoms16):
    p = phantoms16
    detector = create(name, progress=False, **TINY[name])
    with pytest.raises(RuntimeError, match="fit"):
        detector.score(p.test)
    with pytest.raises(TypeError):
        detector.fit(p.train.images)
    detector.fit(p.train.sample(32, 0))
    with pytest.raises(ValueError, match="channels"):
        detector.score(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        detector.score(torch.zeros(16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        detector.score(torch.full((2, 1, 16, 16), 255.0))
    with pytest.raises(ValueError, match="16x16"):
        detector.score(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    # the same images as a uint8 tensor, a float tensor and an ImageSet score identically
    test = p.test.sample(6, 0)
    np.testing.assert_allclose(detector.score(test.images), detector.score(test), rtol=1e-6)
    np.testing.assert_allclose(detector.score(test.float_images()), detector.score(test), rtol=1e-6)


def test_invalid_hyperparameters_are_rejected():
    with pytest.raises(ValueError):
        create("deep_geo", n_transforms=5)
    with pytest.raises(ValueError):
        create("deep_geo", score_mode="entropy")
    with pytest.raises(ValueError):
        create("cutpaste", variant="4way")
    with pytest.raises(ValueError):
        create("cutpaste", freeze_until="layer7")
    with pytest.raises(ValueError):
        create("deep_if", layer=())
