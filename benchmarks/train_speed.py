"""Training speed: throughput (images/s) and time to the target accuracy on `Testing`.

    python benchmarks/train_speed.py --train TRAIN --test TEST [--epochs 40] [--batch-size 256]
        [--start-size 128] [--throughput-epochs 3] [--device auto] [--output benchmarks/train_speed.json]

TRAIN and TEST are dataset folders or decoded caches (`braintriage cache DATASET [--split testing] -o X.npz`,
which lets this run on a GPU machine without the dataset). A TRAIN folder is decoded into a fresh, empty
cache, so the time to target starts from a cold cache. Throughput: a short run at full size (200 px) of the
default architecture and the bundled model's recipe, training images per second of the training loop
(augmentation, forward, backward and per-epoch validation included). Time to target: a full run of
`--epochs` (progressive resizing from `--start-size` if given), then accuracy on `Testing` at the model's own
threshold (evaluated after training, never during). `wall_seconds` is the whole `train` call (decoding a cold
cache, training, OOD calibration, writing); `seconds_to_target` is that when accuracy is >= 0.88, else
null; `train_loop_seconds` is the loop alone. Results go to JSON with the hardware and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_ACCURACY = 0.88
# The bundled model's augmentation (scripts/train_bundled_model.sh).
RECIPE_AUGMENT = dict(zoom=(0.75, 1.3), rotation_degrees=15.0, translate=0.1, gamma=(0.6, 1.6), noise=0.03,
                      brightness=(0.6, 1.5))


def run(train_data: str, epochs: int, batch_size: int, device: str, seed: int, out: Path,
        start_size: int | None = None, precision: str = "auto", compile: bool = False) -> dict:
    from braintriage.augment import AugmentPolicy
    from braintriage.train import TrainConfig, train

    cfg = TrainConfig(data=train_data, output=str(out / "model.safetensors"), run_dir=str(out), epochs=epochs,
                      batch_size=batch_size, patience=epochs, seed=seed, device=device, start_size=start_size,
                      precision=precision, compile=compile, augment=AugmentPolicy(**RECIPE_AUGMENT))
    if not train_data.endswith(".npz"):  # a dataset folder: decode it into an empty cache (cold start)
        os.environ["BRAINTRIAGE_CACHE"] = str(out / "cache")
    t0 = time.perf_counter()
    history = train(cfg, log=lambda *_: None)["history"]
    wall = time.perf_counter() - t0
    seconds = sum(r["seconds"] for r in history)
    steps = history[-1]["step"]
    # Steady state: without the first epoch (cuDNN autotuning, torch.compile, allocator warm-up).
    later = history[1:]
    steady = ((steps - history[0]["step"]) * batch_size / sum(r["seconds"] for r in later)) if later else None
    return {"epochs": len(history), "steps": steps, "start_size": start_size, "precision": precision,
            "compile": compile, "train_loop_seconds": round(seconds, 2), "wall_seconds": round(wall, 2),
            "images_per_s": round(steps * batch_size / seconds, 1),
            "images_per_s_after_first_epoch": steady and round(steady, 1), "model": cfg.output}


def testing_accuracy(model_path: str, test_data: str, train_data: str | None = None) -> dict:
    """Binary metrics at the model's threshold, scored as `braintriage evaluate` scores (folder or cache);
    with `train_data`, also the sensitivity on the tumors with no near duplicate in it (unleaked)."""
    from braintriage.audit import dataset_hashes, leaked_mask
    from braintriage.evaluate import score_dataset
    from braintriage.inference import Predictor
    from braintriage.metrics import binary_metrics

    predictor = Predictor(model_path)
    scored = score_dataset(predictor, test_data)
    m = binary_metrics(scored.tumor, scored.p_tumor, predictor.threshold)
    result = {k: m[k] for k in ("accuracy", "sensitivity", "specificity", "threshold", "n")}
    if train_data:
        leaked, _ = leaked_mask(scored.phash, dataset_hashes(train_data))
        unleaked_tumors = ~leaked & (scored.tumor == 1)
        hits = int((scored.p_tumor[unleaked_tumors] >= predictor.threshold).sum())
        result["unleaked_tumors"] = int(unleaked_tumors.sum())
        result["unleaked_sensitivity"] = hits / max(1, int(unleaked_tumors.sum()))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--throughput-epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--start-size", type=int, default=None, help="progressive resizing from this size")
    ap.add_argument("--precision", default="auto", help="auto, bf16 or fp32")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "train_speed.json")
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        throughput = (run(args.train, args.throughput_epochs, args.batch_size, args.device, args.seed, tmp / "t",
                          precision=args.precision, compile=args.compile) if args.throughput_epochs else None)
        full = run(args.train, args.epochs, args.batch_size, args.device, args.seed, tmp / "f", args.start_size,
                   args.precision, args.compile)
        accuracy = testing_accuracy(full["model"], args.test, args.train)
    on_gpu = torch.cuda.is_available() and args.device in ("auto", "cuda")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {
        "benchmark": "train_speed", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit or os.environ.get("BRAINTRIAGE_COMMIT", ""),
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "cpu_cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        "architecture": "resnet18-w32", "image_size": 200, "batch_size": args.batch_size,
        "throughput_run": throughput and {k: v for k, v in throughput.items() if k != "model"},
        "target_run": {k: v for k, v in full.items() if k != "model"}, "testing": accuracy,
        "target_accuracy": TARGET_ACCURACY,
        "seconds_to_target": full["wall_seconds"] if accuracy["accuracy"] >= TARGET_ACCURACY else None,
    }
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
