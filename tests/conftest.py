"""Shared fixtures. Dataset tests read the seed dataset from ../shared/data (or BRAINTRIAGE_DATA): in CI a
missing dataset fails them; on a developer machine without it they are skipped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "brain-tumor-classification-mri"
ARTIFACTS = REPO / "test-artifacts"  # screenshots from the browser tests
CHROMIUM = "/usr/bin/chromium"  # Debian's package; a downloaded browser build is never used
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is needed for the browser tests (scripts/test.sh installs it)")
        pytest.skip("chromium not installed")


@pytest.fixture(scope="session")
def seed_data() -> Path:
    root = Path(os.environ.get("BRAINTRIAGE_DATA", DEFAULT_DATA))
    if not (root / "Training").is_dir():
        message = f"seed dataset not found at {root} (set BRAINTRIAGE_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def bundled_model_id() -> str:
    """What a result names as the bundled model (its network and file digest): tests read it from the asset, so
    that they hold for whichever model is bundled."""
    from braintriage.inference import Predictor

    return Predictor().model_id


def synthetic_slice(size: int = 128, seed: int = 0, lesion: bool = False) -> np.ndarray:
    """A made-up 'brain slice': an ellipse of noisy tissue on black, with an optional bright blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    head = (xx / 0.4) ** 2 + (yy / 0.45) ** 2 < 1
    img = np.where(head, 90 + 30 * rng.standard_normal((size, size)), 0)
    if lesion:
        img += 120 * np.exp(-(((xx - 0.1) ** 2 + (yy + 0.1) ** 2) / 0.005))
    return img.clip(0, 255).astype(np.uint8)


def blocks(seed: int, cell: int = 16) -> np.ndarray:
    """Coarse random 8x8 blocks: images whose perceptual hashes differ clearly unless the seed is the same."""
    coarse = np.random.default_rng(seed).integers(0, 256, (8, 8)).astype(np.uint8)
    return np.kron(coarse, np.ones((cell, cell), np.uint8))


def tiny_type_cache(folder: Path, per_class: int, size: int = 48) -> Path:
    """A decoded cache of a made-up four-folder dataset (distinct block images), for fast training runs."""
    from braintriage.cache import decode_dataset
    from braintriage.datasets import load_dataset
    from braintriage.preprocess import PreprocessConfig

    for k, name in enumerate(("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor")):
        (folder / "data" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(blocks(10 * k + i, 6)).save(folder / "data" / name / f"{i}.png")
    cache = folder / "c.npz"
    decode_dataset(load_dataset(folder / "data"), PreprocessConfig(size=size)).save(cache)
    return cache


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder of small synthetic scans in several formats."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, ext in enumerate(["jpg", "png", "bmp", "tif"]):
        Image.fromarray(synthetic_slice(seed=i, lesion=i % 2 == 0)).convert("RGB").save(folder / f"scan{i}.{ext}")
    return folder
