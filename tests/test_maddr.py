"""MADDR (notebook 05): the losses of Eqs. 2-4, the heads' labels, mixup bookkeeping, and the wrapper's contract over
every registered detector that declares a latent code. Tiny networks on synthetic phantoms, one CPU thread."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adlib.data import concat, make_synthetic_protocol
from adlib.data.imageset import ImageSet
from adlib.detectors import create, latent_detectors
from adlib.methods.maddr import MADDR, MADDRHook, centre_loss, focal_loss, mixup
from adlib.methods.maddr import wrapper as maddr_wrapper
from adlib.metrics import auroc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# tiny settings of every detector that declares a latent (a newly declared one needs an entry here)
TINY: dict[str, dict] = {
    "dpa": dict(weights="random", latent=24, widths=8, steps=6, batch_size=16, layers=("relu2_2",), eval_every=3,
                patience=None, device="cpu"),
    "ganomaly": dict(nz=24, width=8, max_width=32, steps=6, batch_size=16, lr=1e-3, eval_every=3, device="cpu"),
    "skip_ganomaly": dict(nz=24, width=8, max_width=32, steps=6, batch_size=16, lr=1e-3, eval_every=3, device="cpu"),
    "ccb_aae": dict(nz=24, width=8, max_width=32, steps=6, batch_size=16, lr=1e-3, eval_every=3, device="cpu"),
    "memae": dict(nz=24, slots=20, width=8, max_width=32, steps=6, batch_size=16, lr=1e-3, eval_every=3, device="cpu"),
    "f_anogan": dict(nz=24, width=8, max_width=32, gan_steps=6, encoder_steps=6, batch_size=16, lr=5e-4, eval_every=3,
                     device="cpu"),
}
ORGANS, MODALITIES = ("a", "b"), ("x", "y", "z")  # crossing partitions: a head cannot pass with the other's labels


def with_domains(images: ImageSet) -> ImageSet:
    """Organ = row parity (2 classes), modality = row mod 3 (3 classes): two different partitions."""
    rows = np.arange(len(images))
    images.domains["organ"] = np.asarray(ORGANS)[rows % 2]
    images.domains["modality"] = np.asarray(MODALITIES)[rows % 3]
    return images


@pytest.fixture(scope="module")
def phantoms():
    p = make_synthetic_protocol(n_train=64, n_val=32, n_test=64, size=32, seed=0)
    with_domains(p.train)
    return p


def hook_on(images, **kw):
    hook = MADDRHook({"organ": list(ORGANS), "modality": list(MODALITIES)}, category_dims=3, seed=0, **kw)
    hook.setup(16, torch.device("cpu"), images)
    return hook


# ----- losses -------------------------------------------------------------------------------------------------
def test_leave_one_out_centre_loss_equals_its_formula():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    # m_i = mean of the other three codes; L_c = (1/4) sum_i ||z_i - m_i||^2 (Eq. 4, one batch)
    expected = 0.0
    for i in range(4):
        m = (z.sum(0) - z[i]) / 3
        expected += float(((z[i] - m) ** 2).sum()) / 4
    assert centre_loss(z) == pytest.approx(expected)
    # by hand: m_0 = (1, 5/3), m_1 = (1/3, 5/3), m_2 = (1, 1/3), m_3 = (2/3, 4/3);
    # squared distances 34/9, 50/9, 130/9, 2/9; their mean is 216/36 = 6
    by_hand = (34 + 50 + 130 + 2) / 9 / 4
    assert centre_loss(z) == pytest.approx(by_hand)
    assert centre_loss(torch.ones(5, 3)) == 0.0
    with pytest.raises(ValueError):
        centre_loss(torch.ones(1, 3))


def test_focal_loss_reduces_to_cross_entropy_and_matches_eq2():
    torch.manual_seed(0)
    logits, y = torch.randn(7, 3), torch.tensor([0, 1, 2, 2, 1, 0, 1])
    assert focal_loss(logits, y, alpha=1.0, gamma=0.0) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    p = F.softmax(logits, 1)[torch.arange(7), y]
    eq2 = (-0.25 * (1 - p) ** 2 * torch.log(p)).mean()  # Eq. 2 per image, averaged over the batch
    assert focal_loss(logits, y) == pytest.approx(float(eq2), rel=1e-6)
    assert focal_loss(logits, F.one_hot(y, 3).float()) == pytest.approx(float(focal_loss(logits, y)))


# ----- the heads get their own labels ---------------------------------------------------------------------------
def test_each_head_receives_its_own_labels(phantoms, monkeypatch):
    seen = []
    real = maddr_wrapper.focal_loss
    monkeypatch.setattr(maddr_wrapper, "focal_loss", lambda logits, t, *a: seen.append((logits.shape[1], t)) or real(logits, t, *a))
    hook = hook_on(phantoms.train, mixup=False)
    rows = torch.tensor([0, 1, 2, 3, 4, 5, 7])
    batch = phantoms.train.images[rows].float() / 255
    assert hook.prepare(batch, 0, rows) is batch  # no mixup: the detector's batch is untouched
    hook.loss(torch.randn(len(rows), 16), 0, rows)
    organ_codes = [ORGANS.index(o) for o in phantoms.train.domains["organ"][rows.numpy()]]
    modality_codes = [MODALITIES.index(m) for m in phantoms.train.domains["modality"][rows.numpy()]]
    assert organ_codes != modality_codes
    (n_o, t_o), (n_m, t_m) = seen  # organ head first (2 classes), then the modality head (3 classes)
    assert (n_o, n_m) == (2, 3)
    assert t_o.argmax(1).tolist() == organ_codes and t_m.argmax(1).tolist() == modality_codes
    assert hook.last_targets["organ"].argmax(1).tolist() == organ_codes


def test_latent_split_and_ablation_switches():
    hook = MADDRHook({"organ": ["a"], "modality": ["x"]}, category_dims=10)
    parts = hook.split(torch.arange(128.0).repeat(2, 1))
    assert parts["organ"][0].tolist() == list(range(10)) and parts["modality"][0].tolist() == list(range(10, 20))
    assert parts["z_c"].shape == (2, 108)  # the authors' 20 categorical + 108 continuous numbers
    whole = MADDRHook({"organ": ["a"]}, heads=("organ",), disentangle=False).split(torch.zeros(2, 32))
    assert whole["organ"].shape == whole["z_c"].shape == (2, 32)
    with pytest.raises(ValueError):
        MADDRHook({"organ": ["a"], "modality": ["x"]}, category_dims=10).slices(16)


# ----- mixup --------------------------------------------------------------------------------------------------
def test_mixup_keeps_the_domain_bookkeeping(phantoms):
    hook = hook_on(phantoms.train, mixup=True, mixup_from=5)
    rows = torch.arange(12)
    batch = phantoms.train.images[rows].float() / 255
    assert hook.prepare(batch, 4, rows) is batch  # before mixup_from: untouched
    mixed = hook.prepare(batch, 5, rows)
    lam, partner = hook._mix
    assert 0 <= lam <= 1 and sorted(partner.tolist()) == list(range(12))
    assert torch.allclose(mixed, lam * batch + (1 - lam) * batch[partner])
    _, targets = hook._targets
    for head, names in (("organ", ORGANS), ("modality", MODALITIES)):
        labels = phantoms.train.domains[head][rows.numpy()]
        onehot = torch.tensor([[float(l == n) for n in names] for l in labels])
        assert torch.allclose(targets[head], lam * onehot + (1 - lam) * onehot[partner])
        assert torch.allclose(targets[head].sum(1), torch.ones(12))
    again = hook_on(phantoms.train, mixup=True, mixup_from=5)
    assert torch.equal(again.prepare(batch, 5, rows), mixed)  # seeded by (seed, step): resumable
    x, t = mixup(torch.eye(2), {"o": torch.eye(2)}, 0.75, torch.tensor([1, 0]))
    assert torch.allclose(x, torch.tensor([[0.75, 0.25], [0.25, 0.75]])) and torch.allclose(t["o"], x)


# ----- the wrapper over every detector that declares a latent ---------------------------------------------------
def test_dpa_and_ganomaly_declare_a_latent():
    assert {"dpa", "ganomaly"} <= set(latent_detectors())
    with pytest.raises(ValueError, match="declares no latent"):
        MADDR("patchcore", dict(weights="random", arch="resnet18", layers=("layer1",)))


@pytest.mark.parametrize("name", latent_detectors())
def test_wrapper_contract(name, phantoms):
    if name not in TINY:
        pytest.fail(f"{name} declares a latent: add tiny settings TINY[{name!r}] to tests/test_maddr.py")
    model = MADDR(name, TINY[name], category_dims=3, mixup_from=3, seed=0, progress=False)
    model.fit(phantoms.train, phantoms.val)



    hook = model.hook
    assert hook.classifiers["organ"].out_features == 2 and hook.classifiers["modality"].out_features == 3
    dim = model.base.latent_dim()
    assert hook.classifiers["organ"].in_features == 3 and model.embed(phantoms.test).shape == (64, dim - 6)
    phase = model.base.latent_phase
    logs = model.history.logs
    for term in ("organ_focal", "modality_focal", "centre", "baseline"):
        values = np.asarray(logs[f"{phase}/{term}"], dtype=float)
        assert np.isfinite(values).any(), term
    assert np.nanmin(np.asarray(logs[f"{phase}/mixup_lambda"], dtype=float)) < 1.0  # mixup ran from step 3 on
    scores = model.score(phantoms.test)
    assert scores.shape == (64,) and np.isfinite(scores).all()
    assert set(model.predict_domains(phantoms.test)["modality"]) <= set(MODALITIES)
    from adlib.methods.maddr.experiments import head_diagnostics

    diag = head_diagnostics(model, phantoms.test).set_index("head")
    assert set(diag.index) == {"organ", "modality"} and diag["accuracy (kept weights)"].between(0, 1).all()
    assert (diag["kept step"] == model.base.history.best_step).all()
    assert diag["training accuracy (last 20 steps)"].between(0, 1).all()


def test_unwrapped_detector_phases_are_untouched():
    det = create("ganomaly", nz=16, width=8, device="cpu", progress=False)
    phases = [object()]
    assert det.with_latent_hook(phases, None) is phases


def test_wrapped_detector_beats_chance_on_synthetic_lesions():
    p = make_synthetic_protocol(n_train=256, n_val=64, n_test=256, size=32, seed=0)
    other = make_synthetic_protocol(n_train=128, n_val=8, n_test=8, size=32, seed=5).train
    train = concat([p.train, other])
    train.domains["organ"] = np.r_[np.full(len(p.train), "a"), np.full(len(other), "b")]
    train.domains["modality"] = train.domains["organ"].copy()
    model = MADDR("ganomaly", dict(nz=32, width=8, steps=100, batch_size=32, eval_every=50, device="cpu"),
                  category_dims=4, mixup_from=70, seed=0, progress=False).fit(train, p.val)
    assert auroc(p.test.labels, model.score(p.test)) > 0.6
