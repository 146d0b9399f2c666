"""DistributedDataParallel through torchrun: two CPU processes on gloo, as CI runs it."""

import subprocess
import sys

from braintriage.modelfile import read_metadata
from conftest import tiny_type_cache


def test_two_process_gloo_run_writes_one_model_with_the_same_schedule(tmp_path):
    cache = tiny_type_cache(tmp_path, per_class=10)
    common = ["train", str(cache), "--image-size", "48", "--arch", "seed-cnn", "--epochs", "4",
              "--val-fraction", "0.25", "--device", "cpu", "--seed", "1"]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "braintriage",
         *common, "--batch-size", "4", "--output", str(tmp_path / "ddp.safetensors"),
         "--run-dir", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-4000:]
    assert ddp.stdout.count("saved ") == 1  # only rank 0 writes and speaks
    single = subprocess.run(
        [sys.executable, "-m", "braintriage", *common, "--batch-size", "8",
         "--output", str(tmp_path / "one.safetensors"), "--run-dir", str(tmp_path / "one")],
        capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-4000:]
    a, b = read_metadata(tmp_path / "ddp.safetensors"), read_metadata(tmp_path / "one.safetensors")
    assert a["training"]["processes"] == 2 and b["training"]["processes"] == 1
    # 2 processes x 4 images = one global batch of 8, as the single process: the same number of steps
    assert a["training"]["steps"] == b["training"]["steps"] == 4 * (a["training"]["train_images"] // 8)
    assert len(a["history"]) == 4
