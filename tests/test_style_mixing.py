"""Style mixing (MixStyle, issue 21): each image keeps its content and wears a mix of two images' feature styles;
only in training steps; the model file is the network without it."""

import pytest
import torch

from braintriage import style_mixing
from braintriage.model_card import _recipe_extras
from braintriage.models import build_model
from braintriage.train import TrainConfig, TrainingSetupError, train
from conftest import tiny_type_cache


def standardised(maps: torch.Tensor) -> torch.Tensor:
    return (maps - maps.mean(dim=(2, 3), keepdim=True)) / maps.std(dim=(2, 3), keepdim=True)


def test_each_image_keeps_its_content_and_takes_a_style_between_its_own_and_another():
    torch.manual_seed(0)
    # Two images, two "styles": the same kinds of maps at other means and spreads per channel.
    maps = torch.stack([torch.randn(3, 8, 8) * 0.5 + 1.0, torch.randn(3, 8, 8) * 3.0 - 2.0])
    means, stds = maps.mean(dim=(2, 3)), maps.std(dim=(2, 3))
    moved = False
    for seed in range(20):
        torch.manual_seed(seed)
        out = style_mixing.mix_styles(maps)
        assert torch.allclose(standardised(out), standardised(maps), atol=1e-3)  # the content
        out_means, out_stds = out.mean(dim=(2, 3)), out.std(dim=(2, 3))
        assert ((out_means >= means.min(0).values - 1e-4) & (out_means <= means.max(0).values + 1e-4)).all()
        assert ((out_stds >= stds.min(0).values - 1e-3) & (out_stds <= stds.max(0).values + 1e-3)).all()
        moved |= bool((out_means - means).abs().max() > 0.5)
    assert moved, "no draw gave an image another image's style"
    assert torch.equal(style_mixing.mix_styles(maps[:1]), maps[:1])  # alone in its batch: nothing to mix with


@pytest.mark.parametrize("arch", ["efficientnet-lite0", "resnet18-w32"])
def test_styles_are_mixed_in_training_steps_only(arch, monkeypatch):
    calls = []
    real = style_mixing.mix_styles
    monkeypatch.setattr(style_mixing, "mix_styles", lambda maps: calls.append(maps.shape) or real(maps))
    model = build_model(arch, 1, 4, 64)
    style_mixing.mix_styles_in_training(model, 1.0)
    x = torch.rand(4, 1, 64, 64)
    model.train()
    model(x)
    strides = [64 // shape[-1] for shape in calls]
    assert strides == [4, 8], strides  # after the stages at strides 4 and 8
    calls.clear()
    with torch.no_grad():  # BatchNorm re-estimation: training mode without gradients
        model(x)
    model.eval()
    model(x)  # validation and prediction
    assert calls == []
    never = build_model(arch, 1, 4, 64).train()
    style_mixing.mix_styles_in_training(never, 0.0)
    never(x)
    assert calls == []


def test_a_run_with_style_mixing_trains_otherwise_records_it_and_writes_a_plain_network(tmp_path):
    cache = tiny_type_cache(tmp_path, per_class=8)
    common = dict(data=str(cache), run_dir=str(tmp_path / "run"), image_size=48, architecture="resnet18-w32",
                  batch_size=8, val_fraction=0.25, patience=100, seed=3, epochs=2)
    plain = train(TrainConfig(**common, output=str(tmp_path / "plain.safetensors")), log=lambda *_: None)
    mixed = train(TrainConfig(**common, output=str(tmp_path / "mixed.safetensors"), style_mixing=0.5),
                  log=lambda *_: None)
    assert [r["train_loss"] for r in plain["history"]] != [r["train_loss"] for r in mixed["history"]]
    assert mixed["metadata"]["training"]["config"]["style_mixing"] == 0.5
    assert "feature styles mixed" in _recipe_extras(mixed["metadata"]["training"]["config"])
    from braintriage.modelfile import load_model

    network, _ = load_model(tmp_path / "mixed.safetensors")
    assert not any(m._forward_hooks for m in network.modules())  # the file holds the network alone
    with pytest.raises(TrainingSetupError, match="style mixing"):
        train(TrainConfig(**{**common, "architecture": "seed-cnn"}, output=str(tmp_path / "no.safetensors"),
                          style_mixing=0.5), log=lambda *_: None)
