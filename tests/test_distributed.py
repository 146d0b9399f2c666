"""DistributedDataParallel through torchrun: two CPU processes on gloo, as CI runs it."""

import subprocess
import sys

from PIL import Image

from braintriage.cache import decode_dataset
from braintriage.datasets import load_dataset
from braintriage.modelfile import read_metadata
from braintriage.preprocess import PreprocessConfig
from conftest import blocks


def test_two_process_gloo_run_writes_one_model_with_the_same_schedule(tmp_path):
    for k, folder in enumerate(("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor")):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(blocks(10 * k + i, 6)).save(tmp_path / "data" / folder / f"{i}.png")
    decode_dataset(load_dataset(tmp_path / "data"), PreprocessConfig(size=48)).save(tmp_path / "c.npz")
    common = ["train", str(tmp_path / "c.npz"), "--image-size", "48", "--arch", "seed-cnn", "--epochs", "4",
              "--val-fraction", "0.25", "--device", "cpu", "--seed", "1"]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "braintriage",
         *common, "--batch-size", "4", "--output", str(tmp_path / "ddp.safetensors"), "--run-dir", str(tmp_path / "ddp")],
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
