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


def head_interior(images: torch.Tensor, width: int) -> torch.Tensor:
    """The share of head pixels in each pixel's width x width neighbourhood (B, 1, H, W), in [0, 1]."""
    head = (images > HEAD_LEVEL).to(images.dtype)
    return F.avg_pool2d(head, width | 1, stride=1, padding=(width | 1) // 2, count_include_pad=True)


def add_lesions(images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, rate: float,
                tumor_target: int, tumor_weight: float, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images: float (B, 1, H, W) in [0, 1]; targets: training targets, 0 = no tumor. Each no-tumor image
    gets a mass with probability `rate` (where its head has room for one) and then the target `tumor_target`
    and the loss weight `tumor_weight`. Returns new (images, targets, weights); the others are unchanged."""
    n, _, h, w = images.shape
    device, dtype = images.device, images.dtype

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=generator, device=device, dtype=dtype)

    def chance(p: float) -> torch.Tensor:
        return torch.rand(n, 1, 1, 1, generator=generator, device=device) < p

    # Centres: a random pixel among those whose neighbourhood is all head (room for a mass).
    interior = head_interior(images, max(3, round(0.12 * h)))
    room = interior[:, 0].reshape(n, -1) > 0.98
    scores = torch.rand(n, h * w, generator=generator, device=device) * room
    centre = scores.argmax(1)
    chosen = (targets == 0) & room.any(1) & (torch.rand(n, generator=generator, device=device) < rate)
    cy, cx = (centre // w).to(dtype).view(n, 1, 1, 1), (centre % w).to(dtype).view(n, 1, 1, 1)

    ys = torch.arange(h, device=device, dtype=dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=device, dtype=dtype).view(1, 1, 1, w)
    angle = uniform(0.0, math.pi)
    dy, dx = ys - cy, xs - cx
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    a, b = uniform(*RADIUS) * h, uniform(*RADIUS) * h
    radius = torch.sqrt((u / a) ** 2 + (v / b) ** 2)  # 1 on the ellipse
    # A wobbling border: the ellipse's radius modulated by three low harmonics of the polar angle.
    phi = torch.atan2(v / b, u / a)
    wobble = 1.0 + sum(uniform(0.0, 0.12) * torch.cos(k * phi + uniform(0.0, 2 * math.pi)) for k in (2, 3, 5))
    distance = radius / wobble
    edge = uniform(0.03, 0.12)  # soft edge, in ellipse radii
    core = torch.sigmoid((1.0 - distance) / edge)

    # A mottled inside: a coarse random field, its strength drawn per mass.
    texture = F.interpolate(torch.rand(n, 1, 12, 12, generator=generator, device=device, dtype=dtype),
                            size=(h, w), mode="bicubic", align_corners=False) - 0.5
    bright = ~chance(DARK_SHARE)
    level = torch.where(bright, uniform(*BRIGHT), uniform(*DARK)) * (1 + uniform(0.0, 0.6) * texture)
    out = images * (1 - core) + level * core
    ring = bright & chance(RING_SHARE)  # a dark centre inside the bright mass
    necrosis = torch.sigmoid((uniform(0.35, 0.65) - distance) / edge) * ring
    out = out * (1 - necrosis) + uniform(*DARK) * necrosis
    halo = bright & chance(HALO_SHARE)  # a fainter zone around it, fading out by 1.4-2 radii
    reach = uniform(1.4, 2.0)
    fringe = torch.sigmoid((reach - distance) / 0.15) * (1 - core) * uniform(0.2, 0.5) * halo
    out = out * (1 - fringe) + level * 0.8 * fringe

    # Never outside the head: the mass is faded out where the head ends.
    inside = head_interior(images, 5) * (images > HEAD_LEVEL)
    out = images + (out - images) * inside
    keep = ~chosen.view(n, 1, 1, 1)
    return (torch.where(keep, images, out.clamp(0.0, 1.0)),
            torch.where(chosen, torch.full_like(targets, tumor_target), targets),
            torch.where(chosen, torch.full_like(weights, tumor_weight), weights))
