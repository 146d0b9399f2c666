"""Does DistributedDataParallel training match single-process training within the noise of seeds?

    python benchmarks/ddp_equivalence.py --train TRAIN.npz --test TEST.npz [--seeds 0 1 2] [--epochs 20]
        [--processes 2] [--device cpu] [--output benchmarks/ddp_equivalence.json]

For each seed, trains the default architecture twice with the same global batch (64): once in one process,
once under `torchrun --nproc_per_node P` (each process 64 / P images of every batch; gloo on CPUs, NCCL on
GPUs). Both runs use the same grouped validation split. Reports each run's best validation loss, validation
accuracy and sensitivity at 0.5, and `Testing` accuracy and sensitivity at the model's threshold (scored after
training, for the record), then the mean and spread of each side and whether the gap between the means is
within the seed-to-seed spread. TRAIN and TEST are decoded caches (`braintriage cache`), here at 128 px
so the comparison runs on a 2-core CPU in about 25 minutes.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from train_speed import testing_accuracy  # this folder: the same scoring as the speed benchmark

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def train_once(args, seed: int, processes: int, out: Path) -> dict:
    from braintriage.cache import DecodedSet
    from braintriage.modelfile import read_metadata

    size = DecodedSet.load(args.train).preprocess.size
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                 str(processes)] if processes > 1 else [sys.executable])
    cmd = [*launcher, "-m", "braintriage", "train", args.train, "--image-size", str(size),
           "--epochs", str(args.epochs), "--batch-size", str(64 // processes), "--patience", str(args.epochs),
           "--seed", str(seed), "--device", args.device, "--checkpoint-seconds", "1e9",
           "--output", str(out / "model.safetensors"), "--run-dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    meta = read_metadata(out / "model.safetensors")
    testing = testing_accuracy(str(out / "model.safetensors"), args.test, args.train)
    best = min(meta["history"], key=lambda r: r["val_loss"])
    return {"seed": seed, "processes": processes, "steps": meta["training"]["steps"],
            "seconds": meta["training"]["seconds"], "val_loss": best["val_loss"],
            "val_accuracy": best["val_accuracy"], "val_sensitivity": best["val_recall"],
            "testing_accuracy": round(testing["accuracy"], 4),
            "testing_sensitivity": round(testing["sensitivity"], 4),
            "unleaked_sensitivity": round(testing["unleaked_sensitivity"], 4)}


def summary(runs: list[dict]) -> dict:
    keys = ("val_loss", "val_accuracy", "testing_accuracy", "testing_sensitivity")
    return {k: {"mean": round(float(np.mean([r[k] for r in runs])), 4),
                "std": round(float(np.std([r[k] for r in runs], ddof=1)), 4) if len(runs) > 1 else None}
            for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "ddp_equivalence.json")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for processes in (1, args.processes):
                run = train_once(args, seed, processes, Path(tmp) / f"s{seed}-p{processes}")
                print(json.dumps(run), flush=True)
                runs.append(run)
    single = summary([r for r in runs if r["processes"] == 1])
    ddp = summary([r for r in runs if r["processes"] > 1])
    within = {k: (abs(single[k]["mean"] - ddp[k]["mean"]) <= max(single[k]["std"] or 0, ddp[k]["std"] or 0))
              for k in single}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    import torch

    record = {"benchmark": "ddp_equivalence", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "device": args.device, "torch": torch.__version__,
              "python": platform.python_version(), "epochs": args.epochs, "global_batch": 64,
              "runs": runs, "single_process": single, "distributed": ddp,
              "gap_within_seed_spread": within}
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"single_process": single, "distributed": ddp, "gap_within_seed_spread": within}, indent=2))


if __name__ == "__main__":
    main()
