"""MADDR (notebook 05): the losses of Eqs. 2-4, the heads' labels, mixup bookkeeping, and the wrapper's contract over
every registered detector that declares a latent code. Tiny networks on synthetic phantoms, one CPU thread."""
import copy

import numpy as np
import pandas as pd
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


@pytest.fixture(scope="module")
def tiny_maddr(phantoms):
    return MADDR("ganomaly", TINY["ganomaly"], category_dims=3, mixup=False, seed=0, progress=False).fit(
        phantoms.train, phantoms.val)


def test_head_labels_map_to_the_true_labels(tiny_maddr, phantoms, monkeypatch):
    """The chain label -> training target index -> head output index -> predicted name is one mapping: a head
    whose logits are the one-hot of each image's true class is scored 1.0, and its confusion matrix is diagonal
    (a label-mapping bug, e.g. a head scoring far below the most frequent class, fails here)."""
    from adlib.methods.maddr.experiments import head_confusions, head_diagnostics

    model, hook = tiny_maddr, tiny_maddr.hook
    trained = copy.deepcopy(hook)  # the training targets of these images: index i stands for vocab[i]
    trained.setup(hook.dim, torch.device("cpu"), phantoms.train)
    for h in hook.heads:
        names = np.asarray(hook.vocab[h])[trained.codes[h].cpu().numpy()]
        assert names.tolist() == phantoms.train.domains[h].astype(str).tolist()
    test = with_domains(phantoms.test.subset(np.arange(len(phantoms.test))))
    truth = {h: maddr_wrapper.encode_labels(test.domains[h], hook.vocab[h]) for h in hook.heads}
    monkeypatch.setattr(model, "latent_parts", lambda images, *a, **k: {
        h: np.eye(hook.category_dims, dtype=np.float32)[truth[h]] for h in hook.heads})
    with torch.no_grad():
        for h, clf in hook.classifiers.items():
            clf.weight.copy_(torch.eye(clf.out_features, clf.in_features))
            clf.bias.zero_()
    pred = model.predict_domains(test)
    assert all(pred[h].tolist() == test.domains[h].astype(str).tolist() for h in hook.heads)
    assert (head_diagnostics(model, test)["accuracy (kept weights)"] == 1.0).all()
    fig = head_confusions(model, test)
    for ax, h in zip([a for a in fig.axes if a.get_label() != "<colorbar>"], hook.heads):
        counts = np.asarray(ax.collections[0].get_array()).reshape(len(hook.vocab[h]), -1)
        assert np.count_nonzero(counts - np.diag(np.diag(counts))) == 0 and counts.sum() == len(test)


def test_batch_statistics_leave_the_model_unchanged(tiny_maddr, phantoms):
    model = tiny_maddr
    before = {k: v.clone() for m in model._modules() for k, v in m.state_dict().items()}
    whole = model.latent_parts(phantoms.test, batch_size=len(phantoms.test), batch_statistics=True)
    after = {k: v for m in model._modules() for k, v in m.state_dict().items()}
    assert all(torch.equal(before[k], after[k]) for k in before)  # running averages untouched
    clone = copy.deepcopy(model)  # one batch: the same statistics whatever the order, so rows come back in place
    for m in clone._modules():
        m.train()
    with torch.no_grad():
        z = clone.base.encode_latent(phantoms.test.float_images()).flatten(1).numpy()
    assert np.allclose(whole["z"], z, atol=1e-5)
    assert set(model.predict_domains(phantoms.test, batch_statistics=True)["organ"]) <= set(ORGANS)


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


def test_head_sentences_say_what_was_measured():
    from adlib.methods.maddr.conclusions import head_sentences, head_summary

    row = {"method": "f-AnoGAN", "head": "modality", "accuracy (kept weights)": 0.144,
           "accuracy (batch statistics)": 0.528, "always the most frequent": 0.529,
           "training accuracy at the kept step": 0.55, "training accuracy (last 20 steps)": 0.96, "kept step": 25,
           "steps": 180, "checkpoint criterion": "val_auroc"}
    unexplained = {**row, "method": "X", "accuracy (batch statistics)": 0.15, "training accuracy at the kept step": 0.96,
                   "kept step": 180}
    good = {**row, "method": "X", "head": "organ", "accuracy (kept weights)": 0.99}
    (f_anogan, x) = head_sentences(pd.DataFrame([row, unexplained, good]))
    assert "14.4%, below always-the-most-frequent (52.9%)" in f_anogan and "kept step 25 of 180" in f_anogan
    assert "52.8%" in f_anogan and "not a label mapping" in f_anogan
    assert "check the label mapping" in x and "99.0%" in x and "not a label mapping" not in x
    assert head_summary(pd.DataFrame([row, good])).startswith("1 of 2 heads")


@pytest.mark.parametrize("how", ["right", "rolled", "collapsed"])
def test_label_mapping_check_tells_a_label_order_error_from_a_collapsed_head(tiny_maddr, phantoms, monkeypatch, how):
    """Notebook 05's measurement behind "not a label mapping": a head whose predictions are the true labels in a
    rolled class order (a label-order error) is flagged as a permutation with a perfect best relabelling; a head
    that sends every image to one class is not a permutation; the generated sentence says which."""
    from adlib.methods.maddr.conclusions import label_mapping_sentence
    from adlib.methods.maddr.experiments import label_mapping_check

    model, hook = tiny_maddr, tiny_maddr.hook
    test = with_domains(phantoms.test.subset(np.arange(len(phantoms.test))))
    truth = {h: maddr_wrapper.encode_labels(test.domains[h], hook.vocab[h]) for h in hook.heads}
    shift = {"right": lambda i, k: i, "rolled": lambda i, k: (i + 1) % k, "collapsed": lambda i, k: 0 * i}[how]
    monkeypatch.setattr(model, "predict_domains", lambda images, **kw: {
        h: np.asarray(hook.vocab[h])[shift(truth[h], len(hook.vocab[h]))] for h in hook.heads})
    check = label_mapping_check({"GANomaly": model}, phantoms.train, test)
    assert check["training labels round-trip"].all()
    expected_acc = {"right": 1.0, "rolled": 0.0}.get(how)
    if expected_acc is not None:
        assert check["accuracy"].tolist() == [expected_acc] * 2 and check["confusion is a permutation"].all()
        assert (check["accuracy, best relabelling"] == 1.0).all()
    else:
        assert not check["confusion is a permutation"].any() and (check["classes predicted (test)"].str[0] == "1").all()
    report = check[["method", "head"]].assign(**{"always the most frequent": [0.5, 0.34]})
    text = label_mapping_sentence(check, report)
    assert ("check the mapping" in text) == (how == "rolled")
    assert ("not a label permutation" in text) == (how == "collapsed")
    assert "2 of 2 heads" in text
