"""Synthetic lesions: a no-tumor training image, given a tumor-like mass, becomes a tumor of unknown type.

Why: in the seed data nearly every tumor is a contrast-enhanced T1 slice and nearly every normal a T2 or FLAIR
slice, so "T2-looking" reads as "no tumor" to a network trained on it, and a bright T2/FLAIR mass in a scan
from elsewhere is missed with confidence (issue 21). The missing cell of the training data is a tumor on
the normals' sequences. Painting masses into the normals (the idea of CutPaste and other synthetic-anomaly
methods) fills that cell with the normals' own sequence, scanner and framing, so only the mass separates
the two labels.

A mass is an ellipse (its radii 4-15% of the image side) with a wobbling border, blended in with a soft edge:
bright (T2/FLAIR-like, most of them) or dark, a textured inside, sometimes a dark core (a necrotic centre
inside an enhancing ring) and sometimes a fainter halo (edema). Its centre lies well inside the head, and
nothing is painted outside the head. It is drawn before the geometric and intensity augmentation, which then
treat it as part of the anatomy.

Infiltrative masses (`infiltrative`, a share of the masses; session 49): the Br35H tumors that every held-out
run misses are mostly T2/FLAIR lesions whose bright zone follows the anatomy under it, with a ragged border,
pushing the ventricles aside; a flat ellipse has none of that, so a network may learn "a flat patch" instead of
"a lesion". Such a mass is a smaller classic one (or none) inside a wide zone that brightens the tissue without
replacing it, its border roughened by a fine random field, the anatomy around it pushed outward (mass effect).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RADIUS = (0.04, 0.15)  # the ellipse's half-axes, fractions of the image side
BRIGHT = (0.6, 1.0)  # a bright mass's level (intensities in [0, 1])
DARK = (0.0, 0.15)
DARK_SHARE = 0.25  # of the masses, this share is darker than the brain around it
RING_SHARE = 0.3  # ... has a dark core inside a bright ring
HALO_SHARE = 0.5  # ... has a fainter halo around it
HEAD_LEVEL = 0.08  # pixels brighter than this are the head
SPREAD = (1.3, 2.5)  # an infiltrative zone's reach, in the mass's radii
ZONE_GAIN = (0.45, 0.9)  # how far the zone moves the tissue toward the mass's level (the rest keeps the anatomy)
ROUGHNESS = (0.2, 0.6)  # the zone border's radius varies by up to this share, by a fine random field
PUSH = (0.0, 0.35)  # mass effect: the share of its distance from the centre by which tissue is pushed out
CORE_SHARE = 0.6  # of the infiltrative masses, this share keeps a (smaller) solid mass inside the zone


def head_interior(images: torch.Tensor, width: int) -> torch.Tensor:
    """The share of head pixels in each pixel's width x width neighbourhood (B, 1, H, W), in [0, 1]."""
    head = (images > HEAD_LEVEL).to(images.dtype)
    return F.avg_pool2d(head, width | 1, stride=1, padding=(width | 1) // 2, count_include_pad=True)


def add_lesions(images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, rate: float,
                tumor_target: int, tumor_weight: float, generator: torch.Generator | None = None,
                as_copies: bool = False, infiltrative: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images: float (B, 1, H, W) in [0, 1]; targets: training targets, 0 = no tumor. Each no-tumor image
    gets a mass with probability `rate` (where its head has room for one) and then the target `tumor_target`
    and the loss weight `tumor_weight`. Returns new (images, targets, weights); the others are unchanged.
    `as_copies`: the painted images are added after the batch instead, and the normals they were painted on
    stay in it as normals (the batch grows; the same random numbers are drawn). `infiltrative`: the share of
    masses drawn as infiltrative ones (module docstring); 0 draws nothing extra, so runs without it are unchanged."""
    n, _, h, w = images.shape
    device, dtype = images.device, images.dtype
    # Every random number is drawn for the whole batch, in one fixed order, whichever images get a mass: the
    # generator's stream (and so the rest of the run) does not depend on the choice. Only the chosen images
    # (a few of a batch: the normals, at `rate`) are painted, which is most of the cost saved.
    candidates = torch.nonzero(targets == 0).flatten()
    room = torch.zeros(n, h * w, dtype=torch.bool, device=device)
    if len(candidates):  # centres: a random pixel among those whose neighbourhood is all head
        room[candidates] = head_interior(images[candidates], max(3, round(0.12 * h)))[:, 0].reshape(-1, h * w) > 0.98
    centre = (torch.rand(n, h * w, generator=generator, device=device) * room).argmax(1)
    chosen = (targets == 0) & room.any(1) & (torch.rand(n, generator=generator, device=device) < rate)
    draws = mass_draws(n, generator, device, dtype)
    if infiltrative > 0:
        draws.update(infiltrative_draws(n, infiltrative, generator, device, dtype))
    keep = torch.nonzero(chosen).flatten()
    painted = images[keep]
    if len(keep):
        picked = {name: value[keep] for name, value in draws.items()}
        painted = paint_masses(painted, centre[keep], picked)
    if as_copies:
        return (torch.cat([images, painted]), torch.cat([targets, torch.full_like(targets[keep], tumor_target)]),
                torch.cat([weights, torch.full_like(weights[keep], tumor_weight)]))
    out = images.clone()
    out[keep] = painted
    return (out,
            torch.where(chosen, torch.full_like(targets, tumor_target), targets),
            torch.where(chosen, torch.full_like(weights, tumor_weight), weights))


def mass_draws(n: int, generator: torch.Generator | None, device, dtype) -> dict[str, torch.Tensor]:
    """The random numbers of n masses (shape, texture, kind), drawn in one fixed order."""
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=generator, device=device, dtype=dtype)

    def chance(p: float) -> torch.Tensor:
        return torch.rand(n, 1, 1, 1, generator=generator, device=device) < p

    d = {"angle": uniform(0.0, math.pi), "a": uniform(*RADIUS), "b": uniform(*RADIUS)}
    for k in WOBBLE_HARMONICS:
        d[f"wobble{k}"], d[f"phase{k}"] = uniform(0.0, 0.12), uniform(0.0, 2 * math.pi)
    d["edge"] = uniform(0.03, 0.12)
    d["texture"] = torch.rand(n, 1, 12, 12, generator=generator, device=device, dtype=dtype)
    d["bright"] = ~chance(DARK_SHARE)
    d["bright_level"], d["dark_level"], d["mottle"] = uniform(*BRIGHT), uniform(*DARK), uniform(0.0, 0.6)
    d["ring"] = d["bright"] & chance(RING_SHARE)  # a dark centre inside the bright mass
    d["core_size"], d["core_level"] = uniform(0.35, 0.65), uniform(*DARK)
    d["halo"] = d["bright"] & chance(HALO_SHARE)  # a fainter zone around it, fading out by 1.4-2 radii
    d["reach"], d["halo_strength"] = uniform(1.4, 2.0), uniform(0.2, 0.5)
    return d


def infiltrative_draws(n: int, share: float, generator: torch.Generator | None, device, dtype
                       ) -> dict[str, torch.Tensor]:
    """The extra random numbers of n masses when a share of them is infiltrative, drawn after `mass_draws`."""
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=generator, device=device, dtype=dtype)

    return {"infiltrative": torch.rand(n, 1, 1, 1, generator=generator, device=device) < share,
            "spread": uniform(*SPREAD), "zone_gain": uniform(*ZONE_GAIN), "roughness": uniform(*ROUGHNESS),
            "push": uniform(*PUSH), "core_scale": uniform(0.3, 0.7),
            "solid_core": torch.rand(n, 1, 1, 1, generator=generator, device=device) < CORE_SHARE,
            "rough_field": torch.rand(n, 1, 24, 24, generator=generator, device=device, dtype=dtype)}


WOBBLE_HARMONICS = (2, 3, 5)  # the border's radius is modulated by these harmonics of the polar angle


def paint_masses(images: torch.Tensor, centre: torch.Tensor, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """One mass painted into each image (m, 1, H, W), centred at its flat pixel index `centre`, as `d` draws it."""
    m, _, h, w = images.shape
    cy, cx = (centre // w).to(images.dtype).view(m, 1, 1, 1), (centre % w).to(images.dtype).view(m, 1, 1, 1)
    distance = border_distance(images, cy, cx, d)
    if "infiltrative" in d:
        out = infiltrative_masses(images, cy, cx, distance, d)
    else:
        out = solid_masses(images, distance, d)
    # Never outside the head: the mass is faded out where the head ends.
    inside = head_interior(images, 5) * (images > HEAD_LEVEL)
    return (images + (out - images) * inside).clamp(0.0, 1.0)


def border_distance(images: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, d: dict[str, torch.Tensor]
                    ) -> torch.Tensor:
    """Each pixel's distance from the mass's centre (m, 1, H, W), in units of its wobbling border (1 on it)."""
    _, _, h, w = images.shape
    ys = torch.arange(h, device=images.device, dtype=images.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=images.device, dtype=images.dtype).view(1, 1, 1, w)
    dy, dx = ys - cy, xs - cx
    u = dx * torch.cos(d["angle"]) + dy * torch.sin(d["angle"])
    v = -dx * torch.sin(d["angle"]) + dy * torch.cos(d["angle"])
    a, b = d["a"] * h, d["b"] * h
    radius = torch.sqrt((u / a) ** 2 + (v / b) ** 2)  # 1 on the ellipse
    # A wobbling border: the ellipse's radius modulated by low harmonics of the polar angle.
    phi = torch.atan2(v / b, u / a)
    wobble = 1.0 + sum(d[f"wobble{k}"] * torch.cos(k * phi + d[f"phase{k}"]) for k in WOBBLE_HARMONICS)
    return radius / wobble


def mass_level(images: torch.Tensor, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mass's intensity (m, 1, H, W): bright or dark, mottled by a coarse random field."""
    texture = F.interpolate(d["texture"], size=images.shape[-2:], mode="bicubic", align_corners=False) - 0.5
    return torch.where(d["bright"], d["bright_level"], d["dark_level"]) * (1 + d["mottle"] * texture)


def solid_masses(images: torch.Tensor, distance: torch.Tensor, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """The classic mass: the tissue replaced by the mass's level inside the border, sometimes a dark core
    (necrosis) and a fainter halo (edema)."""
    edge = d["edge"]  # soft edge, in border radii
    core = torch.sigmoid((1.0 - distance) / edge)
    level = mass_level(images, d)
    out = images * (1 - core) + level * core
    necrosis = torch.sigmoid((d["core_size"] - distance) / edge) * d["ring"]
    out = out * (1 - necrosis) + d["core_level"] * necrosis
    fringe = torch.sigmoid((d["reach"] - distance) / 0.15) * (1 - core) * d["halo_strength"] * d["halo"]
    return out * (1 - fringe) + level * 0.8 * fringe


def infiltrative_masses(images: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, distance: torch.Tensor,
                        d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Classic masses where `d["infiltrative"]` is false; elsewhere the anatomy pushed outward, a zone out to
    `spread` border radii with a rough edge moved part way to the mass's level, and (`solid_core`) a classic
    mass `core_scale` the size inside it."""
    _, _, h, w = images.shape
    chosen = d["infiltrative"]
    reach = d["spread"] * 0.5 * (d["a"] + d["b"]) * h  # the zone's radius in pixels, about
    pushed = pushed_outward(images, cy, cx, reach, d["push"] * chosen)
    rough = F.interpolate(d["rough_field"], size=(h, w), mode="bicubic", align_corners=False) - 0.5
    zone = torch.sigmoid((d["spread"] - distance * (1 + d["roughness"] * rough)) / (d["edge"] * d["spread"]))
    zone_level = torch.where(d["bright"], d["bright_level"], d["dark_level"])
    zoned = pushed + (zone_level - pushed) * zone * d["zone_gain"]
    with_core = torch.where(d["solid_core"], solid_masses(zoned, distance / d["core_scale"], d), zoned)
    return torch.where(chosen, with_core, solid_masses(images, distance, d))


def pushed_outward(images: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, reach: torch.Tensor,
                   push: torch.Tensor) -> torch.Tensor:
    """Mass effect: each pixel shows the tissue from `push` x its offset nearer the centre, fading out past
    `reach` pixels, so the anatomy near the mass is pushed aside (none where push is 0)."""
    m, _, h, w = images.shape
    ys = torch.arange(h, device=images.device, dtype=images.dtype).view(1, h, 1)
    xs = torch.arange(w, device=images.device, dtype=images.dtype).view(1, 1, w)
    dy, dx = ys - cy.view(m, 1, 1), xs - cx.view(m, 1, 1)
    shrink = 1 - push.view(m, 1, 1) * torch.exp(-(dy ** 2 + dx ** 2) / reach.view(m, 1, 1) ** 2)
    sample_y, sample_x = cy.view(m, 1, 1) + dy * shrink, cx.view(m, 1, 1) + dx * shrink
    grid = torch.stack([2 * sample_x / (w - 1) - 1, 2 * sample_y / (h - 1) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
