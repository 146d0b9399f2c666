"""Distillation (`train --teacher`, distill.py): the loss, and a student trained beside a teacher."""

import pytest
import torch

from braintriage.augment import AugmentPolicy
from braintriage.crossval import cross_validation
from braintriage.distill import distillation_loss, resized_views
from braintriage.modelfile import file_digest, read_metadata
from braintriage.train import TrainConfig, TrainingSetupError, train
from braintriage.warm_start import source_leak
from conftest import tiny_type_cache

NO_AUGMENT = AugmentPolicy(zoom=(1, 1), rotation_degrees=0, brightness=(1, 1))
QUIET = dict(log=lambda *_: None)


def test_the_distillation_loss_is_zero_only_where_the_student_agrees_and_pulls_it_to_the_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 3.0, 0.0, 0.0]])
    weights = torch.tensor([1.0, 3.0])
    assert distillation_loss(teacher, teacher, weights, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(2, 4, requires_grad=True)
    loss = distillation_loss(student, teacher, weights, 2.0)
    assert loss.item() > 0
    loss.backward()
    with torch.no_grad():
        closer = distillation_loss(student - 0.5 * student.grad, teacher, weights, 2.0)
    assert closer.item() < loss.item()
    # A sigmoid model's one logit counts as two classes: the same logit agrees, another does not.
    one = torch.tensor([[1.5], [-2.0]])
    assert distillation_loss(one, one, weights, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(one, -one, weights, 1.0).item() > 0.1


def test_views_are_made_smaller_for_the_student_and_kept_at_the_same_size():
    views = torch.rand(3, 1, 48, 48)
    assert resized_views(views, 48) is views
    small = resized_views(views, 32)
    assert small.shape == (3, 1, 32, 32)
    assert small.mean().item() == pytest.approx(views.mean().item(), abs=0.01)


def test_a_student_learns_beside_a_teacher_of_another_size(tmp_path, monkeypatch):
    """A 48 px teacher teaches a 32 px student: the student's run differs from the same run without it, its
    model file names the teacher, and without weight on the teacher a same-size run is the plain run exactly
    (the teacher draws nothing from the run's random stream)."""
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    tiny_type_cache(tmp_path, per_class=8)
    common = dict(data=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), architecture="resnet18-w32",
                  batch_size=8, val_fraction=0.25, patience=100, seed=3, augment=NO_AUGMENT, epochs=2,
                  synthetic_lesions=0.5, lesion_copies=True)
    teacher = tmp_path / "teacher.safetensors"
    train(TrainConfig(**common, image_size=48, output=str(teacher)), **QUIET)

    plain = train(TrainConfig(**common, image_size=32, output=str(tmp_path / "plain.safetensors")), **QUIET)
    student = train(TrainConfig(**common, image_size=32, output=str(tmp_path / "student.safetensors"),
                                teacher=str(teacher), distill_weight=0.5), **QUIET)
    losses = lambda run: [row["train_loss"] for row in run["history"]]  # noqa: E731
    assert losses(student) != losses(plain)
    recorded = read_metadata(tmp_path / "student.safetensors")["training"]
    assert recorded["teacher"] == {"file": "teacher.safetensors", "sha256": file_digest(teacher),
                                   "architecture": "resnet18-w32", "image_size": 48}
    assert recorded["config"]["distill_weight"] == 0.5
    assert read_metadata(tmp_path / "student.safetensors")["input"]["preprocess"]["size"] == 32
    # Painted copies that learn their label only: the same images and draws, another loss.
    label_only = train(TrainConfig(**common, image_size=32, output=str(tmp_path / "label-only.safetensors"),
                                   teacher=str(teacher), distill_painted=False), **QUIET)
    assert losses(label_only) != losses(student)
    # Taught in the first epoch only: that epoch is the student's, the next one learns the labels alone (the
    # same as a student never taught, whose views are made the same way).
    first_only = train(TrainConfig(**common, image_size=32, output=str(tmp_path / "first-only.safetensors"),
                                   teacher=str(teacher), distill_until_epoch=1), **QUIET)
    assert losses(first_only)[0] == losses(student)[0] and losses(first_only)[1] != losses(student)[1]
    never = train(TrainConfig(**common, image_size=32, output=str(tmp_path / "never.safetensors"),
                              teacher=str(teacher), distill_until_epoch=0), **QUIET)
    unweighted_48 = train(TrainConfig(**common, image_size=32, output=str(tmp_path / "w0.safetensors"),
                                      teacher=str(teacher), distill_weight=0.0), **QUIET)
    assert losses(never) == losses(unweighted_48) != losses(student)

    same_size = tmp_path / "teacher32.safetensors"
    train(TrainConfig(**{**common, "seed": 4}, image_size=32, output=str(same_size)), **QUIET)
    unweighted = train(TrainConfig(**common, image_size=32, output=str(tmp_path / "unweighted.safetensors"),
                                   teacher=str(same_size), distill_weight=0.0), **QUIET)
    assert losses(unweighted) == losses(plain)


def test_a_teacher_that_cannot_teach_the_run_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    cache = tiny_type_cache(tmp_path, per_class=4)
    common = dict(run_dir=str(tmp_path / "run"), architecture="resnet18-w32", batch_size=8, val_fraction=0.25,
                  augment=NO_AUGMENT, epochs=1)
    binary = tmp_path / "binary.safetensors"
    train(TrainConfig(data=str(cache), image_size=48, labels="binary", output=str(binary), **common), **QUIET)
    big = tmp_path / "big.safetensors"
    train(TrainConfig(data=str(tmp_path / "data"), image_size=64, output=str(big), **common), **QUIET)
    refusals = {"predicts no_tumor, tumor": dict(data=str(cache), image_size=48, teacher=str(binary)),
                "give the dataset folders": dict(data=str(cache), image_size=48, teacher=str(big)),
                "leave out --start-size": dict(data=str(tmp_path / "data"), image_size=48, start_size=32,
                                               teacher=str(big)),
                "serve a cross-validation": dict(data=str(cache), image_size=48, teacher=str(tmp_path)),
                "needs --folds of at least that many": dict(data=str(cache), image_size=48, folds=2, only_fold=3),
                "each fold's teacher from its own fold": dict(data=str(cache), image_size=48, folds=2,
                                                              teacher=str(binary)),
                "it needs --teacher": dict(data=str(cache), image_size=48, distill_until_epoch=2),
                "it needs --lesion-copies": dict(data=str(tmp_path / "data"), image_size=48, teacher=str(big),
                                                 synthetic_lesions=0.5, distill_painted=False)}
    for message, changes in refusals.items():
        run = cross_validation if changes.get("folds") else train
        with pytest.raises(TrainingSetupError, match=message):
            run(TrainConfig(output=str(tmp_path / "never.safetensors"), **common, **changes), **QUIET)


def test_a_cross_validation_learns_from_the_teacher_of_each_fold(tmp_path, monkeypatch):
    """--keep-fold-models writes each fold's model, which names the images it held out; a student's
    cross-validation with --teacher FOLDER learns fold K from fold-K.safetensors, one fold at a time with
    --only-fold, and refuses a teacher that held out other images (it trained on this fold's)."""
    monkeypatch.setenv("BRAINTRIAGE_CACHE", str(tmp_path / "cache"))
    tiny_type_cache(tmp_path, per_class=6)
    common = dict(data=str(tmp_path / "data"), architecture="resnet18-w32", batch_size=8, patience=100,
                  augment=NO_AUGMENT, epochs=1, folds=2, seed=5)
    teachers = tmp_path / "teacher-cv"
    result = cross_validation(TrainConfig(**common, image_size=48, run_dir=str(teachers), keep_fold_models=True), **QUIET)
    assert result["pooled_out_of_fold"]
    folds = teachers / "folds"
    assert [read_metadata(folds / f"fold-{k}.safetensors")["cv_fold"]["fold"] for k in (1, 2)] == [1, 2]

    student = dict(common, image_size=32, run_dir=str(tmp_path / "student-cv"), teacher=str(folds))
    first = cross_validation(TrainConfig(**student, only_fold=1), **QUIET)
    assert first == {"folds": 2, "finished": [1], "missing": [2]}
    both = cross_validation(TrainConfig(**student), **QUIET)  # fold 1 read back, fold 2 trained
    assert [f["fold"] for f in both["per_fold"]] == [1, 2] and both["config"]["teacher"] == str(folds)

    other = dict(common, image_size=48, seed=6, run_dir=str(tmp_path / "other-cv"), keep_fold_models=True)
    cross_validation(TrainConfig(**other, only_fold=1), **QUIET)
    with pytest.raises(TrainingSetupError, match="held out other images than fold 1"):
        leaky = dict(student, run_dir=str(tmp_path / "leaky"), teacher=str(tmp_path / "other-cv" / "folds"))
        cross_validation(TrainConfig(**leaky, only_fold=1), **QUIET)


def test_a_leave_source_out_student_needs_a_teacher_that_held_out_the_same_source():
    assert source_leak("br35h", {"training": {"held_out_source": "br35h"}}, "teacher") is None
    assert "teacher trained on every source" in source_leak("br35h", {"training": {"held_out_source": None}}, "teacher")
    assert "held out figshare" in source_leak("br35h", {"training": {"held_out_source": "figshare"}}, "teacher")
    assert source_leak(None, {"training": {"held_out_source": "br35h"}}, "teacher") is None
