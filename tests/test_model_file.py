import pickle
import re
from pathlib import Path

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


def test_a_write_that_fails_keeps_the_previous_model_file_and_leaves_nothing_beside_it(tmp_path, monkeypatch):
    """A run killed or failing while it writes a model file (a full disk) must not leave half a file under the
    model's name, nor a temporary file beside it (atomic_files.written_atomically, used by every whole-file
    writer)."""
    import safetensors.torch

    model = build_model("resnet18-w32", 1, 4, 64).eval()
    path = tmp_path / "m.safetensors"
    save_model(path, model, META)
    before = path.read_bytes()

    def half_then_full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        save_model(path, model, {**META, "threshold": 0.9})
    assert path.read_bytes() == before and read_metadata(path)["threshold"] == 0.3
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]


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
    assert 16 <= meta["input"]["preprocess"]["size"] <= 1024 and meta["input"]["channels"] == 1
    sources = meta["training"].get("sources") or {}
    assert all(len(c["fingerprint"]) == 64 and c["images"] == c["tumor"] + c["no_tumor"] for c in sources.values())


@pytest.mark.parametrize("change, field", [
    ({"input": {"channels": 1, "preprocess": {"size": 64}, "normalization": {"mean": 0.2, "std": 0.0}}},
     "input.normalization.std"),
    ({"input": {"channels": 1, "preprocess": {"size": 100000}, "normalization": {"mean": 0.2, "std": 0.2}}},
     "input.preprocess.size"),
    ({"threshold": "0.5"}, "threshold"),
    ({"threshold": float("nan")}, "threshold"),
    ({"class_names": "no_tumor,tumor"}, "class_names"),
    ({"output": "logits"}, "output"),
    ({"architecture": None}, "architecture"),
    ({"ood": {"threshold": 3.0, "layers": ["conv1"]}}, "ood.layers"),
    ({"ood": {"threshold": 3.0, "also": [{"threshold": float("inf"), "layers": ["penultimate_quarters"]}]}},
     "ood.also[0].threshold"),
    ({"ood": {"threshold": 3.0, "also": {"threshold": 3.0}}}, "ood.also"),
    ({"ood": {"threshold": 3.0, "familiar_below": -0.5}}, "ood.familiar_below"),
    ({"ood": {"threshold": 3.0, "familiar_below": 0.5, "familiar_percentile": 120}}, "ood.familiar_percentile"),
], ids=["std-0", "huge-size", "string-threshold", "nan-threshold", "class-string", "output", "no-architecture",
        "guard-layer", "second-guard-threshold", "second-guard-not-a-list", "familiar-below", "familiar-percentile"])
def test_invalid_metadata_is_refused_naming_the_field(tmp_path, change, field):
    from safetensors.numpy import save_file
    from click.testing import CliRunner

    from braintriage.cli import app

    path = tmp_path / "bad.safetensors"
    save_model(path, build_model("resnet18-w32", 1, 4, 64), {**META, **change})
    with pytest.raises(ModelFileError, match=re.escape(field)):
        read_metadata(path)
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--model", str(path)])
    assert result.exit_code == 2 and field in result.output and "Traceback" not in result.output
    for raw, words in [("not json", "not JSON"), ("[1, 2]", "not a JSON object")]:
        save_file({"w": __import__("numpy").zeros(1)}, str(path), metadata={"braintriage": raw})
        with pytest.raises(ModelFileError, match=words):
            read_metadata(path)


def test_a_nan_score_is_an_error_row_never_a_verdict(tmp_path):
    from PIL import Image

    from braintriage.inference import Predictor
    from conftest import synthetic_slice

    model = build_model("resnet18-w32", 1, 4, 64)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    save_model(tmp_path / "nan.safetensors", model, META)
    Image.fromarray(synthetic_slice()).save(tmp_path / "s.png")
    [r] = Predictor(tmp_path / "nan.safetensors").predict_files([str(tmp_path / "s.png")])
    assert r.tumor_probability is None and r.prediction is None and "not a number" in r.error
