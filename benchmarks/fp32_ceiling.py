"""How close a CPU training step in fp32 already runs to this CPU's fp32 arithmetic ceiling.

    python benchmarks/fp32_ceiling.py [--steps 6] [--output benchmarks/fp32_ceiling.json]

For each architecture of `cpu_training.py` (the default `resnet18-w32` at 200 px from random weights; the
bundled recipe, efficientnet-lite0 at 160 px with its stem and first 3 blocks frozen), one training step as
`train.fit` takes it (a batch of 64, channels-last, cross-entropy, backward, AdamW) is counted in floating-point
operations (convolutions and matrix products: the forward pass counted by `torch.utils.flop_counter`, and a
backward pass of two forwards, input and weight gradients, for every layer that trains; torch's counter is not
used for the backward because it counts a depthwise convolution's backward as a dense one's; the first layer's
input gradient, never computed, is counted too: about 1% of the default's step) and timed
(median of `--steps` after two warm-up steps, random input: the arithmetic does not depend on the pixels).
The ceiling is a large fp32 matrix product on the same threads (4096 x 4096, torch's own `@`),
about the most this CPU computes per second in fp32.

`fraction_of_ceiling` (against the higher of two ceiling measurements, before and after the steps) near 1
means the step is arithmetic-bound at the CPU's fp32 peak: only less arithmetic (smaller images, fewer layers
trained) or another number format can make it much faster. Far below 1, the step waits on memory or on small
operations, and kernel or layout work can still pay.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import REPO, hardware  # noqa: E402

from braintriage.models import build_model, freeze_early_layers  # noqa: E402

BATCH = 64
ARCHITECTURES = {
    "default": {"architecture": "resnet18-w32", "image_size": 200, "frozen_blocks": 0},
    "pretrained": {"architecture": "efficientnet-lite0", "image_size": 160, "frozen_blocks": 3},
}


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def training_step(architecture: str, image_size: int, frozen_blocks: int):
    """One `train.fit`-like step on a fixed random batch, as a function to time; the model and batch with it."""
    torch.manual_seed(0)
    model = build_model(architecture, 1, 4, image_size).to(memory_format=torch.channels_last).train()
    if frozen_blocks:
        freeze_early_layers(model, frozen_blocks)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(BATCH, 1, image_size, image_size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (BATCH,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step, model, x


def frozen_modules(model: torch.nn.Module) -> list[str]:
    """The outermost modules whose parameters are all frozen (no backward pass runs through them)."""
    names: list[str] = []
    for name, module in model.named_modules():
        params = list(module.parameters())
        if name and params and not any(p.requires_grad for p in params) \
                and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return names


def step_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    counts = counter.get_flop_counts()
    forward = sum(counts["Global"].values())
    prefix = type(model).__name__ + "."
    frozen = sum(sum(counts.get(prefix + name, {}).values()) for name in frozen_modules(model))
    return (forward + 2 * (forward - frozen)) / 1e9


def measure(settings: dict, steps: int) -> dict:
    step, model, x = training_step(**settings)
    gflops = step_gflop(model, x)
    for _ in range(2):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    median = sorted(seconds)[len(seconds) // 2]
    return {**settings, "batch": BATCH, "gflop_per_step": round(gflops, 1), "step_seconds_median": round(median, 3),
            "step_seconds_each": [round(s, 3) for s in seconds], "images_per_s": round(BATCH / median, 1),
            "gflops_achieved": round(gflops / median, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "fp32_ceiling.json")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    # The ceiling is measured before and after the steps, and the higher taken (the fraction is then a lower
    # bound): this machine's speed drifts over minutes.
    before = matmul_gflops()
    results = {name: measure(settings, args.steps) for name, settings in ARCHITECTURES.items()}
    after = matmul_gflops()
    for name, row in results.items():
        row["fraction_of_ceiling"] = round(row["gflops_achieved"] / max(before, after), 2)
        print(f"{name}: {row['gflop_per_step']} GFLOP a step in {row['step_seconds_median']} s = "
              f"{row['gflops_achieved']} GFLOP/s, {row['fraction_of_ceiling']} of the fp32 ceiling", flush=True)
    print(f"fp32 ceiling (4096 x 4096 matrix product): {before:.1f} GFLOP/s before, {after:.1f} after")
    record = {"benchmark": "fp32_ceiling", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "hardware": hardware(),
              "command": "python benchmarks/fp32_ceiling.py " + " ".join(sys.argv[1:]),
              "ceiling_gflops": {"before": round(before, 1), "after": round(after, 1)}, "results": results}
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
