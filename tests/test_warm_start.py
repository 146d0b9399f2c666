"""Starting a run from a trained model file (`train --init-from`, warm_start.py)."""

import pytest
import torch

from braintriage.augment import AugmentPolicy
from braintriage.crossval import cross_validation
from braintriage.modelfile import file_digest, load_model, read_metadata
from braintriage.train import TrainConfig, TrainingSetupError, train
from conftest import tiny_type_cache

NO_AUGMENT = AugmentPolicy(zoom=(1, 1), rotation_degrees=0, brightness=(1, 1))
QUIET = dict(log=lambda *_: None)


def weights(path) -> dict[str, torch.Tensor]:
    """A model file's learned weights (convolutions and dense layers; not BatchNorm's running statistics)."""
    return {k: v for k, v in load_model(path)[0].state_dict().items() if k.endswith("weight") and v.ndim > 1}


def test_a_run_starts_from_a_trained_model_and_trains_it_at_its_own_size(tmp_path, monkeypatch):
    """A 48 px model fine-tuned at 32 px: with no learning it keeps the 48 px model's weights (so they were
    loaded), with learning it moves from them, and the 32 px file names the model it started from."""
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    tiny_type_cache(tmp_path, per_class=8)
    common = dict(data=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), architecture="resnet18-w32",
                  batch_size=8, val_fraction=0.25, patience=100, seed=3, augment=NO_AUGMENT, epochs=1)
    start = tmp_path / "start.safetensors"
    train(TrainConfig(**common, image_size=48, output=str(start)), **QUIET)

    frozen = tmp_path / "lr0.safetensors"
    train(TrainConfig(**common, image_size=32, output=str(frozen), init_from=str(start), lr=0.0,
                      weight_decay=0.0), **QUIET)
    assert all(torch.equal(a, b) for a, b in zip(weights(start).values(), weights(frozen).values()))
    recorded = read_metadata(frozen)["training"]
    assert recorded["initialised_from"] == {"file": "start.safetensors", "sha256": file_digest(start),
                                            "architecture": "resnet18-w32", "image_size": 48}
    assert read_metadata(frozen)["input"]["preprocess"]["size"] == 32

    # --epochs 0: the starting model as it is (BatchNorm statistics too), validated and written at 32 px.
    as_is = tmp_path / "as-is.safetensors"
    result = train(TrainConfig(**{**common, "epochs": 0}, image_size=32, output=str(as_is), init_from=str(start)),
                   **QUIET)
    start_state, as_is_state = (load_model(path)[0].state_dict() for path in (start, as_is))
    assert all(torch.equal(start_state[k], as_is_state[k]) for k in start_state)
    assert read_metadata(as_is)["input"]["preprocess"]["size"] == 32
    assert [row["epoch"] for row in result["history"]] == [0] and result["metadata"]["ood"]

    tuned = tmp_path / "tuned.safetensors"
    train(TrainConfig(**common, image_size=32, output=str(tuned), init_from=str(start)), **QUIET)
    scratch = tmp_path / "scratch.safetensors"
    train(TrainConfig(**common, image_size=32, output=str(scratch)), **QUIET)
    moved = [(a - b).abs().max().item() for a, b in zip(weights(start).values(), weights(tuned).values())]
    assert max(moved) > 0
    # Started from the trained weights, it ends nearer them than a run from random weights does.
    distance = lambda path: sum((a - b).pow(2).sum().item()  # noqa: E731
                                for a, b in zip(weights(start).values(), weights(path).values()))
    assert distance(tuned) < distance(scratch)


def test_a_starting_model_that_trained_on_what_the_run_is_scored_on_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    cache = tiny_type_cache(tmp_path, per_class=4)
    common = dict(data=str(cache), run_dir=str(tmp_path / "run"), architecture="resnet18-w32", batch_size=8,
                  val_fraction=0.25, augment=NO_AUGMENT, epochs=1, image_size=48)
    start = tmp_path / "start.safetensors"
    train(TrainConfig(**common, output=str(start)), **QUIET)
    binary = tmp_path / "binary.safetensors"
    train(TrainConfig(**common, labels="binary", output=str(binary)), **QUIET)
    refusals = {"validated on other images": dict(init_from=str(start), seed=1),
                "val-fraction": dict(init_from=str(start), val_fraction=0.5),
                "predicts no_tumor, tumor": dict(init_from=str(binary)),
                "is a resnet18-w32; this run trains a seed-cnn": dict(init_from=str(start), architecture="seed-cnn"),
                "it needs --init-from": dict(epochs=0),
                "give one$": dict(init_from=str(start), pretrained=True, architecture="efficientnet-lite0"),
                "as its folds' starting models": dict(init_from=str(tmp_path)),
                "each fold's starting model from its own fold": dict(init_from=str(start), folds=2)}
    for message, changes in refusals.items():
        run = cross_validation if changes.get("folds") else train
        with pytest.raises(TrainingSetupError, match=message):
            run(TrainConfig(**{**common, "output": str(tmp_path / "never.safetensors"), **changes}), **QUIET)


def test_each_fold_of_a_cross_validation_starts_from_the_same_fold_of_another(tmp_path, monkeypatch):
    """--init-from FOLDER: fold K starts from fold-K.safetensors of a --keep-fold-models cross-validation,
    which must have held out fold K's images."""
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    tiny_type_cache(tmp_path, per_class=6)
    common = dict(data=str(tmp_path / "data"), architecture="resnet18-w32", batch_size=8, patience=100,
                  augment=NO_AUGMENT, epochs=1, folds=2, seed=5)
    first = tmp_path / "first-cv"
    cross_validation(TrainConfig(**common, image_size=48, run_dir=str(first), keep_fold_models=True), **QUIET)
    tuned = cross_validation(TrainConfig(**common, image_size=32, run_dir=str(tmp_path / "tuned-cv"),
                                         init_from=str(first / "folds")), **QUIET)
    assert [f["fold"] for f in tuned["per_fold"]] == [1, 2]
    assert tuned["config"]["init_from"] == str(first / "folds")

    other = tmp_path / "other-cv"
    cross_validation(TrainConfig(**{**common, "seed": 6}, image_size=48, run_dir=str(other), keep_fold_models=True,
                                 only_fold=1), **QUIET)
    with pytest.raises(TrainingSetupError, match="held out other images than fold 1"):
        cross_validation(TrainConfig(**common, image_size=32, run_dir=str(tmp_path / "leaky"), only_fold=1,
                                     init_from=str(other / "folds")), **QUIET)
