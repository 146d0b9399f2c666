from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from braintriage.preprocess import ImageReadError, PreprocessConfig, head_box, load_and_preprocess, preprocess
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


def framed(head: np.ndarray, margin: int, text: bool = False) -> Image.Image:
    """The same head exported with black margins of `margin` pixels (and, optionally, burnt-in text)."""
    a = np.pad(head, margin)
    if text:
        a[4:10, 4:30] = 255  # a small label in the corner, as scanners burn in
    return Image.fromarray(a)


def head_width(model_input: np.ndarray) -> float:
    """Fraction of the model input's columns that the head spans."""
    return float((model_input > 20).mean(axis=0).__gt__(0.05).mean())


def test_crop_to_head_sees_a_head_at_the_same_scale_however_it_was_framed():
    head = synthetic_slice(160)[8:-8, 14:-14]  # tightly framed: the head touches the sides
    config = PreprocessConfig(size=96, crop_to_head=True)
    tight = head_width(preprocess(Image.fromarray(head), config))
    assert tight > 0.8
    for margin, text in ((40, False), (120, True)):
        loose = framed(head, margin, text)
        assert head_width(preprocess(loose, config)) == pytest.approx(tight, abs=0.1)
        assert head_width(preprocess(loose, PreprocessConfig(size=96))) < tight - 0.25  # uncropped: it shrinks


def test_crop_to_head_leaves_blank_flat_and_speck_images_whole():
    config = PreprocessConfig(size=64, crop_to_head=True)
    for a in (np.zeros((100, 100), np.uint8), np.full((100, 100), 128, np.uint8)):
        assert np.array_equal(preprocess(Image.fromarray(a), config), preprocess(Image.fromarray(a),
                                                                                  PreprocessConfig(size=64)))
    speck = np.zeros((200, 200), np.uint8)
    speck[100:104, 100:104] = 255  # 2% of the side: not a head, so no 50x zoom onto it
    assert head_box(Image.fromarray(speck)) is None


def test_crop_setting_travels_with_the_config_and_old_models_do_not_crop():
    config = PreprocessConfig(size=64, crop_to_head=True)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert PreprocessConfig.from_dict({"size": 64}).crop_to_head is False  # model files written before it


def test_equalize_undoes_contrast_differences_and_keeps_the_background_black():
    """The same head windowed darkly or brightly (any monotonic curve) reaches the model as nearly the same
    picture with equalisation, and as clearly different pictures without; black stays black; blank and
    flat images pass unchanged; old model files do not equalise."""
    head = synthetic_slice(128, seed=3, lesion=True).astype(np.float32) / 255
    renderings = [Image.fromarray((255 * x).round().astype(np.uint8)) for x in (head ** 1.8, 0.6 * head ** 0.5)]
    plain = [preprocess(r, PreprocessConfig(size=64)).astype(float) for r in renderings]
    equal = [preprocess(r, PreprocessConfig(size=64, equalize=True)).astype(float) for r in renderings]
    assert np.abs(plain[0] - plain[1]).mean() > 20
    assert np.abs(equal[0] - equal[1]).mean() < 3
    from scipy.ndimage import binary_erosion

    outside = binary_erosion(synthetic_slice(64) == 0, iterations=2)  # background, off the blurred rim
    inside = binary_erosion(synthetic_slice(64) > 0, iterations=2)
    assert equal[0][outside].max() == 0 and 110 < equal[0][inside].mean() < 150  # tissue spread over the range
    config = PreprocessConfig(size=64, equalize=True)
    for a in (np.zeros((100, 100), np.uint8), np.full((100, 100), 128, np.uint8)):
        assert np.array_equal(preprocess(Image.fromarray(a), config), preprocess(Image.fromarray(a),
                                                                                  PreprocessConfig(size=64)))
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert PreprocessConfig.from_dict({"size": 64}).equalize is False


def test_every_preprocessing_setting_changes_the_cache_and_resume_key():
    # A cache file or checkpoint made with other preprocessing must never be taken for this one's.
    base = PreprocessConfig()
    changed = [PreprocessConfig(size=128), PreprocessConfig(keep_aspect=False), PreprocessConfig(pad_value=9),
               PreprocessConfig(resample="nearest"), PreprocessConfig(crop_to_head=True),
               PreprocessConfig(equalize=True)]
    assert len(changed) == len(fields(PreprocessConfig))  # a new setting needs its line here
    assert len({base.key(), *(c.key() for c in changed)}) == 1 + len(changed)
    assert PreprocessConfig(size=128).key() == PreprocessConfig(size=128).key()
    # Cache files made before the key existed keep their names.
    assert PreprocessConfig(crop_to_head=True, equalize=True).key() == "200-pad-bilinear-head-eq"


def test_exif_orientation_is_applied_as_a_camera_would_show_it(tmp_path):
    """A photo of a screen or film taken with a phone carries its rotation in EXIF: decoding applies it (in place,
    no copy), exactly as Pillow's exif_transpose does on its own copy."""
    from PIL import Image, ImageOps

    from braintriage.preprocess import decode_image

    pixels = np.zeros((40, 64), dtype=np.uint8)
    pixels[5:15, 5:50] = 255  # a bar near the top: where it ends up shows the rotation
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif)
    decoded = np.asarray(decode_image(path))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("L"))
    assert decoded.shape == (64, 40) and np.array_equal(decoded, expected)
    assert decoded[:, 25:35].max() == 255 and decoded[:, :5].max() == 0  # the bar now stands on the right
