"""The PyTorch-free runtime: ONNX export, equivalence with PyTorch, and triage without torch installed."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from braintriage.datasets import load_dataset
from braintriage.export import export_onnx
from braintriage.inference import Predictor
from braintriage.modelfile import (BUNDLED_MODEL, load_model, onnx_initializers, read_metadata, save_model,
                                   update_metadata)
from braintriage.models import build_model, to_model_input
from braintriage.preprocess import PreprocessConfig, load_and_preprocess
from braintriage.scans import ScanItem, Slice

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.dataset
def test_onnx_runtime_matches_pytorch_on_100_dataset_images(seed_data):
    """The bundled model on ONNX Runtime against the same weights in PyTorch; for an ensemble, each member
    rebuilt in PyTorch from the file's weights, fed its own preprocessing, and the probabilities averaged."""
    meta = read_metadata(BUNDLED_MODEL)
    members = meta.get("ensemble", {}).get("members") or [
        {"architecture": meta["architecture"], **{k: meta["input"][k] for k in ("preprocess", "normalization")}}]
    samples = load_dataset(seed_data, "testing").samples[::394 // 100][:100]
    per_member = [np.stack([load_and_preprocess(s.path, PreprocessConfig.from_dict(m["preprocess"]))
                            for s in samples]) for m in members]
    assert len(per_member[0]) == 100
    predictor = Predictor(BUNDLED_MODEL)
    ort_p, ort_types, ort_cams = predictor.predict_arrays(per_member, heatmaps=True)  # one array per input
    probs = []
    for k, (m, images) in enumerate(zip(members, per_member)):
        model = build_model(m["architecture"], 1, 4, m["preprocess"]["size"]).eval()
        state = {key: torch.from_numpy(v.copy()) for key, v in onnx_initializers(BUNDLED_MODEL, k).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(key.endswith("num_batches_tracked") for key in missing)  # not in ONNX
        norm = m["normalization"]
        with torch.no_grad():
            probs.append(torch.softmax(model(to_model_input(torch.from_numpy(images), norm["mean"], norm["std"])), 1))
    mean = torch.stack(probs).mean(0).numpy()
    assert np.abs(ort_p - (1 - mean[:, 0])).max() < 1e-4
    assert np.abs(ort_types - mean).max() < 1e-4
    size = members[0]["preprocess"]["size"]
    assert ort_cams.shape == (100, size, size) and ort_cams.max() <= 1
    if len(members) == 1:
        assert load_model(BUNDLED_MODEL)[1] == meta  # a single network also loads back into PyTorch whole


def type_model_files(tmp_path: Path, model: torch.nn.Module, size: int, threshold: float = 0.5) -> Path:
    """Save a 4-type resnet18-w32 as m.safetensors and export it to m.onnx in tmp_path; returns the ONNX path."""
    meta = {"architecture": "resnet18-w32", "output": "softmax", "threshold": threshold,
            "class_names": ["no_tumor", "glioma", "meningioma", "pituitary"],
            "input": {"channels": 1, "preprocess": {"size": size}, "normalization": {"mean": 0.2, "std": 0.25}}}
    save_model(tmp_path / "m.safetensors", model, meta)
    export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_export_round_trip_keeps_weights_outputs_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18-w32", 1, 4, 64).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    type_model_files(tmp_path, model, 64, threshold=0.4)
    assert read_metadata(tmp_path / "m.onnx")["threshold"] == 0.4
    images = np.random.default_rng(0).integers(0, 256, (12, 64, 64)).astype(np.uint8)
    from_torch = Predictor(tmp_path / "m.safetensors").predict_arrays(images, heatmaps=True)
    from_onnx = Predictor(tmp_path / "m.onnx").predict_arrays(images, heatmaps=True)
    for a, b in zip(from_torch, from_onnx):
        assert np.abs(a - b).max() < 1e-4
    both = ("penultimate_stage", "last_stage")
    guard_torch = Predictor(tmp_path / "m.safetensors").pooled_features(images, both)
    guard_onnx = Predictor(tmp_path / "m.onnx").pooled_features(images, both)
    assert guard_onnx.shape == (12, 128 + 256)  # penultimate and last stage of the half-width ResNet-18
    assert np.abs(guard_torch - guard_onnx).max() < 1e-4
    quarters_torch = Predictor(tmp_path / "m.safetensors").pooled_features(images, ("penultimate_quarters",))
    quarters_onnx = Predictor(tmp_path / "m.onnx").pooled_features(images, ("penultimate_quarters",))
    assert quarters_onnx.shape == (12, 4 * 128) and np.abs(quarters_torch - quarters_onnx).max() < 1e-4
    # The four quarters' means of a 64 px input's 4x4 penultimate maps average to the whole map's mean.
    whole = Predictor(tmp_path / "m.onnx").pooled_features(images, ("penultimate_stage",))
    assert np.abs(quarters_onnx.reshape(12, 128, 4).mean(axis=2) - whole).max() < 1e-4
    reloaded, _ = load_model(tmp_path / "m.onnx")
    original, _ = load_model(tmp_path / "m.safetensors")
    for (k, a), (_, b) in zip(original.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_a_guard_reads_the_layers_it_was_fitted_on(tmp_path):
    type_model_files(tmp_path, build_model("resnet18-w32", 1, 4, 64).eval(), 64)
    # Coarse random blocks, not pixel noise: the noise refusal (ood.pixel_warning) would warn before any guard.
    coarse = np.random.default_rng(1).integers(0, 256, (6, 8, 8)).astype(np.uint8)
    images = np.kron(coarse, np.ones((1, 8, 8), np.uint8))
    # A new fit's (ood.DESIGNS): the whole-image mean and the quarters of the stage before the last.
    assert Predictor(tmp_path / "m.onnx").guard_layers == ("penultimate_stage", "penultimate_quarters")
    assert Predictor(tmp_path / "m.onnx").pooled_features(images).shape == (6, 128 + 4 * 128)
    # A guard fitted on the stage's whole-image mean (sessions 18-20, the bundled model's) keeps reading it.
    mean = {"layers": ["penultimate_stage"], "mean": [0.0] * 128, "components": [[0.0] * 128],
            "variances": [1.0], "residual_variance": 1.0, "percentile": 99.5, "threshold": 1e12}
    update_metadata(tmp_path / "m.onnx", tmp_path / "mean.onnx", {"ood": mean})
    assert Predictor(tmp_path / "mean.onnx").pooled_features(images).shape == (6, 128)
    # A guard fitted on both stages (sessions 13-17, the bundled model's) keeps reading both.
    both = {"layers": ["penultimate_stage", "last_stage"], "mean": [0.0] * 384, "components": [[0.0] * 384],
            "variances": [1.0], "residual_variance": 1.0, "percentile": 99.5, "threshold": 1e12}
    update_metadata(tmp_path / "m.onnx", tmp_path / "both.onnx", {"ood": both})
    assert Predictor(tmp_path / "both.onnx").pooled_features(images).shape == (6, 384)
    # A guard with a second beside it (session 22) reads both guards' layers, and either alone can flag an input.
    quarters = {**mean, "layers": ["penultimate_quarters"], "mean": [0.0] * 512, "components": [[0.0] * 512]}
    items = [ScanItem(f"{k}.png", [Slice("1", lambda a=a: Image.fromarray(a))]) for k, a in enumerate(images)]
    for second_threshold, warned in [(1e12, 0), (1e-12, 6)]:
        update_metadata(tmp_path / "m.onnx", tmp_path / "pair.onnx",
                        {"ood": {**mean, "also": [{**quarters, "threshold": second_threshold}]}})
        pair = Predictor(tmp_path / "pair.onnx")
        assert pair.guard_layers == ("penultimate_stage", "penultimate_quarters")
        assert pair.pooled_features(images).shape == (6, 128 + 512)
        assert sum(r.warning is not None for r in pair.predict_items(items)) == warned
    # A guard fitted before the penultimate stage was read has no "layers": it gets the last stage alone.
    legacy = {"mean": [0.0] * 256, "components": [[0.0] * 256], "variances": [1.0], "residual_variance": 1.0,
              "percentile": 99.5, "threshold": 1e12}
    update_metadata(tmp_path / "m.onnx", tmp_path / "legacy.onnx", {"ood": legacy})
    old = Predictor(tmp_path / "legacy.onnx")
    assert old.guard_layers == ("last_stage",)
    assert old.pooled_features(images).shape == (6, 256)
    results = old.predict_items(items)  # the guard scores 256 features against its 256-wide fit
    assert all(r.error is None and r.warning is None for r in results)


def test_seed_cnn_exports_without_heat_maps(tmp_path):
    model = build_model("seed-cnn", 1, 1, 48).eval()
    meta = {"architecture": "seed-cnn", "output": "sigmoid", "threshold": 0.5, "class_names": ["no_tumor", "tumor"],
            "input": {"channels": 1, "preprocess": {"size": 48}, "normalization": {"mean": 0.2, "std": 0.25}}}
    save_model(tmp_path / "s.safetensors", model, meta)
    export_onnx(tmp_path / "s.safetensors", tmp_path / "s.onnx")
    p, types, cams = Predictor(tmp_path / "s.onnx").predict_arrays(np.zeros((2, 48, 48), np.uint8), heatmaps=True)
    assert p.shape == (2,) and types is None and cams is None


TRIAGE_WITHOUT_TORCH = r"""
import sys
sys.modules["torch"] = None  # any `import torch` now fails: the runtime must not need it
import numpy as np, io
from PIL import Image
from click.testing import CliRunner
from fastapi.testclient import TestClient
from braintriage.cli import app
from braintriage.webapp import create_app
folder = sys.argv[1]
for i in range(3):
    Image.fromarray((np.random.default_rng(i).random((96, 96)) * 255).astype(np.uint8)).save(f"{folder}/s{i}.png")
result = CliRunner().invoke(app, ["predict", folder, "--output", f"{folder}/out.csv"])
assert result.exit_code == 0, result.output
buf = io.BytesIO(); Image.open(f"{folder}/s0.png").save(buf, "PNG")
upload = [("files", ("s0.png", buf.getvalue(), "image/png"))]
r = TestClient(create_app()).post("/api/v1/predict?heatmap=true", files=upload)
assert r.status_code == 200 and r.json()["results"][0]["image"], r.text
# Noise is not assessed (no heat map in the answer), but the map itself is computed without torch too.
from braintriage.inference import Predictor
from braintriage.scans import items_from_paths
assert Predictor().predict_items(items_from_paths([f"{folder}/s0.png"]), heatmaps=True)[0].heatmap is not None
print("ok without torch")
"""


def test_predict_and_serve_run_without_pytorch(tmp_path):
    run = subprocess.run([sys.executable, "-c", TRIAGE_WITHOUT_TORCH, str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok without torch" in run.stdout


def test_flip_test_time_augmentation_averages_the_image_and_its_mirror(tmp_path):
    torch.manual_seed(1)
    model = build_model("resnet18-w32", 1, 4, 48).eval()
    type_model_files(tmp_path, model, 48)
    update_metadata(tmp_path / "m.onnx", tmp_path / "tta.onnx", {"test_time_augmentation": ["horizontal_flip"]})
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    with torch.no_grad():
        x = to_model_input(torch.from_numpy(images), 0.2, 0.25)
        logits = (model(x) + model(torch.flip(x, dims=[3]))) / 2
    expected = 1 - torch.softmax(logits, 1)[:, 0].numpy()
    plain, _, plain_cams = Predictor(tmp_path / "m.onnx").predict_arrays(images, heatmaps=True)
    tta, _, tta_cams = Predictor(tmp_path / "tta.onnx").predict_arrays(images, heatmaps=True)
    assert np.abs(tta - expected).max() < 1e-3 and np.abs(tta - plain).max() > 1e-4
    assert np.array_equal(plain_cams, tta_cams)  # heat maps come from the image as given
    mirrored, _, _ = Predictor(tmp_path / "tta.onnx").predict_arrays(np.ascontiguousarray(images[..., ::-1]))
    assert np.abs(mirrored - tta).max() < 1e-4  # a mirrored scan gets the same verdict
    update_metadata(tmp_path / "m.onnx", tmp_path / "bad.onnx", {"test_time_augmentation": ["vertical_flip"]})
    with pytest.raises(ValueError, match="vertical_flip"):
        Predictor(tmp_path / "bad.onnx")


def test_zero_padding_folds_into_the_convolution_with_the_same_outputs():
    """onnx_rewrite.fold_padding: a zero Pad before a strided Conv (TensorFlow's SAME, one pixel more at the
    bottom and right, written with an empty constant-value input as PyTorch exports it) becomes the Conv's own
    padding, with the same outputs; a Pad with a non-zero value, or read by two nodes, stays."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from braintriage.onnx_rewrite import fold_padding

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w")
    inits = [weight, numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "same"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "ring"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("Pad", ["x", "same", ""], ["p1"], mode="constant"),
             helper.make_node("Conv", ["p1", "w"], ["y1"], strides=[2, 2]),
             helper.make_node("Pad", ["x", "ring", "half"], ["p2"], mode="constant"),
             helper.make_node("Conv", ["p2", "w"], ["y2"], strides=[2, 2], pads=[1, 0, 0, 1]),
             helper.make_node("Pad", ["x", "ring"], ["p3"], mode="constant"),
             helper.make_node("Conv", ["p3", "w"], ["y3"]),
             helper.make_node("Relu", ["p3"], ["y4"])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2", "y3", "y4")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 9, 8])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(2, 1, 9, 8)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    before = run(model)
    assert fold_padding(model) == 1
    assert [n.op_type for n in model.graph.node].count("Pad") == 2
    assert "same" not in {i.name for i in model.graph.initializer}  # no longer read: dropped
    after = run(model)
    assert before[0].shape == (2, 4, 4, 4)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
