import numpy as np
import pytest
from PIL import Image

from braintriage.preprocess import ImageReadError, PreprocessConfig, load_and_preprocess, preprocess
from conftest import synthetic_slice


@pytest.mark.parametrize("ext", ["jpg", "png", "bmp", "tif"])
def test_each_format_decodes_to_grayscale_model_input(tmp_path, ext):
    path = tmp_path / f"x.{ext}"
    Image.fromarray(synthetic_slice(150)).convert("RGB").save(path)
    out = load_and_preprocess(path)
    assert out.dtype == np.uint8 and out.shape == (200, 200)
    assert out.max() > 50  # content survived


def test_size_is_configurable():
    im = Image.fromarray(synthetic_slice(100))
    assert preprocess(im, PreprocessConfig(size=64)).shape == (64, 64)


def test_aspect_ratio_is_kept_by_padding_not_stretching():
    wide = Image.fromarray(np.full((100, 200), 255, np.uint8))  # white, twice as wide as high
    out = preprocess(wide, PreprocessConfig(size=100))
    assert out[:20].max() == 0 and out[-20:].max() == 0  # black bands above and below
    assert out[30:70].min() == 255  # the image itself, not stretched to the full height


def test_rgb_becomes_luminance_and_16_bit_is_rescaled(tmp_path):
    rgb = np.zeros((50, 50, 3), np.uint8)
    rgb[..., 1] = 200
    assert preprocess(Image.fromarray(rgb), PreprocessConfig(size=50)).mean() == pytest.approx(117, abs=2)
    a16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "deep.png")
    out = load_and_preprocess(tmp_path / "deep.png", PreprocessConfig(size=64))
    assert out.min() == 0 and out.max() == 255


def test_bad_files_raise_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    Image.fromarray(synthetic_slice(256)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="not an image"):
        load_and_preprocess(tmp_path / "notes.txt")
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        load_and_preprocess(tmp_path / "truncated.jpg")
    with pytest.raises(ImageReadError, match="not found"):
        load_and_preprocess(tmp_path / "missing.png")
