"""CCB-AAE family (GANomaly / Skip-GANomaly / CCB-AAE) and the GAN baselines EGBAD and AnoGAN.

Tiny networks (width 8) on synthetic lesion phantoms, one CPU thread; the whole file runs in well under a minute.
"""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from adlib.data import imageset, make_synthetic_protocol
from adlib.detectors import available, create
from adlib.methods.adversarial_ae import detector as aae_detector
from adlib.methods.adversarial_ae.losses import (combine, feature_matching, generator_objective, image_error,
                                                  latent_error)
from adlib.gan import (PAPER_CCB_LENGTHS, AdversarialAutoencoder, ChainOfConvBlocks,
                                                  Decoder, Discriminator, Encoder, JointDiscriminator, dcgan_depth,
                                                  default_depth, scaled_ccb_lengths)
from adlib.metrics import auroc
from adlib.training import TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = ("ganomaly", "skip_ganomaly", "ccb_aae", "egbad", "anogan")
# Small budgets that still learn the phantoms (the paper's lr 2e-4 everywhere but AnoGAN's short DCGAN run).
FAST = {
    "ganomaly": dict(width=8, nz=16, steps=100, batch_size=32, eval_every=50),
    "skip_ganomaly": dict(width=8, nz=16, steps=100, batch_size=32, eval_every=50),
    "ccb_aae": dict(width=8, nz=16, steps=100, batch_size=32, eval_every=50),
    "egbad": dict(width=8, nz=32, hidden=128, steps=600, batch_size=32, eval_every=50),
    "anogan": dict(width=8, nz=16, steps=200, lr=5e-4, batch_size=32, search_steps=30),
}


@pytest.fixture(scope="module")
def lesions():
    return make_synthetic_protocol(n_train=256, n_val=64, n_test=256, size=32, seed=0)


@pytest.fixture(scope="module")
def fitted(lesions):
    return {name: create(name, seed=0, device="cpu", progress=False, **FAST[name]).fit(lesions.train, lesions.val)
            for name in NAMES}


# ----- architecture -----------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [1, 2, 4, 6, 8])
def test_ccb_lengths_give_the_stated_conv_blocks_per_level(factor):
    lengths = scaled_ccb_lengths(factor)
    assert lengths == tuple(factor * n for n in (1, 2, 3, 4))  # Tables 6/7: [1-4], [2,4,6,8], ..., [8,16,24,32]
    dec = Decoder(1, 32, nz=8, width=4, skip="ccb", ccb_lengths=lengths)
    assert dec.conv_blocks_per_level() == list(lengths)  # bottom (deepest) level first
    for chain, n in zip(dec.connections, reversed(lengths)):  # connections are stored shallowest first
        assert isinstance(chain, ChainOfConvBlocks)
        convs = [m for m in chain if isinstance(m, nn.Conv2d)]
        assert len(convs) == n and sum(isinstance(m, nn.ReLU) for m in chain) == n
        assert all(c.kernel_size == (3, 3) and c.in_channels == c.out_channels for c in convs)
    # the shallowest connection carries the longest chain; the deepest the shortest
    assert dec.connections[0].n_conv == max(lengths) and dec.connections[-1].n_conv == min(lengths)


def test_skip_variants_and_depth():
    assert default_depth(32) == default_depth(64) == default_depth(128) == 5
    assert default_depth(16) == 4 and dcgan_depth(32) == 3 and dcgan_depth(64) == 4
    plain = Decoder(1, 64, nz=8, width=4, skip="plain")
    assert len(plain.connections) == 4 and all(isinstance(c, nn.Identity) for c in plain.connections)
    assert len(Decoder(1, 64, nz=8, width=4, skip="none").connections) == 0
    small = Decoder(1, 16, nz=8, width=4, skip="ccb")  # 4 levels: the top three lengths are kept
    assert small.conv_blocks_per_level() == [2, 3, 4]
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():  # a chain keeps the feature map's size
        assert ChainOfConvBlocks(1, 3)(x).shape == x.shape
    with pytest.raises(ValueError):
        Decoder(1, 32, skip="dense")
    with pytest.raises(ValueError):
        Decoder(1, 32, skip="ccb", ccb_lengths=(1, 2))
    with pytest.raises(ValueError):
        default_depth(48 + 2)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 64])
def test_network_shapes(channels, size):
    x = torch.rand(3, channels, size, size) * 2 - 1
    with torch.no_grad():
        for skip in ("none", "plain", "ccb"):
            g = AdversarialAutoencoder(channels, size, nz=12, width=4, skip=skip, second_encoder=skip == "none")
            x_hat, z, z_hat = g(x)
            assert x_hat.shape == x.shape and z.shape == (3, 12, 1, 1) and g.depth == 5
            assert (z_hat is None) == (skip != "none")
            assert float(x_hat.abs().max()) <= 1.0  # tanh output
        logit, feats = Discriminator(channels, size, width=4)(x)
        assert logit.shape == (3,) and feats.shape[0] == 3
        depth = dcgan_depth(size)
        z = Encoder(channels, size, nz=12, width=4, depth=depth)(x)
        assert z.shape == (3, 12, 1, 1)
        assert Decoder(channels, size, nz=12, width=4, depth=depth)(z).shape == x.shape
        logit, feats = JointDiscriminator(channels, size, nz=12, width=4, hidden=16, depth=depth)(x, z)
        assert logit.shape == (3,) and feats.shape == (3, 16)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 64])
def test_detector_outputs_have_the_right_shapes(channels, size):
    p = make_synthetic_protocol(n_train=8, n_val=4, n_test=4, size=size, channels=channels, seed=1)
    for name in NAMES:
        kw = dict(width=4, nz=8, steps=2, batch_size=4, seed=0, device="cpu", progress=False)
        kw.update({"search_steps": 2} if name == "anogan" else {"eval_every": 1})
        det = create(name, **kw).fit(p.train, p.val)
        n = len(p.test)
        assert det.score(p.test).shape == (n,), name
        assert tuple(det.reconstruct(p.test).shape) == (n, channels, size, size), name
        assert det.anomaly_maps(p.test).shape == (n, size, size), name
        emb = det.embed(p.test)
        assert emb.ndim == 2 and len(emb) == n, name
        with pytest.raises(ValueError):  # fitted on one shape, refuses another
            det.score(torch.zeros(2, channels, size // 2, size // 2, dtype=torch.uint8))


def test_registered_variants():
    assert set(NAMES) <= set(available())
    expected = {"ganomaly": ("none", "encoder"), "skip_ganomaly": ("plain", "discriminator"),
                "ccb_aae": ("ccb", "discriminator")}
    for name, (skip, source) in expected.items():
        det = create(name)
        assert (det.skip, det.latent_source, det.name) == (skip, source, name)
        assert isinstance(det, aae_detector.AdversarialAEDetector)
    assert create("ccb_aae").hp["ccb_lengths"] == PAPER_CCB_LENGTHS
    hp = create("ccb_aae").hp  # the paper's settings are the defaults
    assert (hp["lr"], hp["betas"], hp["batch_size"], hp["dropout"]) == (2e-4, (0.5, 0.999), 64, 0.5)
    assert (hp["lambda_s"], hp["lambda_adv"], hp["lambda_lat"]) == (50.0, 1.0, 1.0)
    assert create("egbad").alpha == 0.9


# ----- losses ------------------------------------------------------------------------------------------
def test_generator_adversarial_term_uses_discriminator_features():
    torch.manual_seed(0)
    f_real = torch.randn(6, 10)
    shuffled = f_real[torch.randperm(6)]
    assert float(feature_matching(f_real, shuffled)) < 1e-12  # batch statistics match: no adversarial loss
    assert float(latent_error(f_real, shuffled).mean()) > 0.1  # ... but per-image latents differ (Eq. 6)
    x, x_hat = torch.zeros(6, 1, 4, 4), torch.full((6, 1, 4, 4), 0.5)
    z = torch.zeros(6, 3)
    total, parts = generator_objective(x, x_hat, z, z + 1, f_real, f_real + 2, 50, 1, 1)
    assert parts["similarity"] == pytest.approx(0.25) and parts["latent"] == pytest.approx(1.0)
    assert parts["adversarial"] == pytest.approx(4.0)
    assert float(total) == pytest.approx(50 * 0.25 + 4.0 + 1.0)
    assert torch.allclose(image_error(x, x_hat), torch.full((6,), 0.25))
    assert np.allclose(combine([1.0, 2.0], [3.0, 0.0], 0.25), [2.5, 0.5])


# ----- training guards ---------------------------------------------------------------------------------
def test_nan_loss_is_caught_with_a_clear_message(lesions, monkeypatch):
    def nan_objective(x, x_hat, *args, **kwargs):
        loss = image_error(x, x_hat).mean() * float("nan")
        return loss, {}

    monkeypatch.setattr(aae_detector, "generator_objective", nan_objective)
    det = create("ccb_aae", width=4, nz=8, steps=5, batch_size=8, device="cpu", progress=False)
    with pytest.raises(TrainingDiverged, match="generator loss is nan at step 0") as err:
        det.fit(lesions.train.subset(np.arange(32)))
    assert err.value.history.status.startswith("diverged: generator loss is nan")
    assert "Lower the learning rate" in str(err.value)


def test_collapsed_discriminator_is_caught(lesions, monkeypatch):
    def winning_discriminator(logit_real, logit_fake):
        return (logit_real.sum() + logit_fake.sum()) * 0 + 1e-6  # a discriminator that wins outright

    monkeypatch.setattr(aae_detector, "discriminator_bce", winning_discriminator)
    det = create("ganomaly", width=4, nz=8, steps=50, batch_size=8, collapse_window=4, device="cpu", progress=False)
    with pytest.raises(TrainingDiverged, match="discriminator collapsed") as err:
        det.fit(lesions.train.subset(np.arange(32)))
    assert err.value.history.status.startswith("diverged: discriminator loss stayed below")
    assert len(err.value.history.steps) == 4


def test_fit_refuses_test_data_for_choices(lesions):
    with pytest.raises(imageset.TestDataError):
        create("ccb_aae", device="cpu", progress=False).fit(lesions.train, val=lesions.test)


# ----- detection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_beats_chance_on_synthetic_lesions(fitted, lesions, name):
    det = fitted[name]
    value = auroc(lesions.test.labels, det.score(lesions.test))
    assert value > 0.6, f"{name}: test AUROC {value:.3f}"
    assert det.history.status == "completed"


@pytest.mark.parametrize("name", NAMES)
def test_scores_do_not_depend_on_batch_composition(fitted, lesions, name):
    """BatchNorm/dropout in eval mode (and per-image latent searches): a score does not change when the image
    is scored with other images, in another order or batch size."""
    det = fitted[name]
    images = lesions.test.subset(np.arange(40))
    whole = det.score(images)
    order = np.random.default_rng(0).permutation(len(images))
    pieces = np.concatenate([det.score(images.subset(order[i:i + 7])) for i in range(0, len(order), 7)])
    back = np.empty_like(pieces)
    back[order] = pieces
    np.testing.assert_allclose(back, whole, rtol=1e-5, atol=1e-7)


def test_alpha_is_chosen_on_validation(fitted, lesions):
    det = fitted["ccb_aae"]
    assert det.alpha in aae_detector.ALPHA_GRID and det.history.extras["alpha_chosen_on"] == "validation"
    table = det.alpha_table
    assert len(table) == len(aae_detector.ALPHA_GRID)
    assert table.loc[table["alpha"] == det.alpha, "val_AUROC"].iloc[0] == pytest.approx(table["val_AUROC"].max())
    assert det.history.monitor_name == "val AUROC" and det.history.best_step in det.history.eval_steps
    no_val = create("ccb_aae", width=4, nz=8, steps=3, batch_size=8, eval_every=1, device="cpu", progress=False)
    no_val.fit(lesions.train.subset(np.arange(40)))
    assert no_val.alpha == 0.9 and no_val.history.monitor_name == "hold-out loss"


def test_same_seed_gives_identical_scores(lesions):
    images = lesions.test.subset(np.arange(24))
    kw = dict(width=4, nz=8, steps=12, batch_size=16, eval_every=4, device="cpu", progress=False)
    a = create("ccb_aae", seed=3, **kw).fit(lesions.train, lesions.val).score(images)
    b = create("ccb_aae", seed=3, **kw).fit(lesions.train, lesions.val).score(images)
    c = create("ccb_aae", seed=4, **kw).fit(lesions.train, lesions.val).score(images)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_anogan_search_is_repeatable_and_its_cost_recorded(fitted, lesions):
    det = fitted["anogan"]
    images = lesions.test.subset(np.arange(10))
    assert np.array_equal(det.score(images), det.score(images))
    assert det.search_images > 0 and 0 < det.search_seconds_per_image < 5


# ----- notebook 03's glue: diagnostics, figures and generated verdicts -------------------------------------------
def test_component_table_matches_the_alpha_endpoints(fitted, lesions):
    """alpha = 1 is the image term alone, alpha = 0 the latent term alone: the table's term AUROCs are the ends of
    the alpha curve the detector chose from (validation only)."""
    from adlib.methods.adversarial_ae.conclusions import component_sentences, component_table

    det = fitted["ccb_aae"]
    table = component_table({("CCB-AAE", 0): det}, lesions.val)
    ends = det.alpha_table.set_index("alpha")["val_AUROC"]
    assert table.loc[0, "image term AUROC"] == pytest.approx(100 * ends[1.0], abs=0.051)
    assert table.loc[0, "latent term AUROC"] == pytest.approx(100 * ends[0.0], abs=0.051)
    assert -1 <= table.loc[0, "image term ρ(detail)"] <= 1
    text = " ".join(component_sentences(table, lesions.val))
    assert "CCB-AAE" in text and "chance" in text


def test_reconstruction_grid_draws_the_map_row_with_a_colour_bar(fitted, lesions):
    """The map row's name and heat_rows come from one place, so the residuals get a colour scale and a bar (the
    committed grids once drew them in grey on [0, 1], near-black, because the two names differed)."""
    import matplotlib.pyplot as plt

    from adlib.methods.adversarial_ae.experiments import reconstruction_grid
    from adlib.plots import figure_problems

    fig = reconstruction_grid(fitted["ganomaly"], lesions.test.subset(np.arange(4)), ("normal", "lesion"), "grid")
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    assert figure_problems(fig) == []
    plt.close(fig)


def _rows(method, aurocs, half_ci=0.03):
    import pandas as pd

    a = np.asarray(aurocs, dtype=float)
    return pd.DataFrame({"dataset": "pneumonia", "method": method, "variant": "default", "seed": range(len(a)),
                         "AUROC": a, "AUROC_ci_low": a - half_ci, "AUROC_ci_high": a + half_ci})


def test_generated_verdicts_never_rank_below_chance_models():
    import pandas as pd

    from adlib.methods.adversarial_ae.conclusions import baselines_sentence, chance_overview, order_sentence

    rows = pd.concat([_rows("AnoGAN", [0.21]), _rows("EGBAD", [0.45, 0.46, 0.44]),
                      _rows("GANomaly", [0.60, 0.62, 0.61]), _rows("Skip-GANomaly", [0.25, 0.26, 0.25]),
                      _rows("CCB-AAE", [0.26, 0.29, 0.22])])
    order = order_sentence(rows, "pneumonia")
    assert "both below chance" in order and "**fails**" in order  # GANomaly above, Skip below: the step is reversed
    overview = chance_overview(rows, "pneumonia")
    assert "below chance: AnoGAN" in overview and "above chance: GANomaly" in overview
    text = baselines_sentence(rows, "pneumonia")  # best AE GANomaly (above chance) vs best baseline EGBAD
    assert "GANomaly" in text and "EGBAD" in text and "below chance" not in text.split(":")[0]
    both_low = rows[rows["method"].isin(["AnoGAN", "Skip-GANomaly", "CCB-AAE"])]
    assert "both below chance, so the order is not tested" in baselines_sentence(both_low, "pneumonia")


def test_budget_sentences_say_when_every_rung_keeps_the_same_step():
    import pandas as pd

    from adlib.methods.adversarial_ae.conclusions import budget_sentences

    ladder = pd.DataFrame({"method": ["GANomaly"] * 2 + ["EGBAD"] * 2, "width": "cpu", "budget": ["x1", "x2"] * 2,
                           "steps": [150, 300] * 2, "seeds": 1, "val AUROC": [77.5, 77.5, 40.6, 59.6],
                           "test AUROC": [67.2, 67.2, 25.5, 45.8], "kept step": ["50", "50", "150", "250"]})
    cfg = {"batch_size": 32, "lr": 1e-3, "nz": 16, "eval_every": 50}
    text = " ".join(budget_sentences(ladder, pd.DataFrame({"method": []}), cfg))
    assert "same test AUROC 67.2 at every rung" in text and "keeps step 50" in text
    assert "from 25.5 (x1, cpu) to 45.8 (x2, cpu)" in text


def _legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


def _plotted_y(ax):
    """Every y value drawn on the axes as filled dots, hollow markers and lines: (filled, hollow)."""
    from matplotlib.collections import LineCollection, PathCollection

    filled, hollow = [], []
    for coll in ax.collections:
        if isinstance(coll, LineCollection):  # error bars: their y values are in the segments
            filled.extend(y for seg in coll.get_segments() for y in np.asarray(seg)[:, 1])
            continue
        if not isinstance(coll, PathCollection):
            continue
        offsets = np.asarray(coll.get_offsets())
        if not len(offsets):
            continue
        face = coll.get_facecolors()
        (hollow if len(face) == 0 or np.all(face[:, 3] == 0) else filled).extend(offsets[:, 1].tolist())
    for line in ax.lines:
        filled.extend(np.asarray(line.get_ydata(), dtype=float).tolist())
    return filled, hollow


def test_seed_dots_never_show_a_degenerate_threshold_as_a_result():
    """Figure 03_seeds_medical_f1 once drew the pneumonia F1 of all-anomalous thresholds (0.769) as results."""
    import matplotlib.pyplot as plt

    from adlib.methods.adversarial_ae.experiments import DEGENERATE_LABEL, seed_dots

    frame = pd.DataFrame({"method": ["CCB-AAE"] * 3 + ["GANomaly"] * 2, "dataset": ["pneumonia"] * 5,
                          "F1": [0.7699, 0.7698, 0.7697, 0.61, 0.63], "AUROC": [0.3, 0.3, 0.3, 0.6, 0.6],
                          "degenerate": [True, "True", True, False, False]})
    ax = seed_dots(frame, "F1", "F1").axes[0]
    filled, hollow = _plotted_y(ax)
    assert sorted(hollow) == pytest.approx([76.97, 76.98, 76.99])  # in % like the tables
    assert not any(abs(y - 76.98) < 0.1 for y in filled)  # neither a dot nor inside a mean bar
    assert DEGENERATE_LABEL in _legend_labels(ax)
    ax = seed_dots(frame, "AUROC", "AUROC", hue=None).axes[0]  # AUROC needs no threshold: all filled
    assert _plotted_y(ax)[1] == [] and DEGENERATE_LABEL not in _legend_labels(ax)
    plt.close("all")


def test_ccb_length_curve_leaves_degenerate_points_out_of_the_line():
    import matplotlib.pyplot as plt

    from adlib.methods.adversarial_ae.experiments import DEGENERATE_LABEL, ccb_length_curve, paper_numbers_ccb_aae

    ours = pd.DataFrame({"dataset": ["retina grade 3"] * 3, "factor": [1, 2, 4], "ACC": [0.53, 0.59, 0.3058],
                         "F1": [0.49, 0.52, 0.44], "degenerate": [False, False, True]})
    paper = paper_numbers_ccb_aae()
    paper = paper[paper["table"].isin(["Table 6", "Table 7"]) & paper["dataset"].str.startswith("HAM10000")]
    ax = ccb_length_curve(ours, paper, "ACC", "ACC").axes[0]
    filled, hollow = _plotted_y(ax)
    assert hollow == pytest.approx([30.58])
    assert not any(abs(y - 30.58) < 1e-4 for y in filled if np.isfinite(y))
    assert DEGENERATE_LABEL in _legend_labels(ax)
    plt.close("all")
