"""The three perturbations of SALAD's self-supervised restoration task (paper Sec. III-C, Fig. 3).

Every function takes a batch of images in [0, 1] (N, C, H, W), returns a new tensor of the same shape in
[0, 1], and draws all its randomness from a ``torch.Generator`` (so a training step is reproducible and a
resumed run sees the same perturbations). All work is batched: no Python loop over images.

a) `inpaint`: five tiles per image, each of area in [WH/64, WH/25] (paper), filled with U[0, 1] noise. Our
   reading of "random sizes ranging in [WH/64, WH/25]": tile height and width are drawn independently from
   [H/8, H/5] and [W/8, W/5], so the area lies in that range.
b) `local_shuffle`: 300 tiles per image (paper), each of random height and width in [1, max(1, W/10)] (our
   reading of "random size ranging from 1 to WH/100": the area is at most WH/100); the pixels of each tile are
   permuted among themselves (per channel identically). Overlapping tiles: a pixel belongs to the last tile
   drawn that covers it, and each tile's remaining pixels are shuffled together (one pass, batched).
c) `bezier_intensity`: a non-linear intensity map x -> B(x) given by a Bézier curve from (0, 0) to (1, 1)
   with three random interior control points in [0, 1]^2 (paper: "three randomly selected control points"),
   sampled at 256 points and sorted by x so that it is a function; the image is mapped through it by linear
   interpolation. The convex hull of the control points keeps the output in [0, 1].

`perturb` applies one of the three, chosen at random per image (paper: "One of the perturbations is randomly
selected to disarrange an input image").
"""
from __future__ import annotations

import math

import torch

KINDS = ("inpaint", "shuffle", "bezier")


def _uniform(shape, lo, hi, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * (hi - lo) + lo).to(device)


def _randint(shape, lo: torch.Tensor | int, hi: torch.Tensor | int, generator: torch.Generator) -> torch.Tensor:
    """Integers in [lo, hi] (inclusive; tensors broadcast)."""
    u = torch.rand(shape, generator=generator)
    lo_t, hi_t = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    return (lo_t + torch.floor(u * (hi_t - lo_t + 1))).clamp(max=hi_t).long()


def _tile_membership(n: int, h: int, w: int, heights: torch.Tensor, widths: torch.Tensor, generator: torch.Generator):
    """Random positions for tiles of the given sizes (N, T); returns row (N, T, H) and column (N, T, W) masks."""
    y0 = _randint(heights.shape, 0, h - heights, generator)
    x0 = _randint(widths.shape, 0, w - widths, generator)
    yy, xx = torch.arange(h), torch.arange(w)
    rows = (yy >= y0[..., None]) & (yy < (y0 + heights)[..., None])
    cols = (xx >= x0[..., None]) & (xx < (x0 + widths)[..., None])
    return rows, cols


def inpaint(x: torch.Tensor, generator: torch.Generator, tiles: int = 5) -> torch.Tensor:
    """Replace ``tiles`` random rectangles (area in [WH/64, WH/25]) per image by uniform noise."""
    n, c, h, w = x.shape
    hs = _randint((n, tiles), max(1, h // 8), max(1, h // 5), generator)
    ws = _randint((n, tiles), max(1, w // 8), max(1, w // 5), generator)
    rows, cols = _tile_membership(n, h, w, hs, ws, generator)
    mask = (rows[..., :, None] & cols[..., None, :]).any(1).to(x.device)  # (N, H, W)
    noise = _uniform(x.shape, 0.0, 1.0, generator, x.device)
    return torch.where(mask[:, None], noise, x)


def local_shuffle(x: torch.Tensor, generator: torch.Generator, tiles: int = 300) -> torch.Tensor:
    """Permute the pixels inside each of ``tiles`` small random rectangles (sides 1 .. W/10) per image."""
    n, c, h, w = x.shape
    if n == 0:
        return x.clone()
    hs = _randint((n, tiles), 1, max(1, h // 10), generator)
    ws = _randint((n, tiles), 1, max(1, w // 10), generator)
    y0 = _randint(hs.shape, 0, h - hs, generator)
    x0 = _randint(ws.shape, 0, w - ws, generator)
    # owner of each pixel: 0 = no tile, t + 1 = the last tile covering it (scatter of every tile's pixels)
    dy, dx = torch.arange(max(1, h // 10)), torch.arange(max(1, w // 10))
    valid = (dy[:, None] < hs[..., None, None]) & (dx[None, :] < ws[..., None, None])  # (N, T, mh, mw)
    index = torch.where(valid, (y0[..., None, None] + dy[:, None]) * w + x0[..., None, None] + dx[None, :], 0)
    ids = torch.arange(1, tiles + 1).view(1, tiles, 1, 1).expand_as(valid)
    owner = torch.zeros(n, h * w, dtype=torch.long).scatter_reduce_(
        1, index.reshape(n, -1), torch.where(valid, ids, 0).reshape(n, -1), "amax")
    owner = owner.flatten(1).double()  # (N, HW)
    pos = torch.arange(h * w, dtype=torch.float64) / (h * w)  # in [0, 1)
    rand = torch.rand(n, h * w, generator=generator, dtype=torch.float64)
    tiled = owner > 0
    # Sorting by (tile, random key) lists each tile's pixels in random order; by (tile, position) in place
    # order. Pixels outside every tile keep their position order in both, i.e. they do not move.
    source = torch.argsort(owner * 2 + torch.where(tiled, rand, pos), dim=1)
    target = torch.argsort(owner * 2 + pos, dim=1)
    flat = x.flatten(2)  # (N, C, HW)
    out = flat.clone()
    src = torch.gather(flat, 2, source.to(x.device)[:, None].expand(-1, c, -1))
    out.scatter_(2, target.to(x.device)[:, None].expand(-1, c, -1), src)
    return out.view_as(x)


def bezier_curves(n: int, generator: torch.Generator, points: int = 3, samples: int = 256):
    """n random Bézier intensity curves: x-samples (N, S) ascending and their y-values (N, S)."""
    ctrl = torch.rand(n, points, 2, generator=generator)
    ctrl = torch.cat([torch.zeros(n, 1, 2), ctrl, torch.ones(n, 1, 2)], 1)  # endpoints (0, 0) and (1, 1)
    degree = points + 1
    t = torch.linspace(0, 1, samples)
    basis = torch.stack([math.comb(degree, k) * t**k * (1 - t) ** (degree - k) for k in range(degree + 1)], 1)
    curve = torch.einsum("sk,nkd->nsd", basis, ctrl)  # (N, S, 2)
    order = torch.argsort(curve[..., 0], dim=1)
    xs = torch.gather(curve[..., 0], 1, order)
    ys = torch.gather(curve[..., 1], 1, order)
    return xs, ys


def bezier_intensity(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Map each image's intensities through its own random Bézier curve (linear interpolation)."""
    n = len(x)
    if n == 0:
        return x.clone()
    xs, ys = (v.to(x.device) for v in bezier_curves(n, generator))
    flat = x.reshape(n, -1).clamp(0, 1).contiguous()
    hi = torch.searchsorted(xs.contiguous(), flat).clamp(1, xs.shape[1] - 1)
    lo = hi - 1
    x0, x1 = torch.gather(xs, 1, lo), torch.gather(xs, 1, hi)
    y0, y1 = torch.gather(ys, 1, lo), torch.gather(ys, 1, hi)
    frac = ((flat - x0) / (x1 - x0).clamp_min(1e-8)).clamp(0, 1)
    return (y0 + frac * (y1 - y0)).clamp(0, 1).view_as(x)


FUNCTIONS = {"inpaint": inpaint, "shuffle": local_shuffle, "bezier": bezier_intensity}


def perturb(x: torch.Tensor, generator: torch.Generator, kinds: tuple[str, ...] = KINDS) -> tuple[torch.Tensor, torch.Tensor]:
    """One perturbation per image, chosen uniformly from ``kinds``. Returns (x_s, index of the kind used)."""
    choice = torch.randint(len(kinds), (len(x),), generator=generator)
    out = x.clone()
    for k, name in enumerate(kinds):
        rows = torch.nonzero(choice == k).flatten()
        if len(rows):
            out[rows.to(x.device)] = FUNCTIONS[name](x[rows.to(x.device)], generator)
    return out, choice
