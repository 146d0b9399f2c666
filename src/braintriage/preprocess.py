"""Decode an image file and turn it into the model's input: the one preprocessing path.

Training (through the decoded cache), evaluation, `predict`, the web app and the tests all go through
`decode_image` + `preprocess`, so a scan is seen the same way whichever door it comes in by.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# A 512x512 slice has 0.26 megapixels; anything past this is not an MRI slice and may be a
# decompression bomb, so PIL's own (much larger) limit is tightened.
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Preprocessing pads to a square before resizing, so the work is max(w, h) squared, not w x h: a 60000x1 PNG
# of 138 bytes would become a 3.6-gigapixel canvas. No scan is 20 times wider than it is tall.
MAX_ASPECT_RATIO = 20
# The formats the README lists (a camera's multi-picture JPEG opens through JPEG too). Nothing else is handed
# to Pillow's decoders, whatever the file is called: EPS content named .jpg would run Ghostscript.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF")


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message says why, for the user."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How a decoded image becomes a model input. Stored in every model file."""

    size: int = 200  # square side in pixels
    keep_aspect: bool = True  # pad to a square instead of stretching
    pad_value: int = 0  # MRI background is black
    resample: str = "bilinear"
    # Crop to the head's bounding box first, so a scan framed tightly and one with wide black margins (other
    # scanners, other export settings) reach the model at the same scale. Off in models trained before it.
    crop_to_head: bool = False
    # Histogram-equalise the foreground's intensities, so scans windowed, weighted or exported differently
    # reach the model with one intensity distribution (any monotonic contrast difference is undone; background
    # stays black). Off in models trained before it.
    equalize: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})  # keys it lacks keep defaults

    def key(self) -> str:
        """These settings in a few characters, for cache file names and resume checks: size, padding and
        resampling, then every other setting that is not at its default (so a new setting, off, leaves the
        names of existing cache files alone)."""
        parts = [str(self.size), "pad" if self.keep_aspect else "stretch", self.resample]
        default = PreprocessConfig()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("size", "keep_aspect", "resample") and value != getattr(default, f.name):
                parts.append(_SHORT_NAMES[f.name] if value is True and f.name in _SHORT_NAMES else f"{f.name}{value}")
        return "-".join(parts)


_SHORT_NAMES = {"crop_to_head": "head", "equalize": "eq"}  # the names cache files had before key() existed


# The head is where a 4x-downsampled (so, smoothed) image is brighter than its background (the median of a
# border ring) by HEAD_LEVEL of the way to its 99th percentile. Bright parts within HEAD_BRIDGE downsampled
# pixels of each other count as connected (scalp and brain, which a dark skull separates); of those, the
# ones with at least HEAD_MIN_PART of the largest one's area make up the head, and smaller ones (burnt-in
# text, markers, stray bright pixels) do not widen the box. The box then gets HEAD_MARGIN of its size on
# each side.
HEAD_LEVEL = 0.15
HEAD_BRIDGE = 3
HEAD_MIN_PART = 0.1
HEAD_MARGIN = 0.04


def background_and_bright(a: np.ndarray) -> tuple[float, float]:
    """The background level (the median of a 2-pixel border ring: scans have black or near-black margins)
    and the bright level (the 99th percentile) of a grayscale image, for the head crop and the equalisation."""
    ring = np.concatenate([a[:2].ravel(), a[-2:].ravel(), a[:, :2].ravel(), a[:, -2:].ravel()])
    return percentile(ring, 50), percentile(a, 99)


def percentile(a: np.ndarray, q: float) -> float:
    """np.percentile(a, q) (linear interpolation between the two nearest ranks; q=50 is the median); for uint8
    arrays from a histogram instead of a sort, several times faster (a heat map's head mask and every slice's
    frame level need one)."""
    if a.dtype != np.uint8:
        return float(np.percentile(a, q))
    rank = q / 100 * (a.size - 1)
    below = np.cumsum(np.bincount(a.ravel(), minlength=256))
    low, high = np.searchsorted(below, [np.floor(rank), np.ceil(rank)], side="right")
    return float(low + (high - low) * (rank - np.floor(rank)))


def head_pixels(a: np.ndarray) -> np.ndarray | None:
    """The head's bright pixels in a grayscale image (2D bool): brighter than the background by HEAD_LEVEL of the
    way to the 99th percentile, in parts (joined across HEAD_BRIDGE-pixel gaps) of at least HEAD_MIN_PART of the
    largest. None where no head can be told from the background (a blank image, one bright everywhere)."""
    from scipy import ndimage  # imported here: only head crops and heat maps need it

    background, bright = background_and_bright(a)
    if bright <= background:
        return None
    mask = a > background + HEAD_LEVEL * (bright - background)
    parts, n_parts = ndimage.label(grown(mask, HEAD_BRIDGE), structure=np.ones((3, 3)))
    if n_parts == 0:
        return None
    areas = np.bincount(parts.ravel(), weights=mask.ravel())  # bright pixels only, not the bridges
    kept = areas >= HEAD_MIN_PART * areas[1:].max()
    kept[0] = False  # label 0: neither bright nor bridged
    return mask & kept[parts]


def grown(mask: np.ndarray, steps: int) -> np.ndarray:
    """`mask` grown by `steps` pixels, each step to the 4 neighbours, nothing from outside the image: the same as
    `ndimage.binary_dilation(mask, iterations=steps)`, by shifting whole rows and columns (0.07 instead of 0.37 ms
    for a 160-pixel mask, part of every heat map's head mask)."""
    out = mask
    for _ in range(steps):
        step = out.copy()
        step[1:] |= out[:-1]
        step[:-1] |= out[1:]
        step[:, 1:] |= out[:, :-1]
        step[:, :-1] |= out[:, 1:]
        out = step
    return out


def head_box(im: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the head in a grayscale image, or None where no head-like region is
    found (a blank image, one bright everywhere, or a speck: those are left whole)."""
    step = 4 if min(im.width, im.height) >= 64 else 1
    head = head_pixels(np.asarray(im.reduce(step) if step > 1 else im, dtype=np.float32))
    if head is None:
        return None
    rows, cols = np.flatnonzero(head.any(axis=1)), np.flatnonzero(head.any(axis=0))
    top, bottom = rows[0] * step, (rows[-1] + 1) * step
    left, right = cols[0] * step, (cols[-1] + 1) * step
    mx, my = round(HEAD_MARGIN * (right - left)), round(HEAD_MARGIN * (bottom - top))
    box = (max(0, left - mx), max(0, top - my), min(im.width, right + mx), min(im.height, bottom + my))
    if box[2] - box[0] < 0.1 * im.width or box[3] - box[1] < 0.1 * im.height:
        return None  # a speck, not a head
    return box


def head_mask(a: np.ndarray) -> np.ndarray:
    """Where the head is in a grayscale uint8 image (2D bool): its bright pixels (`head_pixels`) and all they
    enclose (the dark skull between scalp and brain, ventricles). The background and the padding are False.
    All True where no head can be told from the background (a blank image): nothing is hidden then."""
    from scipy import ndimage

    head = head_pixels(a)
    if head is None:
        return np.ones(a.shape, dtype=bool)
    # ndimage.binary_fill_holes, done as one labelling of the rest (4-connected, as it does): every part of it that
    # does not touch the border is a hole. Same mask, in about a third of the time.
    rest, n_rest = ndimage.label(~head)
    hole = np.ones(n_rest + 1, dtype=bool)  # by label of the rest
    hole[np.concatenate([rest[0], rest[-1], rest[:, 0], rest[:, -1]])] = False
    hole[0] = False  # label 0: the head itself
    return head | hole[rest]


EQUALIZE_LEVEL = 0.05  # foreground: brighter than the background by this much of the way to the 99th percentile


def equalize_foreground(im: Image.Image) -> Image.Image:
    """Histogram equalisation with the histogram of the foreground only (the black background would
    otherwise take half the output range): pixels at or below the foreground's darkest level become 0."""
    a = np.asarray(im)
    background, bright = background_and_bright(a)
    mask = a > background + EQUALIZE_LEVEL * (bright - background)
    if bright <= background or mask.mean() < 0.01:
        return im  # blank, flat or a speck: nothing to equalise
    return ImageOps.equalize(im, Image.fromarray(mask.astype(np.uint8) * 255))


_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def decode_image(path: str | Path | BinaryIO) -> Image.Image:
    """Open an image file (a path or a file object) fully, so truncation shows up here, as 8-bit grayscale.
    Only IMAGE_FORMATS are decoded. Images whose padded square would pass MAX_IMAGE_PIXELS, or of an aspect
    ratio past MAX_ASPECT_RATIO, are refused from their header, before any pixel is decoded."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            side = max(im.width, im.height)
            if side * side > MAX_IMAGE_PIXELS:
                raise ImageReadError(f"image too large ({im.width}x{im.height} pixels, {side}x{side} once padded "
                                     f"to a square; at most {MAX_IMAGE_PIXELS:,} are accepted)")
            if side > MAX_ASPECT_RATIO * max(1, min(im.width, im.height)):
                raise ImageReadError(f"not the shape of a scan ({im.width}x{im.height} pixels; the longer side "
                                     f"may be at most {MAX_ASPECT_RATIO} times the shorter)")
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # not a copy: that took 0.5 ms of a 512-pixel JPEG's 2
            return to_grayscale(im)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except IsADirectoryError:
        raise ImageReadError("is a directory") from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image file PIL can decode (JPEG, PNG, BMP, TIFF)") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise ImageReadError(f"corrupt or truncated image ({e})") from None


def to_grayscale(im: Image.Image) -> Image.Image:
    """8-bit grayscale. 16-bit and float images are rescaled by their own range, not clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.round().astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent regions become black, like MRI background.
        im = im.convert("RGBA")
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, im)
    return im.convert("L")


def preprocess(im: Image.Image, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Grayscale PIL image -> uint8 array (size, size): equalised and cropped to the head (if configured),
    padded to a square, then resized."""
    if im.mode != "L":
        im = to_grayscale(im)
    box = head_box(im) if config.crop_to_head else None  # found on the image as stored
    if config.equalize:
        im = equalize_foreground(im)
    if box is not None:
        im = im.crop(box)
    if config.keep_aspect and im.width != im.height:
        side = max(im.width, im.height)
        canvas = Image.new("L", (side, side), config.pad_value)
        canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
        im = canvas
    im = im.resize((config.size, config.size), _RESAMPLE[config.resample])
    return np.asarray(im, dtype=np.uint8)


def load_and_preprocess(path: str | Path, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Read a file and return the model input as uint8 (size, size). Raises ImageReadError."""
    return preprocess(decode_image(path), config)
