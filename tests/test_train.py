import csv
from pathlib import Path

import pytest

from braintriage.augment import AugmentPolicy
from braintriage.datasets import load_dataset
from braintriage.modelfile import read_metadata
from braintriage.train import TrainConfig, train


@pytest.mark.dataset
def test_a_short_run_on_real_images_lowers_the_loss_and_writes_a_model(seed_data, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    ds = load_dataset(seed_data, "training")
    by_type: dict[str, list] = {}
    for s in ds.samples:
        by_type.setdefault(s.tumor_type, []).append(s)
    manifest = tmp_path / "subset.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for t, samples in by_type.items():
            for s in samples[::24][:16]:  # 16 per type, spread over the folder
                w.writerow([s.path, t])
    cfg = TrainConfig(data=str(manifest), output=str(tmp_path / "m.safetensors"), run_dir=str(tmp_path / "run"),
                      image_size=64, epochs=12, batch_size=16, lr=2e-3, val_fraction=0.25, patience=100,
                      augment=AugmentPolicy(zoom=(1, 1), rotation_degrees=0, brightness=(1, 1)), seed=0)
    result = train(cfg, log=lambda *_: None)
    losses = [row["train_loss"] for row in result["history"]]
    assert min(losses[-3:]) < 0.8 * losses[0]
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["output"] == "softmax" and 0 < meta["threshold"] <= 0.5
    assert meta["training"]["train_images"] + meta["training"]["validation_images"] == 64
    for name in ("history.csv", "training_curves.png", "metadata.json"):
        assert (Path(cfg.run_dir) / name).stat().st_size > 0
