"""Training-loop helpers shared by every method.

- `seed_everything`: the same numbers twice. Where to run and with how many threads (`choose_device`,
  `set_cpu_threads`) is `adlib.runtime`'s job; both stay importable from here.
- `train_loop`: the one training loop. Several optimizers, each a `Phase` with its own loss and schedule
  (generator / encoder / discriminator, n_critic for WGAN-GP, separate learning rates); batch order depends
  only on (seed, step), so a run interrupted and resumed from its last atomic checkpoint ends exactly where an
  uninterrupted one does; early stopping / checkpoint choice by a `Monitor` on held-out normals or on validation
  AUROC (never the test split); divergence (NaN/inf loss, collapsed discriminator) stops the run with
  `TrainingDiverged` and a recorded status. `train_steps` is its one-optimizer form.
- `ResourceMeter` (`adlib.meter`, importable from here): wall time, throughput and memory of a block of work.
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from .progress import progress_bar

from .data.imageset import ImageSet
from .io import atomic_torch_save
from .meter import ResourceMeter  # noqa: F401  (notebooks, pretrain and DPA import it from here)
from .runtime import choose_device, set_cpu_threads  # noqa: F401  (set_cpu_threads: re-exported)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def split_holdout(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split training normals into (fit, holdout) for early stopping; seeded."""
    n = len(images)
    n_hold = max(1, int(round(fraction * n))) if fraction > 0 else 0
    perm = np.random.default_rng(seed).permutation(n)
    return images.subset(np.sort(perm[n_hold:])), images.subset(np.sort(perm[:n_hold]))


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the batch used at ``step``: a fresh seeded permutation per epoch, so any step is
    reproducible without replaying the ones before it (what makes resume exact)."""
    per_epoch = max(1, n // batch_size)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[pos * batch_size:(pos + 1) * batch_size]


LossOutput = "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"


@dataclass
class Phase:
    """One optimizer and the loss it minimises, with its own schedule.

    loss(batch, step) returns the loss tensor, or (loss, {name: value}) to log extra terms (e.g. the parts of
    a weighted sum). The phase runs on loop steps where ``step % every == 0``, ``repeats`` times (n_critic for
    WGAN-GP: the critic phase with repeats=5, the generator phase with repeats=1); repeat r > 0 gets its own
    seeded batch. ``scheduler`` (a torch LR scheduler) is stepped once after each step the phase ran.
    """

    name: str
    optimizer: torch.optim.Optimizer
    loss: Callable
    every: int = 1
    repeats: int = 1
    scheduler: object | None = None
    grad_clip: float | None = None
    pass_indices: bool = False  # call loss(batch, step, indices): the rows of the data, e.g. for cached targets
    # modules this phase trains besides the loop's models (e.g. a latent hook's heads): checkpointed, resumed and
    # rolled back to the best monitored step together with them
    modules: dict = field(default_factory=dict)

    def runs_at(self, step: int) -> bool:
        return step % self.every == 0


@dataclass
class Monitor:
    """What early stopping and the kept checkpoint are chosen on: held-out normal loss (mode 'min') or
    validation AUROC (mode 'max'); never the test split (the factories refuse it)."""

    name: str
    evaluate: Callable[[int], float]  # called with the number of steps done
    mode: str = "min"
    every: int = 100
    patience: int | None = None

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best - 1e-6 if self.mode == "min" else value > best + 1e-6


@dataclass
class DivergenceGuard:
    """Stops a run that has gone wrong instead of letting it produce a garbage score.

    Always: a NaN or infinite loss in any phase. With ``collapsed_phase`` (the discriminator's name): its loss
    below ``collapse_below`` for ``collapse_window`` consecutive steps - the discriminator wins outright and
    the generator gets no useful gradient.
    """

    collapsed_phase: str | None = None
    collapse_below: float = 1e-4
    collapse_window: int = 200


class TrainingDiverged(RuntimeError):
    """Training stopped because it diverged; ``history.status`` says how, ``history`` keeps the curves."""

    def __init__(self, message: str, history: "TrainHistory"):
        super().__init__(message)
        self.history = history


@dataclass
class TrainHistory:
    """Everything a run recorded: per-phase losses per step (NaN where a phase did not run), extra logged
    terms, the monitor's values, the kept (best) step, and how the run ended (``status``)."""

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    logs: dict[str, list[float]] = field(default_factory=dict)
    monitor_name: str = ""
    eval_steps: list[int] = field(default_factory=list)
    monitor_values: list[float] = field(default_factory=list)
    best_step: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    status: str = "not started"
    seconds: float = 0.0
    images_seen: int = 0
    extras: dict = field(default_factory=dict)  # method-specific records (e.g. steps_per_epoch)
    checkpoint_criterion: str = ""  # how the kept step was chosen (adlib.reconstruction: val_auroc, holdout_loss, last)

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds > 0 else float("nan")

    @property
    def train_loss(self) -> list[float]:
        """The first phase's loss per step (the only one for single-optimizer training)."""
        return next(iter(self.losses.values()), [])

    @property
    def holdout_loss(self) -> list[float]:
        return self.monitor_values

    def frame(self):
        """Per-step losses and logs as a pandas DataFrame (for plots)."""
        import pandas as pd

        return pd.DataFrame({"step": self.steps, **{f"loss/{k}": v for k, v in self.losses.items()}, **self.logs})


def save_checkpoint(path: Path, **state) -> None:
    atomic_torch_save(state, path)


def load_checkpoint(path: Path) -> dict:
    # Our own checkpoint (it pickles the TrainHistory), written atomically by save_checkpoint.
    return torch.load(path, map_location="cpu", weights_only=False)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, step, stream): random draws inside a loss stay exact on resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def _fetch(data, idx: torch.Tensor, device) -> torch.Tensor:
    if isinstance(data, ImageSet):
        return data.images[idx].to(device).float().div_(255.0)
    return data[idx].to(device).float()


def _as_models(models) -> dict[str, torch.nn.Module]:
    if isinstance(models, torch.nn.Module):
        return {"model": models}
    return dict(models)


def train_loop(models: "torch.nn.Module | dict[str, torch.nn.Module]", phases: list[Phase], data, *, steps: int,
               batch_size: int, seed: int, monitor: Monitor | None = None,
               divergence: DivergenceGuard | None = None, checkpoint_path: str | Path | None = None,
               checkpoint_every: int = 200, device: torch.device | None = None, desc: str = "training",
               progress: bool = True, stop_after: int | None = None) -> TrainHistory:
    """``steps`` loop steps over ``data`` (an ImageSet: float [0, 1] batches; or a tensor, e.g. patch features).

    Every step draws one batch (its indices depend only on (seed, step), see `batch_indices`) and runs each
    phase scheduled at that step, in order. ``monitor``: evaluated every ``monitor.every`` steps; the state of
    every model at its best value is kept and restored at the end; ``patience`` evaluations without improvement
    stop the run. ``checkpoint_path``: an atomic checkpoint of every model, optimizer and scheduler every
    ``checkpoint_every`` steps; a run finds it and resumes exactly. A NaN/inf loss or a collapsed discriminator
    (``divergence``) raises TrainingDiverged with ``history.status`` set. ``stop_after``: stop as if interrupted
    (for testing resume).
    """
    device = device or choose_device()
    models = _as_models(models)
    for phase in phases:
        for name, module in phase.modules.items():
            if models.get(name, module) is not module:
                raise ValueError(f"phase {phase.name!r} adds a module named {name!r}, which the loop already has")
            models[name] = module
    for m in models.values():
        m.to(device)
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ValueError(f"phase names must be unique, got {names}")
    divergence = divergence or DivergenceGuard()
    history = TrainHistory(losses={p.name: [] for p in phases}, monitor_name=monitor.name if monitor else "")
    start, best_state, bad_evals, low_streak = 0, None, 0, 0
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        if set(state["models"]) != set(models):
            raise ValueError(f"checkpoint {ckpt} holds the models {sorted(state['models'])}, this run trains "
                             f"{sorted(models)}: it belongs to another configuration; delete it to start afresh")
        for name, m in models.items():
            m.load_state_dict(state["models"][name])
        for p in phases:
            p.optimizer.load_state_dict(state["optimizers"][p.name])
            if p.scheduler is not None:
                p.scheduler.load_state_dict(state["schedulers"][p.name])
        torch.set_rng_state(state["torch_rng"])
        history, start = state["history"], state["step"]
        best_state, bad_evals, low_streak = state["best_state"], state["bad_evals"], state["low_streak"]
    n = len(data)
    if n < 2:
        raise ValueError(f"need at least 2 training examples, got {n}")
    batch_size = min(batch_size, n)
    history.status = "running"
    t0 = time.perf_counter() - history.seconds
    # a run that already stopped early (its checkpoint says so) does not train again: it only restores the best
    remaining = range(start, start if history.stopped_early else steps)
    bar = progress_bar(remaining, desc=desc, disable=not progress, initial=start, total=steps, mininterval=1)
    step = start

    def diverged(message: str):
        history.status = f"diverged: {message}"
        history.seconds = time.perf_counter() - t0
        bar.close()
        raise TrainingDiverged(f"{desc}: {message}. The run is stopped; no score is computed from it. Lower the "
                               "learning rate, check the input range, or try another seed.", history)

    for step in bar:
        for m in models.values():
            m.train()
        idx = batch_indices(n, batch_size, step, seed)
        batch = _fetch(data, idx, device)
        history.steps.append(step)
        for phase in phases:
            if not phase.runs_at(step):
                history.losses[phase.name].append(float("nan"))
                continue
            total = 0.0
            for r in range(phase.repeats):
                rows = idx if r == 0 else torch.randperm(n, generator=step_generator(seed, step, r))[:batch_size]
                b = batch if r == 0 else _fetch(data, rows, device)
                out = phase.loss(b, step, rows) if phase.pass_indices else phase.loss(b, step)
                loss, logs = (out if isinstance(out, tuple) else (out, {}))
                value = float(loss.detach())
                if not math.isfinite(value):
                    history.losses[phase.name].append(value)
                    diverged(f"{phase.name} loss is {value} at step {step}")
                phase.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if phase.grad_clip is not None:
                    params = [p for g in phase.optimizer.param_groups for p in g["params"]]
                    torch.nn.utils.clip_grad_norm_(params, phase.grad_clip)
                phase.optimizer.step()
                total += value
                for key, v in logs.items():
                    history.logs.setdefault(f"{phase.name}/{key}", [float("nan")] * (len(history.steps) - 1))
                    if r == 0:
                        history.logs[f"{phase.name}/{key}"].append(float(v))
            if phase.scheduler is not None:
                phase.scheduler.step()
            history.losses[phase.name].append(total / phase.repeats)
        for key, values in history.logs.items():  # keep logs aligned with steps when a phase skipped
            if len(values) < len(history.steps):
                values.append(float("nan"))
        if divergence.collapsed_phase is not None:
            last = history.losses[divergence.collapsed_phase][-1]
            low_streak = low_streak + 1 if (math.isfinite(last) and last < divergence.collapse_below) else (
                low_streak if not math.isfinite(last) else 0)
            if low_streak >= divergence.collapse_window:
                diverged(f"{divergence.collapsed_phase} loss stayed below {divergence.collapse_below:g} for "
                         f"{divergence.collapse_window} steps (the discriminator collapsed: it wins outright)")
        history.images_seen += len(idx)
        done = step + 1
        if monitor is not None and (done % monitor.every == 0 or done == steps):
            for m in models.values():
                m.eval()
            with torch.no_grad():
                value = float(monitor.evaluate(done))
            history.eval_steps.append(done)
            history.monitor_values.append(value)
            if not math.isfinite(value):
                diverged(f"{monitor.name} is {value} at step {done}")
            if monitor.better(value, history.best_value):
                history.best_value, history.best_step, bad_evals = value, done, 0
                best_state = {k: copy.deepcopy(m.state_dict()) for k, m in models.items()}
            else:
                bad_evals += 1
            bar.set_postfix({phases[0].name: f"{history.losses[phases[0].name][-1]:.4f}", monitor.name: f"{value:.4f}"})
            if monitor.patience is not None and bad_evals >= monitor.patience:
                history.stopped_early = True
        history.seconds = time.perf_counter() - t0
        if ckpt is not None and (done % checkpoint_every == 0 or history.stopped_early or done == steps):
            save_checkpoint(ckpt, models={k: m.state_dict() for k, m in models.items()},
                            optimizers={p.name: p.optimizer.state_dict() for p in phases},
                            schedulers={p.name: p.scheduler.state_dict() for p in phases if p.scheduler is not None},
                            step=done, torch_rng=torch.get_rng_state(), history=history, best_state=best_state,
                            bad_evals=bad_evals, low_streak=low_streak)
        if history.stopped_early or (stop_after is not None and done >= stop_after):
            break
    bar.close()
    finished = history.stopped_early or step + 1 >= steps or start >= steps
    if finished:
        history.status = "early-stopped" if history.stopped_early else "completed"
        if best_state is not None:
            for k, m in models.items():
                m.load_state_dict(best_state[k])
    else:
        history.status = f"interrupted at step {step + 1}"
    for m in models.values():
        m.eval()
    return history


def holdout_loss_monitor(model_loss: Callable[[torch.Tensor, int], torch.Tensor], holdout: ImageSet, batch_size: int,
                         device: torch.device | None = None, every: int = 100, patience: int | None = None) -> Monitor:
    """Mean of ``model_loss(batch, step)`` over held-out *normal* training images (lower is better)."""
    from .data.imageset import require_marked

    require_marked(holdout, "early stopping on held-out normals")
    device = device or choose_device()

    def evaluate(step: int) -> float:
        total, count = 0.0, 0
        for batch in holdout.batches(batch_size):
            total += float(model_loss(batch.to(device), step)) * len(batch)
            count += len(batch)
        return total / max(count, 1)

    return Monitor("hold-out loss", evaluate, "min", every, patience)


def validation_auroc_monitor(score: Callable[[object], np.ndarray], val, every: int = 100,
                             patience: int | None = None) -> Monitor:
    """Validation AUROC of ``score(val)`` (higher is better); ``val`` must not contain test images."""
    from .data.imageset import require_marked
    from .metrics import auroc

    require_marked(val, "checkpoint choice on validation AUROC")
    if len(np.unique(val.labels)) < 2:
        raise ValueError("validation AUROC needs normal and anomalous validation images")
    return Monitor("val AUROC", lambda step: auroc(val.labels, score(val)), "max", every, patience)


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                batch_loss: Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor],
                train: ImageSet, *, steps: int, batch_size: int, seed: int,
                holdout: ImageSet | None = None, eval_every: int = 100, patience: int | None = None,
                checkpoint_path: str | Path | None = None, checkpoint_every: int = 200,
                device: torch.device | None = None, desc: str = "training", progress: bool = True,
                stop_after: int | None = None) -> TrainHistory:
    """`train_loop` with one model and one optimizer: ``batch_loss(model, batch, step)``; early stopping on
    the mean loss over ``holdout`` (held-out normals) every ``eval_every`` steps, when given."""
    device = device or choose_device()
    model.to(device)
    monitor = None
    if holdout is not None:
        monitor = holdout_loss_monitor(lambda b, step: batch_loss(model, b, step), holdout, batch_size, device,
                                       eval_every, patience)
    phase = Phase("model", optimizer, lambda batch, step: batch_loss(model, batch, step))
    return train_loop(model, [phase], train, steps=steps, batch_size=batch_size, seed=seed, monitor=monitor,
                      checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, device=device, desc=desc,
                      progress=progress, stop_after=stop_after)
