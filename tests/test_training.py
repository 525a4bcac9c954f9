"""Training helpers: determinism, exact resume, early stopping, and a detector that learns."""
import numpy as np
import pytest
import torch

from adlib.data import make_synthetic_protocol
from adlib.detectors import available, create
from adlib.metrics import auroc
from adlib.methods.conv_ae import ConvAutoencoder, mse_per_image
from adlib.training import ResourceMeter, batch_indices, seed_everything, train_steps


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_protocol(n_train=128, n_val=32, n_test=64, size=32, seed=0)


def _fresh(seed=0):
    seed_everything(seed)
    model = ConvAutoencoder(1, 32, latent=8, width=8)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _loss(model, batch, step):
    return mse_per_image(model(batch), batch).mean()


def test_batch_order_depends_only_on_seed_and_step():
    assert torch.equal(batch_indices(100, 16, 7, 3), batch_indices(100, 16, 7, 3))
    assert not torch.equal(batch_indices(100, 16, 7, 3), batch_indices(100, 16, 7, 4))
    epoch = torch.cat([batch_indices(100, 20, s, 0) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(100))


def test_interrupted_and_resumed_training_ends_where_uninterrupted_does(synthetic, tmp_path):
    model_a, opt_a = _fresh()
    train_steps(model_a, opt_a, _loss, synthetic.train, steps=12, batch_size=16, seed=0, progress=False,
                device=torch.device("cpu"))
    ckpt = tmp_path / "run.pt"
    model_b, opt_b = _fresh()
    train_steps(model_b, opt_b, _loss, synthetic.train, steps=12, batch_size=16, seed=0, checkpoint_path=ckpt,
                checkpoint_every=5, stop_after=7, progress=False, device=torch.device("cpu"))
    # interrupted after step 7: the last checkpoint is step 5; steps 6-7 are redone on resume
    assert ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] == 5
    model_c, opt_c = _fresh(seed=123)  # a new process would start from different weights: resume must fix that
    hist = train_steps(model_c, opt_c, _loss, synthetic.train, steps=12, batch_size=16, seed=0, checkpoint_path=ckpt,
                       checkpoint_every=5, progress=False, device=torch.device("cpu"))
    assert hist.steps[-1] == 11 and len(hist.train_loss) == 12
    for (name, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        assert torch.equal(a, c), name


def test_early_stopping_keeps_best_holdout_weights(synthetic, one_torch_thread):
    model, opt = _fresh()
    holdout = synthetic.train.subset(np.arange(16))
    snapshots = {}  # the weights the hold-out monitor judged, by step (it calls the loss without gradients)

    def loss(model, batch, step):
        if not torch.is_grad_enabled():
            snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return _loss(model, batch, step)

    hist = train_steps(model, opt, loss, synthetic.train, steps=400, batch_size=16, seed=0, holdout=holdout,
                       eval_every=1, patience=1, progress=False, device=torch.device("cpu"))
    assert hist.stopped_early and hist.status == "early-stopped" and len(hist.steps) < 400
    assert hist.best_step == hist.eval_steps[int(np.argmin(hist.holdout_loss))]
    assert hist.best_step < hist.eval_steps[-1]  # patience 1: the last evaluation was worse than the best
    kept = model.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in snapshots[hist.best_step].items()), "not the best weights"
    assert not all(torch.equal(kept[k], v) for k, v in snapshots[hist.eval_steps[-1]].items())
    with torch.no_grad():  # the kept model's hold-out loss is the best value recorded
        assert float(_loss(model, holdout.float_images(), 0)) == pytest.approx(hist.best_value, rel=1e-5)


def test_same_seed_same_scores(synthetic):
    kw = dict(latent=8, width=8, steps=20, batch_size=16, seed=5, progress=False, device="cpu")
    a = create("conv_ae", **kw).fit(synthetic.train).score(synthetic.test)
    b = create("conv_ae", **kw).fit(synthetic.train).score(synthetic.test)
    np.testing.assert_array_equal(a, b)


def test_conv_ae_beats_chance_on_synthetic_lesions(synthetic):
    det = create("conv_ae", latent=16, width=16, steps=150, batch_size=32, seed=0, progress=False, device="cpu")
    det.fit(synthetic.train)
    assert auroc(synthetic.test.labels, det.score(synthetic.test)) > 0.75
    maps = det.anomaly_maps(synthetic.test)
    assert maps.shape == (64, 32, 32)
    assert det.reconstruct(synthetic.test.subset(np.arange(4))).shape == (4, 1, 32, 32)
    assert det.embed(synthetic.test).shape == (64, 16)


def test_registry_and_capabilities():
    assert "conv_ae" in available()
    det = create("conv_ae")
    assert det.supports("anomaly_maps") and det.supports("embed")
    with pytest.raises(ValueError, match="unknown detector"):
        create("no_such_method")
    with pytest.raises(RuntimeError, match="fit"):
        det.score(torch.zeros(1, 1, 32, 32))


def test_resource_meter_counts_throughput():
    with ResourceMeter(images=100) as meter:
        sum(range(10000))
    row = meter.as_row(stage="noop")
    assert row["images"] == 100 and row["seconds"] >= 0 and row["peak_memory_MB"] > 0


def test_set_cpu_threads_reads_environment_and_rejects_nonsense(monkeypatch):
    from adlib.training import set_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ADLIB_THREADS", "1")
        assert set_cpu_threads() == 1 and torch.get_num_threads() == 1
        for bad in ("0", "two"):
            monkeypatch.setenv("ADLIB_THREADS", bad)
            with pytest.raises(ValueError, match="ADLIB_THREADS"):
                set_cpu_threads()
    finally:
        torch.set_num_threads(before)


def test_modules_a_phase_adds_are_rolled_back_and_checkpointed_with_the_models(synthetic, tmp_path, one_torch_thread):
    from adlib.training import Monitor, Phase, train_loop

    model, _ = _fresh()
    head = torch.nn.Linear(4, 2)  # e.g. a latent hook's classifier head, trained by the same optimizer
    opt = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=1e-2)
    snapshots, values = {}, iter([0.1, 0.5, 0.6, 0.7])  # best at the first evaluation, worse after it

    def evaluate(step):
        snapshots[step] = head.weight.detach().clone()
        return next(values)

    def loss(batch, step):
        return _loss(model, batch, step) + head(torch.ones(1, 4)).pow(2).sum()

    ckpt = tmp_path / "run.pt"
    train_loop({"ae": model}, [Phase("ae", opt, loss, modules={"head": head})], synthetic.train, steps=8,
               batch_size=16, seed=0, monitor=Monitor("toy", evaluate, mode="min", every=2), checkpoint_path=ckpt,
               checkpoint_every=4, progress=False, device=torch.device("cpu"))
    first = min(snapshots)
    assert torch.equal(head.weight, snapshots[first])  # rolled back with the model, not left at its last step
    assert not torch.equal(snapshots[first], snapshots[max(snapshots)])
    assert set(torch.load(ckpt, weights_only=False)["models"]) == {"ae", "head"}
    with pytest.raises(ValueError, match="belongs to another configuration"):  # a stale checkpoint is refused
        train_loop({"ae": model}, [Phase("ae", opt, loss)], synthetic.train, steps=8, batch_size=16, seed=0,
                   checkpoint_path=ckpt, progress=False, device=torch.device("cpu"))
