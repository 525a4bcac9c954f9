"""Progressive growing as data (DPA Sec. III-B, Eq. 3).

A schedule is a list of stages, one per resolution. Each stage after the first begins with a
*transition* of ``transition`` steps in which alpha rises linearly from 0 to 1 (the new layers of the
autoencoder and the deeper loss layer are faded in together), followed by ``stabilise`` steps at
alpha = 1. The last stage's stabilisation is open-ended in practice: the detector trains it with early
stopping on held-out normals, so its ``stabilise`` is a maximum.

During a transition into resolution r the loss is Eq. 3:
    L = alpha * L_rec(f_r(x), f_r(x~)) + (1 - alpha) * L_rec(f_{r/2}(down x), f_{r/2}(down x~)).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# the authors' VGG19 layer per resolution (NIH subset: relu4_2 at 64 px)
DEFAULT_LAYERS = {4: ("relu1_1",), 7: ("relu1_2",), 8: ("relu1_2",), 14: ("relu2_2",), 16: ("relu2_2",),
                  28: ("relu3_2",), 32: ("relu3_2",), 64: ("relu4_2",), 128: ("relu4_2",)}
# EfficientNet-Lite (ImageNet weights offline): the stage whose output stride is closest to the VGG19 layer's
# (relu2_2 stride 2 -> stage1_s2, relu3_2 stride 4 -> stage2_s4, relu4_2 stride 8 -> stage3_s8); relu1_2 (stride
# 1) has no Lite equivalent, the shallowest stage (stride 2) stands in for it.
LITE_LAYERS = {4: ("stage1_s2",), 7: ("stage1_s2",), 8: ("stage1_s2",), 14: ("stage1_s2",), 16: ("stage1_s2",),
               28: ("stage2_s4",), 32: ("stage2_s4",), 64: ("stage3_s8",), 128: ("stage3_s8",)}


def default_layers(arch: str) -> dict[int, tuple[str, ...]]:
    """The perceptual-loss layer per resolution for a backbone architecture."""
    return dict(LITE_LAYERS if arch.startswith("efficientnet_lite") else DEFAULT_LAYERS)


@dataclass(frozen=True)
class Stage:
    resolution: int
    layers: tuple[str, ...]
    transition: int  # steps with alpha 0 -> 1 (0 for the first stage)
    stabilise: int  # steps at alpha = 1

    @property
    def steps(self) -> int:
        return self.transition + self.stabilise


@dataclass(frozen=True)
class StepState:
    stage: int
    resolution: int
    alpha: float
    layers: tuple[str, ...]
    previous_layers: tuple[str, ...] | None  # the loss layers of the previous stage, faded out


@dataclass(frozen=True)
class Schedule:
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if not self.stages:
            raise ValueError("a schedule needs at least one stage")
        for a, b in zip(self.stages, self.stages[1:]):
            if b.resolution != 2 * a.resolution:
                raise ValueError(f"each stage must double the resolution: {a.resolution} -> {b.resolution}")
            if b.transition <= 0:
                raise ValueError(f"stage {b.resolution} px needs transition > 0 steps to fade in")

    @classmethod
    def grow(cls, start: int, final: int, stabilise: int, transition: int, final_stabilise: int | None = None,
             layers: dict[int, tuple[str, ...]] | None = None) -> "Schedule":
        """start -> 2*start -> ... -> final, the same step counts per stage (final_stabilise for the last)."""
        table = {**DEFAULT_LAYERS, **(layers or {})}
        stages, res = [], start
        while res <= final:
            if res not in table:
                raise ValueError(f"no loss layer given for resolution {res}")
            last = res == final
            stages.append(Stage(res, tuple(table[res]), 0 if res == start else transition,
                                final_stabilise if (last and final_stabilise is not None) else stabilise))
            res *= 2
        if stages[-1].resolution != final:
            raise ValueError(f"{start} px does not double up to {final} px")
        return cls(tuple(stages))

    @classmethod
    def fixed(cls, resolution: int, layers: tuple[str, ...], steps: int) -> "Schedule":
        """No growing: one stage at the final resolution."""
        return cls((Stage(resolution, tuple(layers), 0, steps),))

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def growth_steps(self) -> int:
        """Steps before the final stage's stabilisation (trained without early stopping)."""
        return self.total_steps - self.stages[-1].stabilise

    def at(self, step: int) -> StepState:
        if step < 0:
            raise ValueError("step must be >= 0")
        start = 0
        for i, s in enumerate(self.stages):
            if step < start + s.steps or i == len(self.stages) - 1:
                local = step - start
                if local < s.transition:
                    prev = self.stages[i - 1].layers
                    return StepState(i, s.resolution, local / s.transition, s.layers, prev)
                return StepState(i, s.resolution, 1.0, s.layers, None)
            start += s.steps
        raise AssertionError("unreachable")

    def table(self) -> pd.DataFrame:
        rows, start = [], 0
        for s in self.stages:
            rows.append({"resolution": f"{s.resolution} px", "loss layers": "+".join(s.layers),
                         "first step": start, "transition steps (alpha 0->1)": s.transition,
                         "stabilise steps": s.stabilise})
            start += s.steps
        return pd.DataFrame(rows)
