"""Training augmentation, applied to whole batches on the training device.

The default policy is the original study's: zoom, rotation (+/-10 degrees), brightness (0.6-1.5) and
horizontal flips. Translation, a contrast (gamma) curve, noise, blur, a bias field (coil shading), a random
intensity curve (tissue contrasts reordered, as between MRI sequences), contrast inversion inside the head
(T1-like to T2-like) and histogram matching to another image of the batch (one collection's grey levels on
another's anatomy) are there for the harder shift to scans
from other scanners and sites; they are off by default. Never vertical flips (the brain is not top/bottom
symmetric) and never shear (it distorts anatomy): every geometric transform here is a similarity (rotation x
uniform scale x optional left-right mirror), built as one affine matrix per image and applied with
`grid_sample`, so CPU and GPU share the code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


HISTOGRAM_PARTNERS = ("any", "other-class")  # AugmentPolicy.histogram_partners


@dataclass(frozen=True)
class AugmentPolicy:
    zoom: tuple[float, float] = (0.9, 1.1)  # >1 magnifies
    rotation_degrees: float = 10.0  # uniform in [-r, r]
    brightness: tuple[float, float] = (0.6, 1.5)  # intensity multiplier
    horizontal_flip: float = 0.5  # probability of a left-right mirror
    translate: float = 0.0  # fraction of the half-width, uniform in [-t, t]
    gamma: tuple[float, float] = (1.0, 1.0)  # contrast curve x ** gamma; (1, 1) = off
    noise: float = 0.0  # Gaussian noise, standard deviation uniform in [0, noise]; 0 = off
    blur: float = 0.0  # Gaussian blur, sigma uniform in [0, blur] pixels (of the output); 0 = off
    bias_field: float = 0.0  # smooth multiplicative field exp(f), f bilinear from a 4x4 grid of N(0, s^2),
    #                          s uniform in [0, bias_field]: the slow intensity shading of MRI coils; 0 = off
    intensity_remap: float = 0.0  # probability of a random piecewise-linear intensity curve (see remap_intensity)
    invert: float = 0.0  # probability of inverting contrast inside the head (see invert_contrast); 0 = off
    histogram_match: float = 0.0  # probability of taking another batch image's head histogram (match_histograms)
    histogram_partners: str = "any"  # whose histogram: "any" image of the batch, or one of the "other-class"

    def __post_init__(self) -> None:
        if self.histogram_partners not in HISTOGRAM_PARTNERS:
            raise ValueError(f"histogram_partners must be one of {HISTOGRAM_PARTNERS}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentPolicy":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def sample_affine(n: int, policy: AugmentPolicy, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """n affine matrices (n, 2, 3) for `F.affine_grid`: output coordinates -> input coordinates."""
    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)

    zoom = uniform(*policy.zoom)
    angle = uniform(-policy.rotation_degrees, policy.rotation_degrees) * (math.pi / 180)
    mirror = torch.where(torch.rand(n, generator=generator, device=device) < policy.horizontal_flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3, device=device)
    # Rotation/zoom applied after mirroring the x axis only: the y axis is never negated (no vertical flip).
    theta[:, 0, 0] = cos * mirror
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * mirror
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = uniform(-policy.translate, policy.translate)
    theta[:, 1, 2] = uniform(-policy.translate, policy.translate)
    return theta


def augment_batch(images: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator | None = None,
                  size: int | None = None, tumor: torch.Tensor | None = None) -> torch.Tensor:
    """images: float (B, C, H, W) in [0, 1]. Returns an augmented batch in [0, 1], of the same shape or,
    with `size`, downscaled to size x size first (anti-aliased; progressive resizing trains early epochs
    small). tumor: (B,) bool, each image's class, for histogram partners from the other class; without it
    (BatchNorm re-estimation has no labels) partners come from the whole batch."""
    n = images.shape[0]
    if size is not None and size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    theta = sample_affine(n, policy, generator, images.device).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if policy.histogram_match > 0:
        classes = tumor if policy.histogram_partners == "other-class" else None
        out = match_histograms(out, policy.histogram_match, generator, classes)

    def per_image(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=generator, device=images.device,
                                           dtype=images.dtype)

    if policy.blur > 0:
        out = gaussian_blur(out, per_image(0.0, policy.blur).flatten().clamp(min=1e-3), policy.blur)
    if policy.bias_field > 0:
        coarse = torch.randn(n, 1, BIAS_GRID, BIAS_GRID, generator=generator, device=images.device,
                             dtype=images.dtype) * per_image(0.0, policy.bias_field)
        out = out * torch.exp(F.interpolate(coarse, size=out.shape[-2:], mode="bilinear", align_corners=False))
    if policy.intensity_remap > 0:
        out = remap_intensity(out, random_curves(n, policy.intensity_remap, generator, images.device, images.dtype))
    if policy.invert > 0:
        chosen = torch.rand(n, 1, 1, 1, generator=generator, device=images.device) < policy.invert
        out = torch.where(chosen, invert_contrast(out), out)
    if policy.gamma != (1.0, 1.0):
        out = out.clamp(min=1e-6) ** per_image(*policy.gamma)
    out = out * per_image(*policy.brightness)
    if policy.noise > 0:
        noise = torch.randn(out.shape, generator=generator, device=images.device, dtype=images.dtype)
        out = out + noise * per_image(0.0, policy.noise)
    return out.clamp_(0.0, 1.0)


BIAS_GRID = 4  # the bias field's control points per side
CURVE_SEGMENTS = 4  # the random intensity curve is linear between knots at 0, 1/4, ..., 1


def random_curves(n: int, probability: float, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n intensity curves (n, CURVE_SEGMENTS + 1): the curve's values at evenly spaced knots on [0, 1].
    With `probability` a curve is random: 0 -> 0 (background stays black, as in every sequence) and the other
    knots uniform in [0, 1], so it may reorder tissue contrasts (T1 has fluid dark, T2 and FLAIR differ
    again) and the network must find a tumor by its shape and its boundaries rather than by one sequence's
    grey levels. Otherwise it is the identity."""
    knots = torch.rand(n, CURVE_SEGMENTS + 1, generator=generator, device=device, dtype=dtype)
    knots[:, 0] = 0.0
    identity = torch.linspace(0.0, 1.0, CURVE_SEGMENTS + 1, device=device, dtype=dtype)
    random = torch.rand(n, 1, generator=generator, device=device, dtype=dtype) < probability
    return torch.where(random, knots, identity)


INVERT_FADE = 0.1  # intensities below this fade to black in an inverted image, so the background stays black


def invert_contrast(images):
    """Contrast inverted inside the head: x -> (1 - x), faded to black below INVERT_FADE so the background and
    the dim rim of the head stay dark. A T1 slice (fluid dark, white matter bright) then looks T2-like (fluid
    bright); works on torch tensors and numpy arrays alike."""
    fade = images / INVERT_FADE
    fade = fade.clamp(max=1.0) if isinstance(images, torch.Tensor) else np.minimum(fade, 1.0)
    return (1.0 - images) * fade


HEAD_LEVEL = 0.05  # pixels at or above this intensity count as the head in histogram matching; darker is background
# (synthetic_lesions.HEAD_LEVEL, 0.08, masks where a mass may be painted, and preprocess.HEAD_LEVEL, relative, finds the
# crop box. Each recipe's results were measured with its own value, so the three are not merged.)
GREY_LEVELS = 256  # histogram matching works on 8-bit grey levels (the scans are 8-bit): a table, not a sort


def match_histograms(images: torch.Tensor, probability: float, generator: torch.Generator | None = None,
                     classes: torch.Tensor | None = None) -> torch.Tensor:
    """With `probability`, an image (B, 1, H, W) takes the grey levels of another image of the batch (a random
    partner) inside the head: each head grey level goes to the partner's head grey level at the same quantile
    (the middle of the level's share of the head). The anatomy and its contrast order stay, one grey level stays
    one grey level; the collection's histogram (window, brightness, how much of the head is bright) is the
    partner's, which is often another source's. The background (below HEAD_LEVEL) is left as it is. Histogram
    matching across sources is one of the shortcut breakers issue 21 names.

    classes (B,): the partner is drawn from the images of another class only (an image with none left as it is).
    Why: most training images are tumors, so a random partner is usually a tumor: a matched normal mostly wears a
    tumor's histogram, a matched tumor seldom a normal's, and "a normal's grey levels" can still read as "no
    tumor". With the other class's partners at probability 0.5, whose histogram an image wears no longer depends on
    its label. (Session 45, docs/model.md: fewer tumors missed on an unseen source; not adopted so far.)"""
    n = images.shape[0]
    chosen = torch.rand(n, generator=generator, device=images.device) < probability
    if n < 2 or not bool(chosen.any()):
        return images
    partner = draw_partners(n, classes, generator, images.device)
    flat = images.reshape(n, -1)
    level, head, counts = head_histograms(flat)
    heads = counts.sum(1, keepdim=True)
    partner_cdf = (counts.cumsum(1) / heads.clamp(min=1))[partner].contiguous()
    matched = quantile_tables(counts, partner_cdf).gather(1, level)
    # Only images whose partner is another image with a head, and only inside their own head.
    use = chosen & (partner != torch.arange(n, device=images.device)) & (heads[:, 0] > 0) & (heads[partner, 0] > 0)
    return torch.where(use[:, None] & head, matched, flat).reshape(images.shape)


def match_to_histogram(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Every image (B, 1, H, W) takes one fixed head histogram, `reference` (GREY_LEVELS,) counts of head pixels
    per grey level, as match_histograms gives it a partner's: a reading in which no image's grey-level look differs
    from another's (experiments/matched_reading.py)."""
    n = images.shape[0]
    flat = images.reshape(n, -1)
    level, head, counts = head_histograms(flat)
    reference_cdf = (reference.cumsum(0) / reference.sum().clamp(min=1)).to(images.dtype)
    matched = quantile_tables(counts, reference_cdf.expand(n, -1).contiguous()).gather(1, level)
    return torch.where(head, matched, flat).reshape(images.shape)  # an image without head pixels stays as it is


def head_histograms(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images flattened (B, P) in [0, 1] -> each pixel's grey level (B, P), whether it is head (B, P), and each
    image's head histogram (B, GREY_LEVELS)."""
    level = (flat.clamp(0.0, 1.0) * (GREY_LEVELS - 1)).round_().long()
    head = flat >= HEAD_LEVEL
    counts = torch.zeros(flat.shape[0], GREY_LEVELS, device=flat.device, dtype=flat.dtype).scatter_add_(
        1, level, head.to(flat.dtype))
    return level, head, counts


def quantile_tables(counts: torch.Tensor, target_cdf: torch.Tensor) -> torch.Tensor:
    """Each image's grey-level table (B, GREY_LEVELS) onto a target histogram, given as its cumulative shares
    (B, GREY_LEVELS): each head grey level goes to the target's lowest level whose cumulative share reaches the
    level's middle quantile in its own head."""
    top = GREY_LEVELS - 1
    below = counts.cumsum(1)
    quantile = (below - counts / 2) / counts.sum(1, keepdim=True).clamp(min=1)
    return torch.searchsorted(target_cdf, quantile.contiguous()).clamp_(max=top).to(counts.dtype) / top


def draw_partners(n: int, classes: torch.Tensor | None, generator: torch.Generator | None,
                  device: torch.device | str) -> torch.Tensor:
    """Each image's histogram partner (n,): a random pairing of the batch, or with `classes` a uniform draw among
    the images of another class (itself where there is none, which match_histograms leaves unmatched)."""
    if classes is None:
        return torch.randperm(n, generator=generator, device=device)
    other = classes[None, :] != classes[:, None]
    scores = torch.rand(n, n, generator=generator, device=device).masked_fill_(~other, -1.0)
    return torch.where(other.any(1), scores.argmax(1), torch.arange(n, device=device))


def remap_intensity(images: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """Apply each image's (B, 1, H, W) piecewise-linear curve (B, CURVE_SEGMENTS + 1) to its intensities."""
    n = images.shape[0]
    x = images.clamp(0.0, 1.0).reshape(n, -1) * CURVE_SEGMENTS
    left = x.floor().clamp(max=CURVE_SEGMENTS - 1).long()
    low, high = curves.gather(1, left), curves.gather(1, left + 1)
    return (low + (x - left) * (high - low)).reshape(images.shape)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur each image (B, 1, H, W) with its own sigma (B,): one separable grouped convolution, borders
    mirrored."""
    n, _, h, w = images.shape
    radius = max(1, math.ceil(3 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, 2r + 1)
    x = F.pad(images.reshape(1, n, h, w), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=n)
    x = F.conv2d(x, kernel[:, None, :, None], groups=n)
    return x.reshape(n, 1, h, w)


def augment_image(image: np.ndarray, policy: AugmentPolicy, rng: np.random.Generator) -> np.ndarray:
    """The same policy one image at a time with PIL and numpy: the classic per-image version, kept as the
    reference the batched version is tested against. image: uint8 (H, W); returns float32 in [0, 1]. Histogram
    matching needs a partner image from the batch, so it is left out here (tests check match_histograms itself)."""
    h, w = image.shape
    zoom = rng.uniform(*policy.zoom)
    angle = math.radians(rng.uniform(-policy.rotation_degrees, policy.rotation_degrees))
    mirror = -1.0 if rng.random() < policy.horizontal_flip else 1.0
    tx, ty = rng.uniform(-policy.translate, policy.translate, 2)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    t = ((cos * mirror, -sin, tx), (sin * mirror, cos, ty))  # normalised output -> input, as sample_affine
    # The same map in pixel coordinates: normalised u = 2X/w - 1 on both sides.
    coeffs = (t[0][0], t[0][1] * w / h, w / 2 * (t[0][2] + 1 - t[0][0] - t[0][1]),
              t[1][0] * h / w, t[1][1], h / 2 * (t[1][2] + 1 - t[1][0] - t[1][1]))
    warped = Image.fromarray(image).transform((w, h), Image.Transform.AFFINE, coeffs,
                                              resample=Image.Resampling.BILINEAR, fillcolor=0)
    out = np.asarray(warped, dtype=np.float32) / 255.0
    if policy.blur > 0:
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(out, max(1e-3, rng.uniform(0, policy.blur)), mode="mirror").astype(np.float32)
    if policy.bias_field > 0:
        coarse = (rng.standard_normal((BIAS_GRID, BIAS_GRID)) * rng.uniform(0, policy.bias_field)).astype(np.float32)
        field = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR))
        out = out * np.exp(field)
    if policy.intensity_remap > 0:
        knots = np.linspace(0.0, 1.0, CURVE_SEGMENTS + 1)
        curve = np.concatenate([[0.0], rng.uniform(0, 1, CURVE_SEGMENTS)])
        if rng.random() < policy.intensity_remap:
            out = np.interp(np.clip(out, 0, 1), knots, curve).astype(np.float32)
    if policy.invert > 0 and rng.random() < policy.invert:
        out = invert_contrast(np.clip(out, 0, 1)).astype(np.float32)
    if policy.gamma != (1.0, 1.0):
        out = np.maximum(out, 1e-6) ** rng.uniform(*policy.gamma)
    out = out * rng.uniform(*policy.brightness)
    if policy.noise > 0:
        out = out + rng.standard_normal(out.shape).astype(np.float32) * rng.uniform(0, policy.noise)
    return np.clip(out, 0.0, 1.0)
