"""The shared foundation: the multi-optimizer training loop (schedule, exact resume, divergence, kept checkpoint),
the test-split identity guard, the experiment runner's provenance, run configurations and profiles, figures.

Everything runs on tiny models and small synthetic phantoms, single-threaded.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from adlib import config as config_module
from adlib import profiles
from adlib.data import concat, few_shot_anomalies, make_synthetic_protocol
from adlib.data.imageset import TestDataError as RefusedTestData  # (a Test* name would be collected)
from adlib.data.imageset import refuse_test_data, require_marked
from adlib.detectors import Detector, available, create
from adlib.metrics import ScoredSplit, select_threshold_on_validation
from adlib.training import (DivergenceGuard, Monitor, Phase, TrainHistory, TrainingDiverged, holdout_loss_monitor,
                            seed_everything, step_generator, train_loop, validation_auroc_monitor)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def phantoms():
    return make_synthetic_protocol(n_train=64, n_val=32, n_test=48, size=32, channels=1, seed=0)


@pytest.fixture()
def keep_profile(monkeypatch):
    """Tests that activate a profile put the process's active profile and torch threads back afterwards."""
    monkeypatch.setattr(profiles, "_ACTIVE", profiles._ACTIVE)  # monkeypatch restores the current value
    monkeypatch.setenv("ADLIB_THREADS", "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ two-optimizer GAN
DATA = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))


class _Pair:
    """A tiny generator and discriminator (two linear models), their optimizers and losses that touch both."""

    def __init__(self, seed: int, adam: bool = False, critic_repeats: int = 5, gen_every: int = 2,
                 with_scheduler: bool = False, global_noise: bool = False):
        torch.manual_seed(seed)
        self.gen, self.disc = nn.Linear(4, 4), nn.Linear(4, 1)
        opt = (lambda p: torch.optim.Adam(p, lr=1e-2)) if adam else (lambda p: torch.optim.SGD(p, lr=1e-2))
        self.opt_g, self.opt_d = opt(self.gen.parameters()), opt(self.disc.parameters())
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, step_size=2, gamma=0.5) if with_scheduler else None
        self.calls: list[tuple[str, int, dict, dict]] = []  # (phase, step, gen state, disc state) before each update
        self.batches: dict[tuple[str, int], list[torch.Tensor]] = {}
        self.global_noise = global_noise
        self.phases = [Phase("critic", self.opt_d, self.critic_loss, repeats=critic_repeats),
                       Phase("generator", self.opt_g, self.gen_loss, every=gen_every, scheduler=self.sched_g)]

    def _record(self, name, batch, step):
        self.calls.append((name, step, _snapshot(self.gen), _snapshot(self.disc)))
        self.batches.setdefault((name, step), []).append(batch.clone())

    def _noise(self, batch, step):
        if self.global_noise:  # the global torch RNG: exact only if resume restores it
            return torch.randn(batch.shape)
        return torch.randn(batch.shape, generator=step_generator(7, step))

    def critic_loss(self, batch, step):
        self._record("critic", batch, step)
        fake = self.gen(self._noise(batch, step))  # not detached: the generator gets gradients too
        return (self.disc(fake) - self.disc(batch)).mean() + 0.1 * (self.disc(batch) ** 2).mean()

    def gen_loss(self, batch, step):
        self._record("generator", batch, step)
        fake = self.gen(self._noise(batch, step))
        value = -self.disc(fake).mean() + 0.1 * (fake ** 2).mean()
        return value, {"fake_mean": float(fake.detach().mean())}

    @property
    def models(self):
        return {"generator": self.gen, "critic": self.disc}


def _snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_optimizers_each_phase_updates_only_its_own_model_on_its_schedule():
    pair = _Pair(seed=0, with_scheduler=True)
    steps = 6
    history = train_loop(pair.models, pair.phases, DATA, steps=steps, batch_size=8, seed=1, device=CPU,
                         progress=False)
    assert history.status == "completed"
    # schedule: the critic runs 5x per step; the generator on even steps only
    critic_steps = [s for name, s, *_ in pair.calls if name == "critic"]
    gen_steps = [s for name, s, *_ in pair.calls if name == "generator"]
    assert critic_steps == [s for s in range(steps) for _ in range(5)]
    assert gen_steps == [0, 2, 4]
    order = [name for name, *_ in pair.calls]
    assert order[:7] == ["critic"] * 5 + ["generator", "critic"]  # phases run in order within a step
    # history: one loss per step and phase, NaN where a phase did not run; logs aligned with steps
    assert history.steps == list(range(steps))
    assert all(math.isfinite(v) for v in history.losses["critic"])
    gen_loss = np.asarray(history.losses["generator"])
    assert np.isfinite(gen_loss[::2]).all() and np.isnan(gen_loss[1::2]).all()
    logged = np.asarray(history.logs["generator/fake_mean"])
    assert len(logged) == steps and np.isfinite(logged[::2]).all() and np.isnan(logged[1::2]).all()
    # the scheduler steps once per step its phase ran (3 runs, StepLR(2, 0.5): lr halved once)
    assert pair.sched_g.last_epoch == 3 and pair.opt_g.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5)
    # repeat r > 0 of the critic draws its own batch
    first = pair.batches[("critic", 0)]
    assert len(first) == 5 and not torch.equal(first[0], first[1])
    # between consecutive updates, exactly the model whose phase made the update changed
    final = ("end", steps, _snapshot(pair.gen), _snapshot(pair.disc))
    for (name, step, g0, d0), (_, _, g1, d1) in zip(pair.calls, pair.calls[1:] + [final]):
        if name == "critic":
            assert _same(g0, g1), f"the critic's optimizer changed the generator (step {step})"
            assert not _same(d0, d1), f"the critic's update did not change the critic (step {step})"
        else:
            assert _same(d0, d1), f"the generator's optimizer changed the critic (step {step})"
            assert not _same(g0, g1), f"the generator's update did not change the generator (step {step})"


def test_phase_names_must_be_unique():
    pair = _Pair(seed=0)
    pair.phases[1].name = "critic"
    with pytest.raises(ValueError, match="unique"):
        train_loop(pair.models, pair.phases, DATA, steps=1, batch_size=8, seed=0, device=CPU, progress=False)


def _holdout_monitor(pair: _Pair, every: int = 2) -> Monitor:
    held = torch.randn(16, 4, generator=torch.Generator().manual_seed(5))
    return Monitor("hold-out", lambda step: float((pair.disc(held) ** 2).mean() + (pair.gen(held) ** 2).mean()),
                   "min", every=every)


@pytest.mark.parametrize("stop_after,checkpoint_every", [(7, 5), (6, 3)])
def test_resume_with_several_optimizers_is_exact(tmp_path, stop_after, checkpoint_every):
    steps = 11
    kw = dict(steps=steps, batch_size=8, seed=3, device=CPU, progress=False)

    def make(seed):
        return _Pair(seed=seed, adam=True, critic_repeats=2, with_scheduler=True, global_noise=True)

    seed_everything(0)
    a = make(0)
    hist_a = train_loop(a.models, a.phases, DATA, monitor=_holdout_monitor(a), **kw)

    ckpt = tmp_path / "gan.pt"
    seed_everything(0)
    b = make(0)
    hist_b = train_loop(b.models, b.phases, DATA, monitor=_holdout_monitor(b), checkpoint_path=ckpt,
                        checkpoint_every=checkpoint_every, stop_after=stop_after, **kw)
    assert hist_b.status == f"interrupted at step {stop_after}"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["step"] == stop_after // checkpoint_every * checkpoint_every
    assert set(saved["optimizers"]) == {"critic", "generator"} and set(saved["models"]) == {"generator", "critic"}

    seed_everything(99)  # a new process: other initial weights and another global RNG state
    c = make(123)
    hist_c = train_loop(c.models, c.phases, DATA, monitor=_holdout_monitor(c), checkpoint_path=ckpt,
                        checkpoint_every=checkpoint_every, **kw)
    assert hist_c.status == "completed"
    for name in a.models:
        for (key, pa), (_, pc) in zip(a.models[name].state_dict().items(), c.models[name].state_dict().items()):
            assert torch.equal(pa, pc), f"{name}.{key} differs after resume"
    assert c.opt_g.param_groups[0]["lr"] == a.opt_g.param_groups[0]["lr"]
    assert hist_c.steps == hist_a.steps and hist_c.best_step == hist_a.best_step
    assert hist_c.monitor_values == hist_a.monitor_values
    for phase in ("critic", "generator"):
        np.testing.assert_array_equal(hist_c.losses[phase], hist_a.losses[phase])


# ------------------------------------------------------------------------------------------ divergence
def _one_model_phase(loss_of_output, name="model", lr=1e-2):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return model, Phase(name, opt, lambda batch, step: loss_of_output(model(batch), step))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_loss_stops_the_run_naming_phase_and_step(bad):
    model, phase = _one_model_phase(lambda out, step: (out ** 2).mean() * (bad if step == 3 else 1.0), name="encoder")
    with pytest.raises(TrainingDiverged) as err:
        train_loop(model, [phase], DATA, steps=10, batch_size=8, seed=0, device=CPU, progress=False, desc="tiny")
    message = str(err.value)
    assert "encoder" in message and "step 3" in message and str(bad) in message
    history = err.value.history
    assert history.status.startswith("diverged") and "encoder" in history.status
    assert history.steps == [0, 1, 2, 3] and not math.isfinite(history.losses["encoder"][-1])


def test_collapsed_discriminator_stops_the_run():
    torch.manual_seed(0)
    gen, disc = nn.Linear(4, 4), nn.Linear(4, 1)
    phases = [Phase("discriminator", torch.optim.SGD(disc.parameters(), lr=1e-3),
                    lambda b, s: (disc(b) ** 2).mean() * 0 + 1e-6),  # "wins outright": loss ~ 0
              Phase("generator", torch.optim.SGD(gen.parameters(), lr=1e-3), lambda b, s: (gen(b) ** 2).mean())]
    guard = DivergenceGuard(collapsed_phase="discriminator", collapse_below=1e-4, collapse_window=4)
    with pytest.raises(TrainingDiverged, match="collapse") as err:
        train_loop({"g": gen, "d": disc}, phases, DATA, steps=20, batch_size=8, seed=0, divergence=guard,
                   device=CPU, progress=False)
    assert err.value.history.status.startswith("diverged") and "discriminator" in err.value.history.status
    assert len(err.value.history.steps) == 4  # stopped as soon as the window was full


def test_collapse_needs_consecutive_low_steps():
    # low, low, low, high, repeated: never 4 low steps in a row -> no collapse
    model, phase = _one_model_phase(lambda out, step: (out ** 2).mean() * 0 + (1.0 if step % 4 == 3 else 1e-6),
                                    "disc")
    guard = DivergenceGuard(collapsed_phase="disc", collapse_below=1e-4, collapse_window=4)
    history = train_loop(model, [phase], DATA, steps=12, batch_size=8, seed=0, divergence=guard, device=CPU,
                         progress=False)
    assert history.status == "completed"


def test_non_finite_monitor_value_stops_the_run():
    model, phase = _one_model_phase(lambda out, step: (out ** 2).mean())
    monitor = Monitor("hold-out", lambda step: float("nan") if step == 4 else 1.0, every=2)
    with pytest.raises(TrainingDiverged, match="hold-out"):
        train_loop(model, [phase], DATA, steps=10, batch_size=8, seed=0, monitor=monitor, device=CPU, progress=False)


# ------------------------------------------------------------------------------------------ kept checkpoint
def _scripted_run(values, mode="min", patience=None, steps=None, checkpoint_path=None):
    """A model trained with a monitor that returns ``values`` in turn; snapshots of the weights at every
    evaluation (the state the monitor judged)."""
    model, phase = _one_model_phase(lambda out, step: ((out - 3.0) ** 2).mean(), lr=0.05)
    snapshots = {}

    def evaluate(step):  # the value depends only on the step (a re-run sees the same values)
        snapshots[step] = _snapshot(model)
        return values[step - 1]

    monitor = Monitor("scripted", evaluate, mode, every=1, patience=patience)
    history = train_loop(model, [phase], DATA, steps=steps or len(values), batch_size=8, seed=0, monitor=monitor,
                         device=CPU, progress=False, checkpoint_path=checkpoint_path)
    return model, history, snapshots


@pytest.mark.parametrize("mode,values,best", [("min", [5, 4, 1, 3, 2, 6], 3),
                                              ("max", [0.5, 0.9, 0.7, 0.6, 0.8, 0.2], 2)])
def test_monitor_keeps_the_best_weights_not_the_last(mode, values, best):
    model, history, snapshots = _scripted_run(values, mode)
    assert history.status == "completed" and not history.stopped_early
    assert history.best_step == best and history.best_value == values[best - 1]
    assert history.eval_steps == list(range(1, len(values) + 1)) and history.monitor_values == values
    assert _same(_snapshot(model), snapshots[best])
    assert not _same(_snapshot(model), snapshots[len(values)])  # training did move the weights afterwards


def test_patience_stops_early_and_restores_the_best_weights():
    values = [5, 4, 1, 3, 2, 0.5, 0.1, 0.0, 0.0, 0.0]  # two evaluations without improvement after step 3
    model, history, snapshots = _scripted_run(values, "min", patience=2)
    assert history.stopped_early and history.status == "early-stopped"
    assert history.steps == [0, 1, 2, 3, 4] and history.eval_steps == [1, 2, 3, 4, 5]
    assert history.best_step == 3
    assert _same(_snapshot(model), snapshots[3]) and not _same(_snapshot(model), snapshots[5])


def test_rerunning_an_early_stopped_run_from_its_checkpoint_changes_nothing(tmp_path):
    ckpt = tmp_path / "early.pt"
    values = [5, 4, 1, 3, 2, 0.0, 0.1, 0.0, 0.0, 0.0]  # step 6 would be the best, had the run gone on
    model, first, _ = _scripted_run(values, "min", patience=2, checkpoint_path=ckpt)
    again, second, _ = _scripted_run(values, "min", patience=2, checkpoint_path=ckpt)
    assert _same(_snapshot(model), _snapshot(again))
    assert second.status == "early-stopped" and second.best_step == first.best_step
    assert second.steps == first.steps, "a finished (early-stopped) run trained again when re-run from its checkpoint"


def test_monitor_factories_refuse_test_data_and_bare_tensors(phantoms):
    p = phantoms
    with pytest.raises(RefusedTestData):
        holdout_loss_monitor(lambda b, s: b.mean(), p.test.normals(), 8, CPU)
    with pytest.raises(TypeError):
        holdout_loss_monitor(lambda b, s: b.mean(), p.train.float_images(), 8, CPU)
    with pytest.raises(RefusedTestData):
        validation_auroc_monitor(lambda imgs: np.zeros(len(imgs)), p.test)
    renamed = concat([p.val, p.test], meta={**p.val.meta, "split": "val"})
    with pytest.raises(RefusedTestData):
        validation_auroc_monitor(lambda imgs: np.zeros(len(imgs)), renamed)
    monitor = validation_auroc_monitor(lambda imgs: imgs.float_images().flatten(1).max(1).values.numpy(), p.val)
    assert monitor.mode == "max" and 0.5 < monitor.evaluate(1) <= 1.0


# ------------------------------------------------------------------------------------------ identity guard
def _scores(images):
    return np.linspace(0, 1, len(images))


def test_threshold_is_chosen_on_validation_only(phantoms):
    p = phantoms
    assert isinstance(select_threshold_on_validation(ScoredSplit.of(_scores(p.val), p.val)), float)
    disguised = {
        "test called val": ScoredSplit.of(_scores(p.test), p.test, split="val"),
        "test subset": ScoredSplit.of(_scores(p.test.subset(np.arange(20))), p.test.subset(np.arange(20)), "val"),
        "val+test renamed val": ScoredSplit.of(
            _scores(np.arange(len(p.val) + len(p.test))), concat([p.val, p.test], meta={"split": "val"})),
        "upper-case TEST": ScoredSplit(_scores(p.val), p.val.labels, "TEST"),
        "test (diagnostic)": ScoredSplit(_scores(p.val), p.val.labels, "test (diagnostic)"),
    }
    for what, split in disguised.items():
        with pytest.raises(RefusedTestData):
            select_threshold_on_validation(split)
            pytest.fail(f"{what} was accepted")
    renamed = concat([p.val, p.test], meta={"split": "val"})
    assert renamed.split == "val" and renamed.contains_test
    with pytest.raises(TypeError):
        ScoredSplit.of(_scores(p.val), p.val.images)  # a bare tensor carries no mark


def test_detector_fit_refuses_test_data_in_every_argument(phantoms):
    p = phantoms
    det = create("conv_ae", latent=4, width=4, steps=2, batch_size=8, progress=False, device="cpu")
    for kwargs in (dict(train=p.test.normals()), dict(train=p.train, val=p.test),
                   dict(train=p.train, anomalies=p.test.anomalies().subset(np.arange(3))),
                   dict(train=p.train, val=concat([p.val, p.test.subset([0, 1])], meta={"split": "val"}))):
        with pytest.raises(RefusedTestData):
            det.fit(**kwargs)
        assert det.model is None  # refused before anything was trained
    with pytest.raises(RefusedTestData):
        det.fit(p.train, p.val, concat([few_shot_anomalies(p, 2, 0), p.test.anomalies().subset([0])],
                                       meta={"split": "train"}))


def test_weakly_supervised_search_refuses_a_test_derived_pool(phantoms):
    from adlib.methods.dpa.selection import weakly_supervised_search

    p = phantoms
    made = []

    def make(config, fold):
        made.append(config)
        return create("conv_ae", latent=4, width=4, steps=1, batch_size=8, progress=False, device="cpu")

    pool = concat([p.train_anomaly_pool, p.test.anomalies()], meta={"split": "train"})
    with pytest.raises(RefusedTestData):
        weakly_supervised_search(make, [{}], p.train, pool, progress=False)
    with pytest.raises(RefusedTestData):
        weakly_supervised_search(make, [{}], p.test.normals(), p.train_anomaly_pool, progress=False)
    with pytest.raises(TypeError):
        weakly_supervised_search(make, [{}], p.train, p.train_anomaly_pool.images, progress=False)
    assert made == []  # refused before any model was trained


def test_require_marked_and_refuse_test_data():
    with pytest.raises(TypeError, match="bare"):
        require_marked(torch.zeros(2, 1, 8, 8), "a choice")
    with pytest.raises(TypeError):
        require_marked(np.zeros((2, 1, 8, 8)), "a choice")
    require_marked(None, "nothing to check")
    refuse_test_data(None, "nothing to check")
    p = make_synthetic_protocol(n_train=8, n_val=8, n_test=8, size=16, seed=1)
    with pytest.raises(RefusedTestData, match="held-out choice"):
        require_marked(p.test.sample(3, 0), "held-out choice")


# ------------------------------------------------------------------------------------------ experiment runner
CONFIG_TEXT = b"""# throwaway run configuration for tests
[common]
patience = 5
nested = { x = 1, y = 2, deep = { a = 1, b = 2 } }
grid = [1, 2, 3]

[smoke]
steps = 10
nested = { y = 3, deep = { b = 20 } }

[cpu]
steps = 100
seeds = [4, 5]

[paper]
steps = 1000
"""


@pytest.fixture()
def config_dir(tmp_path, monkeypatch, keep_profile):
    directory = tmp_path / "configs"
    directory.mkdir()
    (directory / "zz_test.toml").write_bytes(CONFIG_TEXT)
    monkeypatch.setattr(config_module, "CONFIG_DIR", directory)
    return directory


PROVENANCE = ("profile", "seed", "image_size", "weights", "weights_sha256", "data_source", "data_sha256",
              "git_commit", "config_sha256", "device", "threads", "fit_seconds", "peak_memory_MB", "status")


def test_run_experiment_row_has_provenance_and_is_reproducible(phantoms, config_dir, scratch_outputs):
    from adlib.experiment import METRIC_KEYS, run_experiment
    from adlib.results import ResultsTable

    cfg = config_module.load_run_config("zz_test", "smoke")
    table = ResultsTable("t")
    kw = dict(latent=8, width=8, steps=30, batch_size=16, eval_every=10, patience=None, progress=False, device="cpu")
    runs = [run_experiment("conv_ae", phantoms, config=cfg, seed=0, method="conv AE", table=table,
                           detector_kwargs=kw) for _ in range(2)]
    first, second = runs
    row = first.row
    missing = [c for c in PROVENANCE if c not in row]
    assert not missing, f"result row lacks provenance columns {missing}"
    assert row["profile"] == "smoke" and row["seed"] == 0 and row["image_size"] == 32
    assert row["config_sha256"] == cfg.sha256[:16] and row["status"] == "completed"
    assert row["data_source"].startswith("generated") and row["weights"] == "none"
    assert row["threads"] == 1 and row["fit_seconds"] >= 0 and row["best_step"] in (10, 20, 30)
    assert set(METRIC_KEYS) <= set(row) and 0.0 <= row["AUROC"] <= 1.0
    assert first.metrics == second.metrics
    np.testing.assert_array_equal(first.test.scores, second.test.scores)
    assert len(table.rows) == 2 and table.rows[0] == row
    with pytest.raises(RefusedTestData):
        run_experiment("conv_ae", phantoms, config=cfg, seed=0, method="x", anomalies=phantoms.test.anomalies(),
                       detector_kwargs=kw)


class _DivergingDetector(Detector):
    """Test-only (never registered): trains a linear model whose loss turns NaN at step 2 of its
    ``diverge_on``-th fit; before that, fits end early-stopped (a scripted monitor)."""

    name = "test-only diverging detector"

    def __init__(self, diverge_on: int = 1):
        self.diverge_on, self.fits, self.history, self.scored = diverge_on, 0, None, 0

    def fit(self, train, val=None, anomalies=None):
        self.fits += 1
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1)
        diverge = self.fits == self.diverge_on
        phase = Phase("model", torch.optim.SGD(self.model.parameters(), lr=1e-2),
                      lambda b, step: self.model(b.mean((1, 2, 3))[:, None]).pow(2).mean()
                      * (float("nan") if diverge and step == 2 else 1.0))
        values = iter([1.0, 2.0, 3.0, 4.0])
        monitor = Monitor("scripted", lambda step: next(values), every=1, patience=2)
        self.history = train_loop(self.model, [phase], train, steps=4, batch_size=8, seed=0, monitor=monitor,
                                  device=CPU, progress=False)
        return self

    def score(self, images):
        self.scored += 1
        with torch.no_grad():
            return self.model(images.float_images().mean((1, 2, 3))[:, None])[:, 0].numpy()


def test_a_diverged_fit_gives_a_status_and_nan_metrics(phantoms, config_dir, scratch_outputs):
    from adlib.experiment import METRIC_KEYS, run_experiment

    assert "test-only diverging detector" not in available()
    cfg = config_module.load_run_config("zz_test", "smoke")
    result = run_experiment(_DivergingDetector(), phantoms, config=cfg, seed=0, method="diverging")
    assert result.status.startswith("diverged") and not result.ok
    assert result.row["status"] == result.status and "step 2" in result.status
    assert all(math.isnan(result.metrics[k]) and math.isnan(result.row[k]) for k in METRIC_KEYS)
    assert result.val is None and result.test is None and result.detector.scored == 0
    assert all(c in result.row for c in PROVENANCE)


def test_an_early_stopped_fit_is_recorded_as_such(phantoms, config_dir, scratch_outputs):
    from adlib.experiment import run_experiment

    cfg = config_module.load_run_config("zz_test", "smoke")
    result = run_experiment(_DivergingDetector(diverge_on=0), phantoms, config=cfg, seed=0, method="early")
    assert result.status == "early-stopped" == result.row["status"] and result.row["best_step"] == 1


def test_reusing_a_detector_instance_cannot_hide_a_divergence(phantoms, config_dir, scratch_outputs):
    from adlib.experiment import run_experiment

    cfg = config_module.load_run_config("zz_test", "smoke")
    detector = _DivergingDetector(diverge_on=2)
    assert run_experiment(detector, phantoms, config=cfg, seed=0, method="m").status == "early-stopped"
    result = run_experiment(detector, phantoms, config=cfg, seed=1, method="m")  # this fit diverges
    assert result.status.startswith("diverged")


# ------------------------------------------------------------------------------------------ configs, profiles
def test_run_config_merges_common_and_profile_and_is_read_only(config_dir):
    cfg = config_module.load_run_config("zz_test", "smoke")
    assert cfg.profile.name == "smoke" and cfg.notebook == "zz_test"
    assert cfg.steps == 10 and cfg["patience"] == 5 and cfg.get("missing", 7) == 7
    assert dict(cfg.nested) == {"x": 1, "y": 3, "deep": cfg.nested["deep"]}
    assert dict(cfg.nested["deep"]) == {"a": 1, "b": 20}  # nested tables merge key by key
    assert cfg.grid == (1, 2, 3) and cfg.seeds == (0,)  # the profile's seeds when the file has none
    assert cfg.sha256 == hashlib.sha256(CONFIG_TEXT).hexdigest()
    assert cfg.as_dict()["nested"]["deep"] == {"a": 1, "b": 20} and "zz_test [smoke]" in cfg.summary()
    with pytest.raises(FrozenInstanceError):
        cfg.steps = 11
    with pytest.raises(TypeError):
        cfg.values["steps"] = 11
    with pytest.raises(TypeError):
        cfg.nested["deep"]["a"] = 2
    with pytest.raises(AttributeError, match="no key 'stepz'"):
        cfg.stepz
    cpu = config_module.load_run_config("zz_test", "cpu")
    assert cpu.steps == 100 and cpu.seeds == (4, 5) and dict(cpu.nested["deep"]) == {"a": 1, "b": 2}
    assert cpu.sha256 == cfg.sha256  # the hash is the file's, whatever the profile


def test_run_config_refuses_unknown_sections_and_missing_files(config_dir):
    (config_dir / "zz_bad.toml").write_text("[common]\na = 1\n[smoke]\na = 2\n[smokey]\na = 3\n")
    with pytest.raises(ValueError, match="smokey"):
        config_module.load_run_config("zz_bad", "smoke")
    (config_dir / "zz_nocpu.toml").write_text("[smoke]\na = 2\n")
    with pytest.raises(ValueError, match=r"no \[cpu\] section"):
        config_module.load_run_config("zz_nocpu", "cpu")
    (config_dir / "zz_broken.toml").write_text("[smoke\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        config_module.load_run_config("zz_broken", "smoke")
    with pytest.raises(FileNotFoundError, match="zz_test"):
        config_module.load_run_config("zz_nothing", "smoke")


def test_profile_resolution_explicit_then_environment_then_default(config_dir, monkeypatch):
    monkeypatch.setenv("ADLIB_PROFILE", "cpu")
    assert config_module.load_run_config("zz_test").profile.name == "cpu"
    assert profiles.active_profile_name() == "cpu"
    assert config_module.load_run_config("zz_test", "smoke").profile.name == "smoke"
    assert profiles.active_profile_name() == "smoke"
    monkeypatch.delenv("ADLIB_PROFILE")
    default = "paper" if torch.cuda.is_available() else "cpu"
    assert profiles.resolve_profile_name() == default
    assert config_module.load_run_config("zz_test").profile.name == default
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        config_module.load_run_config("zz_test", "huge")
    monkeypatch.setenv("ADLIB_PROFILE", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        profiles.resolve_profile_name()
    assert profiles.resolve_profile_name("smoke") == "smoke"  # explicit wins over a (bad) environment
    assert profiles.activate("smoke").default_threads == 1 and torch.get_num_threads() == 1


def test_outputs_go_to_a_folder_per_profile(scratch_outputs, keep_profile, monkeypatch):
    from adlib.paths import figures_dir, results_dir

    base_fig, base_res = scratch_outputs / "adlib_figures", scratch_outputs / "adlib_results"
    profiles.activate("smoke")
    assert figures_dir() == base_fig / "smoke" and str(figures_dir()).endswith("/smoke")
    assert results_dir() == base_res / "smoke" and figures_dir().is_dir()
    profiles.activate("cpu")
    assert figures_dir() == base_fig and results_dir() == base_res
    profiles.activate("paper")
    assert figures_dir() == base_fig / "paper"
    monkeypatch.setattr(profiles, "_ACTIVE", None)  # nothing activated: $ADLIB_PROFILE decides
    monkeypatch.setenv("ADLIB_PROFILE", "smoke")
    assert results_dir() == base_res / "smoke"


# ------------------------------------------------------------------------------------------ figures
def test_save_figure_writes_a_png_and_returns_none(scratch_outputs, keep_profile, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.delenv("ADLIB_FIGURE_RULES", raising=False)  # a bare figure: the strict rules are tested elsewhere

    from adlib.paths import figures_dir
    from adlib.plots import save_figure

    profiles.activate("smoke")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert save_figure(fig, "zz_line") is None
    path = figures_dir() / "zz_line.png"
    assert path == scratch_outputs / "adlib_figures" / "smoke" / "zz_line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed
    assert [p.name for p in path.parent.iterdir()] == ["zz_line.png"]  # no temporary file left


def test_image_grid_heat_row_shares_one_colour_scale_and_has_a_colour_bar():
    import matplotlib.pyplot as plt
    from matplotlib.image import AxesImage

    from adlib.plots import image_grid

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 16, 16, generator=gen)
    maps = torch.rand(4, 16, 16, generator=gen) * torch.tensor([1.0, 5.0, 0.1, 20.0]).view(4, 1, 1)  # ranges differ
    fig = image_grid({"input": images, "residual": maps}, titles=list("abcd"), heat_rows=("residual",))
    try:
        grid_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        heat = [im for ax in grid_axes[4:8] for im in ax.get_images() if isinstance(im, AxesImage)]
        assert len(heat) == 4
        clims = {im.get_clim() for im in heat}
        assert len(clims) == 1, f"heat maps use different colour scales: {clims}"
        vmin, vmax = clims.pop()
        assert vmin == pytest.approx(float(maps.min())) and vmax > 5.0  # the row's scale, not one column's
        assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
        assert {im.get_clim() for ax in grid_axes[:4] for im in ax.get_images()} == {(0, 1)}
    finally:
        plt.close(fig)


def test_resource_meter_reports_what_a_block_adds_not_the_process_peak():
    import torch

    from adlib.training import ResourceMeter

    with ResourceMeter() as big:
        x = torch.ones(50_000_000)  # 200 MB held for a moment
        x.add_(1.0)
        time.sleep(0.05)
        del x
    with ResourceMeter() as small:
        torch.ones(1000).sum()
    if torch.cuda.is_available():
        pytest.skip("on a GPU the meter reads CUDA memory; this test checks the CPU (RSS) path")
    assert big.added_mb > 150
    assert small.added_mb < 50 <= big.peak_mb  # the process peak stays high; the added memory does not
