"""Trained patch scorers (SimpleNet, WSCXR): `PatchDiscriminator`, `apply_patchwise` over a feature grid, and
`train_patch_scorer`, the training on `adlib.training.train_loop` with the checkpoint chosen on validation."""
from __future__ import annotations

import copy

import torch

from .detector import FeatureSplit
from .maps import image_scores


class PatchDiscriminator(torch.nn.Module):
    """Patch feature (D) -> one score. depth 1: a single linear layer without bias (the WSCXR authors' code);
    depth >= 2: (depth - 1) x [Linear, BatchNorm1d, LeakyReLU(0.2)] then Linear (an MLP, as the paper says
    and as SimpleNet's discriminator)."""

    def __init__(self, dim: int, depth: int = 2, hidden: int = 1024):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers: list[torch.nn.Module] = []
        c = dim
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(c, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.LeakyReLU(0.2)]
            c = hidden
        layers.append(torch.nn.Linear(c, 1, bias=depth > 1))
        self.net = torch.nn.Sequential(*layers)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


@torch.no_grad()
def apply_patchwise(fn, features: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """fn: (P, D) -> (P,) applied to (N, h, w, D) features in chunks -> (N, h, w)."""
    n, h, w, d = features.shape
    flat = features.reshape(-1, d)
    return torch.cat([fn(flat[s:s + chunk].float()) for s in range(0, len(flat), chunk)]).view(n, h, w)


def train_patch_scorer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step_loss, normal: torch.Tensor,
                       score_patches, *, epochs: int, batch_size: int, seed: int,
                       val: "FeatureSplit | None" = None, eval_every: int = 1,
                       diagnostic: "FeatureSplit | None" = None, progress: bool = True,
                       desc: str = "discriminator"):
    """SimpleNet's and WSCXR's training on `adlib.training.train_loop`: ``epochs`` passes over the normal patch
    features (P, D) in seeded batches; ``step_loss(normal_batch, gen)`` returns one step's loss (it draws its
    own anomalous features with ``gen``, a generator that depends only on (seed, step)).
    ``score_patches(features (N,h,w,D)) -> (N,h,w)``.

    val (a FeatureSplit of the validation split): its image-level AUROC is measured every ``eval_every``
    epochs and the best state is kept (the checkpoint is chosen on validation only; test features are refused).
    diagnostic (test features): for the "what the authors' protocol would report" comparison only. Test features
    never enter the training loop: the monitor keeps a copy of the weights at each evaluation, and the test
    features are scored with those copies after training has ended (``history.extras``), so they can influence
    neither training nor the kept checkpoint.
    """
    from ..metrics import auroc
    from ..training import Monitor, Phase, step_generator, train_loop

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    bs = min(batch_size, len(normal))
    per_epoch = max(1, len(normal) // bs)
    extras = {"steps_per_epoch": per_epoch, "diagnostic_auroc": [], "diagnostic_scores": []}
    monitor, snapshots = None, []
    if val is not None:
        from ..data.imageset import require_marked

        require_marked(val, f"{desc}: checkpoint choice on validation AUROC")

        def evaluate(step: int) -> float:
            if diagnostic is not None:  # weights kept for the diagnostic after training (test data stays outside)
                snapshots.append(copy.deepcopy(model.state_dict()))
            return auroc(val.labels, image_scores(score_patches(val.features)))

        monitor = Monitor("val AUROC", evaluate, "max", every=eval_every * per_epoch)
    phase = Phase(desc, optimizer, lambda batch, step: step_loss(batch, step_generator(seed, step)))
    history = train_loop(model, [phase], normal, steps=epochs * per_epoch, batch_size=bs, seed=seed,
                         monitor=monitor, device=torch.device("cpu"), desc=desc, progress=progress)
    if snapshots:  # training is over: score the test features with each evaluation's weights, then restore
        kept = copy.deepcopy(model.state_dict())
        model.eval()
        for state in snapshots:
            model.load_state_dict(state)
            d = image_scores(score_patches(diagnostic.features))
            extras["diagnostic_scores"].append(d)
            extras["diagnostic_auroc"].append(auroc(diagnostic.labels, d))
        model.load_state_dict(kept)
    history.extras = extras
    if history.best_step is None:
        history.best_step = epochs * per_epoch
    return history
