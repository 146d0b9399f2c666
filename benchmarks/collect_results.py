"""Gather the training-speed measurements into benchmarks/results.json, the summary issue #6 asks for.

    python benchmarks/collect_results.py

Reads train_speed_cpu.json and train_speed_gpu.json (written by train_speed.py on each machine) and
inference.json; a missing file leaves its keys null. `seconds_to_target` is null where the run did not
reach the target accuracy on `Testing`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str) -> dict:
    path = HERE / name
    return json.loads(path.read_text()) if path.exists() else {}


def at_full_size(record: dict) -> float | None:
    """Training images/s at 200 px: the longest run without progressive resizing, steady state if known."""
    runs = [r for r in (record.get("throughput_run"), record.get("target_run")) if r and not r.get("start_size")]
    if not runs:
        return None
    run = max(runs, key=lambda r: r["epochs"])
    return run.get("images_per_s_after_first_epoch") or run.get("images_per_s")


def main() -> None:
    cpu, gpu, inference = load("train_speed_cpu.json"), load("train_speed_gpu.json"), load("inference.json")
    results = {
        "cpu_train_seconds_to_target": cpu.get("seconds_to_target"),
        # At 200 px: the throughput run where there is one (the target run may use progressive resizing).
        "cpu_train_images_per_s": at_full_size(cpu),
        "gpu_train_images_per_s": at_full_size(gpu),
        "gpu_seconds_to_target": gpu.get("seconds_to_target"),
        "gpu_name": gpu.get("device"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": {"cpu": cpu.get("commit"), "gpu": gpu.get("commit"), "inference": inference.get("commit")},
        "target": "accuracy >= 0.88 on Testing at the model's threshold, evaluated after training",
        "runs": {
            "cpu": {k: cpu.get(k) for k in ("date", "device", "cpu_cores", "batch_size", "throughput_run",
                                            "target_run", "testing")},
            "gpu": {k: gpu.get(k) for k in ("date", "device", "cpu_cores", "batch_size", "throughput_run",
                                            "target_run", "testing")},
        },
        "inference_images_per_s": inference.get("batch_throughput_images_per_s"),
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
