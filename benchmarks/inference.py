"""Inference speed on this machine: cold start of the CLI, and batch throughput on ONNX Runtime vs PyTorch.

    python benchmarks/inference.py [--output benchmarks/inference.json]

Cold start: a new process running `braintriage predict ONE.jpg` against `python -c "import torch"`, median
of 5 runs each; once more with a copy of the bundled model whose metadata turns on the head crop
(`crop_to_head`, which imports scipy.ndimage), for what a cropping model would cost at start. Throughput:
the 394 `Testing` images, preprocessed once, scored in batches of 32 by the bundled model, best of 3
passes, on each runtime. Needs the train extra (PyTorch) for the comparison. With `--candidate FILE` (an exported
model that might replace the bundled one, or an ensemble made by `braintriage ensemble`; `--ensemble` is the same
option), its cold start and end-to-end `predict` taking turns with the bundled model's, and its ONNX Runtime
throughput (an ensemble's members each reading their own preprocessing of the 394 images). End to end: `braintriage predict Testing/ --quiet` (394 files, a new
process; a batch run that writes a CSV or nothing), median of 5 (`--runs`); and the same without `--quiet`, its stdout a pipe
(the terminal table of 394 rows, printed by Rich as batches finish), taking turns with it. With `--compare-with
REV`, the cold start and both end-to-end runs of that revision's code too (a temporary git worktree), in the
same run, the runs taking turns (this machine's speed drifts by 10-20% over minutes). Run it on an idle machine
with bytecode caching on (as an installed package has it; `env -u PYTHONDONTWRITEBYTECODE` where the environment
turns it off).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BRAINTRIAGE_DATA", REPO.parent / "shared/data/brain-tumor-classification-mri"))
sys.path.insert(0, str(REPO / "benchmarks"))
from api_load import hardware, revision_tree  # noqa: E402


def seconds(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd, env=env)
    return time.perf_counter() - t


def median_seconds(cmd: list[str], runs: int = 5, cwd: Path | None = None, env: dict | None = None) -> float:
    return statistics.median(seconds(cmd, cwd, env) for _ in range(runs))


def alternating(commands: dict[str, tuple[list[str], Path | None, dict | None]], runs: int) -> dict[str, float]:
    """Median seconds of each command, the commands taking turns run by run: this machine's speed drifts by
    10-20% over minutes, and turns spread the drift over all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (cmd, cwd, env) in commands.items():
            times[name].append(seconds(cmd, cwd, env))
    return {name: statistics.median(t) for name, t in times.items()}


def compare_with(revision: str, one: Path, runs: int) -> dict:
    """Cold start and end-to-end `predict` of this tree and another revision's code (a temporary git worktree),
    taking turns."""
    with revision_tree(revision) as tree:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        base = [sys.executable, "-m", "braintriage", "predict"]
        cold = alternating({"new": ([*base, str(one), "--quiet"], None, None),
                            "old": ([*base, str(one), "--quiet"], tree, env)}, runs)
        testing = alternating({"new": ([*base, str(DATA / "Testing"), "--quiet"], None, None),
                               "new_table": ([*base, str(DATA / "Testing")], None, None),
                               "old": ([*base, str(DATA / "Testing"), "--quiet"], tree, env),
                               "old_table": ([*base, str(DATA / "Testing")], tree, env)}, runs)
    return {"new": {"braintriage_predict_one_jpg": cold["new"], "testing_seconds": testing["new"],
                    "testing_with_table_seconds": testing["new_table"]},
            "old": {"revision": revision, "braintriage_predict_one_jpg": round(cold["old"], 3),
                    "predict_testing_end_to_end_images_per_s": round(394 / testing["old"], 1),
                    "predict_testing_with_terminal_table_images_per_s": round(394 / testing["old_table"], 1)}}


def candidate_beside_bundled(candidate: Path, one: Path, runs: int) -> dict:
    """A candidate model file's cold single-image `predict` and end-to-end `predict Testing/ --quiet`, each taking
    turns with the bundled model's (medians of `runs` turns): what a shipping rule compares."""
    base = [sys.executable, "-m", "braintriage", "predict"]
    model = ["--model", str(candidate)]
    times = alternating({"cold_bundled": ([*base, str(one), "--quiet"], None, None),
                         "cold_candidate": ([*base, str(one), "--quiet", *model], None, None),
                         "testing_bundled": ([*base, str(DATA / "Testing"), "--quiet"], None, None),
                         "testing_candidate": ([*base, str(DATA / "Testing"), "--quiet", *model], None, None)}, runs)
    return {"file": candidate.name, "size_mb": round(candidate.stat().st_size / 1e6, 2),
            "cold_start_seconds_predict_one_jpg": round(times["cold_candidate"], 3),
            "bundled_cold_start_seconds_same_turns": round(times["cold_bundled"], 3),
            "predict_testing_end_to_end_images_per_s": round(394 / times["testing_candidate"], 1),
            "bundled_predict_testing_end_to_end_images_per_s_same_turns": round(394 / times["testing_bundled"], 1)}


def best_throughput(score, images: np.ndarray, passes: int = 3) -> float:
    best = 0.0
    for _ in range(passes):
        t = time.perf_counter()
        score(images)
        best = max(best, len(images) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "inference.json")
    ap.add_argument("--candidate", "--ensemble", type=Path, dest="candidate",
                    help="also time this exported model (plain or ensemble) beside the bundled one")
    ap.add_argument("--compare-with", help="a git revision whose cold start and end-to-end run to time too")
    ap.add_argument("--runs", type=int, default=5, help="turns of each end-to-end and cold-start command (median)")
    args = ap.parse_args()
    one = DATA / "Testing/glioma_tumor/image(1).jpg"
    cli = [sys.executable, "-m", "braintriage", "predict", str(one), "--quiet"]
    testing = [sys.executable, "-m", "braintriage", "predict", str(DATA / "Testing"), "--quiet"]
    old = None
    if args.compare_with:
        both = compare_with(args.compare_with, one, runs=args.runs)
        cold_predict, end_to_end = both["new"]["braintriage_predict_one_jpg"], 394 / both["new"]["testing_seconds"]
        with_table = 394 / both["new"]["testing_with_table_seconds"]
        old = both["old"]
    else:
        cold_predict = median_seconds(cli, args.runs)
        runs = alternating({"quiet": (testing, None, None), "table": (testing[:-1], None, None)}, args.runs)
        end_to_end, with_table = 394 / runs["quiet"], 394 / runs["table"]
    import tempfile

    from braintriage.modelfile import BUNDLED_MODEL, read_metadata, update_metadata

    with tempfile.TemporaryDirectory() as tmp:
        cropping = Path(tmp) / "cropping.onnx"
        bundled_input = read_metadata(BUNDLED_MODEL)["input"]
        update_metadata(BUNDLED_MODEL, cropping, {"input": {
            **bundled_input, "preprocess": {**bundled_input["preprocess"], "crop_to_head": True}}})
        cold_predict_crop = median_seconds([*cli, "--model", str(cropping)])
    cold_torch = median_seconds([sys.executable, "-c", "import torch"])
    beside = candidate_beside_bundled(args.candidate, one, args.runs) if args.candidate else None

    from braintriage.datasets import load_dataset
    from braintriage.inference import Predictor
    from braintriage.preprocess import load_and_preprocess

    samples = load_dataset(DATA, "testing").samples
    onnx_predictor = Predictor()
    images = np.stack([load_and_preprocess(s.path, onnx_predictor.preprocess) for s in samples])
    onnx_ips = best_throughput(lambda x: onnx_predictor.predict_arrays(x), images)
    if args.candidate:
        candidate = Predictor(args.candidate)
        per_input = [np.stack([load_and_preprocess(s.path, c) for s in samples]) for c in candidate.input_preprocess]
        beside["onnxruntime_images_per_s"] = round(best_throughput(lambda x: candidate.predict_arrays(per_input),
                                                                   images), 1)
        beside["model"] = (candidate.metadata["ensemble"]["combine"] if "ensemble" in candidate.metadata
                           else candidate.metadata["architecture"])
        beside["members"] = len(candidate.network.input_names)
        beside["image_sizes"] = [c.size for c in candidate.input_preprocess]

    import torch

    from braintriage.modelfile import load_model
    from braintriage.models import to_model_input

    model, meta = load_model()
    norm = meta["input"]["normalization"]

    def torch_score(x: np.ndarray) -> None:
        with torch.inference_mode():
            for i in range(0, len(x), 32):
                model(to_model_input(torch.from_numpy(x[i:i + 32]), norm["mean"], norm["std"]))

    torch_ips = best_throughput(torch_score, images)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    record = {
        "benchmark": "inference", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
        "hardware": hardware(),
        "cold_start_seconds": {"braintriage_predict_one_jpg": round(cold_predict, 3),
                               "braintriage_predict_one_jpg_with_head_crop": round(cold_predict_crop, 3),
                               "python_import_torch": round(cold_torch, 3)},
        "batch_throughput_images_per_s": {"onnxruntime": round(onnx_ips, 1), "pytorch": round(torch_ips, 1)},
        "predict_testing_end_to_end_images_per_s": round(end_to_end, 1),
        "predict_testing_with_terminal_table_images_per_s": round(with_table, 1),
        **({"old_path": old} if old else {}),
        **({"candidate": beside} if beside else {}),
        "batch": 32, "images": len(images), "runs": args.runs, "image_size": meta["input"]["preprocess"]["size"],
        "model": meta["architecture"],
    }
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
