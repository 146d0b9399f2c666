"""Ensembles: members averaged in one ONNX file, each reading the scan with its own preprocessing."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from click.testing import CliRunner

from braintriage.cache import DecodedSet
from braintriage.cli import app
from braintriage.ensemble import assemble
from braintriage.export import export_onnx
from braintriage.inference import Predictor
from braintriage.modelfile import ModelFileError, load_model, read_metadata, save_model
from braintriage.models import build_model
from braintriage.preprocess import PreprocessConfig, preprocess
from braintriage.splits import model_validation_split

from conftest import synthetic_slice, tiny_type_cache

SIZE = 48


def member(folder: Path, seed: int, preprocess: dict, fingerprint: str = "f" * 64, split_seed: int = 0) -> Path:
    """An exported four-type resnet18-w32 with random (but not trivial) weights and a training record."""
    torch.manual_seed(seed)
    model = build_model("resnet18-w32", 1, 4, SIZE).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.head.weight.normal_(0, 0.3)  # members that disagree visibly
        model.head.bias.normal_(0, 1)
    meta = {"architecture": "resnet18-w32", "output": "softmax", "threshold": 0.5,
            "class_names": ["no_tumor", "glioma", "meningioma", "pituitary"],
            "input": {"channels": 1, "preprocess": {"size": SIZE, **preprocess},
                      "normalization": {"mean": 0.2 + 0.05 * seed, "std": 0.25}},
            "training": {"data_fingerprint": fingerprint, "images": 32, "train_images": 24, "validation_images": 8,
                         "epochs_run": 1, "seconds": 1.0, "device": "test", "torch": torch.__version__,
                         "config": {"seed": split_seed, "val_fraction": 0.25, "target_sensitivity": 0.95}}}
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / f"m{seed}.safetensors", model, meta)
    export_onnx(folder / f"m{seed}.safetensors", folder / f"m{seed}.onnx")
    return folder / f"m{seed}.onnx"


def scans(n: int = 6) -> list[np.ndarray]:
    """Synthetic heads on wide black margins, so that the head crop changes what a member sees."""
    out = []
    for i in range(n):
        canvas = np.zeros((160, 200), np.uint8)
        canvas[40:104, 60:124] = synthetic_slice(64, seed=i, lesion=i % 2 == 0)
        out.append(canvas)
    return out


def test_ensemble_averages_members_each_with_its_own_preprocessing(tmp_path):
    plain = member(tmp_path, 1, {})
    head = member(tmp_path, 2, {"crop_to_head": True})
    out = tmp_path / "ens.onnx"
    meta = assemble([plain, head], out)
    assert [m["input"] for m in meta["ensemble"]["members"]] == ["image", "member1/image"]
    assert out.stat().st_size < 0.8 * (plain.stat().st_size + head.stat().st_size)  # the second member is int8

    images = [Image.fromarray(a) for a in scans()]
    per_member = [np.stack([preprocess(im, PreprocessConfig.from_dict(read_metadata(m)["input"]["preprocess"]))
                            for im in images]) for m in (plain, head)]
    assert np.abs(per_member[0].astype(int) - per_member[1]).mean() > 10  # the crop shows a different picture
    _, types_plain, cams_plain = Predictor(plain).predict_arrays(per_member[0], heatmaps=True)
    _, types_head, _ = Predictor(head).predict_arrays(per_member[1])
    ensemble = Predictor(out)
    p, types, cams = ensemble.predict_arrays(per_member, heatmaps=True)
    expected = (types_plain + types_head) / 2
    assert np.abs(types_plain - types_head).max() > 0.05  # the members disagree, so the mean is a real test
    assert np.abs(types - expected).max() < 5e-3  # int8 weights of the second member move it a little
    assert np.allclose(p, 1 - types[:, 0])
    assert np.abs(cams - cams_plain).max() < 0.05  # the heat map is the first member's (its type from the mean)

    # Files go through the same path: each member preprocesses the decoded scan itself; a bad file is one row.
    folder = tmp_path / "scans"
    folder.mkdir()
    for k, im in enumerate(images):
        im.save(folder / f"s{k}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    results = ensemble.predict_files(sorted(str(f) for f in folder.iterdir()))
    by_name = {Path(r.path).name: r for r in results}
    assert by_name["broken.png"].error and by_name["broken.png"].tumor_probability is None
    got = np.array([by_name[f"s{k}.png"].tumor_probability for k in range(len(images))])
    assert np.abs(got - p).max() < 1e-5

    with pytest.raises(ValueError, match="one image array per input"):
        ensemble.predict_arrays(per_member[0])
    with pytest.raises(ModelFileError, match="ONNX Runtime only"):
        load_model(out)


def test_members_must_share_data_and_validation_split(tmp_path):
    a = member(tmp_path, 1, {})
    b = member(tmp_path, 2, {}, split_seed=3)
    c = member(tmp_path, 3, {}, fingerprint="0" * 64)
    with pytest.raises(ModelFileError, match="validation split"):
        assemble([a, b], tmp_path / "e.onnx")
    with pytest.raises(ModelFileError, match="validation split"):
        assemble([a, c], tmp_path / "e.onnx")
    with pytest.raises(ModelFileError, match="export"):
        assemble([a, tmp_path / "m1.safetensors"], tmp_path / "e.onnx")


def test_ensemble_command_sets_threshold_on_the_shared_validation_split(tmp_path, monkeypatch):
    cache = tiny_type_cache(tmp_path, per_class=8, size=SIZE)
    decoded = DecodedSet.load(cache)
    a = member(tmp_path / "a", 1, {}, fingerprint=decoded.fingerprint)
    b = member(tmp_path / "b", 2, {}, fingerprint=decoded.fingerprint)
    out = tmp_path / "ens.onnx"
    result = CliRunner().invoke(app, ["ensemble", str(a), str(b), "--data", str(cache), "--data", str(cache),
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    val_idx = model_validation_split(meta, decoded)
    predictor = Predictor(out)
    p, types, _ = predictor.predict_arrays([decoded.images[val_idx]] * 2)
    y = decoded.tumor[val_idx]
    v = meta["validation_metrics"]
    assert v["n"] == len(val_idx) == 8  # a quarter of 32 images
    assert (p[y == 1] >= predictor.threshold).mean() >= 0.95 and predictor.threshold <= 0.5
    assert v["sensitivity"] == pytest.approx((p[y == 1] >= predictor.threshold).mean())
    assert v["log_loss"] == pytest.approx(-np.mean(np.log(types[np.arange(8), decoded.tumor_type[val_idx]])), rel=1e-4)

    # Given the image folder instead, each member's preprocessing is decoded from it: the same split and numbers.
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "decoded"))
    again = CliRunner().invoke(app, ["ensemble", str(a), str(b), "--data", str(tmp_path / "data"), "--output",
                                     str(tmp_path / "again.onnx")])
    assert again.exit_code == 0, again.output
    assert read_metadata(tmp_path / "again.onnx")["validation_metrics"] == v

    other = member(tmp_path / "c", 3, {}, fingerprint="0" * 64)
    refused = CliRunner().invoke(app, ["ensemble", str(a), str(other), "--data", str(cache), "--output",
                                       str(tmp_path / "x.onnx")])
    assert refused.exit_code == 2 and "validation split" in refused.output

    # evaluate reads an ensemble from image folders (each member preprocessing each file), never from a cache,
    # and the model card lists the members.
    from braintriage.evaluate import evaluate
    from braintriage.model_card import model_card

    report = evaluate(tmp_path / "data", out, output_dir=tmp_path / "ev", train_data=tmp_path / "data", n_boot=50)
    assert report["metrics"]["n"] == 32 and not report["unreadable"]
    card = model_card(meta, report, out)
    assert report["model_architecture"] == "ensemble of resnet18-w32 + resnet18-w32"
    assert "Ensemble of 2 networks" in card and "Member 2: `resnet18-w32`, weights int8" in card
    with pytest.raises(ValueError, match="evaluate it on the image folder"):
        evaluate(cache, out, output_dir=tmp_path / "ev2")
