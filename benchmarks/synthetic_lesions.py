"""Cost of painting synthetic lesions into a training batch: this code against an older revision, in one run.

    python benchmarks/synthetic_lesions.py --compare-with REV [--batches 24] [--output benchmarks/synthetic_lesions.json]

Batches of 64 images at 160 px from the three sources (decoded caches), each painted by both revisions'
`add_lesions` at rate 0.7 and 1.0 from the same seed, the calls alternating; reports milliseconds per batch
(median) and whether the two returned identical images, targets and weights and left the generator in the same
state (so a training run draws the same numbers afterwards).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import REPO, hardware, revision_tree  # noqa: E402

from braintriage import synthetic_lesions  # noqa: E402
from braintriage.train import TrainConfig, prepare_data  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def module_of(tree: Path):
    spec = importlib.util.spec_from_file_location("old_synthetic_lesions", tree / "src/braintriage/synthetic_lesions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare-with", required=True)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "synthetic_lesions.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = TrainConfig(data=[str(DATA / s) for s in ("brain-tumor-classification-mri", "br35h", "figshare-cheng2017")],
                      image_size=160, labels="type")
    data = prepare_data(cfg, log=lambda *a: None)
    images = torch.from_numpy(data.decoded.images).unsqueeze(1)
    targets = torch.from_numpy(data.targets)
    times = {"old": [], "new": []}
    identical = True
    with revision_tree(args.compare_with) as old_tree:
        versions = {"old": module_of(old_tree), "new": synthetic_lesions}
        for k in range(args.batches):
            idx = torch.from_numpy(np.random.default_rng(k).choice(len(targets), 64, replace=False))
            x = images[idx].float() / 255.0
            for rate in (0.7, 1.0):
                results = {}
                for label, module in versions.items():
                    generator = torch.Generator().manual_seed(k)
                    start = time.perf_counter()
                    out = module.add_lesions(x, targets[idx], torch.ones(64), rate, 4, 0.5, generator)
                    times[label].append(time.perf_counter() - start)
                    results[label] = (*out, generator.get_state())
                identical &= all(torch.equal(a, b) for a, b in zip(results["old"], results["new"]))
    ms = {label: round(float(np.median(t)) * 1000, 1) for label, t in times.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {"benchmark": "synthetic_lesions", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "old_commit": args.compare_with, "hardware": hardware(),
              "command": "python benchmarks/synthetic_lesions.py " + " ".join(sys.argv[1:]),
              "ms_per_batch_of_64": ms, "speedup": round(ms["old"] / ms["new"], 2), "identical": bool(identical)}
    print(json.dumps(record, indent=2))
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
