"""Would int8 make a larger network as cheap as the bundled one? ONNX Runtime alone, fp32 against int8.

    python benchmarks/quantized_speed.py MODEL.onnx [MODEL.onnx ...] [--rounds 2]
        [--output benchmarks/quantized_speed.json]

For the bundled model and each MODEL (an exported model file, e.g. `braintriage export --model
runs/candidate.safetensors --output runs/candidate-200.onnx`): images per second of the network alone, run as
`network.Network` runs it (single-threaded ONNX Runtime sessions, two side by side, chunks of MODEL_CHUNK
images) on 128 images of the training split (the seed set's decoded cache at the model's input size, normalised
as the model file says), best of 3 passes, rounds of all variants alternating. Each MODEL is measured in fp32
(the cached copy `braintriage predict` uses: fused, padding folded) and in int8 (`quantize_static`: QDQ,
per-channel int8 weights, uint8 activations, convolutions only, calibrated on 64 other training images). Also
how far int8 moves P(tumor) on the 128 images. Nothing here is shipped: it measures whether quantization-aware
training could bring a larger input under `predict`'s batch floor.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import REPO, hardware  # noqa: E402
from inference import best_throughput  # noqa: E402

from braintriage.cache import cached_decode  # noqa: E402
from braintriage.datasets import load_dataset  # noqa: E402
from braintriage.modelfile import BUNDLED_MODEL, read_metadata  # noqa: E402
from braintriage.network import MODEL_CHUNK, Network, tumor_probability  # noqa: E402
from braintriage.preprocess import PreprocessConfig  # noqa: E402

SEED_SET = REPO.parent / "shared" / "data" / "brain-tumor-classification-mri"


def training_inputs(model: Path, count: int, offset: int) -> np.ndarray:
    """`count` training images as the model's normalised input (N, 1, size, size), a fixed random draw."""
    metadata = read_metadata(model)
    decoded = cached_decode(load_dataset(SEED_SET, split="training"),
                            PreprocessConfig.from_dict(metadata["input"]["preprocess"]), log=lambda *_: None)
    chosen = np.random.default_rng(0).permutation(len(decoded))[offset:offset + count]
    norm = metadata["input"]["normalization"]
    return ((decoded.images[chosen].astype(np.float32) / 255.0 - norm["mean"]) / norm["std"])[:, None]


def session(path: Path, quantized: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    if not quantized:
        options.add_session_config_entry("session.disable_quant_qdq", "1")  # as network.OnnxBackend
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def images_per_s(sess: ort.InferenceSession, x: np.ndarray) -> float:
    """Best of 3 passes (inference.best_throughput), chunks of MODEL_CHUNK run two side by side."""
    with ThreadPoolExecutor(2) as pool:
        return best_throughput(lambda images: list(pool.map(
            lambda chunk: sess.run(None, {"image": chunk}),
            [images[k:k + MODEL_CHUNK] for k in range(0, len(images), MODEL_CHUNK)])), x)


def p_tumor(logits: np.ndarray) -> np.ndarray:
    return tumor_probability(logits)[0]


def quantized_copy(model: Path, folder: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self, x: np.ndarray):
            self.batches = iter([{"image": x[k:k + 1]} for k in range(len(x))])

        def get_next(self):
            return next(self.batches, None)

    prepared, quantized = folder / f"{model.stem}-prepared.onnx", folder / f"{model.stem}-int8.onnx"
    quant_pre_process(str(model), str(prepared))
    quantize_static(str(prepared), str(quantized), Calibration(training_inputs(model, 64, offset=500)),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    return quantized


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+", help="exported models (.onnx) to measure in fp32 and int8")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "quantized_speed.json")
    args = ap.parse_args()
    variants, inputs = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for model in [BUNDLED_MODEL, *args.models]:
            size = read_metadata(model)["input"]["preprocess"]["size"]
            inputs[model] = training_inputs(model, 128, offset=0)
            # The fp32 session starts from the cached, fused and padding-folded copy, as `predict` does.
            variants[f"{model.name} fp32 {size} px"] = (Network(model, read_metadata(model)).backend.session, model)
            if model != BUNDLED_MODEL:
                variants[f"{model.name} int8 {size} px"] = (session(quantized_copy(model, Path(scratch)), True),
                                                            model)
        speeds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):  # alternating: this machine's speed drifts
            for name, (sess, model) in variants.items():
                speeds[name].append(round(images_per_s(sess, inputs[model]), 1))
        moved = {}
        for model in args.models:
            fp32 = next(s for n, (s, m) in variants.items() if m == model and "fp32" in n)
            int8 = next(s for n, (s, m) in variants.items() if m == model and "int8" in n)
            diff = np.abs(p_tumor(fp32.run(None, {"image": inputs[model]})[0])
                          - p_tumor(int8.run(None, {"image": inputs[model]})[0]))
            moved[model.name] = {"median": round(float(np.median(diff)), 4), "max": round(float(diff.max()), 4)}
    for name, values in speeds.items():
        print(f"{name}: {values} images/s", flush=True)
    for name, values in moved.items():
        print(f"{name}: int8 moves P(tumor) by a median {values['median']}, at most {values['max']}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {"benchmark": "quantized_speed", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "hardware": hardware(), "onnxruntime": ort.__version__,
              "command": "python benchmarks/quantized_speed.py " + " ".join(sys.argv[1:]),
              "images_per_s_each_round": speeds, "p_tumor_moved_by_int8": moved}
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
