"""Training speed: throughput (images/s) and time to the target accuracy on `Testing`.

    python benchmarks/train_speed.py --train TRAIN.npz --test TEST.npz [--epochs 40] [--batch-size 256]
        [--throughput-epochs 3] [--device auto] [--output benchmarks/train_speed.json] [recipe options]

Both data arguments are decoded caches (`braintriage cache DATASET [--split testing] -o X.npz`), so this
runs on a GPU machine without the dataset. Throughput: a short run of the default architecture and the
bundled model's recipe, training images per second of wall time (augmentation, forward, backward and
the per-epoch validation included). Time to target: a full run of `--epochs`, then accuracy on `Testing`
at the model's own threshold (evaluated after training, never during); `seconds_to_target` is the training
time when that accuracy is >= 0.88, else null. Results go to JSON with the hardware and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_ACCURACY = 0.88
# The bundled model's augmentation (scripts/train_bundled_model.sh).
RECIPE_AUGMENT = dict(zoom=(0.75, 1.3), rotation_degrees=15.0, translate=0.1, gamma=(0.6, 1.6), noise=0.03,
                      brightness=(0.6, 1.5))


def run(train_cache: str, epochs: int, batch_size: int, device: str, seed: int, out: Path) -> dict:
    from braintriage.augment import AugmentPolicy
    from braintriage.train import TrainConfig, train

    cfg = TrainConfig(data=train_cache, output=str(out / "model.safetensors"), run_dir=str(out), epochs=epochs,
                      batch_size=batch_size, patience=epochs, seed=seed, device=device,
                      augment=AugmentPolicy(**RECIPE_AUGMENT))
    history = train(cfg, log=lambda *_: None)["history"]
    seconds = sum(r["seconds"] for r in history)
    steps = history[-1]["step"]
    return {"epochs": len(history), "steps": steps, "seconds": round(seconds, 2),
            "images_per_s": round(steps * batch_size / seconds, 1), "model": cfg.output}


def testing_accuracy(model_path: str, test_cache: str) -> dict:
    import numpy as np

    from braintriage.cache import DecodedSet
    from braintriage.inference import Predictor
    from braintriage.metrics import binary_metrics

    test = DecodedSet.load(test_cache)
    predictor = Predictor(model_path)
    p, _, _ = predictor.predict_arrays(test.images)
    m = binary_metrics(test.tumor, np.asarray(p), predictor.threshold)
    return {k: m[k] for k in ("accuracy", "sensitivity", "specificity", "threshold", "n")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--throughput-epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "train_speed.json")
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        throughput = run(args.train, args.throughput_epochs, args.batch_size, args.device, args.seed, tmp / "t")
        full = run(args.train, args.epochs, args.batch_size, args.device, args.seed, tmp / "f")
        accuracy = testing_accuracy(full["model"], args.test)
    on_gpu = torch.cuda.is_available() and args.device in ("auto", "cuda")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {
        "benchmark": "train_speed", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit or os.environ.get("BRAINTRIAGE_COMMIT", ""),
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "cpu_cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        "architecture": "resnet18-w32", "image_size": 200, "batch_size": args.batch_size,
        "throughput_run": {k: v for k, v in throughput.items() if k != "model"},
        "target_run": {k: v for k, v in full.items() if k != "model"}, "testing": accuracy,
        "target_accuracy": TARGET_ACCURACY,
        "seconds_to_target": full["seconds"] if accuracy["accuracy"] >= TARGET_ACCURACY else None,
    }
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
