import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from braintriage.augment import AugmentPolicy
from braintriage.cache import DecodedSet
from braintriage.crossval import cross_validation
from braintriage.datasets import load_dataset
from braintriage.guard_fit import infiltrative_share, painted_normals
from braintriage.model_card import _recipe_extras
from braintriage.modelfile import read_metadata
from braintriage.splits import model_validation_split
from braintriage.train import TrainConfig, TrainingSetupError, fit_temperature, train
from conftest import blocks, tiny_type_cache

NO_AUGMENT = AugmentPolicy(zoom=(1, 1), rotation_degrees=0, brightness=(1, 1))


@pytest.fixture(scope="module")
def real_subset(seed_data, tmp_path_factory) -> Path:
    """A manifest of 64 Training images, 16 per folder, spread over each folder."""
    ds = load_dataset(seed_data, "training")
    by_type: dict[str, list] = {}
    for s in ds.samples:
        by_type.setdefault(s.tumor_type, []).append(s)
    manifest = tmp_path_factory.mktemp("subset") / "subset.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for t, samples in by_type.items():
            for s in samples[::24][:16]:
                w.writerow([s.path, t])
    return manifest


@pytest.mark.dataset
def test_a_short_run_on_real_images_lowers_the_loss_and_writes_a_model(real_subset, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(data=str(real_subset), output=str(tmp_path / "m.safetensors"), run_dir=str(tmp_path / "run"),
                      image_size=64, epochs=12, batch_size=16, lr=2e-3, val_fraction=0.25, patience=100,
                      augment=NO_AUGMENT, seed=0, calibrate=True)
    result = train(cfg, log=lambda *_: None)
    losses = [row["train_loss"] for row in result["history"]]
    assert min(losses[-3:]) < 0.8 * losses[0]
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["output"] == "softmax" and 0 < meta["threshold"] <= 0.5
    assert meta["temperature"] > 0 and len(meta["history"]) == 12
    assert meta["training"]["train_images"] + meta["training"]["validation_images"] == 64
    for name in ("history.csv", "training_curves.png", "metadata.json"):
        assert (Path(cfg.run_dir) / name).stat().st_size > 0


def test_the_train_command_with_folds_cross_validates_and_writes_no_model(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from braintriage.cli import app

    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    cache = tiny_type_cache(tmp_path, per_class=6)
    args = ["train", str(cache), "--output", str(tmp_path / "m.safetensors"), "--run-dir", str(tmp_path / "cv"),
            "--arch", "resnet18-w32", "--image-size", "48", "--epochs", "1", "--batch-size", "8", "--folds", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["folds"] == 2
    assert "pooled out-of-fold: threshold" in result.output and not (tmp_path / "m.safetensors").exists()
    refused = CliRunner().invoke(app, [*args[:-2], "--folds", "1"])
    assert refused.exit_code == 2 and "needs --folds of at least 2" in refused.output
    with pytest.raises(TrainingSetupError, match="crossval.cross_validation"):  # never one model quietly
        train(TrainConfig(data=str(cache), folds=2))
    with pytest.raises(TrainingSetupError, match="needs --folds"):
        train(TrainConfig(data=str(cache), only_fold=1))


def test_the_resize_filter_is_trained_with_recorded_and_used(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from braintriage.cli import app
    from braintriage.inference import Predictor

    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    tiny_type_cache(tmp_path, per_class=10)
    model = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "data"), "--output", str(model), "--run-dir",
                                      str(tmp_path / "run"), "--arch", "resnet18-w32", "--image-size", "48",
                                      "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.25",
                                      "--resample", "bicubic"])
    assert result.exit_code == 0, result.output
    assert read_metadata(model)["input"]["preprocess"]["resample"] == "bicubic"
    assert Predictor(model).preprocess.resample == "bicubic"
    assert json.loads((tmp_path / "run" / "metadata.json").read_text())["training"]["config"]["resample"] == "bicubic"
    cache = tmp_path / "bicubic.npz"  # a cache keeps its filter, and a recipe with another one refuses it
    made = CliRunner().invoke(app, ["cache", str(tmp_path / "data"), "-o", str(cache), "--image-size", "48",
                                    "--resample", "bicubic"])
    assert made.exit_code == 0, made.output
    with pytest.raises(TrainingSetupError, match="resample='bicubic'"):
        train(TrainConfig(data=str(cache), image_size=48, epochs=1, output=str(tmp_path / "never.safetensors")))


@pytest.mark.dataset
def test_grouped_cross_validation_reports_mean_and_spread(real_subset, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(data=str(real_subset), output=str(tmp_path / "unused.safetensors"),
                      run_dir=str(tmp_path / "cv"), image_size=48, epochs=2, batch_size=16, folds=3,
                      augment=NO_AUGMENT)
    result = cross_validation(cfg, log=lambda *_: None)
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["folds"] == 3 and len(saved["per_fold"]) == 3
    assert saved["preprocess"]["size"] == 48 and saved["config"]["epochs"] == 2  # what was cross-validated
    # which processor trained each fold: the same seed gives other numbers on another one
    assert len(saved["hardware"]) == 1 and "torch" in saved["hardware"][0]
    assert all(f["hardware"] == saved["hardware"][0] for f in saved["per_fold"])
    assert sum(f["images"] for f in saved["per_fold"]) == 64
    for name in ("accuracy", "sensitivity", "specificity"):
        s = result["summary_at_0.5"][name]
        assert s["min"] <= s["mean"] <= s["max"] and s["std"] >= 0
    assert not (tmp_path / "unused.safetensors").exists()
    # Every image is predicted once, by the fold that did not train on it.
    with (tmp_path / "cv" / "oof.csv").open() as f:
        oof = list(csv.DictReader(f))
    assert len(oof) == 64 and len({r["path"] for r in oof}) == 64
    assert {int(r["fold"]) for r in oof} == {1, 2, 3}
    assert all(0 <= float(r["p_tumor"]) <= 1 for r in oof)
    assert all(float(r["p_no_tumor"]) == pytest.approx(1 - float(r["p_tumor"]), abs=1e-5) for r in oof)
    assert all(f["held_out_loss"] > 0 and 0 <= f["type_accuracy"] <= 1 for f in saved["per_fold"])
    # Interrupted after folds 1 and 3: the same command trains fold 2 only and pools all three.
    (tmp_path / "cv" / "folds" / "fold-2.json").unlink()
    (tmp_path / "cv" / "cv.json").unlink()
    lines = []
    resumed = cross_validation(cfg, log=lines.append)
    assert [k for k in (1, 2, 3) if any(f"fold {k}/3: finished by an earlier run" in line for line in lines)] == [1, 3]
    assert any(line.startswith("fold 2/3: ") and "held out" in line for line in lines)
    assert resumed["per_fold"][0] == saved["per_fold"][0] and resumed["per_fold"][2] == saved["per_fold"][2]
    assert sum(f["images"] for f in resumed["per_fold"]) == 64
    # Folds of another recipe are refused, never mixed in.
    with pytest.raises(ValueError, match="another recipe"):
        cross_validation(dataclasses.replace(cfg, epochs=3), log=lambda *_: None)
    # Folds saved before a setting existed (here synthetic_lesions) still count: it was at its default then.
    for fold in (tmp_path / "cv" / "folds").glob("fold-*.json"):
        record = json.loads(fold.read_text())
        del record["config"]["synthetic_lesions"]
        fold.write_text(json.dumps(record))
    lines = []
    cross_validation(cfg, log=lines.append)
    assert sum("finished by an earlier run" in line for line in lines) == 3
    assert saved["pooled_out_of_fold"]["at_specificity_0.95"]["specificity"] >= 0.95
    # One source here (the manifest): its share is the pooled result.
    at95 = saved["pooled_out_of_fold"]["at_specificity_0.95"]
    (only,) = saved["pooled_out_of_fold"]["per_source_at_specificity_0.95"].values()
    assert (only["tumors"], only["normals"]) == (at95["n_tumor"], at95["n_no_tumor"])
    assert only["sensitivity"] == pytest.approx(at95["sensitivity"])
    # Every image here has a type: the pooled four-class accuracy weighs the folds' own by their sizes.
    assert only["typed"] == 64
    assert only["type_accuracy"] == pytest.approx(
        sum(f["type_accuracy"] * f["images"] for f in saved["per_fold"]) / 64)


def test_weight_averaging_saves_the_average_not_the_last_weights(tmp_path):
    """With a decay of (almost) 1 the average never moves from the weights after the first step, so the
    saved weights must equal a one-step run's, and differ from the same run without averaging. (BatchNorm
    running statistics are re-estimated for the average, so they are compared apart.)"""
    from safetensors.torch import load_file

    cache = tiny_type_cache(tmp_path, per_class=8)
    common = dict(data=str(cache), run_dir=str(tmp_path / "run"), image_size=48, architecture="resnet18-w32",
                  batch_size=8, val_fraction=0.25, patience=100, seed=3, augment=NO_AUGMENT, lr=1e-2,
                  warmup_epochs=0.3)

    def weights(name: str, **changes) -> tuple[dict, list[float]]:
        out = tmp_path / f"{name}.safetensors"
        history = train(TrainConfig(**common, output=str(out), **changes), log=lambda *_: None)["history"]
        return load_file(out), [row["train_loss"] for row in history]

    one_step, _ = weights("one-step", epochs=1, max_steps=1)
    averaged, averaged_losses = weights("averaged", epochs=4, ema_decay=1 - 1e-9)
    plain, plain_losses = weights("plain", epochs=4)
    assert averaged_losses == plain_losses  # averaging watches the run; it must not change it
    assert one_step.keys() == averaged.keys() == plain.keys()
    statistics = [k for k in one_step if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert statistics, "the test network should have BatchNorm"
    for k in statistics:
        del one_step[k], plain[k]
        assert torch.isfinite(averaged.pop(k).float()).all()

    def largest_difference(a: dict, b: dict) -> float:
        return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)

    assert largest_difference(one_step, averaged) < 1e-6
    assert largest_difference(one_step, plain) > 1e-3




def test_exclude_leaked_drops_training_copies_of_test_images(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    folders = ("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor")
    for k, folder in enumerate(folders):
        (tmp_path / "train" / folder).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(blocks(10 * k + i, 8)).save(tmp_path / "train" / folder / f"{i}.png")
    for folder in ("tumor", "no_tumor"):
        (tmp_path / "test" / folder).mkdir(parents=True)
    Image.fromarray(blocks(0, 8)).save(tmp_path / "test" / "tumor" / "copy.png")  # = train glioma 0
    Image.fromarray(blocks(31, 8)).save(tmp_path / "test" / "no_tumor" / "copy.png")  # = train no_tumor 1
    Image.fromarray(blocks(99, 8)).save(tmp_path / "test" / "tumor" / "new.png")
    cfg = TrainConfig(data=str(tmp_path / "train"), output=str(tmp_path / "m.safetensors"),
                      run_dir=str(tmp_path / "run"), image_size=32, epochs=1, batch_size=4, val_fraction=0.25,
                      exclude_leaked=str(tmp_path / "test"), augment=NO_AUGMENT)
    meta = train(cfg, log=lambda *_: None)["metadata"]
    assert meta["training"]["excluded_leaked_images"] == 2 and meta["training"]["images"] == 14


def test_temperature_scaling_undoes_overconfidence():
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 4)
    targets = torch.multinomial(torch.softmax(true_logits, 1), 1)[:, 0]
    assert fit_temperature(3.0 * true_logits, targets) == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize("ema", [[], ["--ema-decay", "0.9"]], ids=["plain", "weight-averaging"])
def test_a_killed_run_resumes_to_the_same_steps_and_weights(tmp_path, ema):
    """Kill a training process after a checkpoint, resume it, and compare with an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cache = tiny_type_cache(tmp_path, per_class=8)
    base = [sys.executable, "-m", "braintriage", "train", str(cache), "--image-size", "48",
            "--arch", "seed-cnn", "--epochs", "30", "--batch-size", "8", "--val-fraction", "0.25",
            "--patience", "100", "--seed", "3", "--checkpoint-seconds", "0", *ema]

    def args(name: str) -> list[str]:
        return [*base, "--output", str(tmp_path / f"{name}.safetensors"), "--run-dir", str(tmp_path / name)]

    whole = subprocess.run(args("whole"), capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen(args("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed.safetensors").exists()
    resumed = subprocess.run([*args("killed"), "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout + resumed.stderr
    a, b = read_metadata(tmp_path / "whole.safetensors"), read_metadata(tmp_path / "killed.safetensors")
    assert a["training"]["steps"] == b["training"]["steps"] == 30 * 3
    assert [r["val_loss"] for r in a["history"]] == pytest.approx([r["val_loss"] for r in b["history"]], rel=1e-5)


def test_resuming_a_run_from_its_final_checkpoint_finishes_without_training(tmp_path):
    """A run killed after its last checkpoint but before writing the model: --resume has no epoch left."""
    import subprocess
    import sys

    cache = tiny_type_cache(tmp_path, per_class=8)
    args = [sys.executable, "-m", "braintriage", "train", str(cache), "--image-size", "48", "--arch", "seed-cnn",
            "--epochs", "3", "--batch-size", "8", "--val-fraction", "0.25", "--patience", "100", "--seed", "3",
            "--checkpoint-seconds", "0", "--output", str(tmp_path / "m.safetensors"), "--run-dir", str(tmp_path / "r")]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["epoch"] == 3
    history = read_metadata(tmp_path / "m.safetensors")["history"]
    (tmp_path / "m.safetensors").unlink()
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert read_metadata(tmp_path / "m.safetensors")["history"] == history


def test_the_last_epoch_is_checkpointed_whatever_the_timer_and_an_early_stop_stays_stopped(tmp_path):
    """A held-out run killed while its guard is fitted must not train again on --resume: its last epoch is saved
    even when the timed checkpoint is not due, and an early stop (here --max-steps) is not trained past."""
    import subprocess
    import sys

    cache = tiny_type_cache(tmp_path, per_class=8)  # 24 training images, 3 steps an epoch
    args = [sys.executable, "-m", "braintriage", "train", str(cache), "--image-size", "48", "--arch", "seed-cnn",
            "--epochs", "5", "--max-steps", "4", "--batch-size", "8", "--val-fraction", "0.25", "--seed", "3",
            "--checkpoint-seconds", "3600", "--output", str(tmp_path / "m.safetensors"), "--run-dir",
            str(tmp_path / "r")]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 4
    history = read_metadata(tmp_path / "m.safetensors")["history"]
    assert len(history) == 2
    (tmp_path / "m.safetensors").unlink()
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert read_metadata(tmp_path / "m.safetensors")["history"] == history


def test_progressive_resizing_starts_small_and_ends_at_full_size():
    from braintriage.train import train_size_at

    cfg = TrainConfig(data="unused", epochs=60, image_size=200, start_size=128)
    sizes = [train_size_at(e, cfg) for e in range(cfg.epochs)]
    assert sizes[0] == 128 and sizes[-1] == 200 and sizes == sorted(sizes)
    assert all(s % 16 == 0 for s in sizes if s != 200)
    assert sizes.count(200) >= 0.1 * cfg.epochs  # the last epochs settle at the size the model is used at
    assert {train_size_at(e, TrainConfig(data="unused", epochs=60)) for e in range(60)} == {200}
    # --resize-ramp 0.3 0.55: 18 epochs at 96 px, growing over the next 15, full size from epoch 33 of 60
    ramp_cfg = dataclasses.replace(cfg, start_size=96, resize_ramp=(0.3, 0.55))
    ramped = [train_size_at(e, ramp_cfg) for e in range(cfg.epochs)]
    assert ramped[:18] == [96] * 18 and 96 < ramped[32] < 200 and ramped == sorted(ramped)
    assert ramped.index(200) == 33 and ramped[33:] == [200] * 27


def test_train_resizes_progressively_by_default_only_from_random_weights(monkeypatch, tmp_path):
    """`braintriage train`'s default (session 33's paired rule): from 96 px over 30-55% of the epochs for a network
    from random weights; never for pretrained weights, a distillation or a fixed-size network; 0 turns it off."""
    from click.testing import CliRunner

    import braintriage.train as train_module
    from braintriage.cli import app

    seen = []
    monkeypatch.setattr(train_module, "train", lambda cfg, log: seen.append(cfg))
    (tmp_path / "teacher.safetensors").write_bytes(b"")

    def config(*flags: str) -> TrainConfig:
        result = CliRunner().invoke(app, ["train", str(tmp_path), *flags])
        assert result.exit_code == 0, result.output
        return seen.pop()

    scratch = config()
    assert (scratch.architecture, scratch.start_size) == ("resnet18-w32", 96)
    assert scratch.resize_ramp == (0.3, 0.55)
    assert config("--pretrained", "--arch", "efficientnet-lite0").start_size is None
    assert config("--teacher", str(tmp_path / "teacher.safetensors")).start_size is None
    assert config("--init-from", str(tmp_path / "teacher.safetensors")).start_size is None
    assert config("--arch", "seed-cnn").start_size is None
    assert config("--start-size", "0").start_size == 0
    assert config("--start-size", "128", "--resize-ramp", "0.5", "0.9").resize_ramp == (0.5, 0.9)


def test_a_resize_ramp_out_of_order_is_refused_before_any_data_is_read(tmp_path):
    """Refused before decoding: the data named here does not exist, so a check that ran after `prepare_data`
    would fail on the data instead (it did, minutes into a real run, until session 33)."""
    missing = str(tmp_path / "no-such-dataset")
    cfg = TrainConfig(data=missing, architecture="resnet18-w32", image_size=48, start_size=32,
                      resize_ramp=(0.9, 0.5), run_dir=str(tmp_path / "r"), output=str(tmp_path / "m.safetensors"))
    with pytest.raises(TrainingSetupError, match="resize-ramp 0.9 0.5"):
        train(cfg, log=lambda *_: None)
    with pytest.raises(TrainingSetupError, match="resize-ramp 0.9 0.5"):
        cross_validation(dataclasses.replace(cfg, folds=2), log=lambda *_: None)
    empty = dataclasses.replace(cfg, resize_ramp=(0.5, 0.5))  # no epochs to grow over: refused, not divided by
    with pytest.raises(TrainingSetupError, match="resize-ramp 0.5 0.5"):
        train(empty, log=lambda *_: None)
    with pytest.raises(TrainingSetupError, match="needs --pretrained"):  # the other contradictions, as early
        train(dataclasses.replace(cfg, start_size=None, frozen_blocks=3), log=lambda *_: None)
    with pytest.raises(TrainingSetupError, match="one image size"):
        train(dataclasses.replace(cfg, architecture="seed-cnn", resize_ramp=(0.5, 0.9)), log=lambda *_: None)


def test_patience_and_the_kept_epoch_count_only_epochs_trained_at_full_size():
    """Validated at full size, small-image epochs score worse than the best; counting them stopped a
    progressive 60-epoch run at epoch 19 (session 25). An early small-image epoch that scores best is kept only
    until the first full-size one: the model returned is one trained at the size it is used at."""
    from braintriage.train import Progress, train_size_at, trains_whole_recipe

    cfg = TrainConfig(data="unused", epochs=60, image_size=200, start_size=128, resize_ramp=(0.5, 0.9), patience=15)
    progress = Progress()
    for epoch in range(cfg.epochs):
        loss = 0.9 if epoch == 2 else 1.2  # the best validation loss comes early, at 128 px
        size = train_size_at(epoch, cfg)
        assert trains_whole_recipe(epoch, cfg) == (size == cfg.image_size)
        progress.record(loss, {"w": torch.tensor(float(epoch))}, {"epoch": epoch + 1}, trains_whole_recipe(epoch, cfg))
        assert progress.stale < cfg.patience or size == cfg.image_size
        if epoch == 2:
            assert progress.best_row == {"epoch": 3}  # nothing at full size yet: kept for now
    first_full = next(e for e in range(cfg.epochs) if train_size_at(e, cfg) == 200)
    assert progress.best_row == {"epoch": first_full + 1} and progress.best["w"].item() == first_full
    assert progress.stale == cfg.epochs - first_full - 1 == 5
    assert len(progress.history) == 60


def test_the_kept_epoch_has_trained_on_the_painted_lesions():
    """Session 27: with lesions from epoch 6 of 12, validation (no painted lesions) scored epoch 6 best and the
    run returned weights that never saw a lesion; they found 0.683 of the held-out Br35H tumors."""
    from braintriage.train import Progress, trains_whole_recipe

    cfg = TrainConfig(data="unused", epochs=12, synthetic_lesions=0.7, lesions_from_epoch=6)
    losses = [1.05, 0.45, 0.41, 0.26, 0.23, 0.195, 0.254, 0.233, 0.214, 0.232, 0.237, 0.227]  # its history.csv
    progress = Progress()
    for epoch, loss in enumerate(losses):
        progress.record(loss, {"w": torch.tensor(float(epoch))}, {"epoch": epoch + 1}, trains_whole_recipe(epoch, cfg))
    assert progress.best_row == {"epoch": 9} and progress.best_loss == 0.214  # epoch 6 (0.195) is not eligible
    assert [trains_whole_recipe(e, cfg) for e in (5, 6)] == [False, True]
    assert all(trains_whole_recipe(e, dataclasses.replace(cfg, synthetic_lesions=0.0)) for e in range(12))


def test_progressive_resizing_is_refused_for_a_network_of_one_input_size(tmp_path):
    """seed-cnn's dense layer is sized to the image: resizing it mid-run crashed; now refused up front."""
    from braintriage.train import TrainingSetupError

    cache = tiny_type_cache(tmp_path, per_class=4)
    cfg = TrainConfig(data=str(cache), run_dir=str(tmp_path / "r"), output=str(tmp_path / "m.safetensors"),
                      architecture="seed-cnn", image_size=48, start_size=32, epochs=2, batch_size=8,
                      val_fraction=0.25)
    with pytest.raises(TrainingSetupError, match="one image size"):
        train(cfg, log=lambda *_: None)


def test_precision_auto_follows_the_hardware_and_rejects_unknown_names():
    from braintriage.hardware import native_bf16
    from braintriage.train import use_bf16

    cpu = torch.device("cpu")
    assert use_bf16("fp32", cpu) is False and use_bf16("bf16", cpu) is True
    assert use_bf16("auto", cpu) == native_bf16(cpu)
    with pytest.raises(ValueError, match="precision"):
        use_bf16("fp16", cpu)


def test_a_model_trained_on_head_crops_crops_at_prediction_too(tmp_path, monkeypatch):
    """--crop-to-head is recorded in the model file, and the runtime then crops the same way: the same head
    exported with narrow or wide black margins reaches the model as the same picture."""
    import numpy as np

    from braintriage.export import export_onnx
    from braintriage.inference import Predictor
    from conftest import synthetic_slice

    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    for k, name in enumerate(("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            head = synthetic_slice(96, seed=10 * k + i, lesion=k < 3)
            Image.fromarray(np.pad(head, 10 + 20 * i)).save(tmp_path / "data" / name / f"{i}.png")
    common = dict(output=str(tmp_path / "m.safetensors"), run_dir=str(tmp_path / "run"), image_size=48,
                  crop_to_head=True, epochs=1, max_steps=2, batch_size=8, val_fraction=0.25,
                  augment=NO_AUGMENT)
    train(TrainConfig(data=str(tmp_path / "data"), **common), log=lambda *_: None)
    assert read_metadata(tmp_path / "m.safetensors")["input"]["preprocess"]["crop_to_head"] is True
    with pytest.raises(ValueError, match="crop_to_head=False"):  # a cache decoded without the crop is refused
        train(TrainConfig(data=str(tiny_type_cache(tmp_path / "uncropped", per_class=2)), **common))

    export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx")
    head = synthetic_slice(150, seed=99, lesion=True)
    for margin in (20, 120):
        Image.fromarray(np.pad(head, margin)).save(tmp_path / f"framed-{margin}.png")
    narrow, wide = Predictor(tmp_path / "m.onnx").predict_files(
        [str(tmp_path / "framed-20.png"), str(tmp_path / "framed-120.png")], heatmaps=True)
    assert np.abs(narrow.image.astype(float) - wide.image.astype(float)).mean() < 8  # resampling noise only
    assert (narrow.image > 20).mean() > 0.5  # the head fills the model's view, not a fifth of it
    assert narrow.tumor_probability == pytest.approx(wide.tumor_probability, abs=0.05)


def test_a_models_validation_split_is_rebuilt_from_its_metadata_and_only_for_its_own_data(tmp_path):
    """Scripts that score a trained model afterwards (TTA, adoption rules) must see the images it was chosen on."""
    cache = tiny_type_cache(tmp_path / "a", per_class=8)
    cfg = TrainConfig(data=str(cache), output=str(tmp_path / "m.safetensors"), run_dir=str(tmp_path / "run"),
                      architecture="seed-cnn", image_size=48, epochs=1, batch_size=8, val_fraction=0.25,
                      augment=NO_AUGMENT, seed=5)
    train(cfg, log=lambda *_: None)
    meta = read_metadata(tmp_path / "m.safetensors")
    decoded = DecodedSet.load(cache)
    val_idx = model_validation_split(meta, decoded)
    stored = meta["validation_metrics"]
    assert len(val_idx) == meta["training"]["validation_images"] == stored["n"]
    assert int(decoded.tumor[val_idx].sum()) == stored["n_tumor"]
    other = DecodedSet.load(tiny_type_cache(tmp_path / "b", per_class=9))
    with pytest.raises(ValueError, match="not the data"):
        model_validation_split(meta, other)


def test_synthetic_lesions_relabel_training_normals_and_join_the_guards_fit(tmp_path):
    """--synthetic-lesions changes what a run learns (the same seed without it trains otherwise; painted as
    copies, otherwise again), and the model's guard is fitted with lesion-painted normals too (issue 21)."""
    cache = tiny_type_cache(tmp_path, per_class=8)
    common = dict(data=str(cache), run_dir=str(tmp_path / "run"), image_size=48, architecture="resnet18-w32",
                  batch_size=8, val_fraction=0.25, patience=100, seed=3, augment=NO_AUGMENT, epochs=2)
    plain = train(TrainConfig(**common, output=str(tmp_path / "plain.safetensors")), log=lambda *_: None)
    painted = train(TrainConfig(**common, output=str(tmp_path / "painted.safetensors"), synthetic_lesions=1.0),
                    log=lambda *_: None)
    assert [r["train_loss"] for r in plain["history"]] != [r["train_loss"] for r in painted["history"]]
    assert painted["metadata"]["training"]["config"]["synthetic_lesions"] == 1.0
    assert read_metadata(tmp_path / "painted.safetensors")["ood"]["synthetic_lesions"] is True
    assert read_metadata(tmp_path / "plain.safetensors")["ood"]["synthetic_lesions"] is False
    # As copies: the normals stay in the batch beside their painted copies, so the run learns otherwise again.
    copies = train(TrainConfig(**common, output=str(tmp_path / "copies.safetensors"), synthetic_lesions=1.0,
                               lesion_copies=True), log=lambda *_: None)
    assert [r["train_loss"] for r in copies["history"]] != [r["train_loss"] for r in painted["history"]]
    assert copies["metadata"]["training"]["config"]["lesion_copies"] is True
    # From epoch 1 on only: epoch 0 trains as the plain run does, epoch 1 as a painted one.
    late = train(TrainConfig(**common, output=str(tmp_path / "late.safetensors"), synthetic_lesions=1.0,
                             lesions_from_epoch=1), log=lambda *_: None)
    assert late["history"][0]["train_loss"] == plain["history"][0]["train_loss"]
    assert late["history"][1]["train_loss"] != plain["history"][1]["train_loss"]
    # The model card's recipe line says so.
    assert ("painted masses on 1.0 of the training normals from epoch 1"
            in _recipe_extras(late["metadata"]["training"]["config"]))
    # Infiltrative masses (session 49) paint otherwise; the card says so, and the guard is fitted on normals
    # painted the same way.
    infiltrative = train(TrainConfig(**common, output=str(tmp_path / "infiltrative.safetensors"),
                                     synthetic_lesions=1.0, lesion_copies=True, infiltrative_lesions=1.0),
                         log=lambda *_: None)
    assert [r["train_loss"] for r in infiltrative["history"]] != [r["train_loss"] for r in copies["history"]]
    assert "1.0 of them infiltrative" in _recipe_extras(infiltrative["metadata"]["training"]["config"])
    metadata = read_metadata(tmp_path / "infiltrative.safetensors")
    assert infiltrative_share(metadata) == 1.0 and infiltrative_share(read_metadata(tmp_path / "copies.safetensors")) == 0
    decoded, idx = DecodedSet.load(cache), np.arange(16)
    assert not np.array_equal(painted_normals(decoded, idx, 0, 1.0), painted_normals(decoded, idx, 0))
