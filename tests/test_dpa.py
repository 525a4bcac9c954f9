"""DPA: progressive fade-in, relative-perceptual-L1, detector behaviour and weakly-supervised selection.

Random VGG19 weights throughout (weights="random"), so no pretrained checkpoint is needed.
"""
import numpy as np
import pandas as pd
import pytest
import torch

from adlib.data import ImageSet, make_synthetic_protocol
from adlib.detectors import Detector, create
from adlib.methods.dpa.losses import PerceptualLoss, l1_per_image, normalise, relative_perceptual_l1
from adlib.methods.dpa.network import PerceptualAutoencoder, downsample, resolution_levels, upsample
from adlib.methods.dpa.progressive import Schedule
from adlib.methods.dpa.selection import (config_name, kfold_indices, retrained_test_columns, selection_curve,
                                        weakly_supervised_search)
from adlib.metrics import auroc

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantoms():
    return make_synthetic_protocol(n_train=96, n_val=32, n_test=64, size=32, seed=0)


def test_resolution_levels_and_bad_sizes():
    assert resolution_levels(64) == [64, 32, 16, 8, 4]
    assert resolution_levels(28) == [28, 14, 7]
    with pytest.raises(ValueError):
        resolution_levels(48 * 3)
    with pytest.raises(ValueError):
        PerceptualAutoencoder(channels=2)
    with pytest.raises(ValueError):
        PerceptualAutoencoder(size=64, widths=[16, 16])


@pytest.mark.parametrize("channels", [1, 3])
def test_fade_in_is_continuous(channels):
    """At alpha = 0 the grown network equals the previous (lower-resolution) network, upsampled."""
    torch.manual_seed(0)
    net = PerceptualAutoencoder(channels, 64, [8, 8, 12, 12, 16], latent=8).eval()
    x = torch.rand(3, channels, 32, 32)
    with torch.no_grad():
        at_zero = net(x, 32, 0.0)
        previous = upsample(net(downsample(x), 16, 1.0))
        near_zero = net(x, 32, 1e-4)
        full = net(x, 32, 1.0)
    assert at_zero.shape == x.shape
    torch.testing.assert_close(at_zero, previous, atol=1e-6, rtol=0)
    assert (near_zero - at_zero).abs().max() < 1e-2  # no jump when alpha starts to rise
    assert (full - at_zero).abs().max() > 1e-3  # ... and the new layers do change the output


def test_schedule_fades_network_and_loss_together():
    sched = Schedule.grow(8, 64, stabilise=10, transition=4, final_stabilise=100)
    assert [s.resolution for s in sched.stages] == [8, 16, 32, 64]
    assert [s.layers for s in sched.stages] == [("relu1_2",), ("relu2_2",), ("relu3_2",), ("relu4_2",)]
    first = sched.at(0)
    assert (first.resolution, first.alpha, first.previous_layers) == (8, 1.0, None)
    alphas = [sched.at(10 + i).alpha for i in range(4)]
    assert alphas == [0.0, 0.25, 0.5, 0.75]
    assert sched.at(10).resolution == 16 and sched.at(10).previous_layers == ("relu1_2",)
    assert sched.at(14).alpha == 1.0
    assert sched.growth_steps == 10 + 14 + 14 + 4 and sched.total_steps == sched.growth_steps + 100
    assert sched.at(10_000).resolution == 64
    with pytest.raises(ValueError):
        Schedule.grow(8, 48, 10, 4)


def test_relative_perceptual_l1_formula():
    torch.manual_seed(0)
    fx, fy = torch.randn(4, 6, 5, 5) + 1.0, torch.randn(4, 6, 5, 5)
    mean, std = torch.randn(6), torch.rand(6) + 0.5
    base = relative_perceptual_l1(normalise(fx, mean, std), normalise(fy, mean, std))
    # by hand for image 0
    a, b = (fx[0] - mean.view(-1, 1, 1)) / std.view(-1, 1, 1), (fy[0] - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
    assert torch.isclose(base[0], (a - b).abs().sum() / a.abs().sum(), rtol=1e-5)
    assert torch.all(relative_perceptual_l1(normalise(fx, mean, std), normalise(fx, mean, std)) == 0)
    # scaling sigma by c scales numerator and denominator alike: invariant
    for c in (0.1, 7.0):
        torch.testing.assert_close(relative_perceptual_l1(normalise(fx, mean, c * std), normalise(fy, mean, c * std)),
                                   base, rtol=1e-5, atol=1e-7)
    # ... but a per-channel reweighting or a different mean does change it
    other = relative_perceptual_l1(normalise(fx, mean + 1.0, std), normalise(fy, mean + 1.0, std))
    assert (other - base).abs().max() > 1e-3


def test_perceptual_loss_on_backbone_zero_for_identical_inputs():
    loss = PerceptualLoss("vgg19", "random")
    x = torch.rand(3, 1, 16, 16)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    same = loss.per_image(x, x.clone(), ("relu2_2",))
    assert torch.all(same.abs() < 1e-6)
    assert torch.all(loss.per_image(x, y, ("relu2_2",)) > 0.01)
    maps = loss.maps(x, y, ("relu2_2",))
    assert maps.shape == (3, 16, 16)
    torch.testing.assert_close(maps.mean((1, 2)), loss.per_image(x, y, ("relu2_2",)), rtol=2e-2, atol=1e-4)
    assert torch.all(l1_per_image(x, x) == 0)


def _tiny_dpa(**kw):
    base = dict(weights="random", latent=8, widths=8, batch_size=16, steps=40, eval_every=20, patience=None,
                layers=("relu2_2",), progress=False, seed=3)
    return create("dpa", **{**base, **kw})


def test_dpa_beats_chance_on_synthetic_lesions(phantoms):
    p = phantoms
    detector = _tiny_dpa(latent=16, widths=16, steps=100, layers=("relu3_2",)).fit(p.train)
    scores = detector.score(p.test)
    assert np.all(np.isfinite(scores))
    assert auroc(p.test.labels, scores) > 0.75
    assert detector.weights == "random"
    few = p.test.subset(np.arange(4))
    assert detector.anomaly_maps(few).shape == (4, 32, 32)
    assert detector.embed(few).shape == (4, 16)
    assert detector.reconstruct(few).shape == (4, 1, 32, 32)


def test_same_seed_same_scores(phantoms):
    p = phantoms
    first = _tiny_dpa(steps=10).fit(p.train).score(p.test)
    again = _tiny_dpa(steps=10).fit(p.train).score(p.test)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-7)
    other = _tiny_dpa(steps=10, seed=4).fit(p.train).score(p.test)
    assert np.abs(other - first).max() > 1e-4


def test_progressive_and_ablation_variants_run(phantoms):
    p = phantoms
    grown = _tiny_dpa(progressive=True, stage_steps=4, transition_steps=4, steps=8, layers=None).fit(p.train)
    assert grown.final_loss_layers == ("relu3_2",)  # the authors' layer at 32 px
    assert len(grown.history.steps) == 4 + 8 + 4 + 8
    assert np.all(np.isfinite(grown.score(p.test)))
    adv = _tiny_dpa(loss="perceptual+l1+adv", steps=4, adv_weight=1.0, l1_weight=1.0).fit(p.train)
    assert np.all(np.isfinite(adv.score(p.test)))
    l1 = _tiny_dpa(loss="l1", steps=20).fit(p.train)
    assert l1.weights == "none" and l1.perceptual is None
    # the L1 score is the mean absolute residual
    x = p.test.float_images()[:5]
    np.testing.assert_allclose(l1.score(x), (x - l1.reconstruct(x)).abs().flatten(1).mean(1).numpy(), rtol=1e-5)


def test_bad_input_gets_clear_errors(phantoms):
    with pytest.raises(ValueError, match="loss must be one of"):
        create("dpa", loss="ssim", weights="random")
    with pytest.raises(ValueError, match="progressive"):
        create("dpa", loss="perceptual+adv", progressive=True, weights="random")
    with pytest.raises(RuntimeError, match="fit"):
        _tiny_dpa().score(phantoms.test)


class _BrightnessDetector(Detector):
    """Stand-in for a trained detector: score = gain * brightest pixel + offset (no training; the
    synthetic lesions are the brightest spots, so gain > 0 separates them)."""

    def __init__(self, gain, offset):
        self.gain, self.offset = gain, offset

    def fit(self, train, val=None, anomalies=None):
        return self

    def score(self, images):
        x = images.float_images() if isinstance(images, ImageSet) else images
        return (self.gain * x.flatten(1).max(1).values + self.offset).numpy()


def test_weakly_supervised_selection_picks_best_validation_auroc(phantoms):
    p = phantoms
    assert sorted(np.concatenate(kfold_indices(10, 3, 0)).tolist()) == list(range(10))
    grid = [dict(gain=-1.0, offset=0.0), dict(gain=1.0, offset=5.0), dict(gain=1.0, offset=0.0)]
    search = weakly_supervised_search(lambda cfg, fold: _BrightnessDetector(**cfg), grid, p.train,
                                      p.train_anomaly_pool, progress=False)
    table = search.evaluate()
    # the brightest pixel separates the phantoms; gain -1 inverts it; the offset does not change AUROC
    assert table.loc[0, "val_AUROC_mean"] < 0.5 < table.loc[2, "val_AUROC_mean"]
    assert table.loc[1, "val_AUROC_mean"] == pytest.approx(table.loc[2, "val_AUROC_mean"])
    choice = search.select()
    assert choice["weakly-supervised"] in (1, 2)
    assert choice["unsupervised"] == 0  # lowest held-out "loss" = negative brightness, whatever its AUROC
    curve = selection_curve(search, [0.1, 0.9, 0.9], sizes=[3, 6], repeats=2, exact_auroc=[0.2, 0.8, 0.7])
    assert len(curve) == 4 and set(curve["test_AUROC"]) <= {0.1, 0.9}
    chosen = curve["chosen"].map({config_name(c): i for i, c in enumerate(grid)})
    assert curve["AUROC_medmnist_exact"].tolist() == [[0.2, 0.8, 0.7][i] for i in chosen]
    test_like = p.test.subset(np.flatnonzero(p.test.labels == 1))
    with pytest.raises(ValueError, match="test"):
        weakly_supervised_search(lambda cfg, fold: _BrightnessDetector(**cfg), grid, p.train, test_like)


def test_cached_target_features_give_identical_training(one_torch_thread):
    """Caching f(x) of the un-augmented training images is an optimisation, not a change of method."""
    from adlib.data import make_synthetic_protocol

    p = make_synthetic_protocol(n_train=40, n_val=8, n_test=8, size=32, seed=0)
    params = []
    for cache in (True, False):
        d = create("dpa", arch="vgg19", weights="random", steps=4, batch_size=8, progress=False, patience=None,
                   cache_targets=cache).fit(p.train)
        params.append([t.detach().clone() for t in d.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params))


def test_selection_grid_carries_the_medmnist_exact_auroc_like_every_pneumonia_table():
    """results/02_selection_grid.csv once had only the whole-split test AUROC (issue 19)."""
    from types import SimpleNamespace

    from adlib.methods.dpa import reading

    runs = [SimpleNamespace(metrics={"AUROC": 0.7, "AUROC_medmnist_exact": 0.75, "n_test_medmnist_exact": 557}),
            SimpleNamespace(metrics={})]  # a diverged run
    cols = retrained_test_columns(runs)
    assert cols["test_AUROC"][0] == 0.7 and np.isnan(cols["test_AUROC"][1])
    assert cols["AUROC_medmnist_exact"][0] == 0.75 and cols["n_test_medmnist_exact"][0] == 557
    not_medmnist = retrained_test_columns([SimpleNamespace(metrics={"AUROC": 0.6})])
    assert "AUROC_medmnist_exact" not in not_medmnist
    grid = pd.DataFrame({"config": ["a", "b"], "val_AUROC_mean": [0.9, 0.8], "val_AUROC_std": [0.01, 0.02],
                         "heldout_normal_loss": [0.5, 0.4], **cols})
    shown = reading.grid_display(grid)
    assert shown["AUROC_medmnist_exact"].tolist() == ["75.0", "—"] and "n_test_medmnist_exact" not in shown
    assert "557 of them" in reading.exact_caption(grid, 624) and "all 624" in reading.exact_caption(grid, 624)
