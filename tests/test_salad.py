"""SALAD (notebook 04) and its new baselines: VAE, SSIM-AE, f-AnoGAN, MemAE.

Tiny networks on synthetic lesion phantoms, one CPU thread; the whole file runs in well under a minute.
"""
import math

import numpy as np
import pytest
import torch

from adlib.data import make_synthetic_protocol
from adlib.detectors import available, create
from adlib.gan import gradient_penalty, interpolates
from adlib.methods.memae import Memory
from adlib.methods.salad import losses as L
from adlib.methods.salad import perturbations as P
from adlib.methods.salad.network import PatchDiscriminator, SaladDecoder, SaladEncoder, SharedTailDecoder, salad_depth
from adlib.metrics import auroc
from adlib.training import TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NEW = ("salad", "vae", "ssim_ae", "f_anogan", "memae")
FAST = {
    "salad": dict(nz=16, width=16, max_width=32, d_width=8, d_hidden=32, steps=60, batch_size=16, lr=2e-3,
                  eval_every=20),
    "vae": dict(nz=16, width=8, max_width=32, steps=100, batch_size=16, eval_every=50),
    "ssim_ae": dict(nz=16, width=8, max_width=32, steps=100, batch_size=16, lr=1e-3, eval_every=50),
    "f_anogan": dict(nz=16, width=8, max_width=32, gan_steps=60, encoder_steps=100, batch_size=16, lr=5e-4,
                     kappa=0.1, eval_every=20),
    "memae": dict(nz=16, slots=20, width=8, max_width=32, steps=100, batch_size=16, lr=1e-3, eval_every=50),
}


@pytest.fixture(scope="module")
def lesions():
    return make_synthetic_protocol(n_train=64, n_val=32, n_test=64, size=32, seed=0)


def _images(n=6, size=32, seed=0):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ----- perturbations (Fig. 3) --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["inpaint", "shuffle", "bezier"])
def test_each_perturbation_keeps_shape_and_range_and_changes_the_image(name):
    x = _images()
    out = P.FUNCTIONS[name](x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert bool(changed.all()), f"{name} left an image unchanged"
    again = P.FUNCTIONS[name](x, torch.Generator().manual_seed(1))
    assert torch.equal(out, again), f"{name} is not reproducible from its generator"


def test_local_shuffle_only_permutes_pixels_and_inpaint_tiles_have_the_stated_area():
    x = _images(4, 40)
    out = P.local_shuffle(x, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out.flatten(1).sort(1)[0], x.flatten(1).sort(1)[0])  # same values, moved
    marked = P.inpaint(torch.full((200, 1, 40, 40), 2.0).clamp(0, 1) * 0 + 2.0, torch.Generator().manual_seed(3))
    area = (marked < 1.5).flatten(1).sum(1).float()  # noise is in [0, 1], the background stays 2
    assert float(area.min()) >= 40 * 40 / 64 and float(area.max()) <= 5 * 40 * 40 / 25
    x_s, kinds = P.perturb(_images(30), torch.Generator().manual_seed(4))
    assert x_s.shape == (30, 1, 32, 32) and set(kinds.tolist()) == {0, 1, 2}


# ----- losses ------------------------------------------------------------------------------------------
def test_ssim_loss_is_zero_for_identical_images_and_positive_otherwise():
    x = _images() * 2 - 1
    assert float(L.structure_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.structure_loss(x, x.flip(-1))) > 0.05


def test_running_centre_update_matches_its_formula():
    c = torch.tensor([1.0, -2.0, 0.5])
    z = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, 1.5], [4.0, 1.0, -0.5]])
    expected = c - 0.5 * ((c - z[0]) + (c - z[1]) + (c - z[2])) / (1 + 3)
    centre = c.clone()
    L.update_centre(centre, z, rate=0.5)
    torch.testing.assert_close(centre, expected)
    # and the loss of Eq. 7: 1/2 ||z - C||^2 per vector, averaged over the batch
    assert float(L.centre_loss(z, c)) == pytest.approx(float(0.5 * ((z - c) ** 2).sum(1).mean()))


def test_least_squares_gan_losses():
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert float(L.discriminator_ls(zeros, ones)) == 0.0  # fake -> a = 0, real -> b = 1
    assert float(L.discriminator_ls(ones, zeros)) == pytest.approx(1.0)
    assert float(L.adversarial_ls(ones, torch.ones(2, 1, 3, 3))) == 0.0  # c = 1


# ----- networks ----------------------------------------------------------------------------------------
def test_network_depth_and_shapes():
    assert [salad_depth(s) for s in (32, 64, 128, 256)] == [5, 6, 7, 8]
    with pytest.raises(ValueError):
        salad_depth(28)
    enc, dec = SaladEncoder(1, 64, nz=12, width=4), SaladDecoder(1, 64, nz=12, width=4)
    x = _images(3, 64) * 2 - 1
    z = enc(x)
    assert z.shape == (3, 12) and dec(z).shape == x.shape
    assert sum(isinstance(m, torch.nn.Conv2d) for m in enc.modules()) == 6
    assert PatchDiscriminator(1, 64, width=4)(x).shape[:2] == (3, 1)
    shared = SharedTailDecoder(SaladDecoder(1, 64, nz=12, width=4), dec, 2)
    assert shared.tail[-1] is dec.layers[-1] and shared.head[0] is not dec.layers[0]
    assert shared(z).shape == x.shape


# ----- f-AnoGAN's gradient penalty ---------------------------------------------------------------------
def test_gradient_penalty_is_computed_on_interpolates():
    real, fake = torch.zeros(5, 1, 4, 4), torch.ones(5, 1, 4, 4)
    points, eps = interpolates(real, fake, generator=torch.Generator().manual_seed(0))
    lo, hi = torch.minimum(real, fake), torch.maximum(real, fake)
    assert bool(((points >= lo) & (points <= hi)).all())
    torch.testing.assert_close(points, eps * real + (1 - eps) * fake)
    # a critic whose gradient depends on where it is evaluated: C(x) = sum(x^2) -> grad 2x, norm 2 ||x||
    seen = []

    def critic(x):
        seen.append(x.detach().clone())
        return (x**2).flatten(1).sum(1)

    eps = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    gp = gradient_penalty(critic, real, fake, eps=eps)
    mix = eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake
    torch.testing.assert_close(seen[0], mix)  # the critic saw the interpolates, not real or fake
    expected = ((2 * mix.flatten(1).norm(dim=1)) - 1).pow(2).mean()
    assert float(gp.detach()) == pytest.approx(float(expected))


# ----- MemAE -------------------------------------------------------------------------------------------
def test_memae_addressing_weights_sum_to_one_after_shrinkage():
    torch.manual_seed(0)
    memory = Memory(slots=50, dim=8, shrink=1.0)
    w = memory.address(torch.randn(20, 8))
    assert w.shape == (20, 50) and bool((w >= 0).all())
    torch.testing.assert_close(w.sum(1), torch.ones(20))
    assert bool((w == 0).any()), "hard shrinkage set no weight to zero"


# ----- detectors ---------------------------------------------------------------------------------------
def test_registered():
    assert set(NEW) <= set(available())


@pytest.mark.parametrize("name", NEW)
def test_detector_beats_chance_on_synthetic_lesions(name, lesions):
    det = create(name, seed=0, device="cpu", progress=False, **FAST[name]).fit(lesions.train, lesions.val)
    value = auroc(lesions.test.labels, det.score(lesions.test))
    assert value > 0.6, f"{name}: test AUROC {value:.3f}"


def test_salad_ablation_options_and_table_v_scores(lesions):
    kw = dict(FAST["salad"], steps=4, eval_every=2)
    for options in (dict(image_loss="l1", feature_constraint="kl", self_supervision="none"),
                    dict(self_supervision="shared_enc_dec"), dict(self_supervision="encoder_last_layers")):
        det = create("salad", seed=0, device="cpu", progress=False, **kw, **options).fit(lesions.train, lesions.val)
        comps = det.score_components(lesions.test)
        assert set(comps) == {"feature", "image", "centre"}
        assert all(np.isfinite(v).all() and v.shape == (len(lesions.test),) for v in comps.values())
    with pytest.raises(ValueError):
        create("salad", self_supervision="decoder")


def test_salad_centre_moves_towards_the_features(lesions):
    det = create("salad", seed=0, device="cpu", progress=False, **dict(FAST["salad"], steps=5, eval_every=5))
    det.fit(lesions.train)
    assert float(det.centre.c.norm()) > 0  # it started at 0


def test_divergence_is_caught_with_a_clear_message(lesions):
    det = create("salad", seed=0, device="cpu", progress=False, **dict(FAST["salad"], steps=5, eval_every=5))
    original = det._generator_loss

    def broken(batch, step):
        loss, logs = original(batch, step)
        return loss * (math.nan if step == 2 else 1.0), logs

    det._generator_loss = broken
    with pytest.raises(TrainingDiverged, match=r"encoder\+decoder loss is nan at step 2"):
        det.fit(lesions.train)
    vae = create("vae", seed=0, device="cpu", progress=False, steps=3, batch_size=16, lr=1e30, nz=8, width=4)
    with pytest.raises(TrainingDiverged, match="no score is computed"):
        vae.fit(lesions.train)
