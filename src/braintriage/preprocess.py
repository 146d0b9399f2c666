"""Decode an image file and turn it into the model's input: the one preprocessing path.

Training (through the decoded cache), evaluation, `predict`, the web app and the tests all go through
`decode_image` + `preprocess`, so a scan is seen the same way whichever door it comes in by.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# A 512x512 slice has 0.26 megapixels; anything past this is not an MRI slice and may be a
# decompression bomb, so PIL's own (much larger) limit is tightened.
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message says why, for the user."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How a decoded image becomes a model input. Stored in every model file."""

    size: int = 200  # square side in pixels
    keep_aspect: bool = True  # pad to a square instead of stretching
    pad_value: int = 0  # MRI background is black
    resample: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(**{k: d[k] for k in ("size", "keep_aspect", "pad_value", "resample") if k in d})


_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def decode_image(path: str | Path | BinaryIO) -> Image.Image:
    """Open an image file (a path or a file object) fully, so truncation shows up here, as 8-bit grayscale.
    Images over MAX_IMAGE_PIXELS are refused from their header, before any pixel is decoded."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise ImageReadError(f"image too large ({im.width}x{im.height} pixels; at most "
                                     f"{MAX_IMAGE_PIXELS:,} are accepted)")
            im.load()
            im = ImageOps.exif_transpose(im)
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
    """Grayscale PIL image -> uint8 array (size, size): padded to a square, then resized."""
    if im.mode != "L":
        im = to_grayscale(im)
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
