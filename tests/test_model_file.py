import pickle

import pytest
import torch

from braintriage.modelfile import BUNDLED_MODEL, ModelFileError, load_model, read_metadata, save_model
from braintriage.models import build_model

META = {"architecture": "resnet18-w32", "output": "softmax",
        "class_names": ["no_tumor", "glioma", "meningioma", "pituitary"], "threshold": 0.3,
        "input": {"channels": 1, "preprocess": {"size": 64}, "normalization": {"mean": 0.2, "std": 0.2}}}


def test_round_trip_keeps_outputs_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18-w32", 1, 4, 64).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-trivial weights (zero-init BN would hide mistakes)
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "m.safetensors"
    save_model(path, model, META)
    loaded, meta = load_model(path)
    assert meta["threshold"] == 0.3 and meta["class_names"] == META["class_names"]
    assert meta["weights_dtype"] == "float16" and "package_version" in meta
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = model(x)
        # float16 storage: compare with the same network whose weights went through float16
        model.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                               for k, v in model.state_dict().items()})
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
        assert torch.allclose(loaded(x), expected, atol=0.05)


class _Exploit:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(MARKER),))


MARKER = ""


def test_a_pickle_posing_as_a_model_is_refused_and_never_run(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "code-ran")
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weights": _Exploit()}))
    with pytest.raises(ModelFileError):
        load_model(evil)
    assert not (tmp_path / "code-ran").exists()


def test_bundled_model_is_small_and_self_describing():
    assert BUNDLED_MODEL.stat().st_size <= 10 * 1024 * 1024
    meta = read_metadata(BUNDLED_MODEL)
    for key in ("architecture", "input", "class_names", "threshold", "validation_metrics", "package_version"):
        assert key in meta
    assert len(meta["training"]["data_fingerprint"]) == 64
    assert meta["input"]["preprocess"]["size"] == 200 and meta["input"]["channels"] == 1
